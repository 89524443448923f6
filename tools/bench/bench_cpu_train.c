// CPU training-throughput benchmark of gemc, and the roofline of the machine it runs on.
//
//   bench_cpu_train --config FILE [--batch B] [--seq T] [--steps S] [--warmup W] [--peak G]
//   bench_cpu_train --roofline [--gemm-n N] [--stream-mb M]
//   bench_cpu_train --gemm-shapes
//
// Training mode builds a model from a config.json with random weights (model_init_random),
// makes a packed batch of B sequences of T random token ids (fixed seed), and times W warm-up
// then S measured steps of: zero_grad, forward, backward, clip the global gradient norm to 1,
// AdamW. The loss is the mean next-token cross-entropy over the B*(T-1) predicted positions.
// It prints tokens/s, ms/step split into forward / backward / optimizer (zero_grad + clip +
// AdamW), achieved GFLOP/s and the MFU against the measured sgemm peak (--peak G, else it
// measures the peak itself first).
//
// Roofline mode measures the peak fp32 GFLOP/s of one large cblas_sgemm (N^3, best of a few
// runs, OpenBLAS's own thread pool over all cores) and the memory bandwidth of a STREAM-triad
// loop (a[i] = b[i] + s * c[i], OpenMP over all cores) on arrays much larger than the caches.
//
// GEMM mode times, on the shapes the models use (training, the LM head, decode rows), gemc's
// own GEMM (src/model/cpu/gemm.h) in each kernel family the CPU has, next to one cblas_sgemm call
// with OpenBLAS's kernels (OPENBLAS_CORETYPE): what the fixed per-element order costs.
//
// The last line of the first two modes is "RESULT key=value ...", which tools/bench/run_cpu.sh
// reads.
// This is a benchmark: nothing here asserts a time.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/common.h"
#include "model/cpu/gemm.h"
#include "model/model.h"
#include "base/rng.h"

// ---- model FLOPs ---------------------------------------------------------------------------
//
// The PaLM / llm.c count of model FLOPs per trained token (what MFU is measured against):
//   6 * P_matmul                every weight is used in one multiply-add (2 FLOPs) in the
//                               forward and two in the backward (input and weight gradients);
//                               P_matmul = the non-embedding parameters plus the head's V*C
//                               (the head is a [V, C] matmul whether tied or not; the token
//                               embedding is a lookup, no FLOPs). Norm weights and biases are
//                               counted in P_matmul too (negligible: PaLM counts all
//                               non-embedding parameters).
//   + 6 * L * T * Hq * D        attention: per layer and query token, the scores q.k and the
//                               weighted sum p.v are 2 * T * D FLOPs each per head over all T
//                               keys, i.e. 4 * T * Hq * D forward and 12 * T * Hq * D forward +
//                               backward; causal attention sees T/2 keys on average, halving it
//                               to 12 * L * T * Hq * D / 2. (With a sliding window W < T the keys
//                               seen are about W instead of T/2; not modelled here.)
// Not counted, as usual: softmax, norms, rope, SwiGLU, the loss, the optimizer, and gemc's
// recomputation of the head's logits in the backward (2 * V * C more per token: gemc never
// holds the [N, V] logits, it recomputes them in chunks of 512 rows).
static double matmul_params(const Model *m) {
    const ParamLayout *lay = &m->layout;
    const double head = (double)m->cfg.vocab_size * m->cfg.hidden_size;
    return (double)lay->total - (double)lay->p[P_WTE].size - (double)lay->p[P_LM_HEAD].size + head;
}

static double flops_per_token(const Model *m, int T) {
    const ModelConfig *c = &m->cfg;
    const double attn = 12.0 * c->num_layers * (double)T * c->num_heads * c->head_dim / 2.0;
    return 6.0 * matmul_params(m) + attn;
}

// ---- roofline ------------------------------------------------------------------------------

static float *alloc_floats(size_t n) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, n * sizeof(float)) != 0 || !p)
        gemc_fatal("out of memory allocating %zu floats", n);
    return p;
}

