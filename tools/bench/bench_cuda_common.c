// What the two CUDA benchmarks do alike (bench_cuda_common.h). Every line printed here is one
// that bench_cuda_train and bench_cuda_sample printed word for word before it moved here:
// tools/bench/run_cuda.sh parses their output, so these strings must not change.
#include "bench_cuda_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/common.h"
#include "base/rng.h"

int bench_cuda_devices(const char *prog) {
    const int ndev = gpu_device_count();
    if (ndev == 0) printf("%s: skipped: %s\n", prog, gpu_unavailable());
    return ndev;
}

// The option's value when given (> 0), else the environment variable's, else 0 (unknown).
// *src names where it came from, for the printout.
static double pick_peak(float opt, const char *env, const char *opt_name, const char **src) {
    if (opt > 0.0f) {
        *src = opt_name;
        return opt;
    }
    const char *e = getenv(env);
    if (e && *e) {
        char *end = NULL;
        const double v = strtod(e, &end);
        if (end != e && v > 0.0) {
            *src = env;
            return v;
        }
    }
    *src = "none";
    return 0.0;
}

int bench_cuda_card(BenchCard *card, int device, int ndev, float peak_tflops_opt,
                    float peak_gbs_opt) {
    if (device < 0 || device >= ndev) {
        gemc_set_error("--device %d: there are %d CUDA device(s)", device, ndev);
        return -1;
    }
    if (gpu_describe(device, card->name, sizeof card->name) != 0)
        snprintf(card->name, sizeof card->name, "?");
    card->peak_tflops =
        pick_peak(peak_tflops_opt, "BENCH_PEAK_TFLOPS", "--peak-tflops", &card->peak_src);
    card->peak_gbs = pick_peak(peak_gbs_opt, "BENCH_PEAK_GBS", "--peak-gbs", &card->gbs_src);
    return 0;
}

int bench_cuda_model(Model *m, const ModelConfig *cfg, int device, int seed) {
    model_init(m, cfg);
    model_init_random(m, (uint64_t)seed);
    if (model_to_gpu(m, device) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

void bench_random_tokens(int *tokens, long n, int vocab, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (long i = 0; i < n; i++) tokens[i] = (int)(rng_u64(&rng) % (uint64_t)vocab);
}

double bench_layer_params(const Model *m) {
    const ParamLayout *lay = &m->layout;
    return (double)lay->total - (double)lay->p[P_WTE].size - (double)lay->p[P_LM_HEAD].size;
}

void bench_print_model(const char *card, const char *config, const ModelConfig *cfg) {
    printf("gemc: %s, %s (%s), %d layers, hidden %d, intermediate %d, heads %d/%d x %d, vocab "
           "%d, %s head\n",
           card, config, cfg->model_type, cfg->num_layers, cfg->hidden_size, cfg->intermediate_size,
           cfg->num_heads, cfg->num_kv_heads, cfg->head_dim, cfg->vocab_size,
           cfg->tie_word_embeddings ? "tied" : "untied");
}

const char *bench_roof_bound(double peak_tflops, double peak_gbs, double roof_c, double roof_m,
                             double *roof) {
    if (peak_tflops > 0 && peak_gbs > 0) {
        *roof = fmin(roof_c, roof_m);
        return roof_c <= roof_m ? "compute" : "bandwidth";
    }
    if (peak_tflops > 0) {
        *roof = roof_c;
        return "compute";
    }
    if (peak_gbs > 0) {
        *roof = roof_m;
        return "bandwidth";
    }
    *roof = NAN;
    return "?";
}

double bench_cuda_clock(GpuModel *g) {
    gpu_model_synchronize(g);
    return now_seconds();
}

int bench_fail(const char *prog) {
    fprintf(stderr, "%s: error: %s\n", prog, gemc_error());
    return 1;
}
