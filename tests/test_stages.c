// The stages (src/stages/): the micro-batched forward/backward every loss goes through, the
// schedule and data order, and sft/train/dpo/eval/generate end to end through the gemc binary
// on a tiny model: the run directory they leave, bit-identical reruns, label-free training and
// the errors a user meets.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/common.h"
#include "config/config.h"
#include "model/model.h"
#include "base/rng.h"
#include "stages/stage.h"
#include "tests.h"
#include "text/tokenizer.h"

#define GEMC "./gemc"

// ---- in-process pieces -----------------------------------------------------------------------

static void random_model(Model *m, uint64_t seed) {
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    model_init(m, &cfg);
    model_init_random(m, seed);
}

// A loss that weighs every response token differently, so misplaced gradients show.
static double weighted_loss(void *ctx, int s0, int ns, const float *logp, float *dlogp) {
    const SeqRef *seqs = ctx;
    double loss = 0;
    long t = 0;
    for (int s = s0; s < s0 + ns; s++)
        for (int j = 0; j < seqs[s].R; j++, t++) {
            float w = 0.1f * (float)(1 + (s * 31 + j * 7) % 13);
            loss -= w * logp[t];
            dlogp[t] = -w;
        }
    return loss;
}

// Splitting a batch into micro-batches changes neither a log-prob (the forward of a row does
// not depend on the other rows) nor, beyond summation order, a gradient.
static void test_micro_batches(void) {
    Model m;
    random_model(&m, 5);
    Rng rng;
    rng_seed(&rng, 9);
    enum { NS = 5 };
    int toks[NS][40];
    SeqRef seqs[NS];
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < 40; i++) toks[s][i] = (int)(rng_u64(&rng) % m.cfg.vocab_size);
        int P = 3 + s * 2, R = 4 + (s * 7) % 11;
        seqs[s] = (SeqRef){toks[s], P, toks[s] + P, R};
    }
    long off[NS + 1];
    seq_resp_offsets(seqs, NS, off);
    float *lp_big = malloc(sizeof(float) * off[NS]), *lp_small = malloc(sizeof(float) * off[NS]);
    size_t P = m.layout.total;
    float *g_big = malloc(sizeof(float) * P);

    double loss_big = 0, loss_small = 0;
    model_zero_grad(&m);
    loss_big = seq_forward_backward(&m, seqs, NS, 1, 1 << 20, 0, lp_big, weighted_loss, seqs);
    memcpy(g_big, m.grads, sizeof(float) * P);
    model_zero_grad(&m);
    loss_small = seq_forward_backward(&m, seqs, NS, 1, 20, 0, lp_small, weighted_loss, seqs);
    CU_ASSERT_EQUAL(memcmp(lp_big, lp_small, sizeof(float) * off[NS]), 0);
    CU_ASSERT_DOUBLE_EQUAL(loss_big, loss_small, 1e-6 * fabs(loss_big));
    double max_diff = 0, max_g = 0;
    for (size_t i = 0; i < P; i++) {
        max_diff = fmax(max_diff, fabs(g_big[i] - m.grads[i]));
        max_g = fmax(max_g, fabs(g_big[i]));
    }
    CU_ASSERT(max_g > 0);
    CU_ASSERT(max_diff <= 1e-5 * max_g);

    // and the response log-probs are the model's own: position P-1+j predicts response token j
    int all[40];
    memcpy(all, toks[2], sizeof(int) * (seqs[2].P + seqs[2].R));
    int offsets[2] = {0, seqs[2].P + seqs[2].R};
    PackedBatch b = {1, offsets[1], all, offsets, NULL};
    float lp[40];
    model_forward(&m, &b, lp, NULL);
    for (int j = 0; j < seqs[2].R; j++) CU_ASSERT_EQUAL(lp[seqs[2].P - 1 + j], lp_big[off[2] + j]);
    free(lp_big), free(lp_small), free(g_big);
    model_free(&m);
}

// Groups of candidates behind one prompt (GEM's k, a DPO pair), with their prompt shared
// (optim.shared_prefix) or each packed whole, in one micro-batch or split between several: the
// same response log-probs (bits) and loss, the gradients within 1e-6 of the largest.
static void test_shared_prefix(void) {
    Model m;
    random_model(&m, 6);
    Rng rng;
    rng_seed(&rng, 10);
    enum { NS = 9 };
    int prompts[3][30], resp[NS][20];
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < 30; i++) prompts[g][i] = (int)(rng_u64(&rng) % m.cfg.vocab_size);
    SeqRef seqs[NS];
    // a group of 4, a lone sequence, a group of 3 whose prompt is an equal copy, a pair
    const int group[NS] = {0, 0, 0, 0, 1, 2, 2, 2, 0}, P[3] = {17, 9, 23};
    int copy[30];
    memcpy(copy, prompts[2], sizeof copy);
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < 20; i++) resp[s][i] = (int)(rng_u64(&rng) % m.cfg.vocab_size);
        const int *pr = group[s] == 2 && s == 6 ? copy : prompts[group[s]];
        seqs[s] = (SeqRef){pr, P[group[s]], resp[s], 1 + (s * 7) % 19};
    }
    long off[NS + 1];
    seq_resp_offsets(seqs, NS, off);
    const size_t np = m.layout.total;
    float *lp[3], *g[3];
    double loss[3];
    const int share[3] = {0, 1, 1}, micro[3] = {1 << 20, 1 << 20, 60};
    for (int v = 0; v < 3; v++) {
        lp[v] = malloc(sizeof(float) * off[NS]);
        g[v] = malloc(sizeof(float) * np);
        model_zero_grad(&m);
        loss[v] =
            seq_forward_backward(&m, seqs, NS, 1, micro[v], share[v], lp[v], weighted_loss, seqs);
        memcpy(g[v], m.grads, sizeof(float) * np);
    }
    for (int v = 1; v < 3; v++) {
        CU_ASSERT_EQUAL(memcmp(lp[0], lp[v], sizeof(float) * off[NS]), 0);
        CU_ASSERT_DOUBLE_EQUAL(loss[0], loss[v], 1e-6 * fabs(loss[0]));
        double max_diff = 0, max_g = 0;
        for (size_t i = 0; i < np; i++) {
            max_diff = fmax(max_diff, fabs(g[0][i] - g[v][i]));
            max_g = fmax(max_g, fabs(g[0][i]));
        }
        CU_ASSERT(max_g > 0 && max_diff <= 1e-6 * max_g);
    }
    for (int v = 0; v < 3; v++) free(lp[v]), free(g[v]);
    model_free(&m);
}

