// CUDA sampling-throughput benchmark of gemc: sampler_generate on the GPU, with and without the
// entropies, against the card's roofline.
//
//   bench_cuda_sample [--config FILE] [--prompts B] [--k K] [--prompt-len P] [--new-tokens T]
//                     [--runs R] [--peak-tflops F] [--peak-gbs G] [--device N] [--seed N]
//
// Builds a model from a config.json with random weights (model_init_random), moves it to the GPU
// (model_to_gpu), makes B prompts of P random token ids (fixed seed), and generates K candidates
// per prompt, T new tokens each, with sampler_generate (which runs the prefill, the decode steps
// and the draws on the device when m->gpu is set): temperature 1, top_p 1, top_k 0 and no stop
// ids (n_eos = 0), so every candidate runs to exactly T tokens. One untimed warm-up of each kind
// of call below, then R timed repetitions of three calls:
//   prefill   max_new_tokens 1: the prefill of the B prompts and one draw per candidate;
//   full      max_new_tokens T with the entropies (what GEM samples with): the prefill, then
//             T-1 decode steps of B*K rows, each with its draws;
//   no-ent    the same with GenerateRequest.skip_entropy = 1 (the entropies left 0), to time
//             what the entropies cost.
// Printed, from the medians of the R repetitions: generated tokens/s = B*K*T / full time (the
// same without entropies), the entropy overhead (t_full - t_noent) / t_noent, the prefill time,
// decode ms per step = (full - prefill) / (T-1), achieved model TFLOP/s, and the roofline (see
// below) against the card's bf16 dense peak and HBM bandwidth (--peak-tflops / --peak-gbs, else
// BENCH_PEAK_TFLOPS / BENCH_PEAK_GBS from the environment, else nothing is printed against a
// peak). On a machine without a usable CUDA device (or a gemc built without nvcc) it prints one
// line saying so and exits 0.
//
// The last line is "RESULT key=value ...", which tools/bench/run_cuda.sh reads.
// This is a benchmark: nothing here asserts a time.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda_common.h"
#include "base/cli.h"
#include "base/common.h"
#include "config/config.h"
#include "model/gpu.h"
#include "model/model.h"
#include "model/sampler.h"

// ---- model FLOPs ---------------------------------------------------------------------------
//
// Model FLOPs of a run, counted as bench_sample.c counts them (forward only):
//   2 * P_layers per position (every non-embedding weight in one multiply-add), + 2 * V * C for a
//   position whose logits are computed, + 4 * L * Hq * D per key the query sees (q.k and p.v).
//   prefill: B * P positions, causal attention, the head on each prompt's last position only
//            (the first token of all K candidates is drawn from it);
//   decode:  B * K * (T - 1) positions with the head, step j = 1 .. T-1 seeing P + j keys.
// Not counted: softmax, norms, rope, SwiGLU, the sampling pass over the logits, the embedding.
static double run_flops(const Model *m, int B, int P, int K, int T) {
    const ModelConfig *c = &m->cfg;
    const double lp = bench_layer_params(m), head = 2.0 * c->vocab_size * (double)c->hidden_size;
    const double att = 4.0 * c->num_layers * c->num_heads * (double)c->head_dim; // per key
    const double prefill = B * ((double)P * 2.0 * lp + att * P * (P + 1.0) / 2.0 + head);
    const double steps = T - 1.0, keys = steps * P + steps * (steps + 1.0) / 2.0; // sum of P + j
    const double decode = (double)B * K * (steps * (2.0 * lp + head) + att * keys);
    return prefill + decode;
}

// ---- memory traffic ------------------------------------------------------------------------
//
// A lower bound on the HBM bytes of a run, for the bandwidth roof. Every forward pass (the
// prefill, then each of the T-1 decode steps, whatever its number of rows) reads every bf16
// weight it multiplies by once: 2 * (P_layers + V * C) bytes (the head's [V, C] matrix is the
// embedding when tied; the embedding lookup itself reads B*K rows, not counted). The KV cache
// holds kv = L * 2 * Hkv * D * 2 bytes per position (bf16 keys and values): the prefill writes
// the B * P prompt positions once (the K candidates of a prompt share them, as
// sampler_generate keeps them), and decode step j reads the B prompts' positions and each
// candidate's own j positions: kv * (B * P + B * K * j). Not counted: the [B*K, V] logits (a
// fused head-and-draw keeps them on chip), the activations, the token ids and draws.
// The bandwidth roof is then B*K*T generated tokens / (bytes / HBM bandwidth): with B*K slots
// per step, the weights are read once for all of them.
static double run_bytes(const Model *m, int B, int P, int K, int T) {
    const ModelConfig *c = &m->cfg;
    const double weights = 2.0 * (bench_layer_params(m) + (double)c->vocab_size * c->hidden_size);
    const double kv = (double)c->num_layers * 2.0 * c->num_kv_heads * c->head_dim * 2.0;
    const double steps = T - 1.0;
    const double prefill = weights + kv * B * P;
    const double decode = steps * weights + kv * (steps * B * P + B * (double)K * steps * T / 2.0);
    return prefill + decode;
}

