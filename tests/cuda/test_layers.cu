// Tests of the CUDA layer kernels (src/model/cuda/layers.cu) against the CPU kernels of
// src/model/cpu/kernels.inc and the AdamW and grad-norm formulas of src/model/optimizer.c. Each kernel
// runs on a size that takes its 16-byte vector path and on one that does not (odd sizes, pointers
// one element off), += kernels on random prior contents, and the reductions twice to check
// they give the same bits.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "model/cuda/layers.cuh"
#include "cuda_tests.h"

#if CUDA_TEST_BIG
static const int NR = 1024, CV = 896, CS = 899;   // rows; a row width that vectorizes, one that not
static const size_t NE = (size_t)1024 * 4864 + 3; // elementwise sizes: an MLP activation + tail
static const size_t NSUM = (size_t)10 * 1000 * 1000 + 3;
#else
static const int NR = 12, CV = 96, CS = 45;
static const size_t NE = 1003;
static const size_t NSUM = 3 * 512 * 16 + 5; // four blocks of the sum of squares
#endif

// ---- helpers -------------------------------------------------------------------------------

// CHECK_REL, printing the error it measured.
static void check(const char *what, const std::vector<float> &got, const std::vector<float> &want,
                  double tol) {
    const double e = rel_err(what, got, want, tol);
    std::printf("\n    %-28s rel err %.3g", what, e);
    CU_ASSERT(e <= tol);
}

static bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

static std::vector<int> rand_ints(size_t n, uint64_t seed, int hi) {
    std::vector<float> u = rand_vec(n, seed);
    std::vector<int> v(n);
    for (size_t i = 0; i < n; i++) {
        v[i] = (int)((u[i] + 1.0f) * 0.5f * (float)hi);
        if (v[i] >= hi) v[i] = hi - 1;
    }
    return v;
}

static std::vector<float> bf16_rounded(std::vector<float> v) {
    round_bf16(v);
    return v;
}