static void test_lr_schedule(void) {
    StageConfig s = {.steps = 100,
                     .lr = 1.0f,
                     .warmup_steps = 10,
                     .schedule = LR_CONSTANT,
                     .min_lr_ratio = 0.1f};
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&s, 1), 0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&s, 10), 1.0, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&s, 70), 1.0, 1e-7);
    s.schedule = LR_COSINE;
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&s, 55), 0.1 + 0.9 * 0.5, 1e-6); // half way
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&s, 100), 0.1, 1e-6);
    s.schedule = LR_LINEAR;
    s.lr = 2.0f;
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&s, 55), 0.2 + 1.8 * 0.5, 1e-6);
    // train's own defaults: 10 warmup steps, then constant, clipping at 1.0; sft's and dpo's
    // start at their lr
    GemConfig c;
    config_defaults(&c);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&c.train, 5), 0.5e-5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&c.train, 10), 1e-5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&c.train, 100), 1e-5, 1e-12);
    CU_ASSERT_EQUAL(c.train.grad_clip, 1.0f);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&c.sft, 1), 2e-5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(stage_lr(&c.dpo, 1), 1e-6, 1e-12);
    config_free(&c);
}

static void test_data_order(void) {
    DataOrder a, b;
    order_init(&a, 7, 3);
    order_init(&b, 7, 3);
    for (int epoch = 0; epoch < 3; epoch++) {
        int seen[7] = {0};
        for (int i = 0; i < 7; i++) {
            int x = order_next(&a);
            CU_ASSERT_EQUAL(x, order_next(&b)); // same seed, same order
            CU_ASSERT(x >= 0 && x < 7);
            if (x >= 0 && x < 7) seen[x]++;
        }
        for (int i = 0; i < 7; i++) CU_ASSERT_EQUAL(seen[i], 1); // each record once an epoch
    }
    order_free(&a);
    order_free(&b);
}

// ---- end to end through the binary -----------------------------------------------------------

static char *root; // model, data and config of the end-to-end tests

int test_run_ok(const char *cmd) {
    char *out, *err;
    int rc = test_run(cmd, &out, &err);
    if (rc) fprintf(stderr, "\n  command: %s\n  status %d\n  stderr: %s\n", cmd, rc, err);
    free(out);
    free(err);
    return rc;
}

static char *in_root(const char *name) {
    return path_join(root, name);
}

static void write_text(const char *name, const char *text) {
    char *p = in_root(name);
    test_write_file(p, text, strlen(text));
    free(p);
}

// A tiny byte-level model, 8 pairs, 8 prompts (with answers) and a config naming them.
static void setup_e2e(void) {
    if (root) return;
    root = test_tmpdir();
    char *model = in_root("init"), *tok = in_root("tok");
    CU_ASSERT_EQUAL_FATAL(tokenizer_write_bytelevel(tok, 256), 0);
    write_text("tiny.json",
               "{\"model_type\": \"llama\", \"vocab_size\": 260, \"hidden_size\": 32, "
               "\"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
               "\"num_key_value_heads\": 2, \"max_position_embeddings\": 256, "
               "\"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true, \"bos_token_id\": 256, "
               "\"eos_token_id\": 257}");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, GEMC " init --config %s/tiny.json --tokenizer %s --out %s --seed 2",
             root, tok, model);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    free(tok);
    StrBuf pairs = {0}, prompts = {0};
    for (int i = 0; i < 8; i++) {
        char line[512];
        int a = i % 5 + 1, b = i % 3 + 2;
        snprintf(line, sizeof line,
                 "{\"prompt\": \"%d + %d?\", \"chosen\": \"%d + %d = %d\\nFinal Answer: %d\", "
                 "\"rejected\": \"%d + %d = %d\\nFinal Answer: %d\"}\n",
                 a, b, a, b, a + b, a + b, a, b, a + b + 1, a + b + 1);
        strbuf_puts(&pairs, line);
        snprintf(line, sizeof line, "{\"prompt\": \"%d + %d?\", \"answer\": %d}\n", a, b, a + b);
        strbuf_puts(&prompts, line);
    }
    write_text("pairs.jsonl", pairs.p);
    write_text("prompts.jsonl", prompts.p);
    free(pairs.p), free(prompts.p);
    StrBuf y = {0};
    char line[1024];
    snprintf(
        line, sizeof line,
        "run:\n  dtype: f32\n  progress: false\n  device: cpu\nmodel:\n  chat_template: plain\n"
        "sampling:\n  k: 3\n  max_new_tokens: 16\n"
        "sft:\n  model: %s\n  dir: %s/sft\n  data: %s/pairs.jsonl\n  steps: 3\n"
        "  batch_size: 4\n  lr: 1e-3\n"
        "train:\n  model: %s/sft/final\n  dir: %s/gem\n  data: %s/prompts.jsonl\n"
        "  steps: 2\n  batch_size: 3\n  lr: 1e-3\n",
        model, root, root, root, root, root);
    strbuf_puts(&y, line);
    snprintf(line, sizeof line,
             "dpo:\n  model: %s/sft/final\n  dir: %s/dpo\n  data: %s/pairs.jsonl\n  steps: 2\n"
             "  batch_size: 3\n  lr: 1e-3\n"
             "eval:\n  models: [sft=%s/sft/final, gem=%s/gem/final]\n  dir: %s/eval\n"
             "  pairs: %s/pairs.jsonl\n  prompts: %s/prompts.jsonl\n",
             root, root, root, root, root, root, root, root);
    strbuf_puts(&y, line);
    write_text("cfg.yaml", y.p);
    free(y.p);
    snprintf(cmd, sizeof cmd, GEMC " sft %s/cfg.yaml", root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    free(model);
}