// Best GFLOP/s of C = A B with N x N fp32 matrices over `reps` runs (after one warm-up run).
static double sgemm_peak(int n, int reps) {
    const size_t nn = (size_t)n * n;
    float *a = alloc_floats(nn), *b = alloc_floats(nn), *c = alloc_floats(nn);
    Rng rng;
    rng_seed(&rng, 1);
    for (size_t i = 0; i < nn; i++) a[i] = rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < nn; i++) b[i] = rng_uniform(&rng) - 0.5f;
    memset(c, 0, nn * sizeof(float));
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        const double dt = now_seconds() - t0;
        if (r > 0 && dt < best) best = dt; // run 0 warms up (thread pool, page faults)
    }
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}

// Best GB/s of the STREAM triad a[i] = b[i] + s c[i] over three arrays of n floats each,
// counting 12 bytes per element (two loads and one store, as STREAM does: the write-allocate
// read of a[] is not counted).
static double stream_triad(size_t n, int reps) {
    float *a = alloc_floats(n), *b = alloc_floats(n), *c = alloc_floats(n);
    // first touch by the threads that use the pages
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    const float s = 3.0f;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now_seconds();
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        const double dt = now_seconds() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    // keep the stores observable
    volatile float sink = a[n / 2] + a[n - 1];
    (void)sink;
    free(a), free(b), free(c);
    return 12.0 * (double)n / best / 1e9;
}

// ---- training ------------------------------------------------------------------------------

typedef struct {
    double fwd, bwd, opt; // seconds summed over the timed steps
} StepTimes;

static void train_step(Model *m, const PackedBatch *batch, float *logprobs, const float *dlogprobs,
                       const AdamWConfig *opt, StepTimes *acc, double *loss, float *norm) {
    double t0 = now_seconds();
    model_zero_grad(m);
    double t1 = now_seconds();
    model_forward(m, batch, logprobs, NULL);
    double t2 = now_seconds();
    double sum = 0.0;
    for (int i = 0; i < batch->N; i++) sum += (double)dlogprobs[i] * logprobs[i];
    *loss = sum; // dlogprobs = -1/(predicted positions), 0 at sequence ends: the mean CE
    model_backward(m, batch, dlogprobs);
    double t3 = now_seconds();
    *norm = model_clip_grad_norm(m, 1.0f);
    model_adamw_step(m, opt);
    double t4 = now_seconds();
    if (acc) {
        acc->fwd += t2 - t1;
        acc->bwd += t3 - t2;
        acc->opt += (t1 - t0) + (t4 - t3);
    }
}

