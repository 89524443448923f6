// Float64 central finite-difference checks of every CPU layer kernel's backward (the double
// instantiation of src/model/cpu/kernels.inc), plus forward checks against direct computations in
// long double. Each check uses the scalar loss sum(out * R) for a random R.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/cpu/cpu_kernels.h"
#include "base/rng.h"
#include "model/rope.h"
#include "tests.h"

#define FD_H   1e-5 // central-difference step (truncation ~h^2, roundoff ~1e-16/h: ~1e-10 here)
#define FD_TOL 1e-6 // largest accepted relative error (see rel_err)

// |a - b| relative to the larger magnitude, with a floor of 1e-3 so that gradients that are
// (nearly) zero are compared in absolute terms instead of by the ratio of two roundoffs.
static double rel_err(double a, double b) {
    double m = fmax(fabs(a), fabs(b));
    return fabs(a - b) / fmax(m, 1e-3);
}

static double *randn(Rng *rng, size_t n, double scale) {
    double *x = mallocCheck((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(rng);
    return x;
}

static double *zeros(size_t n) {
    return callocCheck(n ? n : 1, sizeof(double));
}

static double sum_prod(const double *a, const double *b, size_t n) {
    long double s = 0;
    for (size_t i = 0; i < n; i++) s += (long double)a[i] * b[i];
    return (double)s;
}

// One differentiable input of a kernel: its values (perturbed in place) and the analytic
// gradient of the loss with respect to them.
typedef struct {
    const char *name;
    double *x;
    const double *grad;
    size_t n;
} FdVar;

typedef double (*LossFn)(void *ctx); // runs the forward on the current inputs, returns the loss

// Central differences on every stride-th element of every input; fails on a relative error of
// FD_TOL or more, and when an input's gradient is zero everywhere (the check would then prove
// little). Returns the largest relative error.
// Under valgrind (make test-valgrind, which checks memory, not numerics) long double is computed
// in double precision, and the finite differences of the longest attention losses come out near
// 1e-5 relative: there the bound is looser.
static double fd_tol(void) {
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload") ? 1e-4 : FD_TOL;
}

static double fd_check_stride(const char *kernel, const FdVar *vars, int nv, LossFn loss, void *ctx,
                              size_t stride) {
    double worst = 0;
    for (int v = 0; v < nv; v++) {
        double var_worst = 0, gmax = 0;
        for (size_t i = 0; i < vars[v].n; i += stride) {
            double *x = vars[v].x + i, save = *x;
            *x = save + FD_H;
            double lp = loss(ctx);
            *x = save - FD_H;
            double lm = loss(ctx);
            *x = save;
            double fd = (lp - lm) / (2 * FD_H);
            double e = rel_err(vars[v].grad[i], fd);
            if (e > var_worst) var_worst = e;
            if (e >= fd_tol()) // name the coordinates that fail
                printf("\n    %s d/d%s[%zu]: analytic %.17g, finite differences %.17g", kernel,
                       vars[v].name, i, vars[v].grad[i], fd);
            if (fabs(fd) > gmax) gmax = fabs(fd);
        }
        CU_ASSERT(gmax > 1e-3); // the loss really depends on this input
        CU_ASSERT(var_worst < fd_tol());
        printf("\n    %-10s d/d%-6s max rel err %.2e", kernel, vars[v].name, var_worst);
        if (var_worst > worst) worst = var_worst;
    }
    loss(ctx); // leave the forward's outputs as they are at the unperturbed inputs
    return worst;
}

static double fd_check(const char *kernel, const FdVar *vars, int nv, LossFn loss, void *ctx) {
    return fd_check_stride(kernel, vars, nv, loss, ctx, 1);
}

// ---- embedding ---------------------------------------------------------------------------

typedef struct {
    int N, C;
    const int *tok;
    double *wte, *out;
    const double *R;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    embedding_forward_f64(c->out, c->tok, c->wte, c->N, c->C);
    return sum_prod(c->out, c->R, (size_t)c->N * c->C);
}

static void test_embedding(void) {
    Rng rng;
    rng_seed(&rng, 11);
    const int N = 7, C = 5, V = 6;
    const int tok[] = {1, 3, 1, 0, 5, 3, 1}; // repeats: rows must accumulate
    EmbCtx c = {N, C, tok, randn(&rng, V * C, 1), zeros(N * C), randn(&rng, N * C, 1)};
    emb_loss(&c);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) CU_ASSERT_EQUAL(c.out[i * C + j], c.wte[tok[i] * C + j]);
    double *dwte = zeros(V * C);
    embedding_backward_f64(dwte, c.R, tok, N, C);
    FdVar vars[] = {{"wte", c.wte, dwte, (size_t)V * C}};
    fd_check("embedding", vars, 1, emb_loss, &c);
    free(c.wte), free(c.out), free((void *)c.R), free(dwte);
}

// ---- rmsnorm -----------------------------------------------------------------------------

typedef struct {
    int N, C;
    double eps;
    double *x, *w, *out, *rstd;
    const double *R;
} NormCtx;

static double norm_loss(void *p) {
    NormCtx *c = p;
    rmsnorm_forward_f64(c->out, c->rstd, c->x, c->w, c->N, c->C, c->eps);
    return sum_prod(c->out, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm(void) {
    Rng rng;
    rng_seed(&rng, 12);
    const int N = 4, C = 11;
    NormCtx c = {N,
                 C,
                 1e-5,
                 randn(&rng, N * C, 1),
                 randn(&rng, C, 0.5),
                 zeros(N * C),
                 zeros(N),
                 randn(&rng, N * C, 1)};
    for (int j = 0; j < C; j++) c.w[j] += 1.0;
    norm_loss(&c);
    double worst_fwd = 0;
    for (int i = 0; i < N; i++) {
        long double ss = 0;
        for (int j = 0; j < C; j++) ss += (long double)c.x[i * C + j] * c.x[i * C + j];
        long double r = 1.0L / sqrtl(ss / C + c.eps);
        for (int j = 0; j < C; j++)
            worst_fwd =
                fmax(worst_fwd, fabs(c.out[i * C + j] - (double)(c.w[j] * c.x[i * C + j] * r)));
    }
    CU_ASSERT(worst_fwd < 1e-14);
    double *dx = zeros(N * C), *dw = zeros(C);
    rmsnorm_backward_f64(dx, dw, c.R, c.x, c.w, c.rstd, N, C);
    FdVar vars[] = {{"x", c.x, dx, (size_t)N * C}, {"w", c.w, dw, (size_t)C}};
    fd_check("rmsnorm", vars, 2, norm_loss, &c);
    free(c.x), free(c.w), free(c.out), free(c.rstd), free((void *)c.R), free(dx), free(dw);
}

// ---- matmul ------------------------------------------------------------------------------

typedef struct {
    int N, IC, OC;
    double *inp, *w, *bias, *out;
    const double *R;
} MatCtx;

static double mat_loss(void *p) {
    MatCtx *c = p;
    matmul_forward_f64(c->out, c->inp, c->w, c->bias, c->N, c->IC, c->OC);
    return sum_prod(c->out, c->R, (size_t)c->N * c->OC);
}

static void check_matmul(int with_bias) {
    Rng rng;
    rng_seed(&rng, 13 + with_bias);
    const int N = 5, IC = 9, OC = 3;
    MatCtx c = {N,
                IC,
                OC,
                randn(&rng, N * IC, 1),
                randn(&rng, OC * IC, 1),
                with_bias ? randn(&rng, OC, 1) : NULL,
                zeros(N * OC),
                randn(&rng, N * OC, 1)};
    mat_loss(&c);
    double worst_fwd = 0;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            long double s = with_bias ? c.bias[o] : 0;
            for (int j = 0; j < IC; j++) s += (long double)c.inp[i * IC + j] * c.w[o * IC + j];
            worst_fwd = fmax(worst_fwd, fabs(c.out[i * OC + o] - (double)s));
        }
    CU_ASSERT(worst_fwd < 1e-13);
    double *dinp = zeros(N * IC), *dw = zeros(OC * IC), *db = zeros(OC);
    matmul_backward_f64(dinp, dw, with_bias ? db : NULL, c.R, c.inp, c.w, N, IC, OC);
    FdVar vars[] = {{"inp", c.inp, dinp, (size_t)N * IC},
                    {"w", c.w, dw, (size_t)OC * IC},
                    {"bias", c.bias, db, (size_t)OC}};
    fd_check("matmul", vars, with_bias ? 3 : 2, mat_loss, &c);
    free(c.inp), free(c.w), free(c.bias), free(c.out), free((void *)c.R);
    free(dinp), free(dw), free(db);
}

static void test_matmul_bias(void) {
    check_matmul(1);
}

static void test_matmul_nobias(void) {
    check_matmul(0);
}

// ---- rope --------------------------------------------------------------------------------

typedef struct {
    int N, H, D;
    double *x, *out;
    const double *cosv, *sinv, *R;
} RopeCtx;

static double rope_loss(void *p) {
    RopeCtx *c = p;
    rope_forward_f64(c->out, c->x, c->cosv, c->sinv, c->N, c->H, c->D);
    return sum_prod(c->out, c->R, (size_t)c->N * c->H * c->D);
}

static void test_rope(void) {
    // llama3 scaling with all three regimes among the frequencies: kept, blended, scaled
    ModelConfig cfg;
    test_tiny_config(&cfg, MODEL_LLAMA);
    cfg.head_dim = 16;
    cfg.rope_theta = 10000.0;
    cfg.rope_original_max_position_embeddings = 32;
    const int D = 16, half = 8, H = 3;
    double inv[8];
    rope_inv_freq(&cfg, inv);
    double plain = 1.0 / pow(10000.0, 2.0 * 2 / D); // i = 2 has a wavelength above 32: scaled
    CU_ASSERT(fabs(inv[2] - plain / 8) < 1e-6 * plain);
    CU_ASSERT(fabs(inv[0] - 1.0) < 1e-12);          // wavelength 2 pi: kept
    const int pos[] = {0, 1, 2, 3, 4, 0, 1, 2, 17}; // packed sequences restart at 0
    const int N = 9;
    Rng rng;
    rng_seed(&rng, 14);
    double *cosv = zeros(N * half), *sinv = zeros(N * half);
    rope_table_f64(cosv, sinv, pos, inv, N, half);
    RopeCtx c = {N,
                 H,
                 D,
                 randn(&rng, N * H * D, 1),
                 zeros(N * H * D),
                 cosv,
                 sinv,
                 randn(&rng, N * H * D, 1)};
    rope_loss(&c);
    double worst_fwd = 0;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < half; j++) {
                const double *x = c.x + (i * H + h) * D;
                const double *y = c.out + (i * H + h) * D;
                long double a = (long double)pos[i] * inv[j];
                long double e1 = x[j] * cosl(a) - x[j + half] * sinl(a);
                long double e2 = x[j + half] * cosl(a) + x[j] * sinl(a);
                worst_fwd = fmax(worst_fwd, fabs(y[j] - (double)e1));
                worst_fwd = fmax(worst_fwd, fabs(y[j + half] - (double)e2));
            }
    CU_ASSERT(worst_fwd < 1e-13);
    double *dx = zeros(N * H * D);
    rope_backward_f64(dx, c.R, cosv, sinv, N, H, D);
    FdVar vars[] = {{"x", c.x, dx, (size_t)N * H * D}};
    fd_check("rope", vars, 1, rope_loss, &c);
    // in place gives the same values
    double *tmp = mallocCheck((size_t)N * H * D * sizeof(double));
    memcpy(tmp, c.R, (size_t)N * H * D * sizeof(double));
    rope_backward_f64(tmp, tmp, cosv, sinv, N, H, D);
    CU_ASSERT(memcmp(tmp, dx, (size_t)N * H * D * sizeof(double)) == 0);
    free(tmp), free(cosv), free(sinv), free(c.x), free(c.out), free((void *)c.R), free(dx);
}

// ---- attention ---------------------------------------------------------------------------

typedef struct {
    int B, Hq, Hkv, D, window;
    const int *offsets;
    double *q, *k, *v, *out, *lse;
    const double *R;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    attention_forward_f64(c->out, c->lse, c->q, c->k, c->v, c->offsets, NULL, c->B, c->Hq, c->Hkv,
                          c->D, c->window);
    return sum_prod(c->out, c->R, (size_t)c->offsets[c->B] * c->Hq * c->D);
}

static void check_attention_on(const int *offsets, int B, int Hq, int Hkv, int D, int window,
                               size_t stride) {
    const int N = offsets[B], Q = Hq * D, KV = Hkv * D;
    Rng rng;
    rng_seed(&rng, 15 + window);
    AttCtx c = {B,
                Hq,
                Hkv,
                D,
                window,
                offsets,
                randn(&rng, N * Q, 1),
                randn(&rng, N * KV, 1),
                randn(&rng, N * KV, 1),
                zeros(N * Q),
                zeros(N * Hq),
                randn(&rng, N * Q, 1)};
    att_loss(&c);
    // direct computation in long double
    double worst_fwd = 0;
    for (int b = 0; b < B; b++)
        for (int i = offsets[b]; i < offsets[b + 1]; i++)
            for (int h = 0; h < Hq; h++) {
                const int g = h / (Hq / Hkv);
                long double s[512], mx = -INFINITY, sum = 0;
                int lo = offsets[b];
                if (window > 0 && i - window + 1 > lo) lo = i - window + 1;
                for (int j = lo; j <= i; j++) {
                    long double d = 0;
                    for (int t = 0; t < D; t++)
                        d += (long double)c.q[i * Q + h * D + t] * c.k[j * KV + g * D + t];
                    s[j - lo] = d / sqrtl(D);
                    if (s[j - lo] > mx) mx = s[j - lo];
                }
                for (int j = lo; j <= i; j++) sum += expl(s[j - lo] - mx);
                for (int t = 0; t < D; t++) {
                    long double o = 0;
                    for (int j = lo; j <= i; j++)
                        o += expl(s[j - lo] - mx) / sum * c.v[j * KV + g * D + t];
                    worst_fwd = fmax(worst_fwd, fabs(c.out[i * Q + h * D + t] - (double)o));
                }
                worst_fwd = fmax(worst_fwd, fabs(c.lse[i * Hq + h] - (double)(mx + logl(sum))));
            }
    CU_ASSERT(worst_fwd < 1e-13);
    double *dq = zeros(N * Q), *dk = zeros(N * KV), *dv = zeros(N * KV);
    attention_backward_f64(dq, dk, dv, c.R, c.out, c.lse, c.q, c.k, c.v, offsets, NULL, B, Hq, Hkv,
                           D, window);
    FdVar vars[] = {{"q", c.q, dq, (size_t)N * Q},
                    {"k", c.k, dk, (size_t)N * KV},
                    {"v", c.v, dv, (size_t)N * KV}};
    char name[32];
    snprintf(name, sizeof name, "att%d/%d/W%d", Hq, Hkv, window);
    fd_check_stride(name, vars, 3, att_loss, &c, stride);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.lse), free((void *)c.R);
    free(dq), free(dk), free(dv);
}