int test_count_lines(const char *path, const char *needle) {
    size_t n;
    char *text = read_text_file(path, &n);
    if (!text) return -1;
    int lines = 0;
    for (char *l = text; *l;) {
        char *e = strchr(l, '\n');
        if (!e) break;
        *e = 0;
        lines += !needle || strstr(l, needle) != NULL;
        l = e + 1;
    }
    free(text);
    return lines;
}

const char *test_e2e_root(void) {
    setup_e2e();
    return root;
}

static int file_exists(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "rb");
    free(p);
    if (f) fclose(f);
    return f != NULL;
}

int test_files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_text_file(a, &na), *y = read_text_file(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return eq;
}

static void test_sft_run_dir(void) {
    setup_e2e();
    char *dir = in_root("sft"), *metrics = path_join(dir, "metrics.jsonl");
    CU_ASSERT(file_exists(dir, "config.yaml"));
    // what ran: the build, the CPU, the GEMM kernels, the BLAS and the threads (gemc env)
    char *env = path_join(dir, "env.json");
    CU_ASSERT_EQUAL(test_count_lines(env, "\"gemm_isa\""), 1);
    CU_ASSERT_EQUAL(test_count_lines(env, "\"build_arch\""), 1);
    CU_ASSERT_EQUAL(test_count_lines(env, "\"openmp_threads\""), 1);
    free(env);
    CU_ASSERT_EQUAL(test_count_lines(metrics, "\"loss\""), 3); // one object per step
    CU_ASSERT_EQUAL(test_count_lines(metrics, "\"grad_norm\""), 3);
    CU_ASSERT(file_exists(dir, "final/config.json"));
    CU_ASSERT(file_exists(dir, "final/model.safetensors"));
    CU_ASSERT(file_exists(dir, "final/tokenizer.json")); // the checkpoint loads in transformers
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 5);     // env.json, tb/; no temporary folder left
    free(dir), free(metrics);
    // run.save_every: a checkpoint every 2 steps before the final one
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             GEMC " sft %s/cfg.yaml sft.dir=%s/sft_ck run.save_every=2 sft.steps=5", root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    dir = in_root("sft_ck");
    CU_ASSERT(file_exists(dir, "checkpoints/step_000002/model.safetensors"));
    CU_ASSERT(file_exists(dir, "checkpoints/step_000004/tokenizer.json"));
    char *ck = path_join(dir, "checkpoints");
    CU_ASSERT_EQUAL(test_count_dir_entries(ck), 2);
    CU_ASSERT(file_exists(dir, "final/model.safetensors"));
    free(ck), free(dir);
}

// Same seed and config, same bits; the answers are never read by GEM training.
static void test_train_deterministic_and_label_free(void) {
    setup_e2e();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml", root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.dir=%s/gem2", root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    // the same prompts with every answer wrong, or none at all
    write_text("prompts_noans.jsonl", "{\"prompt\": \"1 + 2?\", \"answer\": 99}\n"
                                      "{\"prompt\": \"2 + 3?\"}\n{\"prompt\": \"3 + 4?\"}\n"
                                      "{\"prompt\": \"4 + 2?\"}\n{\"prompt\": \"5 + 3?\"}\n"
                                      "{\"prompt\": \"1 + 4?\"}\n{\"prompt\": \"2 + 2?\"}\n"
                                      "{\"prompt\": \"3 + 3?\", \"answer\": \"x\"}\n");
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s/gem3 train.data=%s/prompts_noans.jsonl", root,
             root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char a[1024], b[1024], c[1024], m[1024];
    snprintf(a, sizeof a, "%s/gem/final/model.safetensors", root);
    snprintf(b, sizeof b, "%s/gem2/final/model.safetensors", root);
    snprintf(c, sizeof c, "%s/gem3/final/model.safetensors", root);
    snprintf(m, sizeof m, "%s/sft/final/model.safetensors", root);
    CU_ASSERT(test_files_equal(a, b));
    CU_ASSERT(test_files_equal(a, c));
    CU_ASSERT(!test_files_equal(a, m)); // and training did change the weights
    // filter.pairs: the (best, worst) pair of each ranked group, as dpo reads them; the update
    // is the same
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.dir=%s/gem4 filter.pairs=true", root,
             root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    snprintf(b, sizeof b, "%s/gem4/final/model.safetensors", root);
    CU_ASSERT(test_files_equal(a, b));
    snprintf(b, sizeof b, "%s/gem4/pairs.jsonl", root);
    const int n_pairs = test_count_lines(b, NULL);
    CU_ASSERT(n_pairs > 0 && n_pairs <= 2 * 3); // at most one per group: 2 steps x 3 prompts
    CU_ASSERT_EQUAL(test_count_lines(b, "\"rejected\": "), n_pairs);
    snprintf(cmd, sizeof cmd, GEMC " dpo %s/cfg.yaml dpo.data=%s dpo.dir=%s/dpo_pairs", root, b,
             root);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    snprintf(m, sizeof m, "%s/gem/metrics.jsonl", root);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"fork_entropy\""), 2);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"groups_skipped\""), 2);
}

static void test_dpo_both_pair_sources(void) {
    setup_e2e();
    char cmd[2048], m[1024];
    snprintf(cmd, sizeof cmd, GEMC " dpo %s/cfg.yaml", root);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    snprintf(m, sizeof m, "%s/dpo/metrics.jsonl", root);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"reward_accuracy\""), 2);
    // the first step starts at the reference: loss ln 2 exactly, margin 0
    CU_ASSERT_EQUAL(test_count_lines(m, "\"loss\": 0.6931472"), 1);
    snprintf(cmd, sizeof cmd,
             GEMC " dpo %s/cfg.yaml dpo.pairs=entropy dpo.data=%s/prompts.jsonl dpo.dir=%s/dpo2",
             root, root, root);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    snprintf(m, sizeof m, "%s/dpo2/metrics.jsonl", root);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"fork_entropy\""), 2);
}