static int run_train(const char *config, int B, int T, int steps, int warmup, float peak, float lr,
                     int seed) {
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
    if (peak <= 0.0f) {
        printf("measuring the sgemm peak (--peak G skips this)...\n");
        fflush(stdout);
        peak = (float)sgemm_peak(4096, 3);
    }

    Model m;
    model_init(&m, &cfg);
    model_init_random(&m, (uint64_t)seed);
    const int N = B * T;
    int *tokens = mallocCheck(sizeof(int) * (size_t)N);
    int *offsets = mallocCheck(sizeof(int) * (size_t)(B + 1));
    float *logprobs = mallocCheck(sizeof(float) * (size_t)N);
    float *dlogprobs = mallocCheck(sizeof(float) * (size_t)N);
    Rng rng;
    rng_seed(&rng, (uint64_t)seed + 1);
    for (int i = 0; i < N; i++) tokens[i] = (int)(rng_u64(&rng) % (uint64_t)cfg.vocab_size);
    for (int b = 0; b <= B; b++) offsets[b] = b * T;
    const float w = -1.0f / (float)(B * (T - 1)); // loss = -mean logprob of the predictions
    for (int i = 0; i < N; i++) dlogprobs[i] = (i % T == T - 1) ? 0.0f : w;
    PackedBatch batch = {.B = B, .N = N, .tokens = tokens, .offsets = offsets};
    AdamWConfig opt = {
        .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};

    const double fpt = flops_per_token(&m, T);
    printf("gemc: %s (%s), %d layers, hidden %d, intermediate %d, heads %d/%d x %d, vocab %d, "
           "%s head\n",
           config, cfg.model_type, cfg.num_layers, cfg.hidden_size, cfg.intermediate_size,
           cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size,
           cfg.tie_word_embeddings ? "tied" : "untied");
    printf("gemc: %.2fM parameters (%.2fM in matmuls incl. the head), %.3f GFLOP per token, "
           "batch %d x %d = %d tokens, %d warm-up + %d timed steps, %d OpenMP threads, GEMM "
           "kernels %s\n",
           m.layout.total / 1e6, matmul_params(&m) / 1e6, fpt / 1e9, B, T, N, warmup, steps,
           omp_get_max_threads(), gemm_isa_name(gemm_isa()));
    fflush(stdout);

    double loss = 0.0;
    float norm = 0.0f;
    for (int s = 0; s < warmup; s++) {
        const double t0 = now_seconds();
        train_step(&m, &batch, logprobs, dlogprobs, &opt, NULL, &loss, &norm);
        printf("warm-up %d/%d: loss %.4f, grad norm %.3f, %.1f ms\n", s + 1, warmup, loss, norm,
               1e3 * (now_seconds() - t0));
        fflush(stdout);
    }
    StepTimes acc = {0, 0, 0};
    double best_step = 1e30;
    for (int s = 0; s < steps; s++) {
        StepTimes one = {0, 0, 0};
        train_step(&m, &batch, logprobs, dlogprobs, &opt, &one, &loss, &norm);
        const double st = one.fwd + one.bwd + one.opt;
        if (st < best_step) best_step = st;
        acc.fwd += one.fwd, acc.bwd += one.bwd, acc.opt += one.opt;
        printf("step %d/%d: loss %.4f, grad norm %.3f, %.1f ms (fwd %.1f, bwd %.1f, opt %.1f)\n",
               s + 1, steps, loss, norm, 1e3 * st, 1e3 * one.fwd, 1e3 * one.bwd, 1e3 * one.opt);
        fflush(stdout);
    }
    const double step_s = (acc.fwd + acc.bwd + acc.opt) / steps;
    const double tok_s = N / step_s;
    const double gflops = tok_s * fpt / 1e9;
    printf("gemc: %.1f tokens/s, %.1f ms/step (forward %.1f, backward %.1f, optimizer %.1f), "
           "best step %.1f ms\n",
           tok_s, 1e3 * step_s, 1e3 * acc.fwd / steps, 1e3 * acc.bwd / steps, 1e3 * acc.opt / steps,
           1e3 * best_step);
    printf("gemc: %.2f GFLOP/s achieved, MFU %.1f%% of the %.1f GFLOP/s sgemm peak\n", gflops,
           100.0 * gflops / peak, peak);
    printf(
        "RESULT impl=gemc tokens_per_s=%.3f step_ms=%.3f fwd_ms=%.3f bwd_ms=%.3f opt_ms=%.3f "
        "gflops=%.3f mfu=%.4f peak_gflops=%.3f flops_per_token=%.0f params=%zu loss=%.6f isa=%s\n",
        tok_s, 1e3 * step_s, 1e3 * acc.fwd / steps, 1e3 * acc.bwd / steps, 1e3 * acc.opt / steps,
        gflops, gflops / peak, peak, fpt, m.layout.total, loss, gemm_isa_name(gemm_isa()));
    free(tokens), free(offsets), free(logprobs), free(dlogprobs);
    model_free(&m);
    return 0;
}

