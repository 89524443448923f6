// `gemc eval` (docs/algorithm.md section 6) for each model of eval.models:
//   - preference accuracy on (prompt, chosen, rejected): implicit reward r(q, a) = beta l(a|q),
//     or beta (l - l_ref) with eval.use_ref, l divided by the response length with
//     eval.length_norm; the share of pairs with r_c > r_r, ties counted as half and reported
//     separately, with n and a 95% Wilson interval;
//   - task accuracy on prompts with an answer: greedy generation (or the majority answer of
//     eval.majority_k samples), the text after the answer marker compared to the answer,
//     numbers as numbers.
// Prints a table and writes results.json and results.md to eval.dir.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "run/metrics_log.h"
#include "run/run_report.h"
#include "gem/reward.h"
#include "stages/stage.h"

typedef struct {
    char label[64];
    const char *dir;
    int pref_n, pref_ties;
    double pref_wins; // ties count half
    double pref_lo, pref_hi;
    int task_n, task_correct, task_marker; // marker: answers that had the answer marker
    double task_lo, task_hi;
    double len_mean;
    int sig_n;                        // groups ranked (eval.signal_k), not skipped
    double sig_mean;                  // summed share of correct candidates
    int sig_top, sig_bottom;          // top- and bottom-ranked candidates that were correct
    int pass_n;                       // prompts of eval.pass_k
    double pass1, pass1_lo, pass1_hi; // mean share of right candidates
    int pass_k, maj_k;                // prompts with some right candidate; right majority
    double pass_k_lo, pass_k_hi, maj_k_lo, maj_k_hi;
} EvalRow;

// "LABEL=DIR" or "DIR" (labelled by its path).
static void parse_entry(const char *entry, EvalRow *row) {
    const char *eq = strchr(entry, '=');
    if (eq && eq > entry) {
        snprintf(row->label, sizeof row->label, "%.*s", (int)(eq - entry), entry);
        row->dir = eq + 1;
    } else {
        snprintf(row->label, sizeof row->label, "%s", entry);
        row->dir = entry;
    }
}

static double response_logp(const float *lp, int n, int length_norm) {
    double s = 0;
    for (int t = 0; t < n; t++) s += lp[t];
    return length_norm && n > 0 ? s / n : s;
}

// Log-probs of every pair's chosen and rejected response: out[2i], out[2i+1].
static void pair_logps(Model *m, const Dataset *ds, int n, int micro, int length_norm,
                       double *out) {
    SeqRef *seqs = mallocCheck(sizeof(SeqRef) * 2 * (size_t)n);
    long total = 0;
    for (int i = 0; i < n; i++) {
        const DataRecord *r = &ds->rec[i];
        seqs[2 * i] = (SeqRef){r->prompt_ids.v, r->prompt_ids.n, r->chosen_ids.v, r->chosen_ids.n};
        seqs[2 * i + 1] =
            (SeqRef){r->prompt_ids.v, r->prompt_ids.n, r->rejected_ids.v, r->rejected_ids.n};
        total += r->chosen_ids.n + r->rejected_ids.n;
    }
    float *lp = mallocCheck(sizeof(float) * (size_t)(total ? total : 1));
    // a forward only: the log-probs are the same bits with the pair's prompt shared
    seq_forward_backward(m, seqs, 2 * n, 2, micro, 1, lp, NULL, NULL);
    for (int s = 0, t = 0; s < 2 * n; t += seqs[s].R, s++)
        out[s] = response_logp(lp + t, seqs[s].R, length_norm);
    free(lp);
    free(seqs);
}

