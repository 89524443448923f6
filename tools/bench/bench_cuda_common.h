// What the two CUDA benchmarks (bench_cuda_train.c, bench_cuda_sample.c) do alike: find the
// device and the peaks they are measured against, build the random-weight model on the GPU, the
// random token ids, the model's description line, the roofline's bound, the device clock and the
// one-line error exit. Each benchmark keeps its own FLOP and byte counts and its own printouts;
// tools/bench/run_cuda.sh parses those, so nothing here prints a line of their results.
#ifndef GEMC_BENCH_CUDA_COMMON_H
#define GEMC_BENCH_CUDA_COMMON_H

#include <stdint.h>

#include "config/config.h"
#include "model/gpu.h"
#include "model/model.h"

// The card a benchmark runs on and the peaks its roofline uses.
typedef struct {
    char name[256];       // gpu_describe's words ("NVIDIA H100 ..., sm_90, 79.2 GiB"), else "?"
    double peak_tflops;   // bf16 dense peak in TFLOP/s; 0 when unknown
    double peak_gbs;      // HBM bandwidth in GB/s; 0 when unknown
    const char *peak_src; // where peak_tflops came from: --peak-tflops, BENCH_PEAK_TFLOPS, none
    const char *gbs_src;  // where peak_gbs came from: --peak-gbs, BENCH_PEAK_GBS, none
} BenchCard;

// The number of usable CUDA devices. When there is none (no driver, no card, or a gemc built
// without nvcc) it prints "<prog>: skipped: <why>" on stdout and returns 0: the caller then
// returns 0 without a RESULT line, which run_cuda.sh takes as "no GPU here".
int bench_cuda_devices(const char *prog);

// Checks --device against the ndev devices (the error recorded and -1 when out of range), then
// fills *card: the device's name, and each peak from its option when given (> 0), else from the
// environment (BENCH_PEAK_TFLOPS / BENCH_PEAK_GBS, when a number > 0), else 0. Returns 0.
int bench_cuda_card(BenchCard *card, int device, int ndev, float peak_tflops_opt,
                    float peak_gbs_opt);

// m = a model of cfg with random weights of `seed` (model_init_random), moved to GPU `device`
// (model_to_gpu). Returns 0, or -1 with the error recorded and nothing left to free.
int bench_cuda_model(Model *m, const ModelConfig *cfg, int device, int seed);

// tokens[0 .. n) = random ids in [0, vocab) from an Rng seeded with `seed`: the same ids for the
// same seed on every machine, so runs on different cards see the same batch.
void bench_random_tokens(int *tokens, long n, int vocab, uint64_t seed);

// The model's parameters outside the embedding and the head (the tied embedding is counted once
// in layout.total, so this is total - wte - lm_head whether tied or not).
double bench_layer_params(const Model *m);

// The benchmark's first line: "gemc: <card>, <config> (<type>), <L> layers, ... <tied> head".
void bench_print_model(const char *card, const char *config, const ModelConfig *cfg);

// Which roof binds: roof_c and roof_m are the compute- and bandwidth-bound tokens/s (NaN where
// their peak is unknown, i.e. peak_tflops / peak_gbs <= 0). Returns "compute", "bandwidth", or
// "?" when neither peak is known, and sets *roof to the binding one's tokens/s (NaN for "?").
const char *bench_roof_bound(double peak_tflops, double peak_gbs, double roof_c, double roof_m,
                             double *roof);

// now_seconds() once the device has finished its queued work: differences of two readings are
// the device time of what was queued between them.
double bench_cuda_clock(GpuModel *g);

// The error exit: "<prog>: error: <gemc_error()>" on stderr, then 1 for main to return.
int bench_fail(const char *prog);

#endif
