// CUDA training-throughput benchmark of gemc: the learner's step on the GPU, against the card's
// roofline.
//
//   bench_cuda_train [--config FILE] [--batch B] [--seq T] [--steps S] [--warmup W]
//                    [--peak-tflops F] [--peak-gbs G] [--device N] [--lr F] [--seed N]
//
// Builds a model from a config.json with random weights (model_init_random), moves it to the
// GPU (model_to_gpu: bf16 weights, fp32 master weights, gradients and AdamW moments on the
// device), makes a packed batch of B sequences of T random token ids (fixed seed), and times W
// warm-up then S measured steps of what a SEGA update does (gpu.h):
//   gpu_model_zero_grad, gpu_model_forward (log-probs to the host), gpu_model_backward with
//   dlogprobs = -1 at every predicted position (the loss is minus the sum of the token
//   log-probs, i.e. the summed cross-entropy; 0 at each sequence's last position, which
//   predicts nothing), gpu_model_clip_grad_norm(1.0), gpu_model_adamw_step.
// The device is synchronised before every reading of the clock (CLOCK_MONOTONIC), so each phase
// is the device time of its work: forward, backward, optimizer (zero_grad + clip + AdamW).
//
// Printed: tokens/s = B*T / mean step time, ms/step by phase, achieved model TFLOP/s and MFU,
// and the roofline of the step (see below), against the card's bf16 dense peak and HBM bandwidth
// given by --peak-tflops / --peak-gbs (tools/bench/run_cuda.sh reads them off the card's name),
// else by the environment's BENCH_PEAK_TFLOPS / BENCH_PEAK_GBS; without either nothing is
// printed against a peak. On a machine without a usable CUDA device (or a gemc built without
// nvcc) it prints one line saying so and exits 0.
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
// The PaLM / llm.c count of model FLOPs per trained token, as bench_cpu_train.c (its comment has
// the details):
//   6 * P_nonembedding     every non-embedding weight in one multiply-add forward, two backward
//   + 6 * V * C            the head, a [V, C] matmul whether tied or not
//   + 12 * L * T * Hq * D / 2
//                          causal attention forward + backward: per sequence 12 * L * T^2/2 *
//                          Hq * D (the scores q.k and the weighted sum p.v, T/2 keys on average)
// Not counted: softmax, norms, rope, SwiGLU, the loss, the optimizer, and any recomputation.
// MFU = (FLOPs per token * tokens/s) / the bf16 dense peak.
static double matmul_params(const Model *m) {
    const double head = (double)m->cfg.vocab_size * m->cfg.hidden_size;
    return bench_layer_params(m) + head;
}

static double flops_per_token(const Model *m, int T) {
    const ModelConfig *c = &m->cfg;
    const double attn = 12.0 * c->num_layers * (double)T * c->num_heads * c->head_dim / 2.0;
    return 6.0 * matmul_params(m) + attn;
}

// ---- memory traffic ------------------------------------------------------------------------
//
// A lower bound on the HBM bytes one step moves, for the bandwidth roof. Per parameter (P in
// all, the tied embedding once), with bf16 compute weights and fp32 master weights, gradients
// and moments:
//   2 + 2     the bf16 weights read by the forward and again by the backward
//   4 + 4     the fp32 gradient written (once: zeroing fused into the first write) and read by
//             the norm of the clip (its scale can be fused into AdamW)
//   16 + 14   AdamW reads master, gradient, m, v and writes master, m, v and the bf16 copy
// = 42 bytes per parameter. Per token and layer, the activations the backward needs, written
// once by the forward and read once by the backward in bf16 (2 + 2 bytes each):
//   x, ln1(x), q k v, the attention output, x after attention, ln2, gate, up, silu(gate)*up
//   = 3C + (Hq + 2 Hkv) D + Hq D + 3I elements.
// Not counted: the head's [N, V] logits (an implementation can keep them on chip in row
// windows), the attention's softmax statistics, norms' rstd, the embedding gather.
static double activation_elems(const ModelConfig *c) {
    return 3.0 * c->hidden_size + (double)(c->num_heads + 2 * c->num_kv_heads) * c->head_dim +
           (double)c->num_heads * c->head_dim + 3.0 * c->intermediate_size;
}

static double bytes_per_step(const Model *m, long N) {
    const ModelConfig *c = &m->cfg;
    return 42.0 * (double)m->layout.total + (double)N * c->num_layers * 4.0 * activation_elems(c);
}

// ---- training ------------------------------------------------------------------------------

typedef struct {
    double fwd, bwd, opt; // seconds
} StepTimes;