// ---- the runs ------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Sorts v and returns its median.
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    Model *m;
    GenerateRequest *req;
    SamplingConfig *sc;
    int B;
    const int *const *prompts;
    const int *lens;
    const uint64_t *keys;
    Candidate *out;
} Job;

// One sampler_generate call with max_new_tokens T and the entropies on or off; returns its
// seconds (the device idle at both clock readings), or -1 with the error recorded. Checks that
// every candidate got exactly T tokens; *mean_entropy is their mean raw entropy (0 without).
static double generate_once(const Job *j, int T, int skip_entropy, double *mean_entropy) {
    j->sc->max_new_tokens = T;
    j->req->skip_entropy = skip_entropy;
    const double t0 = bench_cuda_clock(j->m->gpu);
    if (sampler_generate(j->m, j->req, j->B, j->prompts, j->lens, j->keys, j->out) != 0)
        return -1.0;
    const double dt = bench_cuda_clock(j->m->gpu) - t0;
    double h = 0.0;
    const int n = j->B * j->sc->k;
    for (int i = 0; i < n; i++) {
        if (j->out[i].n != T) {
            gemc_set_error("candidate %d has %d tokens, not %d (it stopped early)", i, j->out[i].n,
                           T);
            return -1.0;
        }
        for (int t = 0; t < T; t++) h += j->out[i].entropy_raw[t];
        candidate_free(&j->out[i]);
    }
    if (mean_entropy) *mean_entropy = h / ((double)n * T);
    return dt;
}

// The warm-ups (one call of each kind: a first call of a shape may allocate and tune for it),
// then `runs` repetitions of prefill, full and no-ent, printing each; their seconds go to pre,
// full and noent, the mean raw entropies of the last full and no-ent calls to *h and *h0.
// Returns 0, or -1 with the error recorded.
static int timed_runs(const Job *j, int T, int runs, double *pre, double *full, double *noent,
                      double *h, double *h0) {
    const long gen = (long)j->B * j->sc->k * T;
    double w = generate_once(j, T, 0, h);
    if (w < 0) return -1;
    printf("warm-up with entropies: %.1f ms, mean raw entropy %.4f nats\n", 1e3 * w, *h);
    w = generate_once(j, T, 1, h0);
    if (w < 0) return -1;
    printf("warm-up without entropies: %.1f ms, mean raw entropy %.4f (left 0)\n", 1e3 * w, *h0);
    if (generate_once(j, 1, 0, NULL) < 0) return -1;
    fflush(stdout);
    for (int r = 0; r < runs; r++) {
        if ((pre[r] = generate_once(j, 1, 0, NULL)) < 0) return -1;
        if ((full[r] = generate_once(j, T, 0, h)) < 0) return -1;
        if ((noent[r] = generate_once(j, T, 1, h0)) < 0) return -1;
        printf("run %d/%d: %.1f ms (prefill %.1f, decode %.3f ms/step), %.1f tokens/s, mean raw "
               "entropy %.4f nats; without entropies %.1f ms, %.1f tokens/s\n",
               r + 1, runs, 1e3 * full[r], 1e3 * pre[r], 1e3 * (full[r] - pre[r]) / (T - 1),
               gen / full[r], *h, 1e3 * noent[r], gen / noent[r]);
        fflush(stdout);
    }
    return 0;
}