static void check_attention(int Hq, int Hkv, int D, int window) {
    const int offsets[] = {0, 5, 6, 6, 13}; // lengths 5, 1, 0 (empty) and 7
    check_attention_on(offsets, 4, Hq, Hkv, D, window, 1);
}

// Sequences longer than the kernel's blocks of query rows (128), with and without a window;
// a prime stride picks about 600 coordinates of each input.
static void test_attention_long(void) {
    const int offsets[] = {0, 300, 301, 431};
    check_attention_on(offsets, 3, 2, 1, 4, 0, 7);
    check_attention_on(offsets, 3, 2, 1, 20, 50, 7);
}

// The float instantiation (production) against the double one on the same inputs, with head
// sizes that exercise the vector tiles of both (16 doubles, 32 floats) and their remainders.
static void check_attention_f32(int D, int window) {
    const int offsets[] = {0, 150, 151, 290}, B = 3, N = 290, Hq = 4, Hkv = 2;
    const int Q = Hq * D, KV = Hkv * D;
    Rng rng;
    rng_seed(&rng, 19 + D);
    double *q = randn(&rng, N * Q, 1), *k = randn(&rng, N * KV, 1), *v = randn(&rng, N * KV, 1);
    double *dout = randn(&rng, N * Q, 1);
    double *o = zeros(N * Q), *lse = zeros(N * Hq), *dq = zeros(N * Q), *dk = zeros(N * KV),
           *dv = zeros(N * KV);
    attention_forward_f64(o, lse, q, k, v, offsets, NULL, B, Hq, Hkv, D, window);
    attention_backward_f64(dq, dk, dv, dout, o, lse, q, k, v, offsets, NULL, B, Hq, Hkv, D, window);
    const size_t sizes[] = {(size_t)N * Q, (size_t)N * KV, (size_t)N * KV, (size_t)N * Q};
    double *src[] = {q, k, v, dout};
    float *f[4];
    for (int t = 0; t < 4; t++) {
        f[t] = mallocCheck(sizes[t] * sizeof(float));
        for (size_t i = 0; i < sizes[t]; i++) f[t][i] = (float)src[t][i];
    }
    float *of = callocCheck((size_t)N * Q, sizeof(float)), *lf = callocCheck(N * Hq, sizeof(float));
    float *dqf = callocCheck((size_t)N * Q, sizeof(float));
    float *dkf = callocCheck((size_t)N * KV, sizeof(float));
    float *dvf = callocCheck((size_t)N * KV, sizeof(float));
    attention_forward_f32(of, lf, f[0], f[1], f[2], offsets, NULL, B, Hq, Hkv, D, window);
    attention_backward_f32(dqf, dkf, dvf, f[3], of, lf, f[0], f[1], f[2], offsets, NULL, B, Hq, Hkv,
                           D, window);
    double eo = 0, el = 0, eq = 0, ek = 0, ev = 0;
    for (size_t i = 0; i < (size_t)N * Q; i++) {
        eo = fmax(eo, fabs(of[i] - o[i]));
        eq = fmax(eq, fabs(dqf[i] - dq[i]));
    }
    for (size_t i = 0; i < (size_t)N * KV; i++) {
        ek = fmax(ek, fabs(dkf[i] - dk[i]));
        ev = fmax(ev, fabs(dvf[i] - dv[i]));
    }
    for (size_t i = 0; i < (size_t)N * Hq; i++) el = fmax(el, fabs(lf[i] - lse[i]));
    printf("\n    D=%d W=%d: float vs double out %.1e lse %.1e dq %.1e dk %.1e dv %.1e", D, window,
           eo, el, eq, ek, ev);
    CU_ASSERT(eo < 1e-5 && el < 1e-5 && eq < 1e-4 && ek < 1e-4 && ev < 1e-4);
    for (int t = 0; t < 4; t++) free(f[t]);
    free(of), free(lf), free(dqf), free(dkf), free(dvf);
    free(q), free(k), free(v), free(dout), free(o), free(lse), free(dq), free(dk), free(dv);
}