static void test_eval_and_generate(void) {
    setup_e2e();
    char cmd[2048], p[1024];
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml", root);
    if (!file_exists(root, "gem/final/model.safetensors")) CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    snprintf(cmd, sizeof cmd, GEMC " eval %s/cfg.yaml eval.signal_k=3", root);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    snprintf(p, sizeof p, "%s/eval/results.json", root);
    CU_ASSERT_EQUAL(test_count_lines(p, "\"task_accuracy\""), 2); // a row per model
    CU_ASSERT_EQUAL(test_count_lines(p, "\"pref_n\": 8"), 2);
    CU_ASSERT_EQUAL(test_count_lines(p, "\"signal_top_accuracy\""), 2);
    snprintf(p, sizeof p, "%s/eval/results.md", root);
    CU_ASSERT_EQUAL(test_count_lines(p, "Eq. 1 top/mean/bottom of 3"), 1);
    snprintf(cmd, sizeof cmd,
             GEMC " generate %s/cfg.yaml generate.model=%s/sft/final generate.prompts=%s/"
                  "prompts.jsonl generate.out=%s/cands.jsonl generate.max_prompts=5",
             root, root, root, root);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    snprintf(p, sizeof p, "%s/cands.jsonl", root);
    CU_ASSERT_EQUAL(test_count_lines(p, "\"entropy_raw\""), 15); // 5 prompts x k = 3
}

static void expect_stage_error(const char *cmd, const char *needle) {
    test_expect_cli_error(cmd, needle, NULL);
}

// The first model's number `key` of DIR/results.json (NAN when absent).
static double result_number(const char *dir, const char *key) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/results.json", root, dir);
    char *text = read_text_file(p, NULL);
    cJSON *js = text ? cJSON_Parse(text) : NULL;
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(js, "models"), 0);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    const double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(js);
    free(text);
    return x;
}

// eval.pass_k: pass@1, pass@k and majority@k of k samples a prompt next to greedy accuracy, in
// the table, results.json and the metrics; the same seed gives the same bits, and the numbers
// keep their order (a right majority and a right candidate imply some right candidate).
static void test_eval_pass_k(void) {
    setup_e2e();
    char cmd[2048], p[1024];
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 GEMC " eval %s/cfg.yaml eval.models=[%s/sft/final] eval.pairs= eval.pass_k=4 "
                      "eval.dir=%s/pass%d",
                 root, root, root, i);
        CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    }
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/pass0/results.json", root);
    snprintf(b, sizeof b, "%s/pass1/results.json", root);
    CU_ASSERT(test_files_equal(a, b));
    const double p1 = result_number("pass0", "pass1"), pk = result_number("pass0", "pass_k");
    const double maj = result_number("pass0", "majority_k_accuracy");
    const double n = result_number("pass0", "pass_n"),
                 greedy = result_number("pass0", "task_accuracy");
    CU_ASSERT(n == result_number("pass0", "task_n") && n > 0);
    CU_ASSERT(p1 >= 0 && p1 <= pk && maj <= pk && pk <= 1 && greedy >= 0);
    snprintf(p, sizeof p, "%s/pass0/results.md", root);
    CU_ASSERT_EQUAL(test_count_lines(p, "| pass@1 (T="), 1);
    CU_ASSERT_EQUAL(test_count_lines(p, "| pass@4 | majority@4 |"), 1);
    snprintf(p, sizeof p, "%s/pass0/metrics.jsonl", root);
    CU_ASSERT_EQUAL(test_count_lines(p, "\"pass_k\""), 1);
    // k = 1: pass@1 and pass@k are the same draw
    snprintf(cmd, sizeof cmd,
             GEMC " eval %s/cfg.yaml eval.models=[%s/sft/final] eval.pairs= eval.pass_k=1 "
                  "eval.dir=%s/pass2",
             root, root, root);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    CU_ASSERT(result_number("pass2", "pass1") == result_number("pass2", "pass_k"));
    snprintf(cmd, sizeof cmd, GEMC " eval %s/cfg.yaml eval.pass_k=4 sampling.temperature=0", root);
    expect_stage_error(cmd, "eval.pass_k samples at sampling.temperature");
}

static void test_stage_errors(void) {
    setup_e2e();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml sampling.tempreature=0.5", root);
    expect_stage_error(cmd, "did you mean 'sampling.temperature'");
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml k=8", root);
    expect_stage_error(cmd, "sampling.k");
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml sampling.k=four", root);
    expect_stage_error(cmd, "sampling.k");
    snprintf(cmd, sizeof cmd, GEMC " eval %s/cfg.yaml eval.signal_k=1", root);
    expect_stage_error(cmd, "at least 2 candidates");
    expect_stage_error(GEMC " sft", "missing the config file");
    expect_stage_error(GEMC " sft /nonexistent/cfg.yaml", "/nonexistent/cfg.yaml");
    write_text("bad.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n"
                            "{\"prompt\": \"a\", \"chosen\": \"b\"}\n");
    snprintf(cmd, sizeof cmd, GEMC " sft %s/cfg.yaml sft.data=%s/bad.jsonl sft.dir=%s/x", root,
             root, root);
    expect_stage_error(cmd, "bad.jsonl:2:");
    CU_ASSERT(!file_exists(root, "x/final/model.safetensors"));
    snprintf(cmd, sizeof cmd, GEMC " train %s/cfg.yaml train.model=%s/nothing", root, root);
    expect_stage_error(cmd, "nothing");
}

