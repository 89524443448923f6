// AdamW and gradient clipping (src/model/optimizer.c) against the formulas of torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_, and a short training run that must overfit one sequence.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/model.h"
#include "base/rng.h"
#include "stages/stage.h"
#include "tests.h"

static float *kind(Model *m, ParamKind k) {
    return m->params + m->layout.p[k].offset;
}

// One coordinate followed through two AdamW steps by hand (double, torch's formula).
typedef struct {
    double p, m, v;
} Hand;

static void hand_step(Hand *h, double g, int t, int decay, const AdamWConfig *o) {
    if (decay) h->p *= 1.0 - (double)o->lr * o->weight_decay;
    h->m = o->beta1 * h->m + (1.0 - o->beta1) * g;
    h->v = o->beta2 * h->v + (1.0 - o->beta2) * g * g;
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    double denom = sqrt(h->v) / sqrt(bc2) + o->eps;
    h->p -= (double)o->lr / bc1 * h->m / denom;
}

static void test_adamw_two_steps(void) {
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    Model m;
    model_init(&m, &cfg); // every parameter 0
    const AdamWConfig opt = {
        .lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    // a matrix entry (decayed), a norm weight and a bias (not decayed)
    float *wq = kind(&m, P_WQ) + 5, *ln1 = kind(&m, P_LN1) + 3, *bq = kind(&m, P_BQ) + 1;
    *wq = 0.5f, *ln1 = 1.25f, *bq = -0.75f;
    const double g1[3] = {0.3, -2.0, 0.01}, g2[3] = {-0.1, -1.0, 0.04};
    Hand h[3] = {{0.5, 0, 0}, {1.25, 0, 0}, {-0.75, 0, 0}};
    float *ps[3] = {wq, ln1, bq};
    ParamKind kinds[3] = {P_WQ, P_LN1, P_BQ};
    for (int step = 1; step <= 2; step++) {
        model_zero_grad(&m);
        if (!m.grads) m.grads = callocCheck(m.layout.total, sizeof(float));
        for (int j = 0; j < 3; j++) {
            const size_t idx = (size_t)(ps[j] - m.params);
            m.grads[idx] = (float)(step == 1 ? g1[j] : g2[j]);
            hand_step(&h[j], step == 1 ? g1[j] : g2[j], step, kinds[j] == P_WQ, &opt);
        }
        model_adamw_step(&m, &opt);
        for (int j = 0; j < 3; j++) {
            ASSERT_CLOSE(*ps[j], h[j].p, 1e-6 * fmax(1.0, fabs(h[j].p)));
            if (step == 1) {
                // the first step moves by lr * sign(g) (m / bc1 = g, sqrt(v / bc2) = |g|)
                double before = j == 0 ? 0.5 * (1.0 - 0.1 * 0.1) : (j == 1 ? 1.25 : -0.75);
                ASSERT_CLOSE(*ps[j], before - 0.1 * (g1[j] > 0 ? 1 : -1), 1e-6);
            }
        }
    }
    CU_ASSERT_EQUAL(m.adam_t, 2);
    // everything else stayed 0: zero params, zero grads
    size_t nonzero = 0;
    for (size_t i = 0; i < m.layout.total; i++)
        if (m.params[i] != 0.0f && m.params + i != wq && m.params + i != ln1 && m.params + i != bq)
            nonzero++;
    CU_ASSERT_EQUAL(nonzero, 0);
    model_free(&m);
}

// With zero gradients only the decoupled weight decay acts: matrices shrink by (1 - lr wd),
// norms and biases do not move at all.
static void test_weight_decay_matrices_only(void) {
    for (int t = 0; t < 3; t++) {
        ModelConfig cfg;
        test_tiny_config(&cfg, (ModelType)t);
        Model m;
        model_init(&m, &cfg);
        Rng rng;
        rng_seed(&rng, 40 + t);
        for (size_t i = 0; i < m.layout.total; i++) m.params[i] = rng_normal(&rng);
        float *before = mallocCheck(m.layout.total * sizeof(float));
        memcpy(before, m.params, m.layout.total * sizeof(float));
        const AdamWConfig opt = {
            .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.5f};
        model_adamw_step(&m, &opt); // grads absent: zero
        const float mul = (float)(1.0 - (double)0.01f * (double)0.5f);
        int bad = 0, decayed = 0, kept = 0;
        for (int k = 0; k < NUM_PARAM_KINDS; k++) {
            const ParamSpec *s = &m.layout.p[k];
            for (size_t i = s->offset; i < s->offset + s->size; i++) {
                float want = s->ndim == 2 ? before[i] * mul : before[i];
                if (m.params[i] != want) bad++;
                if (s->ndim == 2)
                    decayed++;
                else
                    kept++;
            }
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT(decayed > 0 && kept > 0);
        free(before);
        model_free(&m);
    }
}

static void test_clip_grad_norm(void) {
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_QWEN2);
    cfg.vocab_size = 8000; // a slab of several chunks of the norm's partial sums
    cfg.hidden_size = 32;
    Model m;
    model_init(&m, &cfg);
    CU_ASSERT(m.layout.total > 3 * 65536);
    CU_ASSERT_EQUAL(model_clip_grad_norm(&m, 1.0f), 0.0f); // no gradients yet
    m.grads = callocCheck(m.layout.total, sizeof(float));
    Rng rng;
    rng_seed(&rng, 50);
    long double ss = 0;
    for (size_t i = 0; i < m.layout.total; i++) {
        m.grads[i] = 0.01f * rng_normal(&rng);
        ss += (long double)m.grads[i] * m.grads[i];
    }
    const double norm = sqrt((double)ss);
    float *g0 = mallocCheck(m.layout.total * sizeof(float));
    memcpy(g0, m.grads, m.layout.total * sizeof(float));

    // norm below max_norm (and max_norm 0): nothing changes
    float n1 = model_clip_grad_norm(&m, (float)(norm * 2));
    ASSERT_CLOSE(n1, norm, 1e-6 * norm);
    CU_ASSERT(memcmp(g0, m.grads, m.layout.total * sizeof(float)) == 0);
    CU_ASSERT_EQUAL(model_clip_grad_norm(&m, 0.0f), n1);
    CU_ASSERT(memcmp(g0, m.grads, m.layout.total * sizeof(float)) == 0);

    // the norm does not depend on the thread count
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    float n_one = model_clip_grad_norm(&m, 0.0f);
    omp_set_num_threads(3);
    float n_three = model_clip_grad_norm(&m, 0.0f);
    omp_set_num_threads(saved);
    CU_ASSERT_EQUAL(n_one, n1);
    CU_ASSERT_EQUAL(n_three, n1);

    // clipped: every gradient times max_norm / (norm + 1e-6), and the returned norm is the old
    const float max_norm = 0.25f;
    float n2 = model_clip_grad_norm(&m, max_norm);
    CU_ASSERT_EQUAL(n2, n1);
    const float coef = max_norm / (n1 + 1e-6f);
    int bad = 0;
    for (size_t i = 0; i < m.layout.total; i++)
        if (m.grads[i] != g0[i] * coef) bad++;
    CU_ASSERT_EQUAL(bad, 0);
    ASSERT_CLOSE(model_clip_grad_norm(&m, 0.0f), max_norm, 1e-5);
    free(g0);
    model_free(&m);
}

// A NaN or Inf in the gradients, or a non-finite loss: no update at all (weights, moments and
// step count keep their bits), the gradients are dropped, and the guard counts it.
static void test_nonfinite_step_skipped(void) {
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_QWEN2);
    Model m;
    test_random_model(&m, &cfg, 3);
    const size_t n = m.layout.total, bytes = n * sizeof(float);
    m.grads = callocCheck(n, sizeof(float));
    const OptimConfig o = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_nonfinite_steps = 3};
    Rng rng;
    rng_seed(&rng, 4);
    int updated;
    for (size_t i = 0; i < n; i++) m.grads[i] = rng_normal(&rng);
    CU_ASSERT(isfinite(stage_optimizer_step(&m, &o, 1.0f, 1e-3f, 2.5, &updated)));
    CU_ASSERT_EQUAL(updated, 1);
    CU_ASSERT_EQUAL(m.adam_t, 1);
    float *p0 = mallocCheck(bytes), *m0 = mallocCheck(bytes), *v0 = mallocCheck(bytes);
    memcpy(p0, m.params, bytes), memcpy(m0, m.adam_m, bytes), memcpy(v0, m.adam_v, bytes);
    const struct {
        float bad_grad;
        double loss;
    } cases[] = {{NAN, 1.0}, {INFINITY, 1.0}, {-INFINITY, 1.0}, {0.5f, NAN}, {0.5f, INFINITY}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (size_t i = 0; i < n; i++) m.grads[i] = rng_normal(&rng);
        m.grads[n / 2] = cases[c].bad_grad;
        float norm = stage_optimizer_step(&m, &o, 1.0f, 1e-3f, cases[c].loss, &updated);
        CU_ASSERT_EQUAL(updated, 0);
        CU_ASSERT_EQUAL(isfinite(norm), isfinite(cases[c].bad_grad));
        CU_ASSERT_EQUAL(m.adam_t, 1);
        CU_ASSERT(memcmp(p0, m.params, bytes) == 0);
        CU_ASSERT(memcmp(m0, m.adam_m, bytes) == 0);
        CU_ASSERT(memcmp(v0, m.adam_v, bytes) == 0);
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++) nonzero += m.grads[i] != 0.0f;
        CU_ASSERT_EQUAL(nonzero, 0);
    }
    free(p0), free(m0), free(v0);
    model_free(&m);

    // skipped, skipped, updated, then three skipped in a row: the stop comes at the sixth
    NonFiniteGuard g = {.quiet = 1};
    const int upd[] = {0, 0, 1, 0, 0, 0}, stop[] = {0, 0, 0, 0, 0, 1};
    for (int s = 0; s < 6; s++)
        CU_ASSERT_EQUAL(nonfinite_guard_step(&g, &o, "sft", s + 1, upd[s], NAN, NAN), stop[s]);
    CU_ASSERT_EQUAL(g.in_a_row, 3);
    CU_ASSERT_EQUAL(g.first_step, 4);
    CU_ASSERT_EQUAL(g.last_step, 6);
    CU_ASSERT_EQUAL(g.total, 5);
    const OptimConfig never = {.max_nonfinite_steps = 0};
    CU_ASSERT_EQUAL(nonfinite_guard_step(&g, &never, "sft", 7, 0, NAN, NAN), 0);
}

