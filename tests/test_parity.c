// Parity with PyTorch + transformers: gemc against the float64 references of
// tools/make_parity_fixture.py (tests/fixtures/parity/{llama,qwen2,mistral}).
//
// Each fixture directory holds a small random model as transformers saves one (config.json and
// safetensors weights: F32 sharded for llama, BF16 for qwen2, F16 for mistral), expected.json
// (three token sequences; log-probabilities and entropies; the loss weights dlogprobs; the
// results of three AdamW steps) and grads.safetensors (d loss / d every parameter, F32, Hugging
// Face names). The loss is L = sum over positions of dlogprobs * logprobs.
//
// Tolerances: gemc computes in fp32, the references in float64.
//   logprobs, entropies    max abs error 1e-4
//   gradients              ||g - g_ref|| / ||g_ref|| <= 1e-4 for every parameter tensor
//   AdamW grad norms       relative error 1e-4 at every step
//   logprobs after AdamW   max abs error 2e-4
// The errors seen are printed, so the log shows the margin.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/common.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tests.h"

#define TOL_LOGPROB      1e-4
#define TOL_ENTROPY      1e-4
#define TOL_GRAD_REL     1e-4
#define TOL_NORM_REL     1e-4
#define TOL_ADAM_LOGPROB 2e-4

static const char *const FIXTURE_DIRS[] = {
    "tests/fixtures/parity/llama",
    "tests/fixtures/parity/qwen2",
    "tests/fixtures/parity/mistral",
};
#define NUM_FIXTURES ((int)(sizeof FIXTURE_DIRS / sizeof FIXTURE_DIRS[0]))

// expected.json, with the per-sequence arrays laid out over the packed batch: index i is token
// position i of the batch; entries at a sequence's last position are 0 where the reference has
// no value (logprobs, dlogprobs).
typedef struct {
    char source[96];
    int B, N;
    int *tokens;       // [N]
    int *offsets;      // [B+1]
    double *logprobs;  // [N]
    double *entropies; // [N]
    float *dlogprobs;  // [N]
    AdamWConfig opt;
    double max_norm;
    int steps;
    double *grad_norms;    // [steps]
    double *adam_logprobs; // [N]
} Expected;

static void expected_free(Expected *e) {
    free(e->tokens);
    free(e->offsets);
    free(e->logprobs);
    free(e->entropies);
    free(e->dlogprobs);
    free(e->grad_norms);
    free(e->adam_logprobs);
    memset(e, 0, sizeof *e);
}

static const cJSON *json_get(const cJSON *obj, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) printf("\n    %s: no key \"%s\"", path, key);
    return v;
}

static int json_number(const cJSON *obj, const char *key, const char *path, double *out) {
    const cJSON *v = json_get(obj, key, path);
    if (!v || !cJSON_IsNumber(v)) return -1;
    *out = v->valuedouble;
    return 0;
}

// Reads `key`, an array of B arrays; array b must hold len(b) - drop numbers (drop 0 or 1),
// which go to out[offsets[b] ..]; the dropped last entry is set to 0.
static int json_per_sequence(const cJSON *obj, const char *key, const char *path, const Expected *e,
                             int drop, double *out) {
    const cJSON *arr = json_get(obj, key, path);
    if (!arr || !cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != e->B) {
        printf("\n    %s: \"%s\" is not an array of %d arrays", path, key, e->B);
        return -1;
    }
    for (int b = 0; b < e->B; b++) {
        const cJSON *seq = cJSON_GetArrayItem(arr, b);
        int len = e->offsets[b + 1] - e->offsets[b];
        if (!cJSON_IsArray(seq) || cJSON_GetArraySize(seq) != len - drop) {
            printf("\n    %s: \"%s\"[%d] should hold %d numbers", path, key, b, len - drop);
            return -1;
        }
        for (int p = 0; p < len - drop; p++) {
            const cJSON *v = cJSON_GetArrayItem(seq, p);
            if (!cJSON_IsNumber(v)) {
                printf("\n    %s: \"%s\"[%d][%d] is not a number", path, key, b, p);
                return -1;
            }
            out[e->offsets[b] + p] = v->valuedouble;
        }
        if (drop) out[e->offsets[b + 1] - 1] = 0.0;
    }
    return 0;
}