// `make learner-check` (tools/learner_check.sh) end to end on a tiny budget: one seed, a task of
// 40 problems, a few steps of each stage; results.json holds a run per model with fractions in
// [0, 1], k and n, and results.md the table.
static void test_learner_check_script(void) {
    setup_e2e();
    const char *mt = getenv("GEMC_MAKE_TASK");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "OUT=%s/lc MAKE_TASK=%s TASK_ARGS='--train 40' RL_STEPS=2 PASS_K=2 "
             "ARGS='sft.steps=3 sft.batch_size=4 train.batch_size=2 sampling.max_new_tokens=8 "
             "eval.max_prompts=6 eval.every=0' sh tools/learner_check.sh 7",
             root, mt && *mt ? mt : "build/make_task");
    char *out = NULL, *err = NULL;
    const int rc = test_run(cmd, &out, &err);
    if (rc != 0) printf("\n  %s\n  %s\n", out ? out : "", err ? err : "");
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    free(out), free(err);
    char p[1024];
    snprintf(p, sizeof p, "%s/lc/results.json", root);
    char *text = read_text_file(p, NULL);
    cJSON *js = text ? cJSON_Parse(text) : NULL;
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(js, "runs");
    CU_ASSERT_FATAL(cJSON_IsArray(runs) && cJSON_GetArraySize(runs) == 4);
    const char *models[4] = {"sft", "answer", "random", "sft_more"};
    for (int i = 0; i < 4; i++) {
        const cJSON *r = cJSON_GetArrayItem(runs, i);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItemCaseSensitive(r, "model")->valuestring,
                               models[i]);
        CU_ASSERT(cJSON_GetObjectItemCaseSensitive(r, "seed")->valueint == 7);
        CU_ASSERT(cJSON_GetObjectItemCaseSensitive(r, "k")->valueint == 2);
        CU_ASSERT(cJSON_GetObjectItemCaseSensitive(r, "n")->valueint == 6);
        const char *frac[3] = {"greedy", "pass1", "pass_k"};
        for (int j = 0; j < 3; j++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, frac[j]);
            CU_ASSERT(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1);
        }
    }
    cJSON_Delete(js);
    free(text);
    snprintf(p, sizeof p, "%s/lc/results.md", root);
    CU_ASSERT_EQUAL(test_count_lines(p, "| sft_more |"), 1);
    CU_ASSERT_EQUAL(test_count_lines(p, "- random:"), 1);
}

static void test_stage_help(void) {
    const char *stages[] = {"sft", "train", "dpo", "eval", "generate"};
    for (int i = 0; i < 5; i++) {
        char cmd[128], *out, *err;
        snprintf(cmd, sizeof cmd, GEMC " %s --help", stages[i]);
        CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
        char want[64];
        snprintf(want, sizeof want, "usage: gemc %s CONFIG", stages[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "run.seed"));
        if (!strcmp(stages[i], "train")) CU_ASSERT_PTR_NOT_NULL(strstr(out, "score.top_m"));
        free(out), free(err);
    }
}

// The "loss" of each line of a metrics.jsonl, in order; returns how many (at most max).
static int read_losses(const char *path, double *loss, int max) {
    size_t n;
    char *text = read_text_file(path, &n);
    int got = 0;
    for (char *p = text; p && got < max && (p = strstr(p, "\"loss\": ")); p++)
        loss[got++] = strtod(p + 8, NULL);
    free(text);
    return got;
}

// sft at lr 1e30 with optim.max_nonfinite_steps=3 through `bin`: step 1 updates, steps 2-4 have
// NaN gradients and are skipped, and the stage stops with a checkpoint of step 4.
static void check_sft_nonfinite_stop(const char *bin, const char *run, const char *extra) {
    char cmd[2048], *out, *err;
    snprintf(cmd, sizeof cmd,
             "%s sft %s/cfg.yaml sft.dir=%s/%s sft.lr=1e30 sft.steps=10 "
             "optim.max_nonfinite_steps=3 %s",
             bin, root, root, run, extra);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "sft step 2: update skipped"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "(3 in a row)"));
    CU_ASSERT_PTR_NULL(strstr(err, "(4 in a row)"));
    const char *e = strstr(err, "gemc: error: ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "sft: 3 updates in a row skipped for a non-finite loss or "
                                     "gradient (steps 2 to 4;"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "/checkpoints/step_000004. HINT: "));
    CU_ASSERT_PTR_NULL(strstr(e + 1, "gemc: error: ")); // one error line
    free(out), free(err);
    char *dir = in_root(run), *metrics = path_join(dir, "metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(metrics, "\"updated\": 1"), 1);
    CU_ASSERT_EQUAL(test_count_lines(metrics, "\"updated\": 0"), 3);
    CU_ASSERT_EQUAL(test_count_lines(metrics, "\"grad_norm\": null"), 3);
    CU_ASSERT(file_exists(dir, "checkpoints/step_000004/model.safetensors"));
    CU_ASSERT(!file_exists(dir, "final/model.safetensors"));
    free(dir), free(metrics);
}

// The stages on the CUDA backend, through the binary GEMC_CUDA_BIN names: build/gemc_emu (the
// kernels on the CPU emulator) under `make test`, ./gemc on a machine with a GPU. sft's losses
// step by step against the CPU run's (same weights, same batches: only bf16 rounding differs),
// then GEM training with a checkpoint and a resume, and generation, to completion.
static void test_stages_on_cuda(void) {
    const char *bin = getenv("GEMC_CUDA_BIN");
    if (!bin || !*bin) {
        printf("(skipped: GEMC_CUDA_BIN names no CUDA build) ");
        return;
    }
    setup_e2e();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s sft %s/cfg.yaml run.device=cuda sft.dir=%s/sft_cuda", bin, root,
             root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *mc = in_root("sft/metrics.jsonl"), *mg = in_root("sft_cuda/metrics.jsonl");
    double lc[8], lg[8];
    const int nc = read_losses(mc, lc, 8), ng = read_losses(mg, lg, 8);
    CU_ASSERT_EQUAL(nc, 3);
    CU_ASSERT_EQUAL(ng, nc);
    for (int i = 0; i < nc && i < ng; i++) {
        if (!(fabs(lg[i] - lc[i]) <= 2e-2 * fabs(lc[i])))
            printf("\n    sft step %d: loss %.6f on the GPU, %.6f on the CPU\n", i + 1, lg[i],
                   lc[i]);
        CU_ASSERT(fabs(lg[i] - lc[i]) <= 2e-2 * fabs(lc[i]));
    }
    free(mc), free(mg);
    char *final = in_root("sft_cuda/final");
    CU_ASSERT(file_exists(final, "model.safetensors"));
    free(final);

    // GEM: 3 steps with a checkpoint at 2, killed by nothing, then a resumed run of 4 steps
    snprintf(cmd, sizeof cmd,
             "%s train %s/cfg.yaml run.device=cuda train.dir=%s/gem_cuda train.steps=3 "
             "run.save_every=2",
             bin, root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *gm = in_root("gem_cuda/metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(gm, "\"loss\""), 3);
    snprintf(cmd, sizeof cmd,
             "%s train %s/cfg.yaml run.device=cuda train.dir=%s/gem_cuda "
             "train.steps=4 run.save_every=2",
             bin, root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    CU_ASSERT_EQUAL(test_count_lines(gm, "\"loss\""), 4);
    free(gm);
    char *gem = in_root("gem_cuda");
    CU_ASSERT(file_exists(gem, "checkpoints/step_000002/optimizer_tp0.bin"));
    CU_ASSERT(file_exists(gem, "final/model.safetensors"));
    free(gem);

    snprintf(cmd, sizeof cmd,
             "%s generate %s/cfg.yaml run.device=cuda generate.model=%s/sft/final "
             "generate.prompts=%s/prompts.jsonl generate.out=%s/gen_cuda.jsonl",
             bin, root, root, root, root);
    CU_ASSERT_EQUAL_FATAL(test_run_ok(cmd), 0);
    char *out = in_root("gen_cuda.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(out, "\"entropy_raw\""), 24); // 8 prompts x k = 3
    free(out);
    // the device's NaN gradient norm makes the same skips and the same stop
    check_sft_nonfinite_stop(bin, "sft_nan_cuda", "run.device=cuda");
}

