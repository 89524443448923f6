// gemc rescore RUN_DIR: the groups a train run sampled (RUN_DIR/shards, shard.h) ranked again
// under other settings, without the model and without sampling anything: Eq. 1's S from the
// token entropies the shards hold, and the value of every reward source (reward.h) whose inputs
// they hold, each measured by how well it tells right candidates from wrong ones within a group.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "config/config.h"
#include "text/data.h"
#include "gem/gem.h"
#include "gem/reward.h"
#include "model/sampler.h"
#include "run/shard.h"
#include "base/strbuf.h"
#include "text/tokenizer.h"

enum { N_SOURCES = 5, MAX_ARGS = 256 };

// Every source, in the order the table lists them after the configured one.
static const RewardSource SOURCES[N_SOURCES] = {REWARD_GEM, REWARD_ANSWER, REWARD_MAJORITY,
                                                REWARD_SELF_CERTAINTY, REWARD_ENTROPY};

// Candidate c of s as the sampler gave it: the view gem_score_candidate and
// candidate_content_len read (the shard's entropies are the ones score.entropy_source picked,
// so both entropy fields point at them).
static Candidate shard_candidate(const Shard *s, long c) {
    const long t0 = s->token_offsets[c];
    return (Candidate){.n = (int)(s->token_offsets[c + 1] - t0),
                       .ids = s->token_id + t0,
                       .logp_sample = s->logp_sample + t0,
                       .logp_raw = s->logp_raw + t0,
                       .logp_old = s->logp_old + t0,
                       .entropy_raw = s->entropy + t0,
                       .entropy_sample = s->entropy + t0,
                       .certainty = s->self_certainty + t0,
                       .finish = s->finish_reason[c] ? FINISH_LENGTH : FINISH_EOS,
                       .policy_version = (int)s->policy_version};
}

int rescore_shard_scores(const ScoreConfig *sc, const Tokenizer *tok, const Shard *s,
                         CandidateScore *out) {
    const long n = shard_n_cands(s);
    for (long c = 0; c < n; c++) {
        Candidate cd = shard_candidate(s, c);
        if (gem_score_candidate(sc, tok, &cd, &out[c]) != 0) return -1;
    }
    return 0;
}

typedef struct {
    RewardSeparation sep;
    double sum, sq; // of the finite values of the candidates that take part
    long n;
} SourceStats;

typedef struct {
    const GemConfig *c;
    const Tokenizer *tok;
    const Dataset *prompts; // --prompts, or NULL: the shards' own answer checks
    SourceStats st[N_SOURCES];
    long shards, groups, cands, reproduced, labelled, step_lo, step_hi;
    long value_cmp, value_same; // candidates of shards ranked by the configured source, and
                                // those whose recomputed value is the stored one bit for bit
} Rescore;

static int fail_in(const char *path) {
    char *why = strdup(gemc_error());
    if (!why) gemc_fatal("out of memory");
    gemc_set_error("%s: %s", path, why);
    free(why);
    return -1;
}