// One step; the device is idle at each clock reading. *loss is the mean cross-entropy over the
// predicted positions (the gradient is that of their sum).
static void train_step(GpuModel *g, const PackedBatch *batch, float *logprobs,
                       const float *dlogprobs, const AdamWConfig *opt, long t, StepTimes *st,
                       double *loss, float *norm) {
    const double t0 = now_seconds(); // the previous step (or model_to_gpu) left the device idle
    gpu_model_zero_grad(g);
    const double t1 = bench_cuda_clock(g);
    gpu_model_forward(g, batch, logprobs, NULL, 1.0f);
    const double t2 = bench_cuda_clock(g);
    gpu_model_backward(g, batch, dlogprobs);
    const double t3 = bench_cuda_clock(g);
    *norm = gpu_model_clip_grad_norm(g, 1.0f);
    gpu_model_adamw_step(g, opt, t);
    const double t4 = bench_cuda_clock(g);
    double sum = 0.0;
    long n = 0;
    for (int i = 0; i < batch->N; i++)
        if (dlogprobs[i] != 0.0f) sum -= logprobs[i], n++;
    *loss = n ? sum / n : 0.0;
    st->fwd = t2 - t1;
    st->bwd = t3 - t2;
    st->opt = (t1 - t0) + (t4 - t3);
}