static int eval_preference(const GemConfig *c, Policy *p, Policy *ref, EvalRow *row) {
    Dataset ds;
    if (policy_load_data(p, c, c->eval.pairs, DATA_PAIRS, &ds) != 0) return -1;
    int n = c->eval.max_pairs > 0 && c->eval.max_pairs < ds.n ? c->eval.max_pairs : ds.n;
    double *l = mallocCheck(sizeof(double) * 2 * (size_t)n);
    double *l_ref = callocCheck(2 * (size_t)n, sizeof(double));
    pair_logps(&p->model, &ds, n, c->optim.micro_batch_tokens, c->eval.length_norm, l);
    if (ref)
        pair_logps(&ref->model, &ds, n, c->optim.micro_batch_tokens, c->eval.length_norm, l_ref);
    for (int i = 0; i < n; i++) {
        double rc = c->eval.beta * (l[2 * i] - l_ref[2 * i]);
        double rr = c->eval.beta * (l[2 * i + 1] - l_ref[2 * i + 1]);
        if (rc > rr) row->pref_wins += 1;
        if (rc == rr) row->pref_wins += 0.5, row->pref_ties++;
    }
    row->pref_n = n;
    wilson_interval(row->pref_wins, n, &row->pref_lo, &row->pref_hi);
    free(l);
    free(l_ref);
    dataset_free(&ds);
    return 0;
}

// The answer most of the k samples gave (reward_majority_index), NULL when none had the marker.
static const char *majority(char **answers, int k) {
    const int best = reward_majority_index(answers, k);
    return best >= 0 ? answers[best] : NULL;
}

// Samples sc->k candidates for each prompt ds->rec[idx[0 .. n)) (greedy when sc->temperature
// is 0), stream keys from the prompt indices and run.seed, so the same seed gives the same
// candidates. Per prompt: right[i] candidates with the right answer, majority_right[i] whether
// the answer most of them gave is right (may be NULL); *with_marker counts the prompts whose
// majority answer had the marker, *len_sum the candidates' tokens.
static int sample_and_check(const GemConfig *c, Policy *p, const SamplingConfig *sc,
                            const Dataset *ds, const int *idx, int n, RunDir *r, int *right,
                            int *majority_right, int *with_marker, long *len_sum) {
    const int chunk = 32, k = sc->k;
    Candidate *cands = callocCheck((size_t)chunk * k, sizeof(Candidate));
    const int **prompts = mallocCheck(sizeof(int *) * chunk);
    int *lens = mallocCheck(sizeof(int) * chunk);
    uint64_t *keys = mallocCheck(sizeof(uint64_t) * chunk);
    char **answers = callocCheck((size_t)k, sizeof(char *));
    int rc = 0;
    progress_set_label("eval");
    for (int c0 = 0; c0 < n && rc == 0; c0 += chunk) {
        int m = n - c0 < chunk ? n - c0 : chunk;
        for (int i = 0; i < m; i++) {
            const DataRecord *rec = &ds->rec[idx[c0 + i]];
            prompts[i] = rec->prompt_ids.v, lens[i] = rec->prompt_ids.n;
            keys[i] = (uint64_t)idx[c0 + i];
        }
        GenerateRequest req = {.sc = sc,
                               .eos_ids = p->stop_ids,
                               .n_eos = p->n_stop,
                               .seed = c->run.seed,
                               .policy_version = (int)p->model.adam_t,
                               .draw_vocab = tokenizer_vocab_size(p->tok)};
        if ((rc = sampler_generate(&p->model, &req, m, prompts, lens, keys, cands)) != 0) break;
        for (int i = 0; i < m; i++) {
            const char *want = ds->rec[idx[c0 + i]].answer;
            int ok = 0;
            for (int j = 0; j < k; j++) {
                answers[j] =
                    policy_candidate_answer(p, c->score.answer_marker, &cands[(size_t)i * k + j]);
                ok += answers[j] && gem_answer_matches(answers[j], want);
                *len_sum += cands[(size_t)i * k + j].n;
            }
            const char *got = majority(answers, k);
            right[c0 + i] = ok;
            if (majority_right) majority_right[c0 + i] = got && gem_answer_matches(got, want);
            *with_marker += got != NULL;
            for (int j = 0; j < k; j++) free(answers[j]), answers[j] = NULL;
        }
        for (int i = 0; i < m * k; i++) candidate_free(&cands[i]);
        progress_bar(r, c0 + m, n);
    }
    progress_done(r);
    free(answers), free(cands), free(prompts), free(lens), free(keys);
    return rc;
}