static void test_attention_float(void) {
    check_attention_f32(40, 0);
    check_attention_f32(64, 70);
    check_attention_f32(7, 0);
}

static void test_attention_gqa(void) {
    check_attention(4, 2, 12, 0); // D = 12: below one micro-kernel tile
    check_attention(4, 2, 20, 0); // D = 20: one tile of 16 doubles and a remainder
}

static void test_attention_gqa_window(void) {
    check_attention(4, 2, 12, 3);
}

static void test_attention_mha_window(void) {
    check_attention(2, 2, 5, 4);
}

static void test_attention_mqa(void) {
    check_attention(3, 1, 4, 0);
}

// ---- swiglu and residual -----------------------------------------------------------------

typedef struct {
    size_t n;
    double *gate, *up, *out;
    const double *R;
} SwiCtx;

static double swi_loss(void *p) {
    SwiCtx *c = p;
    swiglu_forward_f64(c->out, c->gate, c->up, c->n);
    return sum_prod(c->out, c->R, c->n);
}

static void test_swiglu(void) {
    Rng rng;
    rng_seed(&rng, 16);
    const size_t n = 23;
    SwiCtx c = {n, randn(&rng, n, 2.5), randn(&rng, n, 1), zeros(n), randn(&rng, n, 1)};
    swi_loss(&c);
    double worst_fwd = 0;
    for (size_t i = 0; i < n; i++) {
        long double g = c.gate[i];
        worst_fwd = fmax(worst_fwd, fabs(c.out[i] - (double)(g / (1 + expl(-g)) * c.up[i])));
    }
    CU_ASSERT(worst_fwd < 1e-14);
    double *dg = zeros(n), *du = zeros(n);
    swiglu_backward_f64(dg, du, c.R, c.gate, c.up, n);
    FdVar vars[] = {{"gate", c.gate, dg, n}, {"up", c.up, du, n}};
    fd_check("swiglu", vars, 2, swi_loss, &c);
    free(c.gate), free(c.up), free(c.out), free((void *)c.R), free(dg), free(du);
}

