// CPU sampling-throughput benchmark of gemc: sampler_generate on random weights.
//
//   bench_sample --config FILE [--prompts B] [--prompt-len P] [--k K] [--new T] [--runs R]
//                [--seed S] [--peak G]
//
// Builds a model from a config.json with random weights (model_init_random), makes B prompts of
// P random token ids (fixed seed), and generates K candidates per prompt, T new tokens each, with
// sampler_generate: temperature 1, top_p 1, top_k 0 and no stop ids (n_eos = 0), so every
// candidate runs to exactly T tokens. One untimed warm-up, then R timed repetitions of two calls:
//   prefill  sampler_generate with max_new_tokens 1: the prefill of the B prompts and one draw
//            per candidate from the prompts' last logits (the sampler's allocations included);
//   full     sampler_generate with max_new_tokens T: the same, then T-1 decode steps of B*K
//            rows, each with its draws (softmax, entropies, inverse-CDF sample).
// Printed, from the median of the R repetitions: generated tokens/s = B*K*T / full time, the
// prefill time, decode ms per step = (full - prefill) / (T-1), achieved model GFLOP/s and the %
// of the sgemm peak given by --peak G (tools/bench/run_sample.sh passes the figure of
// `bench_cpu_train --roofline`; without --peak no % is printed).
//
// The last line is "RESULT key=value ...", which tools/bench/run_sample.sh reads.
// This is a benchmark: nothing here asserts a time.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/common.h"
#include "model/cpu/gemm.h"
#include "config/config.h"
#include "model/model.h"
#include "base/rng.h"
#include "model/sampler.h"

// ---- model FLOPs ---------------------------------------------------------------------------
//
// Model FLOPs of one forward position, counted as bench_cpu_train.c counts them (forward only):
//   2 * P_layers                every non-embedding weight in one multiply-add (norm weights
//                               and biases included, negligible);
//   + 2 * V * C                 the head, for a position whose logits are computed;
//   + 4 * L * Hq * D * ctx      attention: the scores q.k and the weighted sum p.v, 2 * D FLOPs
//                               each per head and key, over the ctx keys the query sees.
// A run of B prompts of P tokens, K candidates each, T new tokens each, is then
//   prefill: B * P positions at 2 * P_layers, with causal attention (ctx = i + 1 for the
//            position i, on average (P + 1) / 2 keys), and the head on each prompt's last
//            position only (B rows: the first token of all K candidates is drawn from them);
//   decode:  B * K * (T - 1) positions at 2 * P_layers + 2 * V * C, step j = 1 .. T-1 seeing
//            ctx = P + j keys (P + T/2 on average).
// Not counted: softmax, norms, rope, SwiGLU, the sampling pass over the logits, and the token
// embedding (a lookup). A sliding window shorter than the context is not modelled. The rate is
// these FLOPs over the whole timed run (prefill included), i.e. per generated token the total
// divided by B * K * T.
static double layer_params(const Model *m) {
    const ParamLayout *lay = &m->layout;
    return (double)lay->total - (double)lay->p[P_WTE].size - (double)lay->p[P_LM_HEAD].size;
}

static double run_flops(const Model *m, int B, int P, int K, int T) {
    const ModelConfig *c = &m->cfg;
    const double lp = layer_params(m), head = 2.0 * c->vocab_size * (double)c->hidden_size;
    const double att = 4.0 * c->num_layers * c->num_heads * (double)c->head_dim; // per key
    const double prefill = B * ((double)P * 2.0 * lp + att * P * (P + 1.0) / 2.0 + head);
    const double steps = T - 1.0, keys = steps * P + steps * (steps + 1.0) / 2.0; // sum of P + j
    const double decode = (double)B * K * (steps * (2.0 * lp + head) + att * keys);
    return prefill + decode;
}

// ---- the runs ------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One sampler_generate call with max_new_tokens T; returns its seconds. Checks that every
// candidate got exactly T tokens, adds their mean raw entropy to *mean_entropy.
static double generate_once(Model *m, const GenerateRequest *req, SamplingConfig *sc, int T, int B,
                            const int *const *prompts, const int *lens, const uint64_t *keys,
                            Candidate *out, double *mean_entropy) {
    sc->max_new_tokens = T;
    const double t0 = now_seconds();
    if (sampler_generate(m, req, B, prompts, lens, keys, out) != 0) return -1.0;
    const double dt = now_seconds() - t0;
    double h = 0.0;
    const int n = B * sc->k;
    for (int i = 0; i < n; i++) {
        if (out[i].n != T)
            gemc_fatal("candidate %d has %d tokens, not %d (it stopped early)", i, out[i].n, T);
        for (int j = 0; j < T; j++) h += out[i].entropy_raw[j];
        candidate_free(&out[i]);
    }
    if (mean_entropy) *mean_entropy = h / ((double)n * T);
    return dt;
}

