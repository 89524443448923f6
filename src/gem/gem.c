// The GEM objective (docs/algorithm.md sections 3-6): Eq. 1 scores, cognitive filtering, SEGA
// rewards and advantages, the SEGA and DPO loss gradients, and the evaluation helpers.
//
// Sums are accumulated in double in a fixed order and cast to float once, so a score or a loss
// is the same bits whatever the batch it was computed in.
#include "gem/gem.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "base/utf8.h"

// ---- Eq. 1 -----------------------------------------------------------------------------------

// Start of the last occurrence of pat in text[0..len), or -1.
static long last_occurrence(const char *text, size_t len, const char *pat, size_t plen) {
    if (!text || !pat || plen == 0 || plen > len) return -1;
    for (size_t i = len - plen + 1; i-- > 0;)
        if (text[i] == pat[0] && memcmp(text + i, pat, plen) == 0) return (long)i;
    return -1;
}

// frac * n for a fraction read from a config as a float. The float carries up to 2^-24 relative
// representation error, so a product within that of an integer is that integer: 0.1f * 20 is
// 2.0000000298 in double, and m = ceil(0.1 * 20) must be 2, not 3.
static double fraction_of(float frac, int n) {
    const double p = (double)frac * n;
    const double r = nearbyint(p);
    return fabs(p - r) <= fabs(p) * 0x1p-23 ? r : p;
}

static float span_mean(const float *H, int from, int to) {
    if (to <= from) return 0.0f;
    double sum = 0.0;
    for (int i = from; i < to; i++) sum += H[i];
    return (float)(sum / (to - from));
}

static int compare_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

// m of the fork term: top_m < 1 a fraction of the CoT span (at least one token), >= 1 a count.
static int fork_count(float top_m, int n_cot) {
    if (n_cot <= 0) return 0;
    if (top_m >= 1.0f) return top_m >= (float)n_cot ? n_cot : (int)floorf(top_m);
    int m = (int)ceil(fraction_of(top_m, n_cot));
    if (m < 1) m = 1;
    return m < n_cot ? m : n_cot;
}

// Mean of the m largest entropies of H[0..n_cot), summed from the largest down.
static float fork_term(const float *H, int n_cot, float top_m) {
    const int m = fork_count(top_m, n_cot);
    if (m == 0) return 0.0f;
    float *sorted = mallocCheck(sizeof(float) * (size_t)n_cot);
    memcpy(sorted, H, sizeof(float) * (size_t)n_cot);
    qsort(sorted, (size_t)n_cot, sizeof(float), compare_desc);
    const float mean = span_mean(sorted, 0, m);
    free(sorted);
    return mean;
}

// The spans as [0, n_cot) and [final_from, n). Tokens are contiguous in the text, so the tokens
// ending at or before the marker's start are a prefix and those starting at or after its end a
// suffix; the straddling ones between them belong to neither. Returns 0 when the marker is not
// in the text, or only spaces follow its last occurrence.
static int marker_spans(const char *marker, int n, const char *text, const int *tok_end, int *n_cot,
                        int *final_from) {
    if (!marker || !text || !tok_end || n <= 0) return 0;
    const long at = last_occurrence(text, (size_t)tok_end[n - 1], marker, strlen(marker));
    if (at < 0) return 0;
    const long end = at + (long)strlen(marker);
    // a marker with nothing but spaces after it delimits no answer: scoring it as an empty final
    // span (term 0, the best possible) would reward stopping right after the marker, which is
    // what a policy trained on that score learns within a few dozen steps
    long k = end;
    while (k < tok_end[n - 1] && isspace((unsigned char)text[k])) k++;
    if (k == tok_end[n - 1]) return 0;
    int c = 0;
    while (c < n && tok_end[c] <= at) c++;
    int f = c;
    while (f < n && (f == 0 ? 0 : tok_end[f - 1]) < end) f++;
    *n_cot = c;
    *final_from = f;
    return 1;
}