static int run_sample(const char *config, int B, int P, int K, int T, int runs, int device,
                      float peak_opt, float gbs_opt, int seed) {
    const int ndev = bench_cuda_devices("bench_cuda_sample");
    if (ndev == 0) return 0;
    ModelConfig cfg;
    if (model_config_load(config, &cfg) != 0) return -1;
    if (B < 1 || P < 1 || K < 1 || T < 2 || runs < 1) {
        gemc_set_error("need --prompts >= 1, --prompt-len >= 1, --k >= 1, --new-tokens >= 2, "
                       "--runs >= 1 (got %d, %d, %d, %d, %d)",
                       B, P, K, T, runs);
        return -1;
    }
    if ((long)P + T > cfg.max_position_embeddings) {
        gemc_set_error("--prompt-len + --new-tokens = %ld exceeds the model's context of %d "
                       "positions",
                       (long)P + T, cfg.max_position_embeddings);
        return -1;
    }
    BenchCard card;
    if (bench_cuda_card(&card, device, ndev, peak_opt, gbs_opt) != 0) return -1;
    const double peak = card.peak_tflops, bw = card.peak_gbs;

    Model m;
    if (bench_cuda_model(&m, &cfg, device, seed) != 0) return -1;
    int *tokens = mallocCheck(sizeof(int) * (size_t)B * P);
    const int **prompts = mallocCheck(sizeof(int *) * (size_t)B);
    int *lens = mallocCheck(sizeof(int) * (size_t)B);
    uint64_t *keys = mallocCheck(sizeof(uint64_t) * (size_t)B);
    Candidate *out = mallocCheck(sizeof(Candidate) * (size_t)B * K);
    bench_random_tokens(tokens, (long)B * P, cfg.vocab_size, (uint64_t)seed + 1);
    for (int b = 0; b < B; b++) prompts[b] = tokens + (size_t)b * P, lens[b] = P, keys[b] = b;

    SamplingConfig sc;
    memset(&sc, 0, sizeof sc);
    sc.k = K;
    sc.temperature = 1.0f;
    sc.top_p = 1.0f;
    sc.top_k = 0;
    sc.max_new_tokens = T;
    // n_eos = 0: no stop ids, so every candidate runs to max_new_tokens. draw_vocab 0: every id
    // may be drawn.
    GenerateRequest req = {.sc = &sc,
                           .eos_ids = NULL,
                           .n_eos = 0,
                           .seed = (uint64_t)seed + 2,
                           .policy_version = 0,
                           .draw_vocab = 0,
                           .progress = NULL,
                           .progress_ctx = NULL,
                           .skip_entropy = 0};
    const Job job = {&m, &req, &sc, B, (const int *const *)prompts, lens, keys, out};

    const double flops = run_flops(&m, B, P, K, T);
    const double bytes = run_bytes(&m, B, P, K, T);
    const long gen = (long)B * K * T;
    bench_print_model(card.name, config, &cfg);
    printf("gemc: %.2fM parameters (%.2fM non-embedding), %d prompts x %d tokens, k %d, %d new "
           "tokens = %ld generated, %.2f TFLOP and %.1f GB (lower bound) per run, 1 warm-up of "
           "each call + %d timed runs\n",
           m.layout.total / 1e6, bench_layer_params(&m) / 1e6, B, P, K, T, gen, flops / 1e12,
           bytes / 1e9, runs);
    fflush(stdout);

    double *pre = mallocCheck(sizeof(double) * (size_t)runs);
    double *full = mallocCheck(sizeof(double) * (size_t)runs);
    double *noent = mallocCheck(sizeof(double) * (size_t)runs);
    double h = 0.0, h0 = 0.0;
    if (timed_runs(&job, T, runs, pre, full, noent, &h, &h0) != 0) {
        free(pre), free(full), free(noent);
        free(tokens), free(prompts), free(lens), free(keys), free(out);
        model_free(&m);
        return -1;
    }
    const double t_full = median(full, runs), t_pre = median(pre, runs);
    const double t_noent = median(noent, runs);
    const double best = full[0], worst = full[runs - 1]; // sorted by median()
    const double step = (t_full - t_pre) / (T - 1), step_noent = (t_noent - t_pre) / (T - 1);
    const double tok_s = gen / t_full, tok_s_noent = gen / t_noent;
    const double overhead = (t_full - t_noent) / t_noent;
    const double tflops = flops / t_full / 1e12;
    printf("gemc: %.1f tokens/s with entropies, %.1f ms per run (prefill %.1f, decode %.3f "
           "ms/step x %d), best run %.1f ms\n",
           tok_s, 1e3 * t_full, 1e3 * t_pre, 1e3 * step, T - 1, 1e3 * best);
    printf("gemc: %.1f tokens/s without entropies, %.1f ms per run (decode %.3f ms/step); "
           "entropy overhead %+.2f%%\n",
           tok_s_noent, 1e3 * t_noent, 1e3 * step_noent, 100.0 * overhead);

    // the two roofs: the run's FLOPs at the peak, its bytes at the bandwidth
    const double roof_c = peak > 0 ? gen / (flops / (peak * 1e12)) : NAN;
    const double roof_m = bw > 0 ? gen / (bytes / (bw * 1e9)) : NAN;
    double roof;
    const char *bound = bench_roof_bound(peak, bw, roof_c, roof_m, &roof);
    if (peak > 0)
        printf("gemc: %.1f TFLOP/s achieved, %.1f%% of the %.1f TFLOP/s bf16 dense peak (%s)\n",
               tflops, 100.0 * tflops / peak, peak, card.peak_src);
    else
        printf("gemc: %.1f TFLOP/s achieved (--peak-tflops F or BENCH_PEAK_TFLOPS for the %% of "
               "peak)\n",
               tflops);
    if (peak > 0 || bw > 0)
        printf("roofline: compute-bound %.0f tokens/s (%.1f TFLOP/s / %.3f GFLOP per generated "
               "token), bandwidth-bound %.0f tokens/s (%.0f GB/s (%s) / %.3f MB per generated "
               "token, %d slots per decode step); %s-bound: achieved %.1f%% of %.0f tokens/s\n",
               roof_c, peak, flops / gen / 1e9, roof_m, bw, card.gbs_src, bytes / gen / 1e6, B * K,
               bound, 100.0 * tok_s / roof, roof);
    printf("RESULT impl=gemc tokens_per_s=%.3f tokens_per_s_noent=%.3f entropy_overhead=%.5f "
           "run_ms=%.4f run_ms_noent=%.4f prefill_ms=%.4f step_ms=%.5f step_ms_noent=%.5f "
           "tflops=%.4f pct_peak=%.4f peak_tflops=%.3f peak_gbs=%.3f flops_per_token=%.0f "
           "bytes_per_token=%.0f roof_compute_tokens_per_s=%.3f roof_mem_tokens_per_s=%.3f "
           "roof_bound=%s pct_roof=%.4f params=%zu entropy=%.6f entropy_noent=%.6f "
           "min_tokens_per_s=%.3f max_tokens_per_s=%.3f runs=%d\n",
           tok_s, tok_s_noent, overhead, 1e3 * t_full, 1e3 * t_noent, 1e3 * t_pre, 1e3 * step,
           1e3 * step_noent, tflops, peak > 0 ? 100.0 * tflops / peak : NAN, peak, bw, flops / gen,
           bytes / gen, roof_c, roof_m, bound, 100.0 * tok_s / roof, m.layout.total, h, h0,
           gen / worst, gen / best, runs);
    free(pre), free(full), free(noent);
    free(tokens), free(prompts), free(lens), free(keys), free(out);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    const char *config = "tools/bench/qwen2.5-0.5b.json";
    int prompts = 32, plen = 128, k = 8, new_tokens = 256, runs = 3, device = 0, seed = 1234;
    float peak = 0.0f, gbs = 0.0f;
    const CliOpt opts[] = {
        {"config", OPT_STR, &config, "FILE",
         "model config.json (default tools/bench/qwen2.5-0.5b.json)", 0},
        {"prompts", OPT_INT, &prompts, "B", "prompts (default 32)", 0},
        {"k", OPT_INT, &k, "K", "candidates per prompt (default 8)", 0},
        {"prompt-len", OPT_INT, &plen, "P", "tokens per prompt (default 128)", 0},
        {"new-tokens", OPT_INT, &new_tokens, "T", "new tokens per candidate (default 256)", 0},
        {"runs", OPT_INT, &runs, "R", "timed runs after the warm-ups (default 3)", 0},
        {"peak-tflops", OPT_FLOAT, &peak, "F",
         "the card's bf16 dense peak TFLOP/s (default: $BENCH_PEAK_TFLOPS)", 0},
        {"peak-gbs", OPT_FLOAT, &gbs, "G",
         "the card's HBM bandwidth in GB/s (default: $BENCH_PEAK_GBS)", 0},
        {"device", OPT_INT, &device, "N", "CUDA device (default 0)", 0},
        {"seed", OPT_INT, &seed, "N", "seed of the weights, prompts and draws (default 1234)", 0},
        {0},
    };
    const CliCommand cmd = {
        "bench_cuda_sample",
        "GPU sampling throughput of gemc's sampler_generate (generated tokens/s with and without\n"
        "the entropies, prefill ms, decode ms/step, TFLOP/s, roofline) on random weights.",
        "examples:\n"
        "  build/bench_cuda_sample --prompts 32 --k 8 --prompt-len 128 --new-tokens 256 \\\n"
        "      --peak-tflops 989.4 --peak-gbs 3350",
        opts,
        "bench_cuda_sample",
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : bench_fail("bench_cuda_sample");
    if (run_sample(config, prompts, plen, k, new_tokens, runs, device, peak, gbs, seed) != 0)
        return bench_fail("bench_cuda_sample");
    return 0;
}