// Runs the command printf(fmt, ...) builds and checks its exit status and that stdout holds
// in_out and stderr in_err (each unless NULL).
static void expect_exit(int status, const char *in_out, const char *in_err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect_exit(int status, const char *in_out, const char *in_err, const char *fmt, ...) {
    char cmd[4096], *out, *err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = test_run(cmd, &out, &err);
    CU_ASSERT_EQUAL(rc, status);
    if (in_out) CU_ASSERT_PTR_NOT_NULL(strstr(out, in_out));
    if (in_err) CU_ASSERT_PTR_NOT_NULL(strstr(err, in_err));
    if (rc != status) fprintf(stderr, "\n  %s\n  exit %d, stderr: %s\n", cmd, rc, err);
    free(out), free(err);
}

// A step whose loss or gradient is not finite makes no update (lr 1e30 blows the weights up in
// one step, the next gradients are NaN); optim.max_nonfinite_steps of them in a row stop the
// stage with a checkpoint and one error line.
static void test_nonfinite_updates_skipped_then_stop(void) {
    setup_e2e();
    check_sft_nonfinite_stop(GEMC, "sft_nan", "");
    // GEM on one process: the checkpoint it stops with resumes (here with a sane lr)
    expect_exit(1, NULL, "gemc: error: train: 1 updates in a row skipped",
                GEMC " train %s/cfg.yaml train.dir=%s/gem_nan train.lr=1e30 train.steps=6 "
                     "optim.max_nonfinite_steps=1",
                root, root);
    char *dir = in_root("gem_nan");
    CU_ASSERT(file_exists(dir, "checkpoints/step_000002/optimizer_tp0.bin"));
    expect_exit(0, "resuming from checkpoint step 2", NULL,
                GEMC " train %s/cfg.yaml train.dir=%s/gem_nan train.steps=3", root, root);
    CU_ASSERT(file_exists(dir, "final/model.safetensors"));
    free(dir);
    // 0: skipped updates never stop the run
    expect_exit(0, NULL, "dpo step 4: update skipped",
                GEMC " dpo %s/cfg.yaml dpo.dir=%s/dpo_nan dpo.lr=1e30 dpo.steps=4 "
                     "optim.max_nonfinite_steps=0",
                root, root);
}

// train.stop_on_collapse's rule, against exact integer arithmetic: accuracies a/n and b/n of n
// prompts, thresholds in half points; "more than" is strict, and off, NaN and a rise never stop.
static void test_probe_collapse_rule(void) {
    long wrong = 0, stops = 0;
    for (int n = 1; n <= 40; n++)
        for (int a = 0; a <= n; a++)
            for (int b = 0; b <= n; b++)
                for (int p2 = 0; p2 <= 201; p2++) {
                    const int want = p2 > 0 && 200L * (a - b) > (long)p2 * n;
                    const int got =
                        stage_probe_collapsed((double)a / n, (double)b / n, p2 / 2.0) != 0;
                    wrong += got != want;
                    stops += got;
                }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(stops > 0);
    CU_ASSERT(stage_probe_collapsed(0.41, 0.28, 10));
    CU_ASSERT(!stage_probe_collapsed(0.5, 0.4, 10)); // exactly 10 points below: not more
    CU_ASSERT(stage_probe_collapsed(0.5, 0.39, 10));
    CU_ASSERT(!stage_probe_collapsed(0.28, 0.41, 10)); // a rise
    CU_ASSERT(!stage_probe_collapsed(1.0, 0.0, 0));    // 0 = off
    CU_ASSERT(!stage_probe_collapsed(1.0, 0.0, -5));
    CU_ASSERT(!stage_probe_collapsed(1.0, 0.0, 100)); // nothing falls more than 100 points
    CU_ASSERT(stage_probe_collapsed(1.0, 0.0, 99.5));
    CU_ASSERT(!stage_probe_collapsed(NAN, 0.0, 10)); // no best yet
    CU_ASSERT(!stage_probe_collapsed(0.5, NAN, 10));
    CU_ASSERT(!stage_probe_collapsed(0.5, 0.0, NAN));
    CU_ASSERT(stage_probe_collapsed(0.5, 0.0, 1e-6f)); // any drop, with a tiny threshold
    CU_ASSERT(!stage_probe_collapsed(0.5, 0.5, 1e-6f));
}

// Is needle in [p, e)?
static int in_line(const char *p, const char *e, const char *needle) {
    const char *x = p ? strstr(p, needle) : NULL;
    return x && x < e;
}

// eval.probe: the signal check's metrics at every evaluation, its console line, and a probe
// prompt without an answer; stop_on_collapse=100 never stops (no accuracy falls more than 100
// points).
// reward.source=answer, the learner check: it needs every prompt's answer, so a prompts file
// missing one is an error naming FILE:LINE before the run directory exists; with answers it
// trains, logs the share of right candidates, and its shards record the source, each
// candidate's check and a value that is that check.
static void test_train_answer_source(void) {
    setup_e2e();
    write_text("prompts_partial.jsonl", "{\"prompt\": \"1 + 2?\", \"answer\": 3}\n"
                                        "{\"prompt\": \"2 + 3?\"}\n");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s/gem_partial reward.source=answer "
                  "train.data=%s/prompts_partial.jsonl",
             root, root, root);
    test_expect_cli_error(cmd, "prompts_partial.jsonl:2: ", "reward.source");
    CU_ASSERT(!file_exists(root, "gem_partial"));
    expect_exit(0, "train: wrote ", NULL,
                GEMC " train %s/cfg.yaml train.dir=%s/gem_answer reward.source=answer", root, root);
    char *m = in_root("gem_answer/metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"correct\": "), 2);
    // the step size: the norm after clipping and whether it was cut, every step
    CU_ASSERT_EQUAL(test_count_lines(m, "\"grad_norm_clipped\": "), 2);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"clipped\": "), 2);
    char *path = in_root("gem_answer/shards/step_000002.gen_0.h5");
    Shard s;
    CU_ASSERT_EQUAL_FATAL(shard_read(path, &s, 0), 0);
    CU_ASSERT_STRING_EQUAL(s.reward_source, "answer");
    for (long c = 0; c < shard_n_cands(&s); c++) {
        CU_ASSERT(s.correct[c] == 0 || s.correct[c] == 1);
        CU_ASSERT(s.value[c] == (float)s.correct[c]);
    }
    shard_free(&s);
    free(m), free(path);
}

