// The golden run: a small model's forward, three training steps (backward, clipping, AdamW) and
// a sampled generation, hashed, against hashes committed here. Run in every GEMM kernel family
// this CPU has (scalar, AVX2, AVX-512) and with one and two threads: every one must give the
// committed bits. gemc's fp32 path defines each sum as a fixed sequence of IEEE operations
// (src/model/cpu/gemm.h, src/model/cpu/kernels.inc), so this holds on every x86-64 machine with
// AVX2 and FMA, and on the emulated AVX2 path of an AVX-512 machine.
//
// When a change alters the numerics on purpose, the failure prints the new hashes: check that
// the other tests still hold, then put the new values in GOLDEN_* below.
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/gemm.h"
#include "model/model.h"
#include "base/rng.h"
#include "model/sampler.h"
#include "tests.h"

// log-probs and entropies of the first forward; the weights after three AdamW steps; the ids,
// log-probs and entropies of the samples
static const uint64_t GOLDEN_FORWARD = 0x07c36c8492635bdfULL;
static const uint64_t GOLDEN_WEIGHTS = 0x99ae08401c032598ULL;
static const uint64_t GOLDEN_SAMPLES = 0x8eec46ac332cf373ULL;

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV_START 0xcbf29ce484222325ULL

typedef struct {
    uint64_t forward, weights, samples;
} Hashes;

// A Qwen2-shaped model (qkv biases, tied head) whose widths cross the GEMM's tile edges.
static void golden_config(ModelConfig *cfg) {
    test_tiny_config(cfg, MODEL_QWEN2);
    cfg->vocab_size = 100;
    cfg->hidden_size = 64;
    cfg->intermediate_size = 176;
    cfg->num_heads = 4;
    cfg->num_kv_heads = 2;
    cfg->head_dim = 16;
    cfg->max_position_embeddings = 256;
    cfg->initializer_range = 0.05f;
    cfg->eos_token_ids[0] = 2;
}

static Hashes golden_run(void) {
    ModelConfig cfg;
    golden_config(&cfg);
    Model m;
    test_random_model(&m, &cfg, 4242);
    Rng rng;
    rng_seed(&rng, 4243);
    const int offsets[] = {0, 61, 64, 150, 170}, N = 170;
    int tok[170];
    float R[170];
    for (int i = 0; i < N; i++) {
        tok[i] = 3 + (int)(rng_u64(&rng) % (uint64_t)(cfg.vocab_size - 3));
        R[i] = rng_normal(&rng);
    }
    PackedBatch batch = {4, N, tok, offsets, NULL};
    float lp[170], ent[170];
    Hashes h = {FNV_START, FNV_START, FNV_START};
    const AdamWConfig opt = {
        .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    for (int step = 0; step < 3; step++) {
        model_forward(&m, &batch, lp, ent);
        if (step == 0) {
            h.forward = fnv1a(h.forward, lp, sizeof lp);
            h.forward = fnv1a(h.forward, ent, sizeof ent);
        }
        model_zero_grad(&m);
        model_backward(&m, &batch, R);
        model_clip_grad_norm(&m, 1.0f);
        model_adamw_step(&m, &opt);
    }
    h.weights = fnv1a(h.weights, m.params, m.layout.total * sizeof(float));

    // sampling from the trained weights: 3 prompts x 2 candidates, KV-cache decode
    const SamplingConfig sc = {.k = 2, .temperature = 1.0f, .top_p = 0.9f, .max_new_tokens = 20};
    const int *prompts[3] = {tok, tok + 64, tok + 150};
    const int lens[3] = {61, 86, 20};
    const uint64_t keys[3] = {0, 1, 2};
    const int eos = 2;
    GenerateRequest req = {.sc = &sc, .eos_ids = &eos, .n_eos = 1, .seed = 7};
    Candidate out[6] = {{0}};
    CU_ASSERT_FATAL(sampler_generate(&m, &req, 3, prompts, lens, keys, out) == 0);
    for (int c = 0; c < 6; c++) {
        const size_t n = (size_t)out[c].n;
        h.samples = fnv1a(h.samples, &out[c].n, sizeof out[c].n);
        h.samples = fnv1a(h.samples, out[c].ids, n * sizeof(int));
        h.samples = fnv1a(h.samples, out[c].logp_raw, n * sizeof(float));
        h.samples = fnv1a(h.samples, out[c].entropy_raw, n * sizeof(float));
        candidate_free(&out[c]);
    }
    model_free(&m);
    return h;
}

static void test_golden_hashes(void) {
    const GemmIsa def = gemm_isa();
    const int saved_threads = omp_get_max_threads();
    int runs = 0;
    for (int isa = GEMM_ISA_SCALAR; isa <= GEMM_ISA_AVX512; isa++) {
        if (gemm_set_isa((GemmIsa)isa) != 0) continue; // not on this CPU
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            const Hashes h = golden_run();
            const int ok = h.forward == GOLDEN_FORWARD && h.weights == GOLDEN_WEIGHTS &&
                           h.samples == GOLDEN_SAMPLES;
            if (!ok)
                printf("\n  %s, %d thread(s): forward 0x%016llxULL, weights 0x%016llxULL, "
                       "samples 0x%016llxULL",
                       gemm_isa_name((GemmIsa)isa), threads, (unsigned long long)h.forward,
                       (unsigned long long)h.weights, (unsigned long long)h.samples);
            CU_ASSERT(ok);
            runs++;
        }
    }
    omp_set_num_threads(saved_threads);
    gemm_set_isa(def);
    CU_ASSERT(runs >= 2);
}

void register_golden_tests(void) {
    static const TestCase tests[] = {
        {"a fixed run gives the committed bits (every kernel family, 1 and 2 threads)",
         test_golden_hashes},
        {NULL, NULL},
    };
    add_suite("golden", tests);
}