// A device copy one element past a 16-byte boundary (every vector path refuses it). Free with
// cudaFree(p - 1).
template <class T> static T *to_dev_off1(const std::vector<T> &h) {
    T *p = dev_alloc<T>(h.size() + 1);
    cudaCheck(cudaMemcpy(p + 1, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p + 1;
}
static bf16 *to_dev_bf16_off1(const std::vector<float> &h) {
    std::vector<bf16> b(h.size());
    for (size_t i = 0; i < h.size(); i++) b[i] = __float2bfloat16(h[i]);
    return to_dev_off1(b);
}

// ---- embedding -----------------------------------------------------------------------------

static void test_embedding(void) {
    const int V = CUDA_TEST_BIG ? 4096 : 7; // few tokens: the backward sees repeats
    for (int C : {CV, CS}) {
        std::vector<int> tok = rand_ints(NR, 1 + C, V);
        std::vector<float> wte = bf16_rounded(rand_vec((size_t)V * C, 2 + C));
        std::vector<float> want((size_t)NR * C);
        embedding_forward_f32(want.data(), tok.data(), wte.data(), NR, C);
        int *d_tok = to_dev(tok);
        bf16 *d_wte = to_dev_bf16(wte);
        float *d_out = dev_alloc<float>((size_t)NR * C);
        embedding_forward(d_out, d_tok, d_wte, NR, C, 0);
        check(C == CV ? "embedding fwd (vector)" : "embedding fwd (scalar)",
              from_dev(d_out, (size_t)NR * C), want, TOL_F32);

        // backward: adds into random prior gradients
        std::vector<float> dout = rand_vec((size_t)NR * C, 3 + C);
        std::vector<float> dwte = rand_vec((size_t)V * C, 4 + C);
        float *d_dout = to_dev(dout), *d_dwte = to_dev(dwte);
        embedding_backward_f32(dwte.data(), dout.data(), tok.data(), NR, C);
        embedding_backward(d_dwte, d_dout, d_tok, NR, C, 0);
        check(C == CV ? "embedding bwd (vector C)" : "embedding bwd (odd C)",
              from_dev(d_dwte, (size_t)V * C), dwte, TOL_F32);
        cudaFree(d_tok), cudaFree(d_wte), cudaFree(d_out), cudaFree(d_dout), cudaFree(d_dwte);
    }
}

// ---- rmsnorm -------------------------------------------------------------------------------

static void test_rmsnorm_forward(void) {
    const float eps = 1e-6f;
    for (int C : {CV, CS}) {
        std::vector<float> inp = rand_vec((size_t)NR * C, 10 + C, 3.0f);
        std::vector<float> w = bf16_rounded(rand_vec(C, 11 + C));
        std::vector<float> out((size_t)NR * C), rstd(NR);
        rmsnorm_forward_f32(out.data(), rstd.data(), inp.data(), w.data(), NR, C, eps);
        float *d_inp = to_dev(inp), *d_rstd = dev_alloc<float>(NR);
        bf16 *d_w = to_dev_bf16(w), *d_out = dev_alloc<bf16>((size_t)NR * C);
        rmsnorm_forward(d_out, d_rstd, d_inp, d_w, NR, C, eps, 0);
        const bool v = C == CV;
        check(v ? "rmsnorm fwd out (vector)" : "rmsnorm fwd out (scalar)",
              from_dev_bf16(d_out, (size_t)NR * C), out, TOL_BF16);
        check(v ? "rmsnorm fwd rstd (vector)" : "rmsnorm fwd rstd (scalar)", from_dev(d_rstd, NR),
              rstd, TOL_F32);
        cudaFree(d_inp), cudaFree(d_rstd), cudaFree(d_w), cudaFree(d_out);
    }
}

static void test_rmsnorm_backward(void) {
    for (int C : {CV, CS}) {
        const size_t n = (size_t)NR * C;
        std::vector<float> inp = rand_vec(n, 20 + C, 3.0f), dout = rand_vec(n, 21 + C);
        std::vector<float> w = bf16_rounded(rand_vec(C, 22 + C));
        std::vector<float> out(n), rstd(NR);
        rmsnorm_forward_f32(out.data(), rstd.data(), inp.data(), w.data(), NR, C, 1e-6);
        const std::vector<float> dinp0 = rand_vec(n, 23 + C), dw0 = rand_vec(C, 24 + C);
        std::vector<float> dinp = dinp0, dw = dw0;
        rmsnorm_backward_f32(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), rstd.data(),
                             NR, C);

        float *d_inp = to_dev(inp), *d_dout = to_dev(dout), *d_rstd = to_dev(rstd);
        bf16 *d_w = to_dev_bf16(w);
        float *d_scratch = dev_alloc<float>(rmsnorm_backward_scratch(NR, C));
        std::vector<float> got_dinp[2], got_dw[2];
        for (int run = 0; run < 2; run++) {
            float *d_dinp = to_dev(dinp0), *d_dw = to_dev(dw0);
            rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, NR, C, d_scratch, 0);
            got_dinp[run] = from_dev(d_dinp, n);
            got_dw[run] = from_dev(d_dw, C);
            cudaFree(d_dinp), cudaFree(d_dw);
        }
        const bool v = C == CV;
        check(v ? "rmsnorm bwd dinp (vector)" : "rmsnorm bwd dinp (scalar)", got_dinp[0], dinp,
              TOL_F32);
        check(v ? "rmsnorm bwd dw (vector)" : "rmsnorm bwd dw (scalar)", got_dw[0], dw, TOL_F32);
        CU_ASSERT(same_bits(got_dinp[0], got_dinp[1]));
        CU_ASSERT(same_bits(got_dw[0], got_dw[1]));
        cudaFree(d_inp), cudaFree(d_dout), cudaFree(d_rstd), cudaFree(d_w), cudaFree(d_scratch);
    }
}

// ---- rope ----------------------------------------------------------------------------------

static void test_rope(void) {
    struct {
        int N, H, D, maxpos;
    } shapes[] = {
#if CUDA_TEST_BIG
        {NR, 14, 64, 32768},
        {NR, 2, 128, 32768},
#endif
        {7, 3, 16, 4096}, // positions far from zero: large angles
        {5, 2, 6, 50},    // D/2 odd
    };
    for (const auto &s : shapes) {
        const int half = s.D / 2, W = s.H * s.D;
        const size_t n = (size_t)s.N * W;
        std::vector<int> pos = rand_ints(s.N, 30 + s.D, s.maxpos);
        std::vector<float> inv_freq(half);
        for (int j = 0; j < half; j++)
            inv_freq[j] = (float)(1.0 / std::pow(1e6, (double)(2 * j) / s.D)); // Qwen's theta
        std::vector<float> cs((size_t)s.N * half), sn((size_t)s.N * half);
        rope_table_f32(cs.data(), sn.data(), pos.data(), inv_freq.data(), s.N, half);

        std::vector<float> x = bf16_rounded(rand_vec(n, 31 + s.D)), want(n);
        rope_forward_f32(want.data(), x.data(), cs.data(), sn.data(), s.N, s.H, s.D);
        int *d_pos = to_dev(pos);
        float *d_freq = to_dev(inv_freq);
        bf16 *d_x = to_dev_bf16(x);
        rope_forward(d_x, d_pos, d_freq, s.N, s.H, s.D, 0);
        check("rope fwd", from_dev_bf16(d_x, n), want, TOL_BF16);

        std::vector<float> dy = rand_vec(n, 32 + s.D), dx(n);
        rope_backward_f32(dx.data(), dy.data(), cs.data(), sn.data(), s.N, s.H, s.D);
        float *d_dy = to_dev(dy);
        bf16 *d_dx = dev_alloc<bf16>(n); // unwritten: reads as NaN under the emulator
        rope_backward(d_dx, d_dy, d_pos, d_freq, s.N, s.H, s.D, 0);
        check("rope bwd", from_dev_bf16(d_dx, n), dx, TOL_BF16);
        cudaFree(d_pos), cudaFree(d_freq), cudaFree(d_x), cudaFree(d_dy), cudaFree(d_dx);
    }
}