static void test_train_probe(void) {
    setup_e2e();
    char cmd[2048], *out, *err;
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s/gem_probe eval.every=1 "
                  "eval.probe=%s/prompts.jsonl train.stop_on_collapse=100",
             root, root, root);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    // on the eval line, after the task and preference accuracy of eval.prompts and eval.pairs
    int lines = 0;
    for (const char *l = out; (l = strstr(l, "train step ")); l++) {
        const char *e = strchr(l, '\n');
        const char *p = strstr(l, ": eval | task accuracy ");
        lines += e && in_line(l, e, ": eval | task accuracy ") &&
                 in_line(p, e, " | pref accuracy ") && in_line(p, e, " | probe accuracy ") &&
                 in_line(p, e, "% of 8 | probe AUROC ") && in_line(p, e, " | top/mean/bottom ");
    }
    CU_ASSERT_EQUAL(lines, 2);
    CU_ASSERT_PTR_NULL(strstr(out, "probe accuracy fell"));
    if (lines != 2) fprintf(stderr, "\n  %s\n  stdout: %s\n  stderr: %s\n", cmd, out, err);
    free(out), free(err);
    char *dir = in_root("gem_probe"), *m = path_join(dir, "metrics.jsonl");
    const char *keys[] = {"probe_accuracy",     "probe_auroc",          "probe_top_correct",
                          "probe_mean_correct", "probe_bottom_correct", "probe_best_accuracy",
                          "probe_best_step",    "\"time_eval\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, keys[i][0] == '"' ? "%s" : "\"%s\": ", keys[i]);
        CU_ASSERT_EQUAL(test_count_lines(m, key), 2); // steps 1 and 2
    }
    // the tiny model answers nothing right: no group has both a right and a wrong candidate
    CU_ASSERT_EQUAL(test_count_lines(m, "\"probe_auroc\": null"), 2);
    CU_ASSERT(file_exists(dir, "final/model.safetensors"));
    free(dir), free(m);

    // eval.every_max: only the first prompts are evaluated, and only they need an answer
    write_text("probe_noans.jsonl", "{\"prompt\": \"1 + 2?\", \"answer\": 3}\n"
                                    "{\"prompt\": \"2 + 3?\"}\n");
    expect_exit(0, "probe accuracy ", NULL,
                GEMC " train %s/cfg.yaml train.dir=%s/gem_probe1 train.steps=1 eval.every=1 "
                     "eval.probe=%s/probe_noans.jsonl eval.every_max=1",
                root, root, root);
    char *m1 = in_root("gem_probe1/metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(m1, "\"probe_accuracy\": "), 1);
    free(m1);
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s/gem_probe_bad eval.every=1 "
                  "eval.probe=%s/probe_noans.jsonl",
             root, root, root);
    test_expect_cli_error(cmd, "probe_noans.jsonl:2: ", "eval.probe");
    CU_ASSERT(!file_exists(root, "gem_probe_bad")); // found before the run starts
}