static int run_roofline(int n, int stream_mb) {
    if (n < 64 || stream_mb < 1) {
        gemc_set_error("need --gemm-n >= 64 and --stream-mb >= 1 (got %d, %d)", n, stream_mb);
        return -1;
    }
    printf("roofline: %s (core %s), %d OpenBLAS threads, %d OpenMP threads, gemc GEMM kernels "
           "%s\n",
           openblas_get_config(), openblas_get_corename(), openblas_get_num_threads(),
           omp_get_max_threads(), gemm_isa_name(gemm_isa()));
    fflush(stdout);
    const double peak = sgemm_peak(n, 3);
    printf("roofline: sgemm %d^3: %.1f GFLOP/s (best of 3)\n", n, peak);
    fflush(stdout);
    const size_t elems = (size_t)stream_mb * 1024 * 1024 / sizeof(float);
    const double bw = stream_triad(elems, 10);
    printf("roofline: STREAM triad over 3 x %d MiB: %.1f GB/s (best of 10)\n", stream_mb, bw);
    printf("roofline: ridge point %.1f FLOP/byte\n", peak / bw);
    printf("RESULT impl=roofline peak_gflops=%.3f bw_gbs=%.3f gemm_n=%d stream_mb=%d "
           "omp_threads=%d blas_threads=%d\n",
           peak, bw, n, stream_mb, omp_get_max_threads(), openblas_get_num_threads());
    return 0;
}

// ---- GEMM shapes -----------------------------------------------------------------------------

typedef struct {
    const char *what;
    int M, N, K, trans_a, trans_b;
} GemmShape;

// Best seconds of `reps` runs (after a warm-up) of one GEMM; isa < 0: OpenBLAS's sgemm.
static double time_gemm(const GemmShape *g, int isa, const float *A, const float *B, float *C,
                        int reps) {
    const int lda = g->trans_a ? g->M : g->K, ldb = g->trans_b ? g->K : g->N;
    if (isa >= 0) gemm_set_isa((GemmIsa)isa);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now_seconds();
        if (isa >= 0)
            gemm_f32(g->trans_a, g->trans_b, g->M, g->N, g->K, A, lda, B, ldb, 0, C, g->N);
        else
            cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                        g->trans_b ? CblasTrans : CblasNoTrans, g->M, g->N, g->K, 1.0f, A, lda, B,
                        ldb, 0.0f, C, g->N);
        const double dt = now_seconds() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    return best;
}

static int run_gemm_shapes(void) {
    static const GemmShape shapes[] = {
        {"tiny: q/o forward, 2048 tokens", 2048, 128, 128, 0, 1},
        {"tiny: gate/up forward", 2048, 352, 128, 0, 1},
        {"tiny: down weight gradient", 128, 352, 2048, 1, 0},
        {"qwen: gate/up forward, 512 tokens", 512, 4864, 896, 0, 1},
        {"qwen: down input gradient", 512, 896, 4864, 0, 0},
        {"qwen: gate weight gradient", 4864, 896, 512, 1, 0},
        {"qwen: LM head, 512 rows", 512, 151936, 896, 0, 1},
        {"qwen: gate/up decode, 8 rows", 8, 4864, 896, 0, 1},
        {"square 2048", 2048, 2048, 2048, 0, 0},
    };
    const GemmIsa def = gemm_isa();
    printf("gemm: gemc's GEMM (each kernel family this CPU runs) against one cblas_sgemm call of "
           "%s (core %s); %d OpenMP / %d OpenBLAS threads; GFLOP/s, best of 3\n\n",
           openblas_get_config(), openblas_get_corename(), omp_get_max_threads(),
           openblas_get_num_threads());
    printf("| shape | M x N x K | gemc scalar | gemc avx2 | gemc avx512 | OpenBLAS %s |\n",
           openblas_get_corename());
    printf("|---|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const GemmShape *g = &shapes[i];
        const size_t na = (size_t)g->M * g->K, nb = (size_t)g->K * g->N, nc = (size_t)g->M * g->N;
        float *A = alloc_floats(na), *B = alloc_floats(nb), *C = alloc_floats(nc);
        Rng rng;
        rng_seed(&rng, 3);
        for (size_t j = 0; j < na; j++) A[j] = rng_uniform(&rng) - 0.5f;
        for (size_t j = 0; j < nb; j++) B[j] = rng_uniform(&rng) - 0.5f;
        const double flops = 2.0 * g->M * (double)g->N * g->K;
        printf("| %s | %d x %d x %d", g->what, g->M, g->N, g->K);
        for (int isa = GEMM_ISA_SCALAR; isa <= GEMM_ISA_AVX512; isa++) {
            // the scalar kernels are the definition, not a path to time on large shapes
            if (gemm_set_isa((GemmIsa)isa) != 0 || (isa == GEMM_ISA_SCALAR && flops > 2e10))
                printf(" | -");
            else
                printf(" | %.1f", flops / time_gemm(g, isa, A, B, C, 3) / 1e9);
            fflush(stdout);
        }
        printf(" | %.1f |\n", flops / time_gemm(g, -1, A, B, C, 3) / 1e9);
        fflush(stdout);
        free(A), free(B), free(C);
    }
    gemm_set_isa(def);
    return 0;
}