static int expected_load(Expected *e, const char *dir) {
    memset(e, 0, sizeof *e);
    char *path = path_join(dir, "expected.json");
    char *text = read_text_file(path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    int rc = -1;
    if (!root) {
        printf("\n    %s: cannot read or parse (%s)", path, text ? "bad JSON" : gemc_error());
        goto done;
    }
    const cJSON *src = json_get(root, "source", path);
    snprintf(e->source, sizeof e->source, "%s", cJSON_IsString(src) ? src->valuestring : "?");

    const cJSON *seqs = json_get(root, "sequences", path);
    if (!cJSON_IsArray(seqs) || cJSON_GetArraySize(seqs) < 1) goto done;
    e->B = cJSON_GetArraySize(seqs);
    e->offsets = callocCheck(e->B + 1, sizeof(int));
    for (int b = 0; b < e->B; b++) {
        const cJSON *s = cJSON_GetArrayItem(seqs, b);
        if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) < 2) goto done;
        e->offsets[b + 1] = e->offsets[b] + cJSON_GetArraySize(s);
    }
    e->N = e->offsets[e->B];
    e->tokens = callocCheck(e->N, sizeof(int));
    for (int b = 0; b < e->B; b++) {
        const cJSON *s = cJSON_GetArrayItem(seqs, b);
        for (int p = 0; p < e->offsets[b + 1] - e->offsets[b]; p++)
            e->tokens[e->offsets[b] + p] = cJSON_GetArrayItem(s, p)->valueint;
    }

    e->logprobs = callocCheck(e->N, sizeof(double));
    e->entropies = callocCheck(e->N, sizeof(double));
    e->adam_logprobs = callocCheck(e->N, sizeof(double));
    double *dl = callocCheck(e->N, sizeof(double));
    int bad = json_per_sequence(root, "logprobs", path, e, 1, e->logprobs) ||
              json_per_sequence(root, "entropies", path, e, 0, e->entropies) ||
              json_per_sequence(root, "dlogprobs", path, e, 1, dl);
    e->dlogprobs = callocCheck(e->N, sizeof(float));
    for (int i = 0; i < e->N; i++) e->dlogprobs[i] = (float)dl[i]; // exact: fp32 values
    free(dl);
    if (bad) goto done;

    const cJSON *adam = json_get(root, "adamw", path);
    double lr, b1, b2, eps, wd, steps;
    if (!adam || json_number(adam, "lr", path, &lr) || json_number(adam, "beta1", path, &b1) ||
        json_number(adam, "beta2", path, &b2) || json_number(adam, "eps", path, &eps) ||
        json_number(adam, "weight_decay", path, &wd) ||
        json_number(adam, "max_norm", path, &e->max_norm) ||
        json_number(adam, "steps", path, &steps))
        goto done;
    e->opt = (AdamWConfig){.lr = (float)lr,
                           .beta1 = (float)b1,
                           .beta2 = (float)b2,
                           .eps = (float)eps,
                           .weight_decay = (float)wd};
    e->steps = (int)steps;
    const cJSON *norms = json_get(adam, "grad_norms", path);
    if (e->steps < 1 || !cJSON_IsArray(norms) || cJSON_GetArraySize(norms) != e->steps) goto done;
    e->grad_norms = callocCheck(e->steps, sizeof(double));
    for (int s = 0; s < e->steps; s++) e->grad_norms[s] = cJSON_GetArrayItem(norms, s)->valuedouble;
    if (json_per_sequence(adam, "logprobs", path, e, 1, e->adam_logprobs)) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    free(text);
    free(path);
    if (rc) expected_free(e);
    return rc;
}

static PackedBatch batch_of(const Expected *e) {
    return (PackedBatch){.B = e->B, .N = e->N, .tokens = e->tokens, .offsets = e->offsets};
}

// Loads the fixture's model and expected values; on failure records a CUnit failure.
static int fixture_open(const char *dir, Model *m, Expected *e) {
    if (expected_load(e, dir) != 0) {
        CU_FAIL("expected.json unreadable");
        return -1;
    }
    if (model_load_hf(m, dir) != 0) {
        printf("\n    %s: model_load_hf: %s", dir, gemc_error());
        CU_FAIL("model_load_hf failed");
        expected_free(e);
        return -1;
    }
    if (model_check_tokens(m, e->tokens, e->N) != 0) {
        printf("\n    %s: %s", dir, gemc_error());
        CU_FAIL("fixture tokens outside the vocabulary");
        model_free(m);
        expected_free(e);
        return -1;
    }
    return 0;
}

static const char *fixture_name(const char *dir) {
    const char *s = strrchr(dir, '/');
    return s ? s + 1 : dir;
}

// max |got - want| over the positions that carry a value (skip_ends: not the last of a sequence)
static double max_abs_err(const Expected *e, const float *got, const double *want, int skip_ends,
                          int *where) {
    double worst = 0.0;
    *where = -1;
    for (int b = 0; b < e->B; b++) {
        int end = e->offsets[b + 1] - (skip_ends ? 1 : 0);
        for (int i = e->offsets[b]; i < end; i++) {
            double d = fabs((double)got[i] - want[i]);
            if (!(d <= worst)) { // NaN counts as the worst
                worst = isnan(d) ? INFINITY : d;
                *where = i;
            }
        }
    }
    return worst;
}

