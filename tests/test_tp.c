// Tensor parallelism (src/model/tensor_parallel.c, the tp path of src/model/cpu/model.inc) and the
// collectives (src/pipeline/comm.c). The shard arithmetic and the tp path on one rank run here; the
// multi-rank checks are the MPI program tests/mpi/test_tp_mpi.c, run under mpirun (its path in
// GEMC_TEST_TP_MPI, which `make test` sets).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/common.h"
#include "model/model.h"
#include "base/rng.h"
#include "model/tensor_parallel.h"
#include "tests.h"

// ---- shard configs and copies ---------------------------------------------------------------

static void test_local_config(void) {
    ModelConfig full, lc;
    test_tiny_config(&full, MODEL_LLAMA); // Hq 4, Hkv 2, I 24, V 37
    int v0 = -1;
    CU_ASSERT_EQUAL_FATAL(tp_local_config(&full, 0, 2, &lc, &v0), 0);
    CU_ASSERT_EQUAL(lc.num_heads, 2);
    CU_ASSERT_EQUAL(lc.num_kv_heads, 1);
    CU_ASSERT_EQUAL(lc.intermediate_size, 12);
    CU_ASSERT_EQUAL(lc.head_dim, full.head_dim);
    CU_ASSERT_EQUAL(lc.hidden_size, full.hidden_size);
    CU_ASSERT_EQUAL(lc.vocab_size, 19); // 37 = 19 + 18: the first rank takes one more
    CU_ASSERT_EQUAL(v0, 0);
    CU_ASSERT_EQUAL_FATAL(tp_local_config(&full, 1, 2, &lc, &v0), 0);
    CU_ASSERT_EQUAL(lc.vocab_size, 18);
    CU_ASSERT_EQUAL(v0, 19);
    // tp 1 is the whole model
    CU_ASSERT_EQUAL_FATAL(tp_local_config(&full, 0, 1, &lc, &v0), 0);
    CU_ASSERT(memcmp(&lc, &full, sizeof lc) == 0);
    CU_ASSERT_EQUAL(v0, 0);

    // 37 rows over 4 ranks (heads that divide): 10, 9, 9, 9
    full.num_heads = 8, full.num_kv_heads = 4;
    const int want_n[4] = {10, 9, 9, 9}, want_s[4] = {0, 10, 19, 28};
    for (int r = 0; r < 4; r++) {
        CU_ASSERT_EQUAL_FATAL(tp_local_config(&full, r, 4, &lc, &v0), 0);
        CU_ASSERT_EQUAL(lc.vocab_size, want_n[r]);
        CU_ASSERT_EQUAL(v0, want_s[r]);
    }
}

static void expect_reject(const ModelConfig *full, int size, const char *needle) {
    ModelConfig lc;
    int v0;
    CU_ASSERT_EQUAL(tp_local_config(full, 0, size, &lc, &v0), -1);
    const char *e = gemc_error();
    const int ok = strstr(e, needle) && strstr(e, "pipeline.tp") && strstr(e, "HINT");
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  error: %s\n  wanted: %s\n", e, needle);
}

static void test_local_config_rejects(void) {
    ModelConfig full;
    test_tiny_config(&full, MODEL_LLAMA);
    expect_reject(&full, 3, "num_attention_heads 4 does not divide over pipeline.tp 3");
    expect_reject(&full, 4, "num_key_value_heads 2 does not divide over pipeline.tp 4");
    full.num_kv_heads = 4;
    full.intermediate_size = 26;
    expect_reject(&full, 4, "intermediate_size 26 does not divide over pipeline.tp 4");
    // the HINT names the widths that work
    full.intermediate_size = 24;
    full.num_kv_heads = 2;
    expect_reject(&full, 4, "set pipeline.tp to one of 1, 2");
    full.vocab_size = 1; // every rank needs a row of the vocabulary
    expect_reject(&full, 2, "vocab_size 1 is smaller than pipeline.tp 2");
}

// The configs the shard tests run on: each family over 2 ranks, over 3 (Hq 6, Hkv 3), over 4.
static int shard_config(ModelConfig *cfg, int family, int size) {
    test_tiny_config(cfg, (ModelType)family);
    if (size == 3) cfg->num_heads = 6, cfg->num_kv_heads = 3;
    if (size == 4) cfg->num_heads = 8, cfg->num_kv_heads = 4;
    return size;
}