// ---- swiglu --------------------------------------------------------------------------------

// off1: every pointer one element past alignment (the scalar path).
static void swiglu_case(size_t n, bool off1, uint64_t seed) {
    std::vector<float> gate = bf16_rounded(rand_vec(n, seed, 6.0f));
    std::vector<float> up = bf16_rounded(rand_vec(n, seed + 1, 2.0f));
    std::vector<float> dout = bf16_rounded(rand_vec(n, seed + 2));
    std::vector<float> out(n), dgate(n, 0.0f), dup(n, 0.0f);
    swiglu_forward_f32(out.data(), gate.data(), up.data(), n);
    swiglu_backward_f32(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);

    auto up_dev = [&](const std::vector<float> &h) {
        return off1 ? to_dev_bf16_off1(h) : to_dev_bf16(h);
    };
    auto fresh = [&]() { return dev_alloc<bf16>(n + 1) + (off1 ? 1 : 0); };
    bf16 *d_gate = up_dev(gate), *d_up = up_dev(up), *d_dout = up_dev(dout);
    bf16 *d_out = fresh(), *d_dgate = fresh(), *d_dup = fresh();
    swiglu_forward(d_out, d_gate, d_up, n, 0);
    swiglu_backward(d_dgate, d_dup, d_dout, d_gate, d_up, n, 0);
    check(off1 ? "swiglu fwd (misaligned)" : "swiglu fwd", from_dev_bf16(d_out, n), out, TOL_BF16);
    check(off1 ? "swiglu bwd dgate (misaligned)" : "swiglu bwd dgate", from_dev_bf16(d_dgate, n),
          dgate, TOL_BF16);
    check(off1 ? "swiglu bwd dup (misaligned)" : "swiglu bwd dup", from_dev_bf16(d_dup, n), dup,
          TOL_BF16);
    const int o = off1 ? 1 : 0;
    for (bf16 *p : {d_gate, d_up, d_dout, d_out, d_dgate, d_dup}) cudaFree(p - o);
}

static void test_swiglu(void) {
    swiglu_case(NE - 3, false, 40); // a multiple of 8: vectors only
    swiglu_case(NE, false, 41);     // vectors and a tail
    swiglu_case(NE, true, 42);      // misaligned: plain loads
}

// ---- bias gradient -------------------------------------------------------------------------

static void test_bias_backward(void) {
    // enough rows for several chunks of the scratch form (256 rows each)
    const int N = CUDA_TEST_BIG ? 8192 : 600;
    const int OCs[] = {CUDA_TEST_BIG ? 1152 : 66, CS}; // bf16 pairs, then an odd width
    for (int OC : OCs) {
        std::vector<float> dout = bf16_rounded(rand_vec((size_t)N * OC, 50 + OC));
        const std::vector<float> db0 = rand_vec(OC, 51 + OC);
        std::vector<float> want(OC);
        for (int c = 0; c < OC; c++) {
            double s = 0.0;
            for (int i = 0; i < N; i++) s += dout[(size_t)i * OC + c];
            want[c] = db0[c] + (float)s;
        }
        bf16 *d_dout = to_dev_bf16(dout);
        float *d_scratch = dev_alloc<float>(bias_backward_scratch(N, OC));
        for (int form = 0; form < 2; form++) { // without, then with scratch
            std::vector<float> got[2];
            for (int run = 0; run < 2; run++) {
                float *d_db = to_dev(db0);
                if (form == 0)
                    bias_backward(d_db, d_dout, N, OC, 0);
                else
                    bias_backward(d_db, d_dout, N, OC, d_scratch, 0);
                got[run] = from_dev(d_db, OC);
                cudaFree(d_db);
            }
            char what[64];
            std::snprintf(what, sizeof what, "bias bwd %s%s", OC % 2 ? "(odd OC)" : "(pairs)",
                          form ? " scratch" : "");
            check(what, got[0], want, TOL_F32);
            CU_ASSERT(same_bits(got[0], got[1]));
        }
        cudaFree(d_dout), cudaFree(d_scratch);
    }
}