void gem_score_tokens(const ScoreConfig *c, const float *H, int n, const char *text,
                      const int *tok_end, CandidateScore *out) {
    memset(out, 0, sizeof *out);
    if (n < 0) n = 0;
    int n_cot = 0, final_from = 0;
    if (c->final_span == SPAN_MARKER &&
        marker_spans(c->answer_marker, n, text, tok_end, &n_cot, &final_from)) {
        out->used_marker = 1;
    } else if (c->final_span == SPAN_WINDOW) {
        const int w = c->final_window < 0 ? 0 : (c->final_window < n ? c->final_window : n);
        n_cot = n - w;
        final_from = n_cot;
    } else { // fraction, and the marker rule's fallback
        const double cut = floor(fraction_of(c->final_split, n));
        n_cot = cut <= 0 ? 0 : (cut >= n ? n : (int)cut);
        final_from = n_cot;
    }
    out->n_cot = n_cot;
    out->n_final = n - final_from;
    out->fork = fork_term(H, n_cot, c->top_m);
    out->final = span_mean(H, final_from, n);
    out->score = -c->lambda_final * out->final + c->lambda_fork * out->fork;
    out->value = out->score;
}

int candidate_content_len(const Candidate *cand) {
    if (cand->n <= 0) return 0;
    return cand->finish == FINISH_EOS ? cand->n - 1 : cand->n;
}

int gem_score_candidate(const ScoreConfig *c, const Tokenizer *tok, const Candidate *cand,
                        CandidateScore *out) {
    const int n = candidate_content_len(cand);
    const float *H =
        c->entropy_source == ENTROPY_SAMPLING ? cand->entropy_sample : cand->entropy_raw;
    if (c->final_span != SPAN_MARKER || n == 0) {
        gem_score_tokens(c, H, n, NULL, NULL, out);
        return 0;
    }
    if (!tok) {
        gemc_set_error("scoring with final_span: marker needs the tokenizer to find the marker");
        return -1;
    }
    // token by token, so that each token's end offset in the text is known
    StrBuf text = {0};
    int *tok_end = mallocCheck(sizeof(int) * (size_t)n);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = tokenizer_decode(tok, &cand->ids[i], 1, 0, &text);
        tok_end[i] = (int)text.len;
    }
    if (rc == 0) gem_score_tokens(c, H, n, text.p, tok_end, out);
    free(tok_end);
    free(text.p);
    return rc;
}

int gem_candidate_answer(const Tokenizer *tok, const char *marker, const Candidate *cand,
                         char **answer) {
    StrBuf bytes = {0}, text = {0};
    *answer = NULL;
    const int rc = tokenizer_decode(tok, cand->ids, candidate_content_len(cand), 1, &bytes);
    if (rc == 0) {
        utf8_append_lossy(&text, bytes.p ? bytes.p : "", bytes.len);
        *answer = gem_extract_answer(text.p ? text.p : "", text.len, marker);
    }
    free(bytes.p), free(text.p);
    return rc;
}

// ---- Filtering, rewards, advantages ------------------------------------------------------------

void group_ranking_alloc(GroupRanking *g, int k) {
    memset(g, 0, sizeof *g);
    const size_t n = k > 0 ? (size_t)k : 1;
    g->k = k;
    g->valid = callocCheck(n, sizeof(int));
    g->rank = callocCheck(n, sizeof(int));
    g->reward = callocCheck(n, sizeof(float));
    g->advantage = callocCheck(n, sizeof(float));
    g->best = g->worst = -1;
}

void group_ranking_free(GroupRanking *g) {
    free(g->valid);
    free(g->rank);
    free(g->reward);
    free(g->advantage);
    memset(g, 0, sizeof *g);
}

// A non-finite S (a diverged model) would turn the group's mean and every advantage into NaN,
// so such a candidate is invalid like an empty one and shows in n_valid.
static int candidate_valid(const FilterConfig *f, const Candidate *cand, const CandidateScore *sc) {
    if (candidate_content_len(cand) == 0) return 0;
    if (f->drop_truncated && cand->finish == FINISH_LENGTH) return 0;
    return isfinite(sc->value);
}

