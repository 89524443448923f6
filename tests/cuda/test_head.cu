// The GPU head and sampler (src/model/cuda/head.cuh) against the CPU: head_forward / head_backward
// against head_forward_f32 / head_backward_f32, sample_rows against sample_token_limited
// (plain, temperature, greedy, top-k, top-p, both, a drawing limit n_draw < V, u from 0 to just
// below 1), entropies off, rows whose length is not a multiple of 4, and determinism; and the
// self-certainty KL(uniform || p) against the CPU and against its float64 definition.
//
// Sampling tokens must equal the CPU's, except where u sits on a boundary of the inverse CDF
// within rounding: a GPU token other than the CPU's passes only when, in the exact (double)
// distribution, u lies within 1e-5 of that token's interval [F(before it), F(after it)]. The
// rows are made so that this is rare (most of the mass on a few tokens); the tests count and
// print the neighbours they accept.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <algorithm>

#include "model/cuda/head.cuh"
#include "cuda_tests.h"

extern "C" {
#include "config/config.h"
#include "model/sampler.h"
}

#if CUDA_TEST_BIG
static const int V_EVEN = 151936, V_ODD = 151935, HEAD_ROWS = 64; // Qwen2.5's vocabulary
#else
static const int V_EVEN = 640, V_ODD = 601, HEAD_ROWS = 5;
#endif

// ---- the head ----------------------------------------------------------------------------

// Targets of N rows: ids in [0, V), a -1 (no target) in every third row.
static std::vector<int> make_targets(int N, int V, uint64_t seed) {
    std::vector<float> r = rand_vec(N, seed, 1.0f);
    std::vector<int> t(N);
    for (int i = 0; i < N; i++)
        t[i] = i % 3 == 2 ? -1 : std::min(V - 1, (int)((r[i] + 1.0f) * 0.5f * V));
    return t;
}

static void check_head_forward(int N, int V) {
    const std::vector<float> z = rand_vec((size_t)N * V, 100 + V, 8.0f);
    const std::vector<int> tg = make_targets(N, V, 200 + V);
    std::vector<float> lp(N), H(N), lse(N);
    head_forward_f32(lp.data(), H.data(), lse.data(), z.data(), tg.data(), N, V);

    float *dz = to_dev(z), *dlp = dev_alloc<float>(N), *dH = dev_alloc<float>(N);
    float *dlse = dev_alloc<float>(N);
    int *dtg = to_dev(tg);
    head_forward(dlp, dH, dlse, dz, dtg, N, V, 0);
    CHECK_REL("head_forward lse", from_dev(dlse, N), lse, TOL_F32);
    CHECK_REL("head_forward entropy", from_dev(dH, N), H, TOL_F32);
    CHECK_REL("head_forward logprob", from_dev(dlp, N), lp, TOL_F32);
    // without the optional outputs: lse alone, the same bits
    float *dlse2 = dev_alloc<float>(N);
    head_forward(nullptr, nullptr, dlse2, dz, nullptr, N, V, 0);
    CU_ASSERT(from_dev(dlse2, N) == from_dev(dlse, N));
    cudaFree(dz), cudaFree(dlp), cudaFree(dH), cudaFree(dlse), cudaFree(dtg), cudaFree(dlse2);
}

static void test_head_forward(void) {
    check_head_forward(HEAD_ROWS, V_EVEN); // float4 loads
    check_head_forward(HEAD_ROWS, V_ODD);  // rows not 16-byte aligned: scalar loads
}