static void test_shard_round_trip(void) {
    for (int fam = 0; fam < 3; fam++)
        for (int size = 2; size <= 4; size++) {
            ModelConfig cfg;
            shard_config(&cfg, fam, size);
            Model full;
            test_random_model(&full, &cfg, 5 + fam);
            float *back = callocCheck(full.layout.total, sizeof(float));
            size_t local_sum = 0, masked = 0;
            for (int r = 0; r < size; r++) {
                ModelConfig lc;
                int v0;
                CU_ASSERT_EQUAL_FATAL(tp_local_config(&cfg, r, size, &lc, &v0), 0);
                ParamLayout ll;
                param_layout_init(&ll, &lc);
                float *loc = mallocCheck(ll.total * sizeof(float));
                float *again = mallocCheck(ll.total * sizeof(float));
                tp_partition_from_full(&cfg, r, size, full.params, loc);
                tp_partition_to_full(&cfg, r, size, loc, back);
                // the same, streamed in buckets of an odd size, gives the same full slab
                float *whole = callocCheck(full.layout.total, sizeof(float));
                float *bucketed = callocCheck(full.layout.total, sizeof(float));
                tp_partition_to_full(&cfg, r, size, loc, whole);
                for (size_t lo = 0; lo < ll.total; lo += 37)
                    tp_partition_range_to_full(&cfg, r, size, loc + lo, lo,
                                               lo + 37 < ll.total ? lo + 37 : ll.total, bucketed);
                CU_ASSERT(memcmp(whole, bucketed, full.layout.total * sizeof(float)) == 0);
                free(whole), free(bucketed);
                float *tmp = callocCheck(full.layout.total, sizeof(float));
                tp_partition_to_full(&cfg, r, size, loc, tmp);
                tp_partition_from_full(&cfg, r, size, tmp, again);
                CU_ASSERT(memcmp(again, loc, ll.total * sizeof(float)) == 0);
                unsigned char *mask = mallocCheck(ll.total);
                tp_norm_mask(&cfg, r, size, mask);
                for (size_t i = 0; i < ll.total; i++) masked += mask[i];
                // replicated tensors: the norms, and o's bias where there is one
                const ParamKind rep[] = {P_LN1, P_LN2, P_LNF, P_BO};
                for (int k = 0; k < 4; k++) {
                    const ParamSpec *s = &ll.p[rep[k]];
                    CU_ASSERT_EQUAL(s->size, full.layout.p[rep[k]].size);
                    for (size_t i = 0; i < s->size; i++)
                        if (mask[s->offset + i] != (r == 0)) {
                            CU_FAIL("replicated tensor counted on a rank other than 0");
                            break;
                        }
                }
                // the column-parallel o: rank r's columns of row 0 of layer 0
                const ParamSpec *wo = &ll.p[P_WO];
                const int Ql = wo->shape[1], Q = full.layout.p[P_WO].shape[1];
                CU_ASSERT_EQUAL(Q, Ql * size);
                CU_ASSERT(memcmp(loc + wo->offset + Ql,
                                 full.params + full.layout.p[P_WO].offset + Q + (size_t)r * Ql,
                                 Ql * sizeof(float)) == 0);
                local_sum += ll.total;
                free(loc), free(again), free(tmp), free(mask);
            }
            // every element of the full slab comes back from exactly the shards
            CU_ASSERT(memcmp(back, full.params, full.layout.total * sizeof(float)) == 0);
            // the mask counts each element of the full model once over the group
            CU_ASSERT_EQUAL(masked, full.layout.total);
            CU_ASSERT(local_sum > full.layout.total); // replicated tensors on every rank
            free(back);
            model_free(&full);
        }
}

// ---- the tp path on one rank ------------------------------------------------------------------

static void noop_reduce(void *ctx, float *buf, size_t n) {
    (void)buf, (void)n;
    (*(int *)ctx)++;
}

static double max_diff(const float *a, const float *b, size_t n, int *nequal) {
    double d = 0;
    int eq = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > d || e != e) d = e;
        eq += a[i] == b[i];
    }
    if (nequal) *nequal = eq;
    return d;
}