static int run_sample(const char *config, int B, int P, int K, int T, int runs, int seed,
                      float peak) {
    ModelConfig cfg;
    if (model_config_load(config, &cfg) != 0) return -1;
    if (B < 1 || P < 1 || K < 1 || T < 2 || runs < 1) {
        gemc_set_error("need --prompts >= 1, --prompt-len >= 1, --k >= 1, --new >= 2, --runs >= 1 "
                       "(got %d, %d, %d, %d, %d)",
                       B, P, K, T, runs);
        return -1;
    }
    if ((long)P + T > cfg.max_position_embeddings) {
        gemc_set_error("--prompt-len + --new = %ld exceeds the model's context of %d positions",
                       (long)P + T, cfg.max_position_embeddings);
        return -1;
    }

    Model m;
    model_init(&m, &cfg);
    model_init_random(&m, (uint64_t)seed);
    int *tokens = mallocCheck(sizeof(int) * (size_t)B * P);
    const int **prompts = mallocCheck(sizeof(int *) * (size_t)B);
    int *lens = mallocCheck(sizeof(int) * (size_t)B);
    uint64_t *keys = mallocCheck(sizeof(uint64_t) * (size_t)B);
    Candidate *out = mallocCheck(sizeof(Candidate) * (size_t)B * K);
    Rng rng;
    rng_seed(&rng, (uint64_t)seed + 1);
    for (long i = 0; i < (long)B * P; i++)
        tokens[i] = (int)(rng_u64(&rng) % (uint64_t)cfg.vocab_size);
    for (int b = 0; b < B; b++) prompts[b] = tokens + (size_t)b * P, lens[b] = P, keys[b] = b;

    SamplingConfig sc;
    memset(&sc, 0, sizeof sc);
    sc.k = K;
    sc.temperature = 1.0f;
    sc.top_p = 1.0f;
    sc.top_k = 0;
    sc.max_new_tokens = T;
    // n_eos = 0 is a valid request (sampler.c's check_request): no stop ids, so every candidate
    // runs to max_new_tokens. draw_vocab 0: every id may be drawn.
    const GenerateRequest req = {.sc = &sc,
                                 .eos_ids = NULL,
                                 .n_eos = 0,
                                 .seed = (uint64_t)seed + 2,
                                 .policy_version = 0,
                                 .draw_vocab = 0,
                                 .progress = NULL,
                                 .progress_ctx = NULL};

    const double flops = run_flops(&m, B, P, K, T);
    const long gen = (long)B * K * T;
    printf("gemc: %s (%s), %d layers, hidden %d, intermediate %d, heads %d/%d x %d, vocab %d, "
           "%s head\n",
           config, cfg.model_type, cfg.num_layers, cfg.hidden_size, cfg.intermediate_size,
           cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size,
           cfg.tie_word_embeddings ? "tied" : "untied");
    printf("gemc: %.2fM parameters (%.2fM non-embedding), %d prompts x %d tokens, k %d, %d new "
           "tokens = %ld generated, %.3f GFLOP per run (%.4f per generated token), 1 warm-up + "
           "%d timed runs, %d OpenMP threads, GEMM kernels %s\n",
           m.layout.total / 1e6, layer_params(&m) / 1e6, B, P, K, T, gen, flops / 1e9,
           flops / gen / 1e9, runs, omp_get_max_threads(), gemm_isa_name(gemm_isa()));
    fflush(stdout);

    double h = 0.0;
    const double w0 = now_seconds();
    if (generate_once(&m, &req, &sc, T, B, prompts, lens, keys, out, &h) < 0) return -1;
    printf("warm-up: %.1f ms, mean raw entropy %.4f nats\n", 1e3 * (now_seconds() - w0), h);
    fflush(stdout);

    double *pre = mallocCheck(sizeof(double) * (size_t)runs);
    double *full = mallocCheck(sizeof(double) * (size_t)runs);
    for (int r = 0; r < runs; r++) {
        pre[r] = generate_once(&m, &req, &sc, 1, B, prompts, lens, keys, out, NULL);
        full[r] = generate_once(&m, &req, &sc, T, B, prompts, lens, keys, out, &h);
        if (pre[r] < 0 || full[r] < 0) return -1;
        printf("run %d/%d: %.1f ms (prefill %.1f, decode %.2f ms/step), %.1f tokens/s, mean raw "
               "entropy %.4f nats\n",
               r + 1, runs, 1e3 * full[r], 1e3 * pre[r], 1e3 * (full[r] - pre[r]) / (T - 1),
               gen / full[r], h);
        fflush(stdout);
    }
    const double t_full = median(full, runs), t_pre = median(pre, runs);
    const double best = full[0], worst = full[runs - 1]; // sorted by median()
    const double step = (t_full - t_pre) / (T - 1);
    const double tok_s = gen / t_full, gflops = flops / t_full / 1e9;
    printf("gemc: %.1f tokens/s, %.1f ms per run (prefill %.1f, decode %.2f ms/step x %d), best "
           "run %.1f ms\n",
           tok_s, 1e3 * t_full, 1e3 * t_pre, 1e3 * step, T - 1, 1e3 * best);
    if (peak > 0)
        printf("gemc: %.2f GFLOP/s achieved, %.1f%% of the %.1f GFLOP/s sgemm peak\n", gflops,
               100.0 * gflops / peak, peak);
    else
        printf("gemc: %.2f GFLOP/s achieved (--peak G for the %% of peak)\n", gflops);
    printf("RESULT impl=gemc tokens_per_s=%.3f run_ms=%.3f prefill_ms=%.3f step_ms=%.4f "
           "gflops=%.3f pct_peak=%.4f peak_gflops=%.3f flops_per_token=%.0f params=%zu "
           "entropy=%.6f min_tokens_per_s=%.3f max_tokens_per_s=%.3f runs=%d isa=%s\n",
           tok_s, 1e3 * t_full, 1e3 * t_pre, 1e3 * step, gflops,
           peak > 0 ? 100.0 * gflops / peak : NAN, peak, flops / gen, m.layout.total, h,
           gen / worst, gen / best, runs, gemm_isa_name(gemm_isa()));
    free(pre), free(full);
    free(tokens), free(prompts), free(lens), free(keys), free(out);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    const char *config = NULL;
    int prompts = 16, plen = 120, k = 4, new_tokens = 64, runs = 3, seed = 1234;
    float peak = 0.0f;
    const CliOpt opts[] = {
        {"config", OPT_STR, &config, "FILE", "model config.json", 1},
        {"prompts", OPT_INT, &prompts, "B", "prompts (default 16)", 0},
        {"prompt-len", OPT_INT, &plen, "P", "tokens per prompt (default 120)", 0},
        {"k", OPT_INT, &k, "K", "candidates per prompt (default 4)", 0},
        {"new", OPT_INT, &new_tokens, "T", "new tokens per candidate (default 64)", 0},
        {"runs", OPT_INT, &runs, "R", "timed runs after one warm-up (default 3)", 0},
        {"seed", OPT_INT, &seed, "N", "seed of the weights, prompts and draws (default 1234)", 0},
        {"peak", OPT_FLOAT, &peak, "G", "sgemm peak GFLOP/s for the % of peak", 0},
        {0},
    };
    const CliCommand cmd = {
        "bench_sample",
        "CPU sampling throughput of gemc's sampler_generate (generated tokens/s, prefill ms,\n"
        "decode ms/step, GFLOP/s, % of the sgemm peak) on random weights.",
        "examples:\n"
        "  build/bench_sample --config configs/models/tiny-llama.json --prompts 16 --k 4 --new 64\n"
        "  build/bench_sample --config tools/bench/qwen2.5-0.5b-4layers.json --prompts 2 \\\n"
        "      --prompt-len 128 --k 4 --new 32 --peak 200",
        opts,
        "bench_sample",
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) {
        if (rc > 0) return 0;
        fprintf(stderr, "bench_sample: error: %s\n", gemc_error());
        return 1;
    }
    if (run_sample(config, prompts, plen, k, new_tokens, runs, seed, peak) != 0) {
        fprintf(stderr, "bench_sample: error: %s\n", gemc_error());
        return 1;
    }
    return 0;
}