// Recomputes every candidate of one shard and adds its groups to r.
static int rescore_shard(Rescore *r, const char *path, const Shard *s) {
    const GemConfig *c = r->c;
    if (tokenizer_hash(r->tok) != s->tokenizer_hash) {
        gemc_set_error("%s: written with the tokenizer of hash %016llx, but %s has hash %016llx: "
                       "the tokens would decode to other text (HINT: train.model=DIR naming the "
                       "folder the run started from)",
                       path, (unsigned long long)s->tokenizer_hash, tokenizer_path(r->tok),
                       (unsigned long long)tokenizer_hash(r->tok));
        return -1;
    }
    const int k = s->k;
    const size_t kk = (size_t)(k > 0 ? k : 1);
    const long nc = shard_n_cands(s);
    CandidateScore *sc = callocCheck((size_t)(nc ? nc : 1), sizeof(CandidateScore));
    RewardInput *in = callocCheck(kk, sizeof(RewardInput));
    char **answers = callocCheck(kk, sizeof(char *));
    int *correct = mallocCheck(sizeof(int) * kk);
    int *label = mallocCheck(sizeof(int) * kk);
    int *eligible = mallocCheck(sizeof(int) * kk);
    float *value = mallocCheck(sizeof(float) * kk);
    int rc = rescore_shard_scores(&c->score, r->tok, s, sc);
    if (rc != 0) fail_in(path);
    for (int g = 0; g < s->n_groups && rc == 0; g++) {
        const char *expected = NULL;
        if (r->prompts) {
            const int pi = s->prompt_index[g];
            if (pi < 0 || pi >= r->prompts->n) {
                gemc_set_error("%s: group %d of %s is prompt_index %d, but the file holds %d "
                               "prompts (HINT: --prompts names the run's train.data, %s)",
                               r->prompts->path, g, path, pi, r->prompts->n, c->train.data);
                rc = -1;
                break;
            }
            expected = r->prompts->rec[pi].answer;
        }
        for (int i = 0; i < k && rc == 0; i++) {
            const long row = (long)g * k + i;
            const Candidate cd = shard_candidate(s, row);
            if ((rc = gem_candidate_answer(r->tok, c->score.answer_marker, &cd, &answers[i])) !=
                0) {
                fail_in(path);
                break;
            }
            if (r->prompts)
                correct[i] = expected ? (int)reward_answer(answers[i], expected) : -1;
            else
                correct[i] = s->correct[row] < 0 ? -1 : s->correct[row] > 0;
            // the candidates that would take part in an update (gem_rank_group's validity)
            const int n = candidate_content_len(&cd);
            eligible[i] = n > 0 && !(c->filter.drop_truncated && cd.finish == FINISH_LENGTH);
            label[i] = eligible[i] ? correct[i] : -1;
            r->labelled += label[i] >= 0;
            r->reproduced += memcmp(&sc[row].score, &s->score[row], sizeof(float)) == 0;
            in[i] = (RewardInput){.entropy = cd.entropy_raw,
                                  .certainty = cd.certainty,
                                  .n = n,
                                  .gem_score = sc[row].score,
                                  .answer = answers[i]};
        }
        for (int j = 0; j < N_SOURCES && rc == 0; j++) {
            const RewardConfig rcfg = {.source = SOURCES[j],
                                       .entropy_span = c->reward.entropy_span};
            if (SOURCES[j] == REWARD_ANSWER && !expected)
                // the shards' checks are the answer source's reward; no label, no value
                for (int i = 0; i < k; i++) value[i] = correct[i] >= 0 ? (float)correct[i] : NAN;
            else
                reward_group_values(&rcfg, in, k, expected, 0, value);
            if (SOURCES[j] == c->reward.source &&
                !strcmp(s->reward_source, reward_source_name(c->reward.source)))
                for (int i = 0; i < k; i++) {
                    r->value_cmp++;
                    r->value_same +=
                        memcmp(&value[i], &s->value[(long)g * k + i], sizeof(float)) == 0;
                }
            SourceStats *st = &r->st[j];
            reward_group_separation(value, label, k, &st->sep);
            for (int i = 0; i < k; i++) {
                if (!eligible[i] || !isfinite(value[i])) continue;
                st->sum += value[i], st->sq += (double)value[i] * value[i], st->n++;
            }
        }
        for (int i = 0; i < k; i++) free(answers[i]), answers[i] = NULL;
        r->groups++;
    }
    r->cands += nc;
    if (r->shards == 0 || s->step < r->step_lo) r->step_lo = s->step;
    if (r->shards == 0 || s->step > r->step_hi) r->step_hi = s->step;
    r->shards++;
    free(sc), free(in), free(answers), free(correct), free(label), free(eligible), free(value);
    return rc;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The shard files of dir (NAME.h5; the NAME.h5.tmp of an unfinished write left out), by name.
static int list_shards(const char *dir, char ***names, int *n_out) {
    DIR *d = opendir(dir);
    if (!d) {
        gemc_set_error("%s: cannot open the shard folder: %s (HINT: RUN_DIR is the train.dir of a "
                       "`gemc train` run, which writes each step's groups to RUN_DIR/shards)",
                       dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 16;
    char **v = mallocCheck(sizeof(char *) * (size_t)cap);
    for (struct dirent *e; (e = readdir(d));) {
        const size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") != 0 || e->d_name[0] == '.') continue;
        if (n == cap) v = realloc(v, sizeof(char *) * (size_t)(cap *= 2));
        if (!v || !(v[n++] = strdup(e->d_name))) gemc_fatal("out of memory");
    }
    closedir(d);
    if (n == 0) {
        free(v);
        gemc_set_error("%s: no shards (*.h5) in it (HINT: the run has not finished a step yet, "
                       "or its shards were removed)",
                       dir);
        return -1;
    }
    qsort(v, (size_t)n, sizeof(char *), cmp_names);
    *names = v, *n_out = n;
    return 0;
}

// ---- output ----------------------------------------------------------------------------------

static double mean_of(const SourceStats *st) {
    return st->n ? st->sum / (double)st->n : NAN;
}
static double std_of(const SourceStats *st) {
    if (st->n < 2) return NAN;
    const double m = st->sum / (double)st->n;
    const double var = (st->sq - (double)st->n * m * m) / (double)(st->n - 1);
    return var > 0 ? sqrt(var) : 0.0;
}

// The configured source first, then the others in SOURCES order (answer only with labels).
static int row_order(const Rescore *r, int labels, int *order) {
    int n = 0;
    for (int j = 0; j < N_SOURCES; j++)
        if (SOURCES[j] == r->c->reward.source) order[n++] = j;
    for (int j = 0; j < N_SOURCES; j++)
        if (SOURCES[j] != r->c->reward.source && (labels || SOURCES[j] != REWARD_ANSWER))
            order[n++] = j;
    return n;
}

static void put_num(StrBuf *b, const char *fmt, double x) {
    char num[64];
    if (isfinite(x))
        snprintf(num, sizeof num, fmt, x);
    else
        snprintf(num, sizeof num, "-");
    strbuf_puts(b, num);
}

static void put_json_num(StrBuf *b, double x) {
    char num[64];
    if (isfinite(x))
        snprintf(num, sizeof num, "%.9g", x);
    else
        snprintf(num, sizeof num, "null");
    strbuf_puts(b, num);
}

static void settings_line(const GemConfig *c, StrBuf *b) {
    char line[1024];
    snprintf(line, sizeof line,
             "score.entropy_source=%s score.final_span=%s score.final_split=%g "
             "score.final_window=%d score.top_m=%g score.lambda_fork=%g reward.source=%s "
             "reward.entropy_span=%g filter.drop_truncated=%s score.answer_marker=",
             entropy_source_name(c->score.entropy_source), final_span_name(c->score.final_span),
             c->score.final_split, c->score.final_window, c->score.top_m, c->score.lambda_fork,
             reward_source_name(c->reward.source), c->reward.entropy_span,
             c->filter.drop_truncated ? "true" : "false");
    strbuf_puts(b, line);
    strbuf_json_string(b, c->score.answer_marker);
}

static void print_table(const Rescore *r, const char *run_dir, const char *prompts, int labels) {
    StrBuf b = {0};
    char line[1024];
    snprintf(line, sizeof line,
             "rescore of %s: %ld shards (steps %ld..%ld), %ld groups, %ld candidates\n", run_dir,
             r->shards, r->step_lo, r->step_hi, r->groups, r->cands);
    strbuf_puts(&b, line);
    strbuf_puts(&b, "settings: ");
    settings_line(r->c, &b);
    snprintf(line, sizeof line,
             "\nS recomputed: equal to the shards' score for %ld of %ld "
             "candidates\n",
             r->reproduced, r->cands);
    strbuf_puts(&b, line);
    if (r->value_cmp) {
        snprintf(line, sizeof line,
                 "%s recomputed: equal to the shards' value for %ld of the %ld candidates they "
                 "ranked by it\n",
                 reward_source_name(r->c->reward.source), r->value_same, r->value_cmp);
        strbuf_puts(&b, line);
    }
    int order[N_SOURCES];
    const int n = row_order(r, labels, order);
    if (labels) {
        snprintf(line, sizeof line,
                 "labels: %s (%ld candidates labelled)\n\n"
                 "| source | candidates | groups | mixed groups | AUROC in groups | top correct "
                 "| mean correct | bottom correct |\n|---|---|---|---|---|---|---|---|\n",
                 prompts ? prompts : "the shards' answer checks", r->labelled);
        strbuf_puts(&b, line);
        for (int i = 0; i < n; i++) {
            const SourceStats *st = &r->st[order[i]];
            const RewardSeparation *s = &st->sep;
            const double G = s->groups ? (double)s->groups : NAN;
            snprintf(line, sizeof line, "| %s%s | %ld | %ld | %ld | ",
                     reward_source_name(SOURCES[order[i]]), i == 0 ? " *" : "", s->candidates,
                     s->groups, s->mixed_groups);
            strbuf_puts(&b, line);
            put_num(&b, "%.3f", reward_separation_auroc(s));
            strbuf_puts(&b, " | ");
            put_num(&b, "%.1f%%", 100.0 * s->top / G);
            strbuf_puts(&b, " | ");
            put_num(&b, "%.1f%%", 100.0 * s->mean / G);
            strbuf_puts(&b, " | ");
            put_num(&b, "%.1f%%", 100.0 * s->bottom / G);
            strbuf_puts(&b, " |\n");
        }
    } else {
        strbuf_puts(&b, "labels: none (the shards hold no answer checks; --prompts FILE.jsonl with "
                        "answers gives them), so the values of each source instead\n\n"
                        "| source | candidates | mean | std |\n|---|---|---|---|\n");
        for (int i = 0; i < n; i++) {
            const SourceStats *st = &r->st[order[i]];
            snprintf(line, sizeof line, "| %s%s | %ld | ", reward_source_name(SOURCES[order[i]]),
                     i == 0 ? " *" : "", st->n);
            strbuf_puts(&b, line);
            put_num(&b, "%.4f", mean_of(st));
            strbuf_puts(&b, " | ");
            put_num(&b, "%.4f", std_of(st));
            strbuf_puts(&b, " |\n");
        }
    }
    strbuf_puts(&b, "\n* reward.source, what the groups are ranked by\n");
    fwrite(b.p, 1, b.len, stdout);
    free(b.p);
}

static void print_json(const Rescore *r, const char *run_dir, const char *prompts, int labels) {
    StrBuf b = {0};
    char line[512];
    const GemConfig *c = r->c;
    strbuf_puts(&b, "{\"run_dir\": ");
    strbuf_json_string(&b, run_dir);
    snprintf(line, sizeof line,
             ", \"shards\": %ld, \"step_first\": %ld, \"step_last\": %ld, \"groups\": %ld, "
             "\"candidates\": %ld, \"score_reproduced\": %ld, \"value_compared\": %ld, "
             "\"value_reproduced\": %ld, \"labelled\": %ld, \"labels\": ",
             r->shards, r->step_lo, r->step_hi, r->groups, r->cands, r->reproduced, r->value_cmp,
             r->value_same, r->labelled);
    strbuf_puts(&b, line);
    if (!labels)
        strbuf_puts(&b, "null");
    else if (prompts)
        strbuf_json_string(&b, prompts);
    else
        strbuf_puts(&b, "\"shards\"");
    strbuf_puts(&b, ", \"settings\": {\"score.entropy_source\": ");
    strbuf_json_string(&b, entropy_source_name(c->score.entropy_source));
    strbuf_puts(&b, ", \"score.final_span\": ");
    strbuf_json_string(&b, final_span_name(c->score.final_span));
    strbuf_puts(&b, ", \"score.answer_marker\": ");
    strbuf_json_string(&b, c->score.answer_marker);
    snprintf(line, sizeof line,
             ", \"score.final_split\": %.7g, \"score.final_window\": %d, \"score.top_m\": %.7g, "
             "\"score.lambda_fork\": %.7g, \"reward.source\": \"%s\", \"reward.entropy_span\": "
             "%.7g, \"filter.drop_truncated\": %s}, \"sources\": [",
             c->score.final_split, c->score.final_window, c->score.top_m, c->score.lambda_fork,
             reward_source_name(c->reward.source), c->reward.entropy_span,
             c->filter.drop_truncated ? "true" : "false");
    strbuf_puts(&b, line);
    int order[N_SOURCES];
    const int n = row_order(r, labels, order);
    for (int i = 0; i < n; i++) {
        const SourceStats *st = &r->st[order[i]];
        const RewardSeparation *s = &st->sep;
        const double G = s->groups ? (double)s->groups : NAN;
        snprintf(line, sizeof line,
                 "%s\n  {\"source\": \"%s\", \"configured\": %s, \"values\": %ld", i ? "," : "",
                 reward_source_name(SOURCES[order[i]]), i == 0 ? "true" : "false", st->n);
        strbuf_puts(&b, line);
        strbuf_puts(&b, ", \"value_mean\": ");
        put_json_num(&b, mean_of(st));
        strbuf_puts(&b, ", \"value_std\": ");
        put_json_num(&b, std_of(st));
        if (labels) {
            snprintf(line, sizeof line,
                     ", \"candidates\": %ld, \"groups\": %ld, \"mixed_groups\": %ld, \"pairs\": "
                     "%.0f, \"auroc\": ",
                     s->candidates, s->groups, s->mixed_groups, s->pairs);
            strbuf_puts(&b, line);
            put_json_num(&b, reward_separation_auroc(s));
            strbuf_puts(&b, ", \"top_correct\": ");
            put_json_num(&b, s->top / G);
            strbuf_puts(&b, ", \"mean_correct\": ");
            put_json_num(&b, s->mean / G);
            strbuf_puts(&b, ", \"bottom_correct\": ");
            put_json_num(&b, s->bottom / G);
        }
        strbuf_puts(&b, "}");
    }
    strbuf_puts(&b, "\n]}\n");
    fwrite(b.p, 1, b.len, stdout);
    free(b.p);
}

// ---- the command -----------------------------------------------------------------------------

// RUN_DIR/config.yaml with the overrides; the run's own entropy source must stay, since the
// shards hold only the entropies it picked.
static int load_config(const char *run_dir, const char *const *overrides, int n_over,
                       GemConfig *c) {
    char *path = path_join(run_dir, "config.yaml");
    config_defaults(c);
    int rc = 0;
    if (!path_exists(path)) {
        gemc_set_error("%s: no such file (HINT: RUN_DIR is the train.dir of a `gemc train` run, "
                       "which saves its resolved config there)",
                       path);
        rc = -1;
    }
    if (rc == 0) rc = config_load_yaml(c, path);
    const EntropySource run_entropy = c->score.entropy_source;
    for (int i = 0; i < n_over && rc == 0; i++) rc = config_override(c, overrides[i]);
    if (rc == 0 && c->score.entropy_source != run_entropy) {
        gemc_set_error("command line: score.entropy_source=%s: the shards hold only the %s "
                       "entropies the run scored with (%s) (HINT: rescore recombines the stored "
                       "entropies; leave score.entropy_source out)",
                       entropy_source_name(c->score.entropy_source),
                       entropy_source_name(run_entropy), path);
        rc = -1;
    }
    if (rc == 0) rc = config_check(c, "train");
    free(path);
    return rc;
}

int cmd_rescore(int argc, char **argv) {
    const char *prompts = NULL;
    int json = 0;
    const CliOpt opts[] = {
        {"prompts", OPT_STR, &prompts, "FILE.jsonl",
         "label by FILE's answers (by prompt_index), not the shards' own checks", 0},
        {"json", OPT_FLAG, &json, NULL, "print one JSON object instead of the table", 0},
        {0},
    };
    const CliCommand cmd = {
        "rescore",
        "gemc rescore RUN_DIR [--prompts FILE.jsonl] [--json] [KEY=VALUE ...]\n\n"
        "Ranks the groups a `gemc train` run sampled (RUN_DIR/shards) again under other\n"
        "settings, without the model: RUN_DIR/config.yaml with the KEY=VALUE overrides\n"
        "(score.*, reward.*, filter.drop_truncated), Eq. 1's S from the stored token entropies,\n"
        "and the value of every reward source the shards hold the inputs of: gem, majority,\n"
        "self_certainty, entropy, and answer where there are labels. Only the tokenizer of\n"
        "train.model is read (the marker rule and the answers need the text of each token).\n"
        "With labels (the shards' answer checks, or --prompts) it prints one row per source,\n"
        "the configured reward.source first: candidates, groups with right and wrong ones,\n"
        "the AUROC within groups (the chance that a right candidate has a larger value than a\n"
        "wrong one of its group, ties half), and the share correct of each group's top-ranked\n"
        "candidate, of all, and of the bottom-ranked; without, each source's mean and std.",
        "examples:\n"
        "  gemc rescore runs/demo/gem\n"
        "  gemc rescore runs/demo/gem score.lambda_fork=0 score.top_m=5\n"
        "  gemc rescore runs/demo/gem --prompts data/arith/train_prompts.jsonl "
        "reward.source=majority\n"
        "  gemc rescore runs/demo/gem score.final_span=fraction score.final_split=0.5 --json",
        opts,
        NULL,
    };
    const char *pos[MAX_ARGS];
    int n_pos = 0;
    int rc = cli_parse_with_paths(&cmd, argc, argv, "the run directory", pos, MAX_ARGS, &n_pos);
    if (rc) return rc > 0 ? 0 : cmd_fail();
    const char *run_dir = pos[0];
    if (strchr(run_dir, '=') && !path_exists(run_dir)) {
        gemc_set_error("rescore: missing the run directory before '%s' (HINT: gemc rescore "
                       "RUN_DIR [--prompts FILE.jsonl] [--json] [KEY=VALUE ...])",
                       run_dir);
        return cmd_fail();
    }

    GemConfig c;
    if (load_config(run_dir, pos + 1, n_pos - 1, &c) != 0) {
        config_free(&c);
        return cmd_fail();
    }
    char *shard_dir = path_join(run_dir, "shards");
    char **names = NULL;
    int n_names = 0;
    Tokenizer *tok = NULL;
    Dataset ds = {0};
    const Dataset *labels_ds = NULL;
    rc = list_shards(shard_dir, &names, &n_names);
    if (rc == 0 && prompts) {
        rc = dataset_load(&ds, prompts, DATA_PROMPTS, 0);
        labels_ds = rc == 0 ? &ds : NULL;
    }
    if (rc == 0) {
        tok = c.train.model && c.train.model[0] ? tokenizer_load(c.train.model) : NULL;
        if (!tok) {
            char *why = strdup(c.train.model && c.train.model[0] ? gemc_error() : "not set");
            const char *hint = why && strstr(why, "HINT")
                                   ? ""
                                   : " (HINT: rescore reads the tokenizer of the model the run "
                                     "started from; pass train.model=DIR naming a folder with its "
                                     "tokenizer.json)";
            gemc_set_error("train.model: %s%s", why ? why : "?", hint);
            free(why);
            rc = -1;
        }
    }
    Rescore r = {.c = &c, .tok = tok, .prompts = labels_ds};
    for (int i = 0; i < n_names && rc == 0; i++) {
        char *path = path_join(shard_dir, names[i]);
        Shard s;
        rc = shard_read(path, &s, 0);
        if (rc == 0) {
            rc = rescore_shard(&r, path, &s);
            shard_free(&s);
        }
        free(path);
    }
    const int labels = r.labelled > 0;
    if (rc == 0 && !labels && c.reward.source == REWARD_ANSWER) {
        gemc_set_error("reward.source=answer needs labels, and %s holds no answer checks (HINT: "
                       "--prompts FILE.jsonl with an \"answer\" for each prompt)",
                       shard_dir);
        rc = -1;
    }
    if (rc == 0) {
        if (json)
            print_json(&r, run_dir, prompts, labels);
        else
            print_table(&r, run_dir, prompts, labels);
    }
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    free(shard_dir);
    if (tok) tokenizer_free(tok);
    if (labels_ds) dataset_free(&ds);
    config_free(&c);
    return rc ? cmd_fail() : 0;
}