// A group of one (tp != NULL, size 1) runs the same model: the collectives are identities and
// only the head's S and T pass through fp32 on their way to the SUM.
static void test_tp1_path(void) {
    for (int fam = 0; fam < 3; fam++) {
        ModelConfig cfg;
        test_tiny_config(&cfg, (ModelType)fam);
        const int offsets[] = {0, 60, 61, 150}, B = 3, N = 150;
        int tokens[150];
        float dlp[150];
        Rng rng;
        rng_seed(&rng, 42 + fam);
        for (int i = 0; i < N; i++) {
            tokens[i] = (int)(rng_u64(&rng) % (uint64_t)cfg.vocab_size);
            dlp[i] = rng_normal(&rng);
        }
        PackedBatch batch = {B, N, tokens, offsets, NULL};
        Model a, b;
        test_random_model(&a, &cfg, 9);
        test_random_model(&b, &cfg, 9);
        int calls = 0;
        TensorParallel tp = {0, 1, 0, cfg.vocab_size, noop_reduce, noop_reduce, &calls, 0};
        b.tp = &tp;
        float lpa[150], enta[150], lpb[150], entb[150];
        model_forward(&a, &batch, lpa, enta);
        model_forward(&b, &batch, lpb, entb);
        // the embedding, two per layer, a MAX and a SUM per head chunk (of up to 512 rows: one)
        CU_ASSERT_EQUAL(calls, 1 + 2 * cfg.num_layers + 2 * 1);
        model_backward(&a, &batch, dlp);
        model_backward(&b, &batch, dlp);
        // the head's dln, and two per layer
        CU_ASSERT_EQUAL(calls, 1 + 2 * cfg.num_layers + 2 + 1 + 2 * cfg.num_layers);
        const float na = model_clip_grad_norm(&a, 0.0f), nb = model_clip_grad_norm(&b, 0.0f);
        const double dl = max_diff(lpa, lpb, N, NULL), de = max_diff(enta, entb, N, NULL);
        int eq;
        const double dg = max_diff(a.grads, b.grads, a.layout.total, &eq);
        double gmax = 1.0;
        for (size_t i = 0; i < a.layout.total; i++)
            if (fabs((double)a.grads[i]) > gmax) gmax = fabs((double)a.grads[i]);
        CU_ASSERT(dl <= 1e-6);
        CU_ASSERT(de <= 1e-6);
        CU_ASSERT(dg <= 1e-6 * gmax); // relative to the largest gradient
        CU_ASSERT(fabs((double)na - nb) <= 1e-6 * na);
        if (getenv("GEMC_TEST_VERBOSE"))
            fprintf(stderr,
                    "\n  %s tp=1 path: logprob %.2e entropy %.2e grads %.2e (%d of %zu equal) "
                    "norm %.2e",
                    cfg.model_type, dl, de, dg, eq, a.layout.total, fabs((double)na - nb));
        model_free(&a);
        model_free(&b);
    }
}

// ---- the MPI programs -------------------------------------------------------------------------

// The MPI program: GEMC_TEST_TP_MPI's (build/test_tp_mpi), or with emu the one on the emulated
// GPU, GEMC_TEST_TP_MPI_EMU's (build/test_tp_mpi_emu).
static int g_emu;
static const char *mpi_prog(void) {
    const char *var = g_emu ? "GEMC_TEST_TP_MPI_EMU" : "GEMC_TEST_TP_MPI";
    const char *p = getenv(var);
    if (!p || !*p) p = g_emu ? "build/test_tp_mpi_emu" : "build/test_tp_mpi";
    struct stat st;
    if (stat(p, &st) != 0) {
        fprintf(stderr, "\n  %s not found: build it (make test builds it and sets %s)", p, var);
        return NULL;
    }
    return p;
}

// "mpirun -np NP ... PROG ARGS" with the ranks on one OpenMP thread each (and the collectives in
// chunks of `chunk` elements when chunk > 0); Open MPI's mpirun wants to be allowed to run as
// root and to put more ranks than cores, and hands a SAN=1 build its leak-check settings.
static int run_mpi(int np, int chunk, const char *args, char **out, char **err) {
    const char *prog = mpi_prog();
    if (!prog) return -1;
    static int ompi = -1;
    if (ompi < 0) {
        char *o = NULL;
        test_run("mpirun --version", &o, NULL);
        ompi = o && strstr(o, "Open MPI") != NULL;
        free(o);
    }
    char env[64] = "", fwd[64] = "";
    if (chunk > 0) {
        snprintf(env, sizeof env, "GEMC_COMM_CHUNK=%d", chunk);
        if (ompi) snprintf(fwd, sizeof fwd, "-x GEMC_COMM_CHUNK");
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 %s "
             "mpirun %s %s -np %d %s %s",
             env, ompi ? "--oversubscribe -x OMP_NUM_THREADS " TEST_MPI_SAN_X : "", fwd, np, prog,
             args);
    return test_run(cmd, out, err);
}