typedef struct {
    size_t n;
    double *a, *b, *out;
    const double *R;
} ResCtx;

static double res_loss(void *p) {
    ResCtx *c = p;
    residual_forward_f64(c->out, c->a, c->b, c->n);
    return sum_prod(c->out, c->R, c->n);
}

static void test_residual(void) {
    Rng rng;
    rng_seed(&rng, 17);
    const size_t n = 10;
    ResCtx c = {n, randn(&rng, n, 1), randn(&rng, n, 1), zeros(n), randn(&rng, n, 1)};
    res_loss(&c);
    for (size_t i = 0; i < n; i++) CU_ASSERT_EQUAL(c.out[i], c.a[i] + c.b[i]);
    // the backward of a residual add passes dout to both inputs
    FdVar vars[] = {{"a", c.a, c.R, n}, {"b", c.b, c.R, n}};
    fd_check("residual", vars, 2, res_loss, &c);
    free(c.a), free(c.b), free(c.out), free((void *)c.R);
}

// ---- logprob + entropy head --------------------------------------------------------------

typedef struct {
    int N, V;
    const int *targets;
    double *logits, *lp, *ent, *lse;
    const double *R1, *R2; // weights of logprob and entropy in the loss (R2 NULL: none)
} HeadCtx;

static double head_loss(void *p) {
    HeadCtx *c = p;
    head_forward_f64(c->lp, c->ent, c->lse, c->logits, c->targets, c->N, c->V);
    double l = sum_prod(c->lp, c->R1, c->N);
    if (c->R2) l += sum_prod(c->ent, c->R2, c->N);
    return l;
}