// Insertion sort of the valid indices by S descending; the indices arrive ascending and the sort
// is stable, so ties stay in index order.
static void order_by_score(const CandidateScore *scores, int *order, int n) {
    for (int i = 1; i < n; i++) {
        const int x = order[i];
        int j = i;
        while (j > 0 && scores[order[j - 1]].value < scores[x].value) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

// r_i over the valid candidates order[0..n); softmax shifted by the largest S for stability.
static void set_rewards(const SegaConfig *s, const CandidateScore *scores, const int *order, int n,
                        float *reward) {
    if (s->reward_mapping == REWARD_IDENTITY) {
        for (int j = 0; j < n; j++) reward[order[j]] = scores[order[j]].value;
        return;
    }
    const double T = s->reward_temperature;
    const double top = scores[order[0]].value; // order[0] has the largest value
    double sum = 0.0;
    for (int j = 0; j < n; j++) sum += exp((scores[order[j]].value - top) / T);
    for (int j = 0; j < n; j++)
        reward[order[j]] = (float)(exp((scores[order[j]].value - top) / T) / sum);
}

// A_i from the recorded (float) rewards, the mean taken in double so that the advantages sum to
// zero to float rounding. Returns 0, or -1 when adv_norm: std finds a std below 1e-6.
static int set_advantages(const SegaConfig *s, const int *order, int n, const float *reward,
                          float *advantage) {
    double mean = 0.0;
    for (int j = 0; j < n; j++) mean += reward[order[j]];
    mean /= n;
    double denom = 1.0;
    if (s->adv_norm == ADV_STD) {
        double ss = 0.0;
        for (int j = 0; j < n; j++) {
            const double d = reward[order[j]] - mean;
            ss += d * d;
        }
        const double std = sqrt(ss / (n - 1)); // sample std, as torch.std
        if (std < 1e-6) return -1;
        denom = std + 1e-6;
    }
    for (int j = 0; j < n; j++) advantage[order[j]] = (float)((reward[order[j]] - mean) / denom);
    return 0;
}

// A skipped group keeps its valid flags, ranks and rewards (they describe the candidates and go
// to the metrics and shards) but every advantage is 0, skipped is 1 and there is no DPO pair:
// it contributes nothing to the update.
void gem_rank_group(const FilterConfig *f, const SegaConfig *s, const Candidate *cands,
                    const CandidateScore *scores, int k, GroupRanking *out) {
    if (out->k != k || !out->valid) {
        group_ranking_free(out);
        group_ranking_alloc(out, k);
    }
    int *order = mallocCheck(sizeof(int) * (size_t)(k > 0 ? k : 1));
    int nv = 0;
    for (int i = 0; i < k; i++) {
        out->valid[i] = candidate_valid(f, &cands[i], &scores[i]);
        out->rank[i] = -1;
        out->reward[i] = out->advantage[i] = 0.0f;
        if (out->valid[i]) order[nv++] = i;
    }
    order_by_score(scores, order, nv);

    int n_trim = (int)floor(fraction_of(f->trim_bottom, nv));
    if (n_trim < 0) n_trim = 0;
    if (n_trim > nv) n_trim = nv;
    for (int j = nv - n_trim; j < nv; j++) out->valid[order[j]] = 0;
    nv -= n_trim;

    for (int j = 0; j < nv; j++) out->rank[order[j]] = j;
    out->n_valid = nv;
    out->best = out->worst = -1;
    out->skipped = nv < 2;
    out->zero_adv = 0;
    if (nv > 0) set_rewards(s, scores, order, nv, out->reward);
    if (!out->skipped && set_advantages(s, order, nv, out->reward, out->advantage) != 0)
        out->skipped = 1;
    if (!out->skipped && f->skip_zero_adv) {
        int any = 0;
        for (int j = 0; j < nv; j++) any |= out->advantage[order[j]] != 0.0f;
        if (!any) out->skipped = out->zero_adv = 1;
    }
    if (!out->skipped) {
        out->best = order[0];
        out->worst = order[nv - 1];
    }
    free(order);
}

// ---- SEGA loss ---------------------------------------------------------------------------------

// The policy term of one token and its derivative in l. PPO's min/clamp follow PyTorch's
// subgradients: torch.minimum splits the gradient on a tie and clamp passes it at the bounds, so
// at a tie (rho inside [1-eps, 1+eps], or A == 0) the whole rho * A flows; when the clipped
// branch is strictly smaller rho is outside the range and nothing flows.
static void policy_term(const SegaConfig *s, double A, double l, const float *old, double *term,
                        double *dterm) {
    if (!old) { // on-policy: the plain Eq. 2 term
        *term = A * l;
        *dterm = A;
        return;
    }
    const double rho = exp(l - (double)*old);
    const double unclipped = rho * A;
    if (s->clip_eps <= 0.0f) {
        *term = *dterm = unclipped;
        return;
    }
    const double lo = 1.0 - s->clip_eps, hi = 1.0 + s->clip_eps;
    const double clipped = (rho < lo ? lo : (rho > hi ? hi : rho)) * A;
    if (unclipped <= clipped) {
        *term = *dterm = unclipped;
    } else {
        *term = clipped;
        *dterm = 0.0;
    }
}

double sega_candidate_loss(const SegaConfig *s, float advantage, float weight, const float *logp,
                           const float *old_logp, const float *ref_logp, int n, float *dlogp) {
    if (n <= 0) return 0.0;
    const double agg = s->logp_agg == LOGP_MEAN ? 1.0 / n : 1.0;
    const double w = (double)weight * agg;
    const double kl = s->kl_coef > 0.0f && ref_logp ? (double)s->kl_coef : 0.0;
    double value = 0.0;
    for (int t = 0; t < n; t++) {
        double term, dterm;
        policy_term(s, advantage, logp[t], old_logp ? &old_logp[t] : NULL, &term, &dterm);
        double v = -w * term, g = -w * dterm;
        if (kl > 0.0) { // k3: e^d - d - 1 with d = ref - l, >= 0 and unbiased for KL(pi || ref)
            const double d = (double)ref_logp[t] - logp[t], e = exp(d);
            v += w * kl * (e - d - 1.0);
            g += w * kl * (1.0 - e);
        }
        value += v;
        if (dlogp) dlogp[t] = (float)g;
    }
    return value;
}

void sega_batch_weights(const SegaConfig *s, const GroupRanking *rank, const int *len, int G, int k,
                        float constant, float *weight) {
    int groups = 0; // G: every group of the batch, or the ones not skipped
    long tokens = 0;
    const int all = s->group_norm == GROUP_NORM_BATCH;
    for (int g = 0; g < G; g++) {
        if (rank[g].skipped && !all) continue;
        groups++;
        for (int i = 0; i < k; i++)
            if (rank[g].valid[i]) tokens += len[(size_t)g * k + i];
    }
    for (int g = 0; g < G; g++)
        for (int i = 0; i < k; i++) {
            float w = 0.0f;
            if (!rank[g].skipped && rank[g].valid[i]) {
                const double group = (double)groups * rank[g].n_valid;
                w = s->loss_agg == LOSS_TOKEN_MEAN ? (float)(1.0 / (double)tokens)
                    : s->loss_agg == LOSS_CONSTANT ? (float)(1.0 / (group * constant))
                                                   : (float)(1.0 / group);
            }
            weight[(size_t)g * k + i] = w;
        }
}

// ---- DPO ---------------------------------------------------------------------------------------

static double softplus(double y) {
    return y > 0.0 ? y + log1p(exp(-y)) : log1p(exp(y));
}

static double sigmoid(double y) {
    if (y >= 0.0) return 1.0 / (1.0 + exp(-y));
    const double e = exp(y);
    return e / (1.0 + e);
}

double dpo_pair_loss(float beta, double lc, double lr, double lc_ref, double lr_ref, double *dlc,
                     double *dlr) {
    const double x = beta * ((lc - lc_ref) - (lr - lr_ref));
    const double g = beta * sigmoid(-x); // -ln sigmoid(x) = softplus(-x), d/dx = -sigmoid(-x)
    if (dlc) *dlc = -g;
    if (dlr) *dlr = g;
    return softplus(-x);
}

// ---- Evaluation --------------------------------------------------------------------------------

static int is_blank(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

static void trim(const char **s, size_t *len) {
    while (*len && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_blank((*s)[*len - 1])) (*len)--;
}

char *gem_extract_answer(const char *text, size_t len, const char *marker) {
    if (!marker) return NULL;
    const long at = last_occurrence(text, len, marker, strlen(marker));
    if (at < 0) return NULL;
    const char *s = text + at + strlen(marker);
    const char *nl = memchr(s, '\n', len - (size_t)(s - text));
    size_t n = nl ? (size_t)(nl - s) : len - (size_t)(s - text);
    trim(&s, &n);
    char *out = mallocCheck(n + 1);
    memcpy(out, s, n);
    out[n] = 0;
    return out;
}

static const char *digit_run(const char *p, StrBuf *digits) {
    const char *q = p;
    while (isdigit((unsigned char)*q)) q++;
    strbuf_put(digits, p, (size_t)(q - p));
    return q;
}

// The canonical form of a number (sign, integer digits without leading zeros, fraction without
// trailing zeros: "-1,200.50" -> "-1200.5", "-0.0" -> "0") in a malloc'd string, or NULL when s
// is not one. Thousands commas must group by three, so "1,2" (a decimal comma?) is no number.
static char *canonical_number(const char *s) {
    while (is_blank(*s)) s++;
    const int neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    StrBuf ip = {0}, fp = {0};
    const char *p = digit_run(s, &ip);
    int ok = p > s;
    const int first_group = (int)(p - s);
    while (ok && *p == ',') {
        const char *q = digit_run(p + 1, &ip);
        ok = first_group <= 3 && q - (p + 1) == 3;
        p = q;
    }
    if (ok && *p == '.' && isdigit((unsigned char)p[1])) p = digit_run(p + 1, &fp);
    while (is_blank(*p)) p++;
    if (*p == '.') p++; // the sentence's full stop
    while (is_blank(*p)) p++;
    char *out = NULL;
    if (ok && *p == 0) {
        const char *i = ip.p;
        while (i[0] == '0' && i[1]) i++;
        size_t nf = fp.len;
        while (nf && fp.p[nf - 1] == '0') nf--;
        const int zero = strcmp(i, "0") == 0 && nf == 0;
        StrBuf b = {0};
        if (neg && !zero) strbuf_put(&b, "-", 1);
        strbuf_puts(&b, i);
        if (nf) {
            strbuf_put(&b, ".", 1);
            strbuf_put(&b, fp.p, nf);
        }
        out = b.p;
    }
    free(ip.p);
    free(fp.p);
    return out;
}

int gem_answer_matches(const char *got, const char *expected) {
    if (!got || !expected) return 0;
    char *a = canonical_number(got), *b = canonical_number(expected);
    int same;
    if (a && b) {
        same = strcmp(a, b) == 0;
    } else {
        size_t na = strlen(got), nb = strlen(expected);
        trim(&got, &na);
        trim(&expected, &nb);
        same = na == nb && memcmp(got, expected, na) == 0;
    }
    free(a);
    free(b);
    return same;
}

void wilson_interval(double successes, int n, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    const double z = 1.959963984540054; // the 97.5% normal quantile
    const double p = fmin(fmax(successes / n, 0.0), 1.0);
    const double z2n = z * z / n;
    const double denom = 1.0 + z2n;
    const double center = (p + z2n / 2.0) / denom;
    const double half = z * sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / denom;
    *lo = fmax(0.0, center - half);
    *hi = fmin(1.0, center + half);
}