static void expect_pass(int np, int chunk, const char *args, const char *needle) {
    char *out = NULL, *err = NULL;
    int rc = run_mpi(np, chunk, args, &out, &err);
    const int ok = rc == 0 && out && strstr(out, "PASS\n") && (!needle || strstr(out, needle));
    CU_ASSERT(ok);
    if (!ok || getenv("GEMC_TEST_VERBOSE"))
        fprintf(stderr, "\n  mpirun -np %d %s: status %d\n%s%s", np, args, rc, out ? out : "",
                err ? err : "");
    free(out);
    free(err);
}

static void test_mpi_model_tp2(void) {
    expect_pass(2, 0, "model 2", "max diffs tp=2");
}

static void test_mpi_model_tp4(void) {
    expect_pass(4, 0, "model 4", "max diffs tp=4");
    expect_pass(4, 0, "model 2", "max diffs tp=2"); // two groups of 2 side by side
}

// The CUDA backend's partitions on the emulated GPU against its whole model (tests/mpi:
// log-probs, entropies, gradients, the norm and 3 AdamW steps, to bf16's tolerances). SAN=1
// builds leave it to the plain run, as they do the other emulated stage tests.
static void test_mpi_gpu_tp(void) {
    const char *bin = getenv("GEMC_TEST_TP_MPI_EMU");
    if (!bin || !*bin) {
        printf("(skipped: GEMC_TEST_TP_MPI_EMU names no emulated build) ");
        return;
    }
    g_emu = 1;
    expect_pass(2, 0, "gpu 2", "max diffs gpu tp=2");
    expect_pass(4, 0, "gpu 4", "max diffs gpu tp=4");
    g_emu = 0;
}

static void test_mpi_comm(void) {
    expect_pass(2, 0, "comm", "ok comm np=2");
    // three ranks (not a power of two), every operation in chunks of 1000
    expect_pass(3, 1000, "comm", "ok comm np=3 (chunk 1000)");
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_mpi_timeout(void) {
    char *out = NULL, *err = NULL;
    const double t0 = now_seconds();
    const int rc = run_mpi(2, 0, "timeout", &out, &err);
    const double dt = now_seconds() - t0;
    CU_ASSERT(rc != 0);
    CU_ASSERT(dt < 10.0);
    const char *line = "gemc: error: rank 0: no answer within pipeline.timeout = 1 s while "
                       "waiting for a barrier on test timeout comm (another rank died or hangs) "
                       "(HINT: ";
    const int ok = err && strstr(err, line) && count(err, "gemc: error:") == 1 && out &&
                   !strstr(out, "barrier returned");
    CU_ASSERT(ok);
    if (!ok || rc == 0 || dt >= 10.0)
        fprintf(stderr, "\n  timeout run: status %d after %.1f s\n%s%s", rc, dt, out ? out : "",
                err ? err : "");
    free(out);
    free(err);
}

// COMM_NCCL: where the build has no NCCL, or the ranks see no GPU, a fatal error whose HINT is
// pipeline.collectives: mpi; where both are there, it works.
static void test_mpi_nccl(void) {
    char *out = NULL, *err = NULL;
    const int rc = run_mpi(1, 0, "nccl", &out, &err);
    const int ok = rc == 0 ? out && strstr(out, "nccl available") != NULL
                           : err && strstr(err, "gemc: error: rank 0: NCCL collectives") &&
                                 strstr(err, "(HINT: set pipeline.collectives: mpi");
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  nccl run: status %d\n%s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
}

void register_tp_tests(void) {
    static const TestCase tests[] = {
        {"local config", test_local_config},
        {"local config rejects a tp that does not divide", test_local_config_rejects},
        {"shards round-trip bit-exactly; norm mask counts once", test_shard_round_trip},
        {"tp path on one rank matches the whole model", test_tp1_path},
        {"mpi: tp=2 matches the whole model", test_mpi_model_tp2},
        {"mpi: tp=4 and two tp=2 groups", test_mpi_model_tp4},
        {"mpi: the CUDA backend's tp=2 and tp=4 (emulated GPU)", test_mpi_gpu_tp},
        {"mpi: collectives", test_mpi_comm},
        {"mpi: a missing rank times out with one error line", test_mpi_timeout},
        {"mpi: nccl unavailable is a fatal error with a HINT", test_mpi_nccl},
        {NULL, NULL},
    };
    add_suite("tp", tests);
}