// 30 AdamW steps on one sequence of a tiny random model: the loss must fall far.
static void test_overfit_one_sequence(void) {
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    cfg.initializer_range = 0.02f;
    Model m;
    model_init(&m, &cfg);
    model_init_random(&m, 60);
    Rng rng;
    rng_seed(&rng, 61);
    enum { N = 24 };
    int tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int)(rng_u64(&rng) % (uint64_t)cfg.vocab_size);
    const int offsets[] = {0, N};
    PackedBatch batch = {1, N, tok, offsets, NULL};
    float lp[N], dlp[N];
    for (int i = 0; i < N; i++) dlp[i] = -1.0f / (N - 1); // loss = mean negative logprob
    const AdamWConfig opt = {
        .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.0f};
    double first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        model_forward(&m, &batch, lp, NULL);
        double loss = 0;
        for (int i = 0; i < N - 1; i++) loss -= lp[i];
        loss /= N - 1;
        if (step == 0) first = loss;
        last = loss;
        model_zero_grad(&m);
        model_backward(&m, &batch, dlp);
        model_clip_grad_norm(&m, 1.0f);
        model_adamw_step(&m, &opt);
    }
    printf("\n    loss %.3f -> %.3f", first, last);
    CU_ASSERT(fabs(first - log(cfg.vocab_size)) < 0.1); // a random model starts near ln V
    CU_ASSERT(last < 0.4 * first);
    model_free(&m);
}

void register_optimizer_tests(void) {
    static const TestCase tests[] = {
        {"adamw two steps by hand", test_adamw_two_steps},
        {"weight decay on matrices only", test_weight_decay_matrices_only},
        {"clip grad norm", test_clip_grad_norm},
        {"a NaN/Inf loss or gradient skips the update", test_nonfinite_step_skipped},
        {"overfit one sequence", test_overfit_one_sequence},
        {NULL, NULL},
    };
    add_suite("optimizer", tests);
}