static void check_head_backward(int N, int V, bool with_entropy) {
    const std::vector<float> z = rand_vec((size_t)N * V, 300 + V, 8.0f);
    const std::vector<int> tg = make_targets(N, V, 400 + V);
    const std::vector<float> dlogprob = rand_vec(N, 500 + V, 1.0f);
    const std::vector<float> dentropy = rand_vec(N, 600 + V, 0.5f);
    std::vector<float> lp(N), H(N), lse(N), want((size_t)N * V);
    head_forward_f32(lp.data(), H.data(), lse.data(), z.data(), tg.data(), N, V);
    head_backward_f32(want.data(), z.data(), lse.data(), H.data(), tg.data(), dlogprob.data(),
                      with_entropy ? dentropy.data() : nullptr, N, V);

    float *dz = to_dev(z), *dlse = to_dev(lse), *dH = to_dev(H), *ddlp = to_dev(dlogprob);
    float *dde = to_dev(dentropy);
    int *dtg = to_dev(tg);
    bf16 *dg = dev_alloc<bf16>((size_t)N * V);
    head_backward(dg, dz, dlse, dH, dtg, ddlp, with_entropy ? dde : nullptr, N, V, 0);
    const std::vector<float> got = from_dev_bf16(dg, (size_t)N * V);
    CHECK_REL(with_entropy ? "head_backward dlogits (+ entropy)" : "head_backward dlogits", got,
              want, TOL_BF16);
    // rows without a target and without an entropy term are exactly zero
    if (!with_entropy)
        for (int i = 0; i < N; i++)
            if (tg[i] < 0)
                for (int t = 0; t < V; t++) CU_ASSERT_EQUAL(got[(size_t)i * V + t], 0.0f);
    cudaFree(dz), cudaFree(dlse), cudaFree(dH), cudaFree(ddlp), cudaFree(dde), cudaFree(dtg);
    cudaFree(dg);
}

static void test_head_backward(void) {
    check_head_backward(HEAD_ROWS, V_EVEN, false);
    check_head_backward(HEAD_ROWS, V_EVEN, true);
    check_head_backward(HEAD_ROWS, V_ODD, false);
    check_head_backward(HEAD_ROWS, V_ODD, true);
}

static void test_head_deterministic(void) {
    const int N = HEAD_ROWS, V = V_EVEN;
    const std::vector<float> z = rand_vec((size_t)N * V, 700, 8.0f);
    const std::vector<int> tg = make_targets(N, V, 701);
    const std::vector<float> dlogprob = rand_vec(N, 702, 1.0f);
    float *dz = to_dev(z), *dlse = dev_alloc<float>(N), *dH = dev_alloc<float>(N);
    float *dlp = dev_alloc<float>(N), *ddlp = to_dev(dlogprob);
    int *dtg = to_dev(tg);
    bf16 *dg = dev_alloc<bf16>((size_t)N * V);
    std::vector<float> run[2][4];
    for (int r = 0; r < 2; r++) {
        head_forward(dlp, dH, dlse, dz, dtg, N, V, 0);
        head_backward(dg, dz, dlse, dH, dtg, ddlp, dlp, N, V, 0); // (any array as dentropy)
        run[r][0] = from_dev(dlse, N), run[r][1] = from_dev(dH, N), run[r][2] = from_dev(dlp, N);
        run[r][3] = from_dev_bf16(dg, (size_t)N * V);
    }
    for (int k = 0; k < 4; k++) {
        CU_ASSERT(run[0][k].size() == run[1][k].size());
        CU_ASSERT(std::memcmp(run[0][k].data(), run[1][k].data(), run[0][k].size() * 4) == 0);
    }
    cudaFree(dz), cudaFree(dlse), cudaFree(dH), cudaFree(dlp), cudaFree(ddlp), cudaFree(dtg);
    cudaFree(dg);
}

// rel_err, which every comparison above goes through, never lets a NaN or an Inf pass.
static void test_nan_never_passes(void) {
    const std::vector<float> want = {1.0f, -2.0f, 0.5f};
    std::vector<float> got = want;
    CU_ASSERT(rel_err("same", got, want, 0.0) == 0.0);
    got[1] = NAN;
    std::printf("\n    (a NaN is reported below on purpose)");
    CU_ASSERT(!(rel_err("NaN", got, want, TOL_F32) <= TOL_F32));
    got[1] = INFINITY;
    CU_ASSERT(!(rel_err("Inf", got, want, TOL_F32) <= TOL_F32));
    // and fresh device memory, which a kernel that forgets an output leaves, reads as NaN
    float *d = dev_alloc<float>(3);
    CU_ASSERT(!(rel_err("unwritten", from_dev(d, 3), want, TOL_F32) <= TOL_F32));
    cudaFree(d);
}

// ---- sampling ------------------------------------------------------------------------------