// Task accuracy of greedy answers (or of the majority answer of eval.majority_k samples) on the
// prompts ds->rec[idx[0 .. n)).
static int eval_task(const GemConfig *c, Policy *p, const Dataset *ds, const int *idx, int n,
                     RunDir *r, EvalRow *row) {
    SamplingConfig sc = c->sampling;
    if (c->eval.majority_k <= 1)
        sc.k = 1, sc.temperature = 0; // greedy
    else
        sc.k = c->eval.majority_k;
    // zeroed: a failed sampling leaves the rest unwritten
    int *right = callocCheck((size_t)n + 1, sizeof(int)),
        *maj = callocCheck((size_t)n + 1, sizeof(int));
    long len_sum = 0;
    int rc = sample_and_check(c, p, &sc, ds, idx, n, r, right, maj, &row->task_marker, &len_sum);
    for (int i = 0; i < n; i++) row->task_correct += maj[i];
    row->task_n = n;
    row->len_mean = (double)len_sum / ((double)n * sc.k);
    wilson_interval(row->task_correct, n, &row->task_lo, &row->task_hi);
    free(right), free(maj);
    return rc;
}

// eval.pass_k: K candidates a prompt at the sampling settings (the policy training samples).
// pass@1 is the mean share of right candidates, with a 95% normal interval over the prompts
// (the K candidates of a prompt are not independent draws of the task, so the prompt is the
// unit); pass@K is the unbiased estimator 1 - C(n-c, K)/C(n, K) of Chen et al. at n = K, that
// is whether some candidate is right; majority@K whether the most frequent answer is. Both
// with Wilson intervals.
static int eval_pass_k(const GemConfig *c, Policy *p, const Dataset *ds, const int *idx, int n,
                       RunDir *r, EvalRow *row) {
    SamplingConfig sc = c->sampling;
    sc.k = c->eval.pass_k;
    int *right = callocCheck((size_t)n + 1, sizeof(int)),
        *maj = callocCheck((size_t)n + 1, sizeof(int));
    int marker = 0;
    long len_sum = 0;
    int rc = sample_and_check(c, p, &sc, ds, idx, n, r, right, maj, &marker, &len_sum);
    double s = 0, s2 = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const double x = (double)right[i] / sc.k;
        s += x, s2 += x * x;
        row->pass_k += right[i] > 0;
        row->maj_k += maj[i];
    }
    row->pass_n = n;
    row->pass1 = n ? s / n : 0;
    const double var = n > 1 ? (s2 - s * s / n) / (n - 1) : 0, h = 1.96 * sqrt(var > 0 ? var : 0);
    row->pass1_lo = fmax(0, row->pass1 - h / sqrt(n > 0 ? n : 1));
    row->pass1_hi = fmin(1, row->pass1 + h / sqrt(n > 0 ? n : 1));
    wilson_interval(row->pass_k, n, &row->pass_k_lo, &row->pass_k_hi);
    wilson_interval(row->maj_k, n, &row->maj_k_lo, &row->maj_k_hi);
    free(right), free(maj);
    return rc;
}

// Does the entropy score pick correct answers? Samples eval.signal_k candidates per prompt as
// `train` does, ranks them by Eq. 1, and counts how often the top- and bottom-ranked candidate
// is correct against the mean over all candidates. GEM can only help where top > mean.
static int eval_signal(const GemConfig *c, Policy *p, const Dataset *ds, const int *idx, int n,
                       RunDir *r, EvalRow *row) {
    GemConfig sc = *c; // read-only copy with the group size changed
    sc.sampling.k = c->eval.signal_k;
    GroupBatch gb;
    if (groups_sample(&gb, p, &sc, ds, idx, n, 0, r) != 0) return -1;
    const int k = gb.k;
    for (int g = 0; g < n; g++) {
        const GroupRanking *rk = &gb.rank[g];
        if (rk->skipped) continue;
        int correct = 0, best = 0, worst = 0;
        for (int i = 0; i < k; i++) {
            const int ok = gb.correct[(size_t)g * k + i] > 0; // groups_sample checked the answer
            correct += ok;
            if (i == rk->best) best = ok;
            if (i == rk->worst) worst = ok;
        }
        row->sig_n++;
        row->sig_mean += (double)correct / k;
        row->sig_top += best;
        row->sig_bottom += worst;
    }
    groups_free(&gb);
    return 0;
}