// ---------------------------------------------------------------------------------------------

static void check_forward(const char *dir) {
    Model m;
    Expected e;
    if (fixture_open(dir, &m, &e) != 0) return;
    PackedBatch batch = batch_of(&e);
    float *lp = callocCheck(e.N, sizeof(float));
    float *ent = callocCheck(e.N, sizeof(float));
    model_forward(&m, &batch, lp, ent);
    int at_lp, at_ent;
    double err_lp = max_abs_err(&e, lp, e.logprobs, 1, &at_lp);
    double err_ent = max_abs_err(&e, ent, e.entropies, 0, &at_ent);
    printf("\n    %s (%s): logprobs max abs err %.3g (position %d), entropies %.3g (position %d) ",
           fixture_name(dir), e.source, err_lp, at_lp, err_ent, at_ent);
    CU_ASSERT(err_lp <= TOL_LOGPROB);
    CU_ASSERT(err_ent <= TOL_ENTROPY);
    // the logprob slot at each sequence end is defined as 0
    for (int b = 0; b < e.B; b++) CU_ASSERT(lp[e.offsets[b + 1] - 1] == 0.0f);
    free(lp);
    free(ent);
    model_free(&m);
    expected_free(&e);
}

static void check_backward(const char *dir) {
    Model m;
    Expected e;
    if (fixture_open(dir, &m, &e) != 0) return;
    char *gpath = path_join(dir, "grads.safetensors");
    StFile gf;
    if (st_open(&gf, gpath) != 0) {
        printf("\n    %s: %s", gpath, gemc_error());
        CU_FAIL("grads.safetensors unreadable");
        free(gpath);
        model_free(&m);
        expected_free(&e);
        return;
    }
    PackedBatch batch = batch_of(&e);
    float *lp = callocCheck(e.N, sizeof(float));
    model_zero_grad(&m);
    model_forward(&m, &batch, lp, NULL);
    model_backward(&m, &batch, e.dlogprobs);
    CU_ASSERT_FATAL(m.grads != NULL);

    double worst = 0.0;
    char worst_name[128] = "";
    int compared = 0, failed = 0;
    float *ref = NULL;
    size_t ref_cap = 0;
    for (int k = 0; k < NUM_PARAM_KINDS; k++) {
        const ParamSpec *s = &m.layout.p[k];
        if (s->size == 0) continue;
        int nl = s->layered ? m.cfg.num_layers : 1;
        for (int l = 0; l < nl; l++) {
            char name[128];
            param_hf_name((ParamKind)k, l, name, sizeof name);
            const StTensor *t = st_find(&gf, name);
            if (!t || t->numel != s->per_layer) {
                printf("\n    %s: %s %s in grads.safetensors", fixture_name(dir), name,
                       t ? "has the wrong size" : "missing");
                failed++;
                continue;
            }
            if (t->numel > ref_cap) {
                free(ref);
                ref_cap = t->numel;
                ref = mallocCheck(ref_cap * sizeof(float));
            }
            CU_ASSERT_FATAL(st_tensor_to_f32(t, ref) == 0);
            const float *g = m.grads + s->offset + (size_t)l * s->per_layer;
            double num = 0.0, den = 0.0;
            for (size_t i = 0; i < s->per_layer; i++) {
                double d = (double)g[i] - (double)ref[i];
                num += d * d;
                den += (double)ref[i] * (double)ref[i];
            }
            double rel = den > 0 ? sqrt(num / den) : sqrt(num);
            if (isnan(rel)) rel = INFINITY;
            if (rel > TOL_GRAD_REL) {
                printf("\n    %s: gradient of %s: relative error %.3g", fixture_name(dir), name,
                       rel);
                failed++;
            }
            if (rel >= worst) {
                worst = rel;
                snprintf(worst_name, sizeof worst_name, "%s", name);
            }
            compared++;
        }
    }
    printf("\n    %s: %d gradient tensors, worst relative error %.3g (%s) ", fixture_name(dir),
           compared, worst, worst_name);
    CU_ASSERT(failed == 0);
    // every reference tensor was checked: none the model lacks (a tied head has no lm_head)
    CU_ASSERT(compared == gf.n);
    free(ref);
    free(lp);
    st_close(&gf);
    free(gpath);
    model_free(&m);
    expected_free(&e);
}