// train.stop_on_collapse on a crafted run: resumed from its checkpoint of step 1, whose line in
// metrics.jsonl says the probe accuracy was 100% there (the best is recomputed from the log on
// a resume), the tiny model's real 0% at step 2 is more than 50 points below: a checkpoint of
// step 2, one line, exit 0, no final/. The same command with a larger threshold resumes from it.
static void test_train_stop_on_collapse(void) {
    setup_e2e();
    const char *probe = "eval.every=1 eval.probe=%s/prompts.jsonl";
    char args[512];
    snprintf(args, sizeof args, probe, root);
    expect_exit(0, "train: wrote ", NULL,
                GEMC " train %s/cfg.yaml train.dir=%s/gem_collapse run.save_every=1 %s", root, root,
                args);
    char *dir = in_root("gem_collapse"), *m = path_join(dir, "metrics.jsonl");
    CU_ASSERT_EQUAL(test_count_lines(m, "\"probe_accuracy\": 0,"), 2); // the tiny model's
    char cmd[2048], *out, *err;
    snprintf(cmd, sizeof cmd, "rm -rf %s/final", dir);
    CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    const char *crafted =
        "{\"step\": 1, \"stage\": \"train\", \"probe_accuracy\": 1, \"wall_time\": 1.5}\n";
    test_write_file(m, crafted, strlen(crafted));
    snprintf(cmd, sizeof cmd,
             GEMC " train %s/cfg.yaml train.dir=%s/gem_collapse train.steps=4 %s "
                  "train.stop_on_collapse=50",
             root, root, args);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    const char *line = "\ntrain: probe accuracy fell from 100.0% (step 1) to 0.0% at step 2, more "
                       "than train.stop_on_collapse = 50 points below its best: stopped with a "
                       "checkpoint at step 2 (HINT: lower train.lr, or raise "
                       "train.stop_on_collapse)\n";
    const char *at = strstr(out, line);
    CU_ASSERT_PTR_NOT_NULL(at);
    if (at) CU_ASSERT_PTR_NULL(strstr(at + strlen(line), "probe accuracy fell")); // one line
    CU_ASSERT_PTR_NULL(strstr(out, "wrote"));
    CU_ASSERT_STRING_EQUAL(err, "");
    if (!at) fprintf(stderr, "\n  %s\n  stdout: %s\n  stderr: %s\n", cmd, out, err);
    free(out), free(err);
    CU_ASSERT(file_exists(dir, "checkpoints/step_000002/optimizer_tp0.bin"));
    CU_ASSERT(!file_exists(dir, "final/model.safetensors"));
    CU_ASSERT_EQUAL(test_count_lines(m, "\"probe_best_accuracy\": 1,"), 1);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"probe_best_step\": 1,"), 1);
    CU_ASSERT_EQUAL(test_count_lines(m, "\"step\": 3,"), 0);
    // a checkpoint the next run continues from
    expect_exit(0, "resuming from checkpoint step 2", NULL,
                GEMC " train %s/cfg.yaml train.dir=%s/gem_collapse train.steps=3 %s "
                     "train.stop_on_collapse=100",
                root, root, args);
    CU_ASSERT(file_exists(dir, "final/model.safetensors"));
    free(dir), free(m);
}

// What a folder holds: "path size mtime" of every entry, sorted, one string.
static char *listing(const char *dir, const char *prune) {
    char cmd[2048], *out, *err;
    snprintf(cmd, sizeof cmd,
             "find %s -path %s -prune -o -printf '%%p %%s %%T@\\n' | LC_ALL=C sort", dir, prune);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    free(err);
    return out;
}

// Every stage writes under its run directory (generate: its output file) and nowhere else: not
// into the model and data folders it reads, the working directory or $TMPDIR.
static void test_writes_stay_in_run_dir(void) {
    setup_e2e();
    char *sandbox = in_root("sandbox"), *cwd = path_join(sandbox, "cwd"),
         *tmp = path_join(sandbox, "tmp"), *runs = path_join(sandbox, "runs");
    CU_ASSERT_EQUAL_FATAL(ensure_dir(cwd) | ensure_dir(tmp) | ensure_dir(runs), 0);
    char *gemc = realpath(GEMC, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gemc);
    char *before = listing(root, sandbox);
    const char *stages[] = {
        "sft %s/cfg.yaml sft.dir=%s/s run.save_every=1",
        "train %s/cfg.yaml train.dir=%s/t run.save_every=1 filter.pairs=true",
        "dpo %s/cfg.yaml dpo.dir=%s/d",
        "eval %s/cfg.yaml eval.dir=%s/e",
        "generate %s/cfg.yaml generate.model=%s/sft/final generate.prompts=%s/prompts.jsonl "
        "generate.out=%s/g.jsonl generate.max_prompts=2",
    };
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        char args[1024], cmd[4096];
        if (i < 4)
            snprintf(args, sizeof args, stages[i], root, runs);
        else
            snprintf(args, sizeof args, stages[i], root, root, root, runs);
        snprintf(cmd, sizeof cmd, "cd %s && TMPDIR=%s %s %s", cwd, tmp, gemc, args);
        CU_ASSERT_EQUAL(test_run_ok(cmd), 0);
    }
    char *after = listing(root, sandbox);
    CU_ASSERT_STRING_EQUAL(after, before);
    CU_ASSERT_EQUAL(test_count_dir_entries(cwd), 0);
    CU_ASSERT_EQUAL(test_count_dir_entries(tmp), 0);
    CU_ASSERT_EQUAL(test_count_dir_entries(runs), 5); // s, t, d, e and g.jsonl
    free(before), free(after), free(gemc);
    free(sandbox), free(cwd), free(tmp), free(runs);
}

void register_stage_tests(void) {
    static const TestCase tests[] = {
        {"a shared prompt: the same log-probs, loss and gradients", test_shared_prefix},
        {"micro-batches change no log-prob and no gradient", test_micro_batches},
        {"learning-rate schedule", test_lr_schedule},
        {"data order: a permutation per epoch, from the seed", test_data_order},
        {"sft leaves config.yaml, metrics.jsonl and an HF checkpoint", test_sft_run_dir},
        {"train: same seed same bits, answers never read", test_train_deterministic_and_label_free},
        {"dpo on data pairs and on entropy pairs", test_dpo_both_pair_sources},
        {"eval table and generate output", test_eval_and_generate},
        {"eval.pass_k: pass@1, pass@k, majority@k, deterministic", test_eval_pass_k},
        {"stage errors: one line, exit 1", test_stage_errors},
        {"every stage writes under its run directory only", test_writes_stay_in_run_dir},
        {"NaN/Inf: updates skipped, then a stop with a checkpoint",
         test_nonfinite_updates_skipped_then_stop},
        {"train.stop_on_collapse: the rule, exhaustively", test_probe_collapse_rule},
        {"train with reward.source answer: labels checked, shards and metrics",
         test_train_answer_source},
        {"train with eval.probe: the signal check's metrics", test_train_probe},
        {"train.stop_on_collapse: a checkpoint, one line, exit 0", test_train_stop_on_collapse},
        {"make learner-check on a tiny budget: results.json and the table",
         test_learner_check_script},
        {"stage --help lists the config keys", test_stage_help},
        {"sft, train and generate on the CUDA backend", test_stages_on_cuda},
        {NULL, NULL},
    };
    add_suite("stages", tests);
}