// Rows of logits to draw from, [ROWS, V]:
//   0  uniform in [-8, 8)
//   1  a low background with a dozen spikes (most of the mass on a few tokens)
//   2  multiples of 0.5: many ties, which rank by id
//   3  row 1 with the row's max at the last id (not drawable when n_draw < V) and the largest
//      drawable logit tied at four ids
static const int ROWS = 4;
static std::vector<float> make_rows(int V, uint64_t seed) {
    std::vector<float> z((size_t)ROWS * V);
    const std::vector<float> a = rand_vec(V, seed, 8.0f), b = rand_vec(V, seed + 1, 3.0f);
    const std::vector<float> c = rand_vec(V, seed + 2, 6.0f), s = rand_vec(24, seed + 3, 1.0f);
    for (int i = 0; i < V; i++) {
        z[i] = a[i];
        z[(size_t)V + i] = b[i];
        z[(size_t)2 * V + i] = std::round(c[i] * 2.0f) / 2.0f;
    }
    float top = -INFINITY;
    for (int k = 0; k < 12; k++) { // spikes at ids spread over the row, logits in [5, 9)
        const int id = std::min(V - 2, (int)((s[k] + 1.0f) * 0.5f * V));
        z[(size_t)V + id] = 7.0f + 2.0f * s[12 + k];
        top = std::max(top, z[(size_t)V + id]);
    }
    float *r3 = &z[(size_t)3 * V];
    std::memcpy(r3, &z[V], sizeof(float) * V);
    r3[V - 1] = top + 4.0f;
    // (ids 1, 2 share a float4, ids 1, 33 a lane of the scalar loads; all below any n_draw used)
    r3[1] = r3[2] = r3[33] = r3[V / 2] = top + 1.0f;
    return z;
}

// the uniforms each row is drawn with: from 0 to the largest float below 1
#if CUDA_TEST_BIG
static const float US[] = {0.0f, 1e-6f, 0.13f, 0.5f, 0.77f, 0.999f, 0.99999994f};
#else
static const float US[] = {0.0f, 0.5f, 0.77f, 0.99999994f};
#endif
static const int NU = sizeof US / sizeof US[0];

// The exact distribution a draw walks (as test_sampler.c's reference): the kept ids in walk
// order (ids in order when nothing cuts, best first otherwise) with their weights.
struct Dist {
    std::vector<int> order;
    std::vector<double> w;
    double tot = 0;
};

static Dist exact_dist(const float *z, int V, int n_draw, const SamplingConfig &sc) {
    Dist d;
    double m = -INFINITY;
    for (int i = 0; i < V; i++) m = std::max(m, (double)z[i]);
    for (int i = 0; i < n_draw; i++) d.order.push_back(i);
    const bool cut_k = sc.top_k > 0 && sc.top_k < n_draw, cut_p = sc.top_p < 1.0f;
    if (cut_k || cut_p)
        std::stable_sort(d.order.begin(), d.order.end(), [&](int a, int b) { return z[a] > z[b]; });
    if (cut_k) d.order.resize(sc.top_k);
    for (int i : d.order) d.w.push_back(std::exp(((double)z[i] - m) / sc.temperature));
    if (cut_p) {
        double tot = 0, cum = 0;
        for (double w : d.w) tot += w;
        size_t kept = 0;
        const double target = sc.top_p * (float)tot; // (in fp32 as sampler.c: ties can land on it)
        while (kept < d.w.size() && cum < target) cum += d.w[kept++];
        d.order.resize(kept), d.w.resize(kept);
    }
    for (double w : d.w) d.tot += w;
    return d;
}

// Whether u falls within 1e-5 of token tok's interval of the inverse CDF.
static bool on_inverse_cdf(const Dist &d, int tok, float u) {
    double before = 0;
    for (size_t k = 0; k < d.order.size(); k++) {
        const double q = d.w[k] / d.tot;
        if (d.order[k] == tok) return before - 1e-5 <= u && u <= before + q + 1e-5;
        before += q;
    }
    return false; // not a kept token
}

static bool close(float got, double want, double tol = 1e-5) {
    return std::fabs((double)got - want) <= tol * std::max(1.0, std::fabs(want)); // NaN: false
}