static void check_head(int with_entropy) {
    Rng rng;
    rng_seed(&rng, 18 + with_entropy);
    const int N = 6, V = 13;
    const int targets[] = {3, -1, 0, 12, 2, -1};
    HeadCtx c = {N,
                 V,
                 targets,
                 randn(&rng, N * V, 2),
                 zeros(N),
                 zeros(N),
                 zeros(N),
                 randn(&rng, N, 1),
                 with_entropy ? randn(&rng, N, 1) : NULL};
    head_loss(&c);
    double worst_fwd = 0;
    for (int i = 0; i < N; i++) {
        const double *z = c.logits + i * V;
        long double S = 0, H = 0;
        for (int t = 0; t < V; t++) S += expl((long double)z[t]);
        long double lse = logl(S);
        for (int t = 0; t < V; t++) {
            long double lp = z[t] - lse;
            H -= expl(lp) * lp;
        }
        long double lp = targets[i] >= 0 ? z[targets[i]] - lse : 0;
        worst_fwd = fmax(worst_fwd, fabs(c.lp[i] - (double)lp));
        worst_fwd = fmax(worst_fwd, fabs(c.ent[i] - (double)H));
        worst_fwd = fmax(worst_fwd, fabs(c.lse[i] - (double)lse));
    }
    CU_ASSERT(worst_fwd < 1e-13);
    CU_ASSERT_EQUAL(c.lp[1], 0.0);
    double *dz = zeros(N * V);
    head_backward_f64(dz, c.logits, c.lse, c.ent, targets, c.R1, c.R2, N, V);
    FdVar vars[] = {{"logits", c.logits, dz, (size_t)N * V}};
    fd_check(with_entropy ? "head lp+H" : "head lp", vars, 1, head_loss, &c);
    // in place (the model writes the logits' gradient over them) gives the same values
    double *z2 = mallocCheck((size_t)N * V * sizeof(double));
    memcpy(z2, c.logits, (size_t)N * V * sizeof(double));
    head_backward_f64(z2, z2, c.lse, c.ent, targets, c.R1, c.R2, N, V);
    CU_ASSERT(memcmp(z2, dz, (size_t)N * V * sizeof(double)) == 0);
    free(z2), free(c.logits), free(c.lp), free(c.ent), free(c.lse), free((void *)c.R1);
    free((void *)c.R2), free(dz);
}