static void check_adamw(const char *dir) {
    Model m;
    Expected e;
    if (fixture_open(dir, &m, &e) != 0) return;
    PackedBatch batch = batch_of(&e);
    float *lp = callocCheck(e.N, sizeof(float));
    double worst_norm = 0.0;
    for (int s = 0; s < e.steps; s++) {
        model_zero_grad(&m);
        model_forward(&m, &batch, lp, NULL);
        model_backward(&m, &batch, e.dlogprobs);
        float norm = model_clip_grad_norm(&m, (float)e.max_norm);
        double rel = fabs((double)norm - e.grad_norms[s]) / e.grad_norms[s];
        if (isnan(rel)) rel = INFINITY;
        if (rel > worst_norm) worst_norm = rel;
        if (rel > TOL_NORM_REL)
            printf("\n    %s: step %d grad norm %.9g, expected %.9g", fixture_name(dir), s + 1,
                   (double)norm, e.grad_norms[s]);
        CU_ASSERT(rel <= TOL_NORM_REL);
        model_adamw_step(&m, &e.opt);
    }
    CU_ASSERT(m.adam_t == e.steps);
    model_forward(&m, &batch, lp, NULL);
    int at;
    double err = max_abs_err(&e, lp, e.adam_logprobs, 1, &at);
    printf("\n    %s: %d AdamW steps: grad norm max rel err %.3g, logprobs after max abs err %.3g "
           "(position %d) ",
           fixture_name(dir), e.steps, worst_norm, err, at);
    CU_ASSERT(err <= TOL_ADAM_LOGPROB);
    free(lp);
    model_free(&m);
    expected_free(&e);
}

// Each sequence forwarded alone gives the same bits as inside the packed batch: nothing leaks
// between sequences and the packing does not change the arithmetic.
static void check_packing(const char *dir) {
    Model m;
    Expected e;
    if (fixture_open(dir, &m, &e) != 0) return;
    PackedBatch batch = batch_of(&e);
    float *lp = callocCheck(e.N, sizeof(float));
    float *ent = callocCheck(e.N, sizeof(float));
    float *lp1 = callocCheck(e.N, sizeof(float));
    float *ent1 = callocCheck(e.N, sizeof(float));
    model_forward(&m, &batch, lp, ent);
    int differ = 0;
    for (int b = 0; b < e.B; b++) {
        int off = e.offsets[b], len = e.offsets[b + 1] - off;
        int offs[2] = {0, len};
        PackedBatch one = {.B = 1, .N = len, .tokens = e.tokens + off, .offsets = offs};
        model_forward(&m, &one, lp1, ent1);
        if (memcmp(lp1, lp + off, len * sizeof(float)) ||
            memcmp(ent1, ent + off, len * sizeof(float))) {
            double dmax = 0.0;
            for (int p = 0; p < len; p++) {
                dmax = fmax(dmax, fabs((double)lp1[p] - lp[off + p]));
                dmax = fmax(dmax, fabs((double)ent1[p] - ent[off + p]));
            }
            printf("\n    %s: sequence %d alone differs from the packed batch (max diff %.3g)",
                   fixture_name(dir), b, dmax);
            differ++;
        }
    }
    CU_ASSERT(differ == 0);
    free(lp);
    free(ent);
    free(lp1);
    free(ent1);
    model_free(&m);
    expected_free(&e);
}

// CUnit wants one function per test: forward, backward and AdamW for each fixture
#define FIXTURE_TESTS(name, index)                                                                 \
    static void test_forward_##name(void) {                                                        \
        check_forward(FIXTURE_DIRS[index]);                                                        \
    }                                                                                              \
    static void test_backward_##name(void) {                                                       \
        check_backward(FIXTURE_DIRS[index]);                                                       \
    }                                                                                              \
    static void test_adamw_##name(void) {                                                          \
        check_adamw(FIXTURE_DIRS[index]);                                                          \
    }
FIXTURE_TESTS(llama, 0)
FIXTURE_TESTS(qwen2, 1)
FIXTURE_TESTS(mistral, 2)

static void test_packing_independence(void) {
    for (int f = 0; f < NUM_FIXTURES; f++) check_packing(FIXTURE_DIRS[f]);
}

void register_parity_tests(void) {
    static const TestCase tests[] = {
        {"llama forward (llama3 rope, attention biases, sharded F32)", test_forward_llama},
        {"qwen2 forward (qkv biases, tied head, BF16)", test_forward_qwen2},
        {"mistral forward (sliding window, explicit head_dim, F16)", test_forward_mistral},
        {"llama gradients", test_backward_llama},
        {"qwen2 gradients", test_backward_qwen2},
        {"mistral gradients", test_backward_mistral},
        {"llama AdamW steps", test_adamw_llama},
        {"qwen2 AdamW steps", test_adamw_qwen2},
        {"mistral AdamW steps", test_adamw_mistral},
        {"a sequence alone = the same sequence packed (bits)", test_packing_independence},
        {NULL, NULL},
    };
    add_suite("parity", tests);
}