// The prompts of eval.prompts that have an answer (at most eval.max_prompts), through task
// accuracy and the Eq. 1 signal.
static int eval_prompts(const GemConfig *c, Policy *p, RunDir *r, EvalRow *row) {
    Dataset ds;
    if (policy_load_data(p, c, c->eval.prompts, DATA_PROMPTS, &ds) != 0) return -1;
    int *idx = mallocCheck(sizeof(int) * (size_t)(ds.n ? ds.n : 1)), n = 0;
    for (int i = 0; i < ds.n; i++)
        if (ds.rec[i].answer && (c->eval.max_prompts <= 0 || n < c->eval.max_prompts)) idx[n++] = i;
    int rc = 0;
    if (n == 0) {
        gemc_set_error("%s: no prompt has an \"answer\" (HINT: task accuracy needs prompts with "
                       "answers; set eval.prompts to \"\" to skip it)",
                       c->eval.prompts);
        rc = -1;
    }
    if (rc == 0) rc = eval_task(c, p, &ds, idx, n, r, row);
    if (rc == 0 && c->eval.pass_k > 0) rc = eval_pass_k(c, p, &ds, idx, n, r, row);
    if (rc == 0 && c->eval.signal_k > 0) rc = eval_signal(c, p, &ds, idx, n, r, row);
    free(idx);
    dataset_free(&ds);
    return rc;
}