static void test_head_logprob(void) {
    check_head(0);
}

static void test_head_logprob_entropy(void) {
    check_head(1);
}

// Huge logits must not overflow: the head subtracts the row maximum (float path too).
static void test_head_large_logits(void) {
    const int V = 4, targets[] = {1};
    double z[] = {1000.0, 1001.0, 999.0, -1e4}, lp, ent, lse;
    head_forward_f64(&lp, &ent, &lse, z, targets, 1, V);
    long double S = expl(-1.0L) + 1 + expl(-2.0L) + expl(-11001.0L);
    CU_ASSERT(fabs(lp - (double)-logl(S)) < 1e-13);
    CU_ASSERT(fabs(lse - (double)(1001 + logl(S))) < 1e-12);
    CU_ASSERT(isfinite(ent) && ent > 0);
    float zf[] = {1000.0f, 1001.0f, 999.0f, -1e4f}, lpf, entf, lsef;
    head_forward_f32(&lpf, &entf, &lsef, zf, targets, 1, V);
    CU_ASSERT(fabs(lpf - lp) < 1e-5);
    CU_ASSERT(fabs(entf - ent) < 1e-5);
}

void register_kernel_grad_tests(void) {
    static const TestCase tests[] = {
        {"embedding", test_embedding},
        {"rmsnorm", test_rmsnorm},
        {"matmul with bias", test_matmul_bias},
        {"matmul without bias", test_matmul_nobias},
        {"rope llama3 table", test_rope},
        {"attention GQA packed", test_attention_gqa},
        {"attention GQA sliding window", test_attention_gqa_window},
        {"attention MHA sliding window", test_attention_mha_window},
        {"attention one kv head", test_attention_mqa},
        {"attention across query blocks", test_attention_long},
        {"attention float matches double", test_attention_float},
        {"swiglu", test_swiglu},
        {"residual", test_residual},
        {"head logprob", test_head_logprob},
        {"head logprob and entropy", test_head_logprob_entropy},
        {"head large logits", test_head_large_logits},
        {NULL, NULL},
    };
    add_suite("kernel_grad", tests);
}