static int run_train(const char *config, int B, int T, int steps, int warmup, int device,
                     float peak_opt, float gbs_opt, float lr, int seed) {
    const int ndev = bench_cuda_devices("bench_cuda_train");
    if (ndev == 0) return 0;
    ModelConfig cfg;
    if (model_config_load(config, &cfg) != 0) return -1;
    if (B < 1 || T < 2 || steps < 1 || warmup < 0) {
        gemc_set_error("need --batch >= 1, --seq >= 2, --steps >= 1, --warmup >= 0 (got %d, %d, "
                       "%d, %d)",
                       B, T, steps, warmup);
        return -1;
    }
    if ((long)B * T > 1L << 30) {
        gemc_set_error("--batch x --seq = %ld tokens is too many", (long)B * T);
        return -1;
    }
    if (T > cfg.max_position_embeddings) {
        gemc_set_error("--seq %d exceeds the model's context of %d positions", T,
                       cfg.max_position_embeddings);
        return -1;
    }
    BenchCard card;
    if (bench_cuda_card(&card, device, ndev, peak_opt, gbs_opt) != 0) return -1;
    const double peak = card.peak_tflops, bw = card.peak_gbs;

    Model m;
    if (bench_cuda_model(&m, &cfg, device, seed) != 0) return -1;
    GpuModel *g = m.gpu;
    const int N = B * T;
    int *tokens = mallocCheck(sizeof(int) * (size_t)N);
    int *offsets = mallocCheck(sizeof(int) * (size_t)(B + 1));
    float *logprobs = mallocCheck(sizeof(float) * (size_t)N);
    float *dlogprobs = mallocCheck(sizeof(float) * (size_t)N);
    bench_random_tokens(tokens, N, cfg.vocab_size, (uint64_t)seed + 1);
    for (int b = 0; b <= B; b++) offsets[b] = b * T;
    for (int i = 0; i < N; i++) dlogprobs[i] = (i % T == T - 1) ? 0.0f : -1.0f;
    PackedBatch batch = {.B = B, .N = N, .tokens = tokens, .offsets = offsets};
    AdamWConfig opt = {
        .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};

    const double fpt = flops_per_token(&m, T);
    const double bytes = bytes_per_step(&m, N);
    bench_print_model(card.name, config, &cfg);
    printf("gemc: %.2fM parameters (%.2fM in matmuls incl. the head), %.3f GFLOP per token, "
           "%.2f GB moved per step (lower bound), batch %d x %d = %d tokens, %d warm-up + %d "
           "timed steps\n",
           m.layout.total / 1e6, matmul_params(&m) / 1e6, fpt / 1e9, bytes / 1e9, B, T, N, warmup,
           steps);
    fflush(stdout);

    long t = 0; // AdamW steps taken
    double loss = 0.0;
    float norm = 0.0f;
    StepTimes one;
    for (int s = 0; s < warmup; s++) {
        train_step(g, &batch, logprobs, dlogprobs, &opt, ++t, &one, &loss, &norm);
        printf("warm-up %d/%d: loss %.4f, grad norm %.3f, %.2f ms\n", s + 1, warmup, loss, norm,
               1e3 * (one.fwd + one.bwd + one.opt));
        fflush(stdout);
    }
    StepTimes acc = {0, 0, 0};
    double best = 1e30;
    for (int s = 0; s < steps; s++) {
        train_step(g, &batch, logprobs, dlogprobs, &opt, ++t, &one, &loss, &norm);
        const double st = one.fwd + one.bwd + one.opt;
        if (st < best) best = st;
        acc.fwd += one.fwd, acc.bwd += one.bwd, acc.opt += one.opt;
        printf("step %d/%d: loss %.4f, grad norm %.3f, %.2f ms (fwd %.2f, bwd %.2f, opt %.2f)\n",
               s + 1, steps, loss, norm, 1e3 * st, 1e3 * one.fwd, 1e3 * one.bwd, 1e3 * one.opt);
        fflush(stdout);
    }
    if (!isfinite(loss)) fprintf(stderr, "bench_cuda_train: warning: the loss is %g\n", loss);

    const double step_s = (acc.fwd + acc.bwd + acc.opt) / steps;
    const double tok_s = N / step_s;
    const double tflops = tok_s * fpt / 1e12;
    printf("gemc: %.1f tokens/s, %.2f ms/step (forward %.2f, backward %.2f, optimizer %.2f), "
           "best step %.2f ms\n",
           tok_s, 1e3 * step_s, 1e3 * acc.fwd / steps, 1e3 * acc.bwd / steps, 1e3 * acc.opt / steps,
           1e3 * best);
    // the two roofs: the step's FLOPs at the peak, its bytes at the bandwidth
    const double roof_c = peak > 0 ? peak * 1e12 / fpt : NAN;
    const double roof_m = bw > 0 ? N / (bytes / (bw * 1e9)) : NAN;
    const double mfu = peak > 0 ? tflops / peak : NAN;
    double roof;
    const char *bound = bench_roof_bound(peak, bw, roof_c, roof_m, &roof);
    if (peak > 0)
        printf("gemc: %.1f TFLOP/s achieved, MFU %.1f%% of the %.1f TFLOP/s bf16 dense peak "
               "(%s)\n",
               tflops, 100.0 * mfu, peak, card.peak_src);
    else
        printf("gemc: %.1f TFLOP/s achieved (--peak-tflops F or BENCH_PEAK_TFLOPS for the MFU)\n",
               tflops);
    if (peak > 0 || bw > 0)
        printf("roofline: compute-bound %.0f tokens/s (%.1f TFLOP/s / %.3f GFLOP per token), "
               "bandwidth-bound %.0f tokens/s (%.0f GB/s (%s) / %.2f GB per step); %s-bound: "
               "achieved %.1f%% of %.0f tokens/s\n",
               roof_c, peak, fpt / 1e9, roof_m, bw, card.gbs_src, bytes / 1e9, bound,
               100.0 * tok_s / roof, roof);
    printf("RESULT impl=gemc tokens_per_s=%.3f step_ms=%.4f fwd_ms=%.4f bwd_ms=%.4f opt_ms=%.4f "
           "best_step_ms=%.4f tflops=%.4f mfu=%.5f peak_tflops=%.3f peak_gbs=%.3f "
           "flops_per_token=%.0f bytes_per_step=%.0f roof_compute_tokens_per_s=%.3f "
           "roof_mem_tokens_per_s=%.3f roof_bound=%s pct_roof=%.4f params=%zu loss=%.6f\n",
           tok_s, 1e3 * step_s, 1e3 * acc.fwd / steps, 1e3 * acc.bwd / steps, 1e3 * acc.opt / steps,
           1e3 * best, tflops, mfu, peak, bw, fpt, bytes, roof_c, roof_m, bound,
           100.0 * tok_s / roof, m.layout.total, loss);
    free(tokens), free(offsets), free(logprobs), free(dlogprobs);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    const char *config = "tools/bench/qwen2.5-0.5b.json";
    int batch = 4, seq = 1024, steps = 10, warmup = 3, device = 0, seed = 1234;
    float peak = 0.0f, gbs = 0.0f, lr = 1e-4f;
    const CliOpt opts[] = {
        {"config", OPT_STR, &config, "FILE",
         "model config.json (default tools/bench/qwen2.5-0.5b.json)", 0},
        {"batch", OPT_INT, &batch, "B", "sequences per batch (default 4)", 0},
        {"seq", OPT_INT, &seq, "T", "tokens per sequence (default 1024)", 0},
        {"steps", OPT_INT, &steps, "S", "timed steps (default 10)", 0},
        {"warmup", OPT_INT, &warmup, "W", "warm-up steps before timing (default 3)", 0},
        {"peak-tflops", OPT_FLOAT, &peak, "F",
         "the card's bf16 dense peak TFLOP/s (default: $BENCH_PEAK_TFLOPS)", 0},
        {"peak-gbs", OPT_FLOAT, &gbs, "G",
         "the card's HBM bandwidth in GB/s (default: $BENCH_PEAK_GBS)", 0},
        {"device", OPT_INT, &device, "N", "CUDA device (default 0)", 0},
        {"lr", OPT_FLOAT, &lr, "F", "AdamW learning rate (default 1e-4)", 0},
        {"seed", OPT_INT, &seed, "N", "seed of the weights and token ids (default 1234)", 0},
        {0},
    };
    const CliCommand cmd = {
        "bench_cuda_train",
        "GPU training throughput of gemc (tokens/s, ms/step, TFLOP/s, MFU, roofline): forward,\n"
        "backward, gradient clip and AdamW on random weights.",
        "examples:\n"
        "  build/bench_cuda_train --batch 4 --seq 1024 --peak-tflops 989.4 --peak-gbs 3350\n"
        "  BENCH_PEAK_TFLOPS=989.4 build/bench_cuda_train --config "
        "tools/bench/qwen2.5-0.5b-4layers.json",
        opts,
        "bench_cuda_train",
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc > 0 ? 0 : bench_fail("bench_cuda_train");
    if (run_train(config, batch, seq, steps, warmup, device, peak, gbs, lr, seed) != 0)
        return bench_fail("bench_cuda_train");
    return 0;
}