int main(int argc, char **argv) {
    const char *config = NULL;
    int batch = 8, seq = 256, steps = 5, warmup = 1, seed = 1234, roofline = 0, gemm_shapes = 0;
    int gemm_n = 4096, stream_mb = 512;
    float peak = 0.0f, lr = 1e-4f;
    const CliOpt opts[] = {
        {"config", OPT_STR, &config, "FILE", "model config.json (training mode)", 0},
        {"batch", OPT_INT, &batch, "B", "sequences per batch (default 8)", 0},
        {"seq", OPT_INT, &seq, "T", "tokens per sequence (default 256)", 0},
        {"steps", OPT_INT, &steps, "S", "timed steps (default 5)", 0},
        {"warmup", OPT_INT, &warmup, "W", "warm-up steps before timing (default 1)", 0},
        {"peak", OPT_FLOAT, &peak, "G", "sgemm peak GFLOP/s for the MFU (default: measure)", 0},
        {"lr", OPT_FLOAT, &lr, "F", "AdamW learning rate (default 1e-4)", 0},
        {"seed", OPT_INT, &seed, "N", "seed of the weights and token ids (default 1234)", 0},
        {"roofline", OPT_FLAG, &roofline, NULL, "measure sgemm peak and memory bandwidth only", 0},
        {"gemm-n", OPT_INT, &gemm_n, "N", "roofline sgemm size N^3 (default 4096)", 0},
        {"stream-mb", OPT_INT, &stream_mb, "M", "roofline: MiB per triad array (default 512)", 0},
        {"gemm-shapes", OPT_FLAG, &gemm_shapes, NULL,
         "time gemc's GEMM per kernel family against OpenBLAS on the models' shapes", 0},
        {0},
    };
    const CliCommand cmd = {
        "bench_cpu_train",
        "CPU training throughput of gemc (tokens/s, ms/step, GFLOP/s, MFU), or the machine's\n"
        "roofline (sgemm peak GFLOP/s, STREAM-triad GB/s) with --roofline.",
        "examples:\n"
        "  build/bench_cpu_train --config configs/models/tiny-llama.json --batch 8 --seq 256\n"
        "  build/bench_cpu_train --roofline\n"
        "  build/bench_cpu_train --gemm-shapes",
        opts,
        "bench_cpu_train",
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) {
        if (rc > 0) return 0;
        fprintf(stderr, "bench_cpu_train: error: %s\n", gemc_error());
        return 1;
    }
    if (roofline)
        rc = run_roofline(gemm_n, stream_mb);
    else if (gemm_shapes)
        rc = run_gemm_shapes();
    else if (!config) {
        gemc_set_error("--config FILE is required without --roofline (see --help)");
        rc = -1;
    } else
        rc = run_train(config, batch, seq, steps, warmup, peak, lr, seed);
    if (rc) {
        fprintf(stderr, "bench_cpu_train: error: %s\n", gemc_error());
        return 1;
    }
    return 0;
}