static void cell(char *buf, size_t cap, double x, int n, double lo, double hi) {
    if (n == 0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%5.1f%% [%4.1f, %4.1f]", 100 * x / n, 100 * lo, 100 * hi);
}

// "top 12.0% | mean 25.8% | bottom 30.0%" of the Eq. 1 ranking, or "-".
static void signal_cell(char *buf, size_t cap, const EvalRow *r) {
    if (r->sig_n == 0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f / %.1f / %.1f%%", 100.0 * r->sig_top / r->sig_n,
                 100.0 * r->sig_mean / r->sig_n, 100.0 * r->sig_bottom / r->sig_n);
}

static void write_results(const GemConfig *c, const EvalRow *rows, int n) {
    StrBuf md = {0}, js = {0};
    char line[768], task[64], pref[64], sig[64], sig_head[64] = "";
    const int with_signal = c->eval.signal_k > 0;
    if (with_signal)
        snprintf(sig_head, sizeof sig_head, "Eq. 1 top/mean/bottom of %d", c->eval.signal_k);
    snprintf(line, sizeof line,
             "| model | task accuracy (n=%d) | preference accuracy (n=%d) | ties |", rows[0].task_n,
             rows[0].pref_n);
    strbuf_puts(&md, line);
    if (with_signal) strbuf_puts(&md, " "), strbuf_puts(&md, sig_head), strbuf_puts(&md, " |");
    const int K = c->eval.pass_k;
    char pass_head[3][64];
    snprintf(pass_head[0], sizeof pass_head[0], "pass@1 (T=%g)", c->sampling.temperature);
    snprintf(pass_head[1], sizeof pass_head[1], "pass@%d", K);
    snprintf(pass_head[2], sizeof pass_head[2], "majority@%d", K);
    if (K > 0)
        for (int j = 0; j < 3; j++) strbuf_printf(&md, " %s |", pass_head[j]);
    strbuf_puts(&md, "\n|---|---|---|---|");
    if (with_signal) strbuf_puts(&md, "---|");
    if (K > 0) strbuf_puts(&md, "---|---|---|");
    strbuf_puts(&md, "\n");
    printf("\n%-12s  %-24s  %-24s  %-5s %s", "model", "task accuracy [95% CI]",
           "pref. accuracy [95% CI]", "ties", sig_head);
    if (K > 0)
        for (int j = 0; j < 3; j++) printf("  %-24s", pass_head[j]);
    printf("\n");
    strbuf_puts(&js, "{\n  \"models\": [");
    for (int i = 0; i < n; i++) {
        const EvalRow *r = &rows[i];
        cell(task, sizeof task, r->task_correct, r->task_n, r->task_lo, r->task_hi);
        cell(pref, sizeof pref, r->pref_wins, r->pref_n, r->pref_lo, r->pref_hi);
        signal_cell(sig, sizeof sig, r);
        printf("%-12s  %-24s  %-24s  %-5d %s", r->label, task, pref, r->pref_ties,
               with_signal ? sig : "");
        snprintf(line, sizeof line, "| %s | %s | %s | %d |", r->label, task, pref, r->pref_ties);
        strbuf_puts(&md, line);
        if (with_signal) strbuf_puts(&md, " "), strbuf_puts(&md, sig), strbuf_puts(&md, " |");
        if (K > 0) {
            char pc[3][64];
            cell(pc[0], sizeof pc[0], r->pass1 * r->pass_n, r->pass_n, r->pass1_lo, r->pass1_hi);
            cell(pc[1], sizeof pc[1], r->pass_k, r->pass_n, r->pass_k_lo, r->pass_k_hi);
            cell(pc[2], sizeof pc[2], r->maj_k, r->pass_n, r->maj_k_lo, r->maj_k_hi);
            for (int j = 0; j < 3; j++)
                printf("  %-24s", pc[j]), strbuf_printf(&md, " %s |", pc[j]);
        }
        printf("\n");
        strbuf_puts(&md, "\n");
        strbuf_puts(&js, i ? ",\n    {\"label\": " : "\n    {\"label\": ");
        strbuf_json_string(&js, r->label);
        strbuf_puts(&js, ", \"model\": ");
        strbuf_json_string(&js, r->dir);
        snprintf(line, sizeof line,
                 ", \"task_n\": %d, \"task_correct\": %d, \"task_accuracy\": %.6f, "
                 "\"task_ci95\": [%.6f, %.6f], \"answers_with_marker\": %d, "
                 "\"response_len_mean\": %.3f, \"pref_n\": %d, \"pref_accuracy\": %.6f, "
                 "\"pref_ties\": %d, \"pref_ci95\": [%.6f, %.6f], \"signal_groups\": %d, "
                 "\"signal_top_accuracy\": %.6f, \"signal_mean_accuracy\": %.6f, "
                 "\"signal_bottom_accuracy\": %.6f",
                 r->task_n, r->task_correct, r->task_n ? (double)r->task_correct / r->task_n : 0,
                 r->task_lo, r->task_hi, r->task_marker, r->len_mean, r->pref_n,
                 r->pref_n ? r->pref_wins / r->pref_n : 0, r->pref_ties, r->pref_lo, r->pref_hi,
                 r->sig_n, r->sig_n ? (double)r->sig_top / r->sig_n : 0,
                 r->sig_n ? r->sig_mean / r->sig_n : 0,
                 r->sig_n ? (double)r->sig_bottom / r->sig_n : 0);
        strbuf_puts(&js, line);
        if (K > 0) {
            const double pn = r->pass_n ? r->pass_n : 1;
            strbuf_printf(&js,
                          ", \"pass_n\": %d, \"pass1\": %.6f, \"pass1_ci95\": [%.6f, %.6f], "
                          "\"pass_k\": %.6f, \"pass_k_ci95\": [%.6f, %.6f], "
                          "\"majority_k_accuracy\": %.6f, \"majority_k_ci95\": [%.6f, %.6f]",
                          r->pass_n, r->pass1, r->pass1_lo, r->pass1_hi, r->pass_k / pn,
                          r->pass_k_lo, r->pass_k_hi, r->maj_k / pn, r->maj_k_lo, r->maj_k_hi);
        }
        strbuf_puts(&js, "}");
    }
    snprintf(line, sizeof line,
             "\n  ],\n  \"beta\": %g, \"use_ref\": %s, \"length_norm\": %s, \"majority_k\": %d, "
             "\"signal_k\": %d, \"pass_k\": %d, \"temperature\": %g\n}\n",
             c->eval.beta, c->eval.use_ref ? "true" : "false",
             c->eval.length_norm ? "true" : "false", c->eval.majority_k, c->eval.signal_k, K,
             c->sampling.temperature);
    strbuf_puts(&js, line);
    char *pm = path_join(c->eval.dir, "results.md"), *pj = path_join(c->eval.dir, "results.json");
    if (write_file_atomic(pm, md.p, md.len) != 0 || write_file_atomic(pj, js.p, js.len) != 0)
        fprintf(stderr, "gemc: warning: %s\n", gemc_error());
    else
        printf("\nwrote %s and %s\n", pm, pj);
    free(pm), free(pj), free(md.p), free(js.p);
}

int stage_eval_check_files(const GemConfig *c) {
    const char *keys[3] = {"eval.prompts", "eval.pairs", "eval.probe"};
    const char *files[3] = {c->eval.prompts, c->eval.pairs, c->eval.probe};
    for (int i = 0; i < 3 && c->eval.every > 0; i++)
        if (files[i] && files[i][0] && !path_exists(files[i])) {
            gemc_set_error("%s: %s: no such file (HINT: eval.every=%d evaluates on it; name "
                           "another file, or eval.every=0)",
                           keys[i], files[i], c->eval.every);
            return -1;
        }
    return 0;
}

int stage_eval_due(const GemConfig *c, long step, long steps) {
    return c->eval.every > 0 && (step % c->eval.every == 0 || step == steps);
}

// ---- the signal check of eval.probe (train) ---------------------------------------------------

int stage_probe_collapsed(double best, double current, double points) {
    if (!(points > 0) || !isfinite(best) || !isfinite(current)) return 0;
    // shares of n prompts: 0.5 - 0.4 is 10.000000000000002 points, which is not more than 10
    return 100.0 * (best - current) > points + 1e-9;
}

// The best probe_accuracy of the train lines of steps <= resume_step in RUN_DIR/metrics.jsonl:
// a resumed run (a SIGTERM stop, a collapse stop) keeps comparing against the best of the whole
// run rather than restarting its tracking at the checkpoint's accuracy, so a collapse that spans
// a preemption is still seen. (A resumed run that changed eval.probe or eval.every_max compares
// against the best on the old prompts.)
static int probe_best_from_log(ProbeState *pr, const char *run_dir, long resume_step) {
    char *path = path_join(run_dir, "metrics.jsonl");
    int rc = 0;
    if (path_exists(path)) {
        MetricsLog log;
        rc = metrics_log_read(path, &log);
        for (int i = 0; rc == 0 && i < log.n; i++) {
            const MetricsRow *row = &log.rows[i];
            if (row->step > resume_step || !row->stage || strcmp(row->stage, "train")) continue;
            const double v = metrics_row_get(row, "probe_accuracy");
            if (isfinite(v) && (!isfinite(pr->best) || v > pr->best))
                pr->best = v, pr->best_step = row->step;
        }
        if (rc == 0) metrics_log_free(&log);
    }
    free(path);
    return rc;
}

int stage_probe_open(ProbeState *pr, const GemConfig *c, const Policy *p, const char *run_dir,
                     long resume_step) {
    memset(pr, 0, sizeof *pr);
    pr->last = pr->best = NAN;
    pr->best_step = -1;
    if (!c->eval.probe || !c->eval.probe[0]) return 0;
    if (policy_load_data(p, c, c->eval.probe, DATA_PROMPTS, &pr->ds) != 0) return -1;
    const int n =
        c->eval.every_max > 0 && c->eval.every_max < pr->ds.n ? c->eval.every_max : pr->ds.n;
    for (int i = 0; i < n; i++)
        if (!pr->ds.rec[i].answer) {
            gemc_set_error("%s:%d: this prompt has no \"answer\", and eval.probe needs one on "
                           "every prompt it evaluates (the first %d; eval.every_max) (HINT: add "
                           "the answers, or point eval.probe at prompts with answers)",
                           pr->ds.path, pr->ds.rec[i].line, n);
            dataset_free(&pr->ds);
            return -1;
        }
    pr->idx = mallocCheck(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) pr->idx[i] = i;
    pr->n = n;
    if (resume_step > 0 && probe_best_from_log(pr, run_dir, resume_step) != 0) {
        stage_probe_close(pr);
        return -1;
    }
    return 0;
}

void stage_probe_close(ProbeState *pr) {
    if (pr->n > 0) dataset_free(&pr->ds);
    free(pr->idx);
    memset(pr, 0, sizeof *pr);
}

// What the probe's sampled groups say about reward.source: each group's ranked candidates
// (rank >= 0: valid and not trimmed by filter.trim_bottom) through reward_group_separation,
// skipped groups included (a group whose values all tie still has a top, so a source that
// cannot tell its candidates apart shows as top == mean rather than dropping out).
static void probe_signal_add(const GroupBatch *gb, RewardSeparation *s) {
    const int k = gb->k;
    float *value = mallocCheck(sizeof(float) * (size_t)k);
    int *ok = mallocCheck(sizeof(int) * (size_t)k);
    for (int g = 0; g < gb->G; g++) {
        for (int i = 0; i < k; i++) {
            value[i] = gb->scores[(size_t)g * k + i].value;
            ok[i] = gb->rank[g].rank[i] < 0 ? -1 : gb->correct[(size_t)g * k + i];
        }
        reward_group_separation(value, ok, k, s);
    }
    free(value), free(ok);
}

// The probe's evaluation at `step`: greedy accuracy as eval_task computes it, and k sampled
// candidates per prompt (eval.signal_k, else sampling.k) ranked by reward.source as training
// ranks them (groups_sample: the training sampling settings, stream keys from the step).
static int probe_evaluate(const GemConfig *c, Policy *p, RunDir *r, ProbeState *pr, long step,
                          EvalRow *row, RewardSeparation *sig) {
    GemConfig ec = *c; // read-only copy: greedy, and the signal's group size
    ec.eval.majority_k = 1;
    if (eval_task(&ec, p, &pr->ds, pr->idx, pr->n, r, row) != 0) return -1;
    if (c->eval.signal_k > 0) ec.sampling.k = c->eval.signal_k;
    const int chunk = 64; // groups held at once
    for (int c0 = 0; c0 < pr->n; c0 += chunk) {
        const int m = pr->n - c0 < chunk ? pr->n - c0 : chunk;
        GroupBatch gb;
        if (groups_sample(&gb, p, &ec, &pr->ds, pr->idx + c0, m, (int)step, r) != 0) return -1;
        probe_signal_add(&gb, sig);
        groups_free(&gb);
    }
    return 0;
}

static double share(double x, long n) {
    return n > 0 ? x / (double)n : NAN;
}

int stage_eval_in_training_probe(const GemConfig *c, Policy *p, RunDir *r, Metrics *m, long step,
                                 ProbeState *pr, int *collapsed) {
    GemConfig ec = *c; // read-only copy: the subset, and no signal or reference model
    ec.eval.max_prompts = ec.eval.max_pairs = c->eval.every_max;
    ec.eval.signal_k = 0;
    ec.eval.pass_k = 0;
    ec.eval.use_ref = 0;
    EvalRow row = {0}, probe = {0};
    RewardSeparation sig = {0};
    if (collapsed) *collapsed = 0;
    double t0 = now_seconds();
    if (ec.eval.pairs[0] && eval_preference(&ec, p, NULL, &row) != 0) return -1;
    if (ec.eval.prompts[0] && eval_prompts(&ec, p, r, &row) != 0) return -1;
    const int with_probe = pr && pr->n > 0;
    if (with_probe && probe_evaluate(c, p, r, pr, step, &probe, &sig) != 0) return -1;
    char line[512];
    int len = snprintf(line, sizeof line, "%s step %ld: eval", r->stage, step);
    if (row.task_n) {
        metrics_num(m, "eval_task_accuracy", (double)row.task_correct / row.task_n);
        len += snprintf(line + len, sizeof line - (size_t)len, " | task accuracy %.1f%% of %d",
                        100.0 * row.task_correct / row.task_n, row.task_n);
    }
    if (row.pref_n) {
        metrics_num(m, "eval_pref_accuracy", row.pref_wins / row.pref_n);
        len += snprintf(line + len, sizeof line - (size_t)len, " | pref accuracy %.1f%% of %d",
                        100.0 * row.pref_wins / row.pref_n, row.pref_n);
    }
    if (with_probe) {
        const double acc = share(probe.task_correct, probe.task_n);
        const double auroc = reward_separation_auroc(&sig); // NaN (null): no group has both
        const double top = share(sig.top, sig.groups);
        const double mean = share(sig.mean, sig.groups);
        const double bottom = share(sig.bottom, sig.groups);
        // against the best of the evaluations before this one
        if (collapsed) *collapsed = stage_probe_collapsed(pr->best, acc, c->train.stop_on_collapse);
        pr->last = acc;
        if (isfinite(acc) && (!isfinite(pr->best) || acc > pr->best))
            pr->best = acc, pr->best_step = step;
        metrics_num(m, "probe_accuracy", acc);
        metrics_num(m, "probe_auroc", auroc);
        metrics_num(m, "probe_top_correct", top);
        metrics_num(m, "probe_mean_correct", mean);
        metrics_num(m, "probe_bottom_correct", bottom);
        metrics_num(m, "probe_best_accuracy", pr->best);
        metrics_int(m, "probe_best_step", pr->best_step);
        char auc[16] = "-", sigc[64] = "-";
        if (isfinite(auroc)) snprintf(auc, sizeof auc, "%.3f", auroc);
        if (sig.groups)
            snprintf(sigc, sizeof sigc, "%.1f / %.1f / %.1f%%", 100 * top, 100 * mean,
                     100 * bottom);
        len += snprintf(line + len, sizeof line - (size_t)len,
                        " | probe accuracy %.1f%% of %d | probe AUROC %s | top/mean/bottom %s",
                        100 * acc, probe.task_n, auc, sigc);
    }
    (void)len;
    metrics_num(m, "time_eval", now_seconds() - t0);
    printf("%s\n", line);
    fflush(stdout);
    return 0;
}

int stage_eval_in_training(const GemConfig *c, Policy *p, RunDir *r, Metrics *m, long step) {
    return stage_eval_in_training_probe(c, p, r, m, step, NULL, NULL);
}

int stage_eval(const GemConfig *c) {
    const int n = c->eval.models.n;
    if (c->eval.use_ref && !c->model.ref[0]) {
        gemc_set_error("config: eval.use_ref is true but model.ref is not set (HINT: "
                       "model.ref=DIR of the reference model)");
        return -1;
    }
    RunDir r;
    if (rundir_open(&r, c->eval.dir, c, "eval") != 0) return -1;
    EvalRow *rows = callocCheck((size_t)n, sizeof(EvalRow));
    Policy ref = {0};
    int rc = 0;
    if (c->eval.use_ref && (rc = policy_load(&ref, c->model.ref, c)) == 0)
        rc = model_place(&ref.model, c);
    for (int i = 0; i < n && rc == 0; i++) {
        parse_entry(c->eval.models.items[i], &rows[i]);
        Policy p;
        if ((rc = policy_load(&p, rows[i].dir, c)) != 0) break;
        if ((rc = model_place(&p.model, c)) != 0) {
            policy_free(&p);
            break;
        }
        printf("eval: %s (%s)\n", rows[i].label, rows[i].dir);
        fflush(stdout);
        double t0 = now_seconds();
        if (c->eval.pairs[0]) rc = eval_preference(c, &p, c->eval.use_ref ? &ref : NULL, &rows[i]);
        if (rc == 0 && c->eval.prompts[0]) rc = eval_prompts(c, &p, &r, &rows[i]);
        if (rc == 0) {
            Metrics m;
            metrics_begin(&m, "eval", i);
            metrics_str(&m, "label", rows[i].label);
            metrics_str(&m, "model", rows[i].dir);
            if (rows[i].task_n)
                metrics_num(&m, "task_accuracy", (double)rows[i].task_correct / rows[i].task_n);
            if (rows[i].pref_n)
                metrics_num(&m, "pref_accuracy", rows[i].pref_wins / rows[i].pref_n);
            if (rows[i].pass_n) {
                metrics_num(&m, "pass1", rows[i].pass1);
                metrics_num(&m, "pass_k", (double)rows[i].pass_k / rows[i].pass_n);
                metrics_num(&m, "majority_k", (double)rows[i].maj_k / rows[i].pass_n);
            }
            metrics_num(&m, "time_eval", now_seconds() - t0);
            metrics_end(&m, &r);
        }
        policy_free(&p);
    }
    if (rc == 0) write_results(c, rows, n);
    if (rc == 0) run_report_print(c->eval.dir, stdout);
    if (c->eval.use_ref) policy_free(&ref);
    free(rows);
    rundir_close(&r);
    return rc;
}