// ---- casts and the residual add --------------------------------------------------------------

static void test_casts(void) {
    for (bool off1 : {false, true}) {
        std::vector<float> x = rand_vec(NE, 60 + off1, 100.0f), xb = bf16_rounded(x);
        float *d_x = off1 ? to_dev_off1(x) : to_dev(x);
        bf16 *d_b = dev_alloc<bf16>(NE + 1) + off1;
        cast_f32_to_bf16(d_b, d_x, NE, 0);
        std::vector<float> got = from_dev_bf16(d_b, NE);
        CU_ASSERT(same_bits(got, xb)); // round to nearest even, as the host's conversion
        float *d_y = dev_alloc<float>(NE + 1) + off1;
        cast_bf16_to_f32(d_y, d_b, NE, 0);
        CU_ASSERT(same_bits(from_dev(d_y, NE), xb));
        cudaFree(d_x - off1), cudaFree(d_b - off1), cudaFree(d_y - off1);
    }
}

static void test_add(void) {
    for (bool off1 : {false, true}) {
        std::vector<float> a = rand_vec(NE, 70 + off1), b = rand_vec(NE, 72 + off1), want(NE);
        residual_forward_f32(want.data(), a.data(), b.data(), NE);
        float *d_a = off1 ? to_dev_off1(a) : to_dev(a), *d_b = off1 ? to_dev_off1(b) : to_dev(b);
        add_f32(d_a, d_a, d_b, NE, 0); // in place, as the decode path's residual
        CU_ASSERT(same_bits(from_dev(d_a, NE), want));
        cudaFree(d_a - off1), cudaFree(d_b - off1);
    }
}

// ---- AdamW ---------------------------------------------------------------------------------

// adamw_block of src/model/optimizer.c, element by element.
static void adamw_ref(float *p, const float *g, float *mo, float *vo, size_t n, float decay_mul,
                      float w1, float b2, float w2, float bc2_sqrt, float eps, float neg_step) {
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay_mul;
        float mi = w1 < 0.5f ? mo[i] + w1 * (g[i] - mo[i]) : g[i] - (g[i] - mo[i]) * (1.0f - w1);
        float vi = vo[i] * b2;
        vi = vi + w2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step * mi / denom;
        mo[i] = mi;
        vo[i] = vi;
    }
}

static void test_adamw(void) {
    // step 3 of lr 1e-3, weight decay 0.1, as model_adamw_step derives the scalars; beta1 0.9
    // takes lerp's first form, beta1 0.3 its second
    const double lr = 1e-3, wd = 0.1, b2 = 0.95;
    const long t = 3;
    struct {
        double b1;
        bool decay, off1;
    } cases[] = {{0.9, true, false}, {0.3, false, false}, {0.9, true, true}};
    for (const auto &c : cases) {
        const double bc1 = 1.0 - std::pow(c.b1, (double)t), bc2 = 1.0 - std::pow(b2, (double)t);
        const float neg_step = (float)(-(lr / bc1)), bc2_sqrt = (float)std::sqrt(bc2);
        const float w1 = (float)(1.0 - c.b1), w2 = (float)(1.0 - b2), eps = 1e-8f;
        const float decay_mul = c.decay ? (float)(1.0 - lr * wd) : 1.0f;
        std::vector<float> p = rand_vec(NE, 80), g = rand_vec(NE, 81, 0.01f);
        std::vector<float> m = rand_vec(NE, 82, 0.01f), v = rand_vec(NE, 83, 1e-4f);
        for (float &x : v) x = std::fabs(x);
        const bool o = c.off1;
        float *d_p = o ? to_dev_off1(p) : to_dev(p), *d_g = o ? to_dev_off1(g) : to_dev(g);
        float *d_m = o ? to_dev_off1(m) : to_dev(m), *d_v = o ? to_dev_off1(v) : to_dev(v);
        bf16 *d_pb = dev_alloc<bf16>(NE + 1) + o;
        adamw_ref(p.data(), g.data(), m.data(), v.data(), NE, decay_mul, w1, (float)b2, w2,
                  bc2_sqrt, eps, neg_step);
        adamw_update(d_p, d_pb, d_g, d_m, d_v, NE, decay_mul, w1, (float)b2, w2, bc2_sqrt, eps,
                     neg_step, 0);
        std::vector<float> gp = from_dev(d_p, NE), gm = from_dev(d_m, NE), gv = from_dev(d_v, NE);
        check(o            ? "adamw master (misaligned)"
              : c.b1 > 0.5 ? "adamw master"
                           : "adamw master (lerp2)",
              gp, p, TOL_F32);
        check("adamw m", gm, m, TOL_F32);
        check("adamw v", gv, v, TOL_F32);
        // the same IEEE operations in the same order: the same bits as the CPU
        CU_ASSERT(same_bits(gp, p));
        CU_ASSERT(same_bits(gm, m));
        CU_ASSERT(same_bits(gv, v));
        CU_ASSERT(same_bits(from_dev_bf16(d_pb, NE), bf16_rounded(p)));
        for (float *q : {d_p, d_g, d_m, d_v}) cudaFree(q - o);
        cudaFree(d_pb - o);
    }
}