// The self-certainty KL(uniform || p) = ln S - D/V - ln V, D = sum (z - m), against the CPU's
// and against float64: relative 1e-5, absolute below 1 (close()). Both sides sum D in fp32 in
// different orders (sampler.c: 8 lanes in blocks of 512, then the blocks in order; sample.cu:
// about V/1024 terms a thread relative to its running max, 5 shuffle levels, 32 chunks in
// order). The terms share a sign, so each D is within about eps sqrt(chain) ~ 1e-6 of the exact
// sum, which moves KL by ~1e-6 |D/V| (|D/V|, the mean gap to the max, is at most 30 in these
// rows); ln S adds ~1e-7 and ln V nothing. Over the rows here the worst error against float64
// is below 1e-6 on both sides (GEMC_TEST_VERBOSE=1 prints it), so 1e-5 leaves a margin of 10
// for other orders and devices' expf/logf, while one term of D left out or counted twice moves
// KL by |z - m|/V (1e-2 at V = 1000 for a gap of 10).
static const double TOL_CERT = 1e-5;

struct Draws {
    std::vector<int> token;
    std::vector<float> logp_sample, logp_raw, entropy_sample, entropy_raw, certainty, logp_old;
};

// Draw r * nu + j: row r of rows [nrows, V] with us[j], on the GPU.
static Draws gpu_draws(const std::vector<float> &rows, int nrows, const float *us, int nu, int V,
                       int n_draw, const SamplingConfig &sc, int with_entropy) {
    const int n = nrows * nu;
    std::vector<float> z((size_t)n * V), u(n);
    for (int d = 0; d < n; d++) {
        std::memcpy(&z[(size_t)d * V], &rows[(size_t)(d / nu) * V], sizeof(float) * V);
        u[d] = us[d % nu];
    }
    float *dz = to_dev(z), *du = to_dev(u);
    SampleOut o = {dev_alloc<int>(n),   dev_alloc<float>(n), dev_alloc<float>(n),
                   dev_alloc<float>(n), dev_alloc<float>(n), dev_alloc<float>(n),
                   dev_alloc<float>(n)};
    sample_rows(o, dz, du, n, V, n_draw, sc.temperature, sc.top_k, sc.top_p, with_entropy, 0);
    Draws g;
    g.token = from_dev(o.token, n);
    g.logp_sample = from_dev(o.logp_sample, n), g.logp_raw = from_dev(o.logp_raw, n);
    g.entropy_sample = from_dev(o.entropy_sample, n), g.entropy_raw = from_dev(o.entropy_raw, n);
    g.certainty = from_dev(o.certainty, n), g.logp_old = from_dev(o.logp_old, n);
    cudaFree(o.logp_old);
    cudaFree(dz), cudaFree(du), cudaFree(o.token), cudaFree(o.logp_sample);
    cudaFree(o.logp_raw), cudaFree(o.entropy_sample), cudaFree(o.entropy_raw);
    cudaFree(o.certainty);
    return g;
}

static Draws gpu_draws(const std::vector<float> &rows, int V, int n_draw, const SamplingConfig &sc,
                       int with_entropy) {
    return gpu_draws(rows, ROWS, US, NU, V, n_draw, sc, with_entropy);
}