// ---- gradient norm and clipping ----------------------------------------------------------------

static void test_sum_squares(void) {
    const size_t sizes[] = {NSUM, 1003, 5, 0};
    for (size_t n : sizes) {
        for (bool off1 : {false, true}) {
            std::vector<float> g = rand_vec(n, 90 + n, 0.1f);
            double ss = 0.0;
            for (float x : g) ss += (double)x * x;
            float *d_g = n == 0 ? dev_alloc<float>(2) + off1 : off1 ? to_dev_off1(g) : to_dev(g);
            float *d_scratch = dev_alloc<float>(sum_squares_scratch(n));
            float *d_out = dev_alloc<float>(1);
            std::vector<float> got[2];
            for (int run = 0; run < 2; run++) {
                sum_squares(d_out, d_g, n, d_scratch, 0);
                got[run] = from_dev(d_out, 1);
            }
            char what[64];
            std::snprintf(what, sizeof what, "sum of squares n=%zu%s", n, off1 ? " (mis)" : "");
            check(what, got[0], {(float)ss}, TOL_F32);
            CU_ASSERT(same_bits(got[0], got[1]));
            cudaFree(d_g - off1), cudaFree(d_scratch), cudaFree(d_out);
        }
    }
}

static void test_scale_clip(void) {
    for (bool off1 : {false, true}) {
        std::vector<float> g = rand_vec(NE, 100 + off1);
        float *d_g = off1 ? to_dev_off1(g) : to_dev(g);
        scale_f32(d_g, NE, 0.37f, 0);
        std::vector<float> want = g;
        for (float &x : want) x *= 0.37f;
        CU_ASSERT(same_bits(from_dev(d_g, NE), want));

        // clipping from the device's sum of squares, as model_clip_grad_norm computes it
        float *d_scratch = dev_alloc<float>(sum_squares_scratch(NE)), *d_ss = dev_alloc<float>(1);
        sum_squares(d_ss, d_g, NE, d_scratch, 0);
        const float ss = from_dev(d_ss, 1)[0];
        const float norm = (float)std::sqrt((double)ss);
        clip_scale_f32(d_g, NE, d_ss, 2.0f * norm, 0); // coefficient above 1: nothing changes
        CU_ASSERT(same_bits(from_dev(d_g, NE), want));
        const float max_norm = 0.25f * norm, coef = max_norm / (norm + 1e-6f);
        clip_scale_f32(d_g, NE, d_ss, max_norm, 0);
        for (float &x : want) x *= coef;
        CU_ASSERT(same_bits(from_dev(d_g, NE), want));
        cudaFree(d_g - off1), cudaFree(d_scratch), cudaFree(d_ss);
    }
}

void register_cuda_layer_tests(void) {
    static const TestCase tests[] = {
        {"embedding forward and backward", test_embedding},
        {"rmsnorm forward", test_rmsnorm_forward},
        {"rmsnorm backward, deterministic", test_rmsnorm_backward},
        {"rope forward and backward", test_rope},
        {"swiglu forward and backward", test_swiglu},
        {"bias backward, deterministic", test_bias_backward},
        {"casts fp32 <-> bf16", test_casts},
        {"residual add in place", test_add},
        {"adamw: the CPU's bits", test_adamw},
        {"sum of squares, deterministic", test_sum_squares},
        {"scale and clip", test_scale_clip},
        {NULL, NULL},
    };
    add_suite("cuda_layers", tests);
}