// Draws every row with every u on the GPU and on the CPU, and compares (see the top). Returns
// the GPU's draws.
static Draws check_sampling(const char *what, int V, int n_draw, float temperature, int top_k,
                            float top_p) {
    const SamplingConfig sc = {1, temperature, top_p, top_k, 1};
    const std::vector<float> rows = make_rows(V, 900 + V);
    const Draws g = gpu_draws(rows, V, n_draw, sc, 1);
    const bool greedy = !(temperature > 0) || top_k == 1;
    std::vector<float> scratch(2 * (size_t)V);
    std::vector<float> want[5], got[5];
    int same = 0, neighbours = 0, bad = 0;
    for (int d = 0; d < ROWS * NU; d++) {
        const float *z = &rows[(size_t)(d / NU) * V], u = US[d % NU];
        TokenDraw c;
        sample_token_limited(z, V, n_draw, &sc, u, scratch.data(), &c);
        const int tok = g.token[d];
        bool ok = tok >= 0 && tok < n_draw;
        if (ok && tok == c.token) {
            same++;
            ok = close(g.logp_sample[d], c.logp_sample) && close(g.logp_raw[d], c.logp_raw) &&
                 close(g.logp_old[d], c.logp_old);
        } else if (ok && !greedy) {
            // a neighbour across a boundary within rounding of u: the exact numbers for it
            const Dist dist = exact_dist(z, V, n_draw, sc);
            double m = -INFINITY, S = 0, w = 0;
            for (int i = 0; i < V; i++) m = std::max(m, (double)z[i]);
            for (int i = 0; i < V; i++) S += std::exp((double)z[i] - m);
            for (size_t k = 0; k < dist.order.size(); k++)
                if (dist.order[k] == tok) w = dist.w[k];
            ok = on_inverse_cdf(dist, tok, u) && close(g.logp_sample[d], std::log(w / dist.tot)) &&
                 close(g.logp_raw[d], (double)z[tok] - m - std::log(S));
            neighbours += ok;
        } else {
            ok = false;
        }
        // the certainty depends on the row alone, whatever token is drawn (TOL_CERT)
        ok = ok && close(g.entropy_sample[d], c.entropy_sample) &&
             close(g.entropy_raw[d], c.entropy_raw) && close(g.certainty[d], c.certainty, TOL_CERT);
        if (!ok) {
            bad++;
            std::printf("\n    %s: row %d u %.9g: GPU token %d (%.7g %.7g %.7g %.7g %.7g), CPU "
                        "token %d (%.7g %.7g %.7g %.7g %.7g)",
                        what, d / NU, u, tok, g.logp_sample[d], g.logp_raw[d], g.entropy_sample[d],
                        g.entropy_raw[d], g.certainty[d], c.token, c.logp_sample, c.logp_raw,
                        c.entropy_sample, c.entropy_raw, c.certainty);
        }
        if (tok == c.token) {
            want[0].push_back(c.logp_sample), got[0].push_back(g.logp_sample[d]);
            want[1].push_back(c.logp_raw), got[1].push_back(g.logp_raw[d]);
        }
        want[2].push_back(c.entropy_sample), got[2].push_back(g.entropy_sample[d]);
        want[3].push_back(c.entropy_raw), got[3].push_back(g.entropy_raw[d]);
        want[4].push_back(c.certainty), got[4].push_back(g.certainty[d]);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(4 * same >= 3 * ROWS * NU); // neighbours stay the exception
    if (neighbours)
        std::printf("\n    %s: %d of %d draws took the neighbouring token of a CDF boundary "
                    "within 1e-5 of u",
                    what, neighbours, ROWS * NU);
    // and NaN-proof vector checks of the five numbers
    CHECK_REL("logp_sample", got[0], want[0], 1e-5);
    CHECK_REL("logp_raw", got[1], want[1], 1e-5);
    CHECK_REL("entropy_sample", got[2], want[2], 1e-5);
    CHECK_REL("entropy_raw", got[3], want[3], 1e-5);
    CHECK_REL("certainty", got[4], want[4], TOL_CERT);
    return g;
}

static void test_sample_plain(void) {
    check_sampling("temperature 1", V_EVEN, V_EVEN, 1.0f, 0, 1.0f);
    check_sampling("temperature 0.7", V_EVEN, V_EVEN, 0.7f, 0, 1.0f);
    check_sampling("temperature 1.3, n_draw < V", V_EVEN, V_EVEN - 37, 1.3f, 0, 1.0f);
    check_sampling("V odd, top_k = n_draw (off)", V_ODD, V_ODD - 5, 0.7f, V_ODD - 5, 1.0f);
}

static void test_sample_greedy(void) {
    check_sampling("greedy", V_EVEN, V_EVEN, 0.0f, 0, 1.0f);
    // row 3's drawable max is tied at ids 1, 2, 33 and V/2 (its max, id V-1, not drawable): id 1
    const Draws g = check_sampling("greedy, n_draw < V", V_EVEN, V_EVEN - 37, 0.0f, 0, 1.0f);
    for (int j = 0; j < NU; j++) CU_ASSERT_EQUAL(g.token[3 * NU + j], 1);
    check_sampling("top_k 1", V_ODD, V_ODD - 3, 1.0f, 1, 0.9f);
}

static void test_sample_top_k(void) {
    check_sampling("top_k 5", V_EVEN, V_EVEN, 1.0f, 5, 1.0f);
    check_sampling("top_k 40, temperature 0.7", V_ODD, V_ODD, 0.7f, 40, 1.0f);
    check_sampling("top_k 20, n_draw < V", V_EVEN, V_EVEN - 37, 1.0f, 20, 1.0f);
}

static void test_sample_top_p(void) {
    check_sampling("top_p 0.9", V_EVEN, V_EVEN, 1.0f, 0, 0.9f);
    check_sampling("top_p 0.5, temperature 0.7, V odd", V_ODD, V_ODD, 0.7f, 0, 0.5f);
    check_sampling("top_p 0.95, n_draw < V", V_EVEN, V_EVEN - 37, 1.2f, 0, 0.95f);
}

static void test_sample_top_k_top_p(void) {
    check_sampling("top_k 50 + top_p 0.8", V_EVEN, V_EVEN, 1.0f, 50, 0.8f);
    check_sampling("top_k 30 + top_p 0.9, temperature 0.7, n_draw < V", V_ODD, V_ODD - 37, 0.7f, 30,
                   0.9f);
    // row 2's 10 best tie: top-p's mass reaches 0.8 of theirs exactly at the 8th (in fp32)
    check_sampling("top_k 10 + top_p 0.8, tied", V_EVEN, V_EVEN, 1.0f, 10, 0.8f);
}

// Rows of exactly tied logits: the kept tokens weigh exactly 1, their sums are exact, and the
// targets u S and top_p S land exactly on boundaries of the walk. No neighbour passes here: the
// tokens must be the CPU's to the id (ties rank by id, the walk's comparisons are sampler.c's:
// top-p keeps until cum >= target, the draw stops at cum > target).
static void test_sample_exact_ties(void) {
    const int V = V_EVEN, n_draw = V - 40;
    // row 0 flat; row 1 one higher at ids 7k + 5. Row 1's weights of e^-1 sum with rounding, so
    // it only goes with configurations whose kept tokens all weigh 1 (the others would put
    // boundaries within rounding of u at large V).
    std::vector<float> rows(2 * (size_t)V, 0.0f);
    for (int i = 5; i < V; i += 7) rows[(size_t)V + i] = 1.0f;
    const float us[] = {0.0f, 0.25f, 0.5f, 0.75f};
    const struct {
        SamplingConfig sc;
        int nrows;
    } cfgs[] = {{{1, 1.0f, 1.0f, 0, 1}, 1},  {{1, 0.0f, 1.0f, 0, 1}, 2},
                {{1, 1.0f, 1.0f, 8, 1}, 2},  {{1, 1.0f, 0.5f, 0, 1}, 1},
                {{1, 1.0f, 0.5f, 12, 1}, 2}, {{1, 0.5f, 0.75f, 40, 1}, 2}};
    std::vector<float> scratch(2 * (size_t)V);
    for (const auto &cfg : cfgs) {
        const SamplingConfig &sc = cfg.sc;
        const Draws g = gpu_draws(rows, cfg.nrows, us, 4, V, n_draw, sc, 1);
        for (int d = 0; d < 4 * cfg.nrows; d++) {
            TokenDraw c;
            sample_token_limited(&rows[(size_t)(d / 4) * V], V, n_draw, &sc, us[d % 4],
                                 scratch.data(), &c);
            if (g.token[d] != c.token || !close(g.logp_sample[d], c.logp_sample) ||
                !close(g.entropy_sample[d], c.entropy_sample))
                std::printf("\n    tied rows, temperature %g top_k %d top_p %g, row %d u %g: GPU "
                            "token %d (%.7g %.7g), CPU token %d (%.7g %.7g)",
                            sc.temperature, sc.top_k, sc.top_p, d / 4, us[d % 4], g.token[d],
                            g.logp_sample[d], g.entropy_sample[d], c.token, c.logp_sample,
                            c.entropy_sample);
            CU_ASSERT_EQUAL(g.token[d], c.token);
            CU_ASSERT(close(g.logp_sample[d], c.logp_sample));
            CU_ASSERT(close(g.logp_raw[d], c.logp_raw));
            CU_ASSERT(close(g.entropy_sample[d], c.entropy_sample));
            CU_ASSERT(close(g.entropy_raw[d], c.entropy_raw));
            CU_ASSERT(close(g.certainty[d], c.certainty, TOL_CERT));
        }
    }
}

// with_entropy 0: the same tokens and log-probs to the bit, entropies 0.
static void test_sample_no_entropy(void) {
    const SamplingConfig cfgs[] = {{1, 0.7f, 1.0f, 0, 1}, {1, 1.0f, 0.9f, 20, 1}, {1, 0, 1, 0, 1}};
    const std::vector<float> rows = make_rows(V_EVEN, 77);
    for (const SamplingConfig &sc : cfgs) {
        const Draws a = gpu_draws(rows, V_EVEN, V_EVEN - 11, sc, 1);
        const Draws b = gpu_draws(rows, V_EVEN, V_EVEN - 11, sc, 0);
        CU_ASSERT(a.token == b.token);
        CU_ASSERT(a.logp_sample == b.logp_sample);
        CU_ASSERT(a.logp_raw == b.logp_raw);
        for (int d = 0; d < ROWS * NU; d++) {
            CU_ASSERT_EQUAL(b.entropy_sample[d], 0.0f);
            CU_ASSERT_EQUAL(b.entropy_raw[d], 0.0f);
            CU_ASSERT_EQUAL(b.certainty[d], 0.0f);
            CU_ASSERT(a.certainty[d] > 0.0f); // (with them: these rows are far from uniform)
        }
    }
}

static void test_sample_deterministic(void) {
    const SamplingConfig cfgs[] = {{1, 0.7f, 1.0f, 0, 1}, {1, 1.0f, 0.9f, 20, 1}};
    const std::vector<float> rows = make_rows(V_ODD, 78);
    for (const SamplingConfig &sc : cfgs) {
        const Draws a = gpu_draws(rows, V_ODD, V_ODD, sc, 1);
        const Draws b = gpu_draws(rows, V_ODD, V_ODD, sc, 1);
        CU_ASSERT(a.token == b.token);
        const std::vector<float> *x[] = {&a.logp_sample, &a.logp_raw, &a.entropy_sample,
                                         &a.entropy_raw, &a.certainty};
        const std::vector<float> *y[] = {&b.logp_sample, &b.logp_raw, &b.entropy_sample,
                                         &b.entropy_raw, &b.certainty};
        for (int k = 0; k < 5; k++)
            CU_ASSERT(std::memcmp(x[k]->data(), y[k]->data(), x[k]->size() * 4) == 0);
    }
}

// ---- self-certainty against float64 ------------------------------------------------------

// Rows [CERT_ROWS, V] of the float64 check:
//   0  uniform in [-8, 8)
//   1  peaked: a background of sums of three uniforms in [-2, 2) with 16 spikes in [8, 16)
//   2  row 0 + 60: the same softmax far from 0 (sum z - V m, rather than sum (z - m), would
//      lose digits to the offset here)
//   3  near uniform: uniform in [-1e-3, 1e-3), KL about 2e-7 (the absolute side of close())
//   4  exactly uniform: KL 0 (clamped where rounding leaves a negative)
//   5  one spike of 30 on zeros at the last id: nearly one-hot, KL about 30 - ln V
static const int CERT_ROWS = 6;
static std::vector<float> cert_rows(int V, uint64_t seed) {
    std::vector<float> z((size_t)CERT_ROWS * V, 0.0f);
    const std::vector<float> a = rand_vec(V, seed, 8.0f),
                             b = rand_vec(3 * (size_t)V, seed + 1, 2.0f);
    const std::vector<float> c = rand_vec(V, seed + 2, 1e-3f), s = rand_vec(32, seed + 3, 1.0f);
    for (int i = 0; i < V; i++) {
        z[i] = a[i];
        z[(size_t)V + i] = b[3 * (size_t)i] + b[3 * (size_t)i + 1] + b[3 * (size_t)i + 2];
        z[(size_t)2 * V + i] = a[i] + 60.0f;
        z[(size_t)3 * V + i] = c[i];
        z[(size_t)4 * V + i] = 0.25f;
    }
    for (int k = 0; k < 16; k++) {
        const int id = std::min(V - 1, (int)((s[k] + 1.0f) * 0.5f * V));
        z[(size_t)V + id] = 12.0f + 4.0f * s[16 + k];
    }
    z[(size_t)6 * V - 1] = 30.0f;
    return z;
}

// KL(uniform || softmax(z)) in float64: log(sum e^(z - m)) - mean(z - m) - log(V).
static double certainty_f64(const float *z, int V) {
    double m = -INFINITY, S = 0, D = 0;
    for (int i = 0; i < V; i++) m = std::max(m, (double)z[i]);
    for (int i = 0; i < V; i++) S += std::exp((double)z[i] - m), D += (double)z[i] - m;
    return std::log(S) - D / V - std::log((double)V);
}

// Every sampling mode (greedy, plain, top-k/top-p: each its own kernel) on rows of V = 1000,
// 999 (scalar loads) and 152000 (Qwen's size): GPU and CPU certainty both within TOL_CERT of
// float64.
static void test_sample_certainty_f64(void) {
    const int Vs[] = {1000, 999, 152000};
    const SamplingConfig cfgs[] = {
        {1, 0.0f, 1.0f, 0, 1}, {1, 0.7f, 1.0f, 0, 1}, {1, 1.0f, 0.9f, 20, 1}};
    const float us[] = {0.5f};
    double worst_gpu = 0, worst_cpu = 0;
    for (int V : Vs) {
        const std::vector<float> rows = cert_rows(V, 1300 + V);
        std::vector<float> scratch(2 * (size_t)V);
        for (const SamplingConfig &sc : cfgs) {
            const Draws g = gpu_draws(rows, CERT_ROWS, us, 1, V, V, sc, 1);
            for (int r = 0; r < CERT_ROWS; r++) {
                const float *z = &rows[(size_t)r * V];
                const double want = certainty_f64(z, V);
                TokenDraw c;
                sample_token_limited(z, V, V, &sc, us[0], scratch.data(), &c);
                const double eg = std::fabs(g.certainty[r] - want) / std::max(1.0, std::fabs(want));
                const double ec = std::fabs(c.certainty - want) / std::max(1.0, std::fabs(want));
                worst_gpu = std::max(worst_gpu, eg), worst_cpu = std::max(worst_cpu, ec);
                const bool ok = close(g.certainty[r], want, TOL_CERT) &&
                                close(c.certainty, want, TOL_CERT) && g.certainty[r] >= 0.0f;
                if (!ok)
                    std::printf("\n    certainty, V %d temperature %g top_k %d top_p %g, row %d: "
                                "GPU %.9g, CPU %.9g, float64 %.12g",
                                V, sc.temperature, sc.top_k, sc.top_p, r, g.certainty[r],
                                c.certainty, want);
                CU_ASSERT(ok);
            }
            CU_ASSERT_EQUAL(g.certainty[4], 0.0f); // exactly uniform
        }
    }
    if (getenv("GEMC_TEST_VERBOSE"))
        std::printf("\n    certainty against float64: worst error %.3g (GPU), %.3g (CPU)",
                    worst_gpu, worst_cpu);
}

void register_cuda_head_tests(void) {
    static const TestCase tests[] = {
        {"head_forward matches the CPU", test_head_forward},
        {"head_backward matches the CPU", test_head_backward},
        {"head is deterministic", test_head_deterministic},
        {"a NaN never passes rel_err", test_nan_never_passes},
        {"sampling: temperature, n_draw", test_sample_plain},
        {"sampling: greedy", test_sample_greedy},
        {"sampling: top_k", test_sample_top_k},
        {"sampling: top_p", test_sample_top_p},
        {"sampling: top_k and top_p", test_sample_top_k_top_p},
        {"sampling: exact ties", test_sample_exact_ties},
        {"sampling: without entropy", test_sample_no_entropy},
        {"sampling is deterministic", test_sample_deterministic},
        {"sampling: self-certainty against float64", test_sample_certainty_f64},
        {NULL, NULL},
    };
    add_suite("cuda_head", tests);
}
