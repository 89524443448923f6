// GPU attention (src/model/cuda/attention.cu, attention_decode.cu) against the CPU kernels: the
// training forward and backward over ragged packed batches (GQA, sliding window, tensor-core and
// plain head dims), their determinism, and the KV-cache decode step against a direct softmax in
// double.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "model/cuda/attention.cuh"
#include "cuda_tests.h"

// ---- training --------------------------------------------------------------------------------

struct AttCase {
    const char *name;
    std::vector<int> lens; // sequence lengths (0 allowed)
    int Hq, Hkv, D, window;
};

// Device copies of a random packed batch and the CPU reference of forward and backward.
struct AttRun {
    int B, N, Q, KV;
    std::vector<int> off;
    std::vector<float> q, k, v, dout;        // bf16-rounded inputs
    std::vector<float> out, lse, dq, dk, dv; // CPU reference (fp32)
    bf16 *d_q, *d_k, *d_v, *d_dout, *d_out;
    float *d_lse, *d_dq, *d_dk, *d_dv;
    int *d_off;
};

static void att_setup(AttRun &r, const AttCase &c, uint64_t seed) {
    r.B = (int)c.lens.size();
    r.off.assign(r.B + 1, 0);
    for (int b = 0; b < r.B; b++) r.off[b + 1] = r.off[b] + c.lens[b];
    r.N = r.off[r.B];
    r.Q = c.Hq * c.D;
    r.KV = c.Hkv * c.D;
    // q and k scaled up a little so that some rows have peaked softmaxes
    r.q = rand_vec((size_t)r.N * r.Q, seed, 1.5f);
    r.k = rand_vec((size_t)r.N * r.KV, seed + 1, 1.5f);
    r.v = rand_vec((size_t)r.N * r.KV, seed + 2);
    r.dout = rand_vec((size_t)r.N * r.Q, seed + 3);
    round_bf16(r.q), round_bf16(r.k), round_bf16(r.v), round_bf16(r.dout);

    r.out.assign((size_t)r.N * r.Q, 0.0f);
    r.lse.assign((size_t)r.N * c.Hq, 0.0f);
    attention_forward_f32(r.out.data(), r.lse.data(), r.q.data(), r.k.data(), r.v.data(),
                          r.off.data(), nullptr, r.B, c.Hq, c.Hkv, c.D, c.window);
    r.dq.assign((size_t)r.N * r.Q, 0.0f); // the CPU backward adds
    r.dk.assign((size_t)r.N * r.KV, 0.0f);
    r.dv.assign((size_t)r.N * r.KV, 0.0f);
    attention_backward_f32(r.dq.data(), r.dk.data(), r.dv.data(), r.dout.data(), r.out.data(),
                           r.lse.data(), r.q.data(), r.k.data(), r.v.data(), r.off.data(), nullptr,
                           r.B, c.Hq, c.Hkv, c.D, c.window);

    r.d_q = to_dev_bf16(r.q);
    r.d_k = to_dev_bf16(r.k);
    r.d_v = to_dev_bf16(r.v);
    r.d_dout = to_dev_bf16(r.dout);
    r.d_off = to_dev(r.off);
    r.d_out = dev_alloc<bf16>((size_t)r.N * r.Q);
    r.d_lse = dev_alloc<float>((size_t)r.N * c.Hq);
    r.d_dq = dev_alloc<float>((size_t)r.N * r.Q);
    r.d_dk = dev_alloc<float>((size_t)r.N * r.KV);
    r.d_dv = dev_alloc<float>((size_t)r.N * r.KV);
    // NaN everywhere (as the emulator's fresh memory is): the kernels must write every output
    cudaCheck(cudaMemset(r.d_out, 0xff, (size_t)r.N * r.Q * sizeof(bf16)));
    cudaCheck(cudaMemset(r.d_lse, 0xff, (size_t)r.N * c.Hq * sizeof(float)));
    cudaCheck(cudaMemset(r.d_dq, 0xff, (size_t)r.N * r.Q * sizeof(float)));
    cudaCheck(cudaMemset(r.d_dk, 0xff, (size_t)r.N * r.KV * sizeof(float)));
    cudaCheck(cudaMemset(r.d_dv, 0xff, (size_t)r.N * r.KV * sizeof(float)));
}

static void att_free(AttRun &r) {
    cudaFree(r.d_q), cudaFree(r.d_k), cudaFree(r.d_v), cudaFree(r.d_dout), cudaFree(r.d_out);
    cudaFree(r.d_lse), cudaFree(r.d_dq), cudaFree(r.d_dk), cudaFree(r.d_dv), cudaFree(r.d_off);
}

static void att_gpu(AttRun &r, const AttCase &c) {
    attention_forward(r.d_out, r.d_lse, r.d_q, r.d_k, r.d_v, r.d_off, r.B, r.N, c.Hq, c.Hkv, c.D,
                      c.window, 0);
    attention_backward(r.d_dq, r.d_dk, r.d_dv, r.d_dout, r.d_out, r.d_lse, r.d_q, r.d_k, r.d_v,
                       r.d_off, r.B, r.N, c.Hq, c.Hkv, c.D, c.window, 0);
}

template <class T> static bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Forward and backward of one case against the CPU; then a second run must give the same bits.
static void att_check_case(const AttCase &c, uint64_t seed) {
    AttRun r;
    att_setup(r, c, seed);
    att_gpu(r, c);
    const std::vector<float> out = from_dev_bf16(r.d_out, (size_t)r.N * r.Q);
    const std::vector<float> lse = from_dev(r.d_lse, (size_t)r.N * c.Hq);
    const std::vector<float> dq = from_dev(r.d_dq, (size_t)r.N * r.Q);
    const std::vector<float> dk = from_dev(r.d_dk, (size_t)r.N * r.KV);
    const std::vector<float> dv = from_dev(r.d_dv, (size_t)r.N * r.KV);
    const double e_out = rel_err("out", out, r.out, TOL_BF16);
    const double e_lse = rel_err("lse", lse, r.lse, 1e-4);
    const double e_dq = rel_err("dq", dq, r.dq, TOL_BF16);
    const double e_dk = rel_err("dk", dk, r.dk, TOL_BF16);
    const double e_dv = rel_err("dv", dv, r.dv, TOL_BF16);
    std::printf("\n    %s: out %.2g lse %.2g dq %.2g dk %.2g dv %.2g", c.name, e_out, e_lse, e_dq,
                e_dk, e_dv);
    CU_ASSERT(e_out <= TOL_BF16);
    CU_ASSERT(e_lse <= 1e-4);
    CU_ASSERT(e_dq <= TOL_BF16);
    CU_ASSERT(e_dk <= TOL_BF16);
    CU_ASSERT(e_dv <= TOL_BF16);

    // determinism: everything again, over buffers scribbled with NaNs
    cudaCheck(cudaMemset(r.d_dq, 0xff, (size_t)r.N * r.Q * sizeof(float)));
    cudaCheck(cudaMemset(r.d_dk, 0xff, (size_t)r.N * r.KV * sizeof(float)));
    cudaCheck(cudaMemset(r.d_dv, 0xff, (size_t)r.N * r.KV * sizeof(float)));
    att_gpu(r, c);
    CU_ASSERT(same_bits(from_dev_bf16(r.d_out, (size_t)r.N * r.Q), out));
    CU_ASSERT(same_bits(from_dev(r.d_lse, (size_t)r.N * c.Hq), lse));
    CU_ASSERT(same_bits(from_dev(r.d_dq, (size_t)r.N * r.Q), dq));
    CU_ASSERT(same_bits(from_dev(r.d_dk, (size_t)r.N * r.KV), dk));
    CU_ASSERT(same_bits(from_dev(r.d_dv, (size_t)r.N * r.KV), dv));
    att_free(r);
}

// Tensor cores (D = 16): GQA 4/2, lengths 1, 7, 33 and 70 (70 crosses a 64-row tile; the
// packed tiles cross sequence ends), plus an empty sequence.
static void test_attention_mma_gqa(void) {
    att_check_case({"mma gqa", {1, 7, 33, 0, 70}, 4, 2, 16, 0}, 11);
}

// Tensor cores, Hq = Hkv, sliding window of 3.
static void test_attention_mma_window(void) {
    att_check_case({"mma window 3", {5, 40, 19, 70}, 2, 2, 16, 3}, 12);
}

// Tensor cores, three query heads per kv head (the second group of warps idles every other
// round) and D = 32; a window wider than a tile.
static void test_attention_mma_rep3(void) {
    att_check_case({"mma rep 3", {20, 50}, 6, 2, 32, 0}, 13);
    att_check_case({"mma rep 3 window 70", {90, 9}, 3, 1, 16, 70}, 14);
}

// The plain kernels (D = 4, as the tiny test configs), with and without a window.
static void test_attention_plain(void) {
    att_check_case({"plain gqa", {1, 7, 33, 12}, 4, 2, 4, 0}, 15);
    att_check_case({"plain window 3", {9, 0, 25}, 4, 2, 4, 3}, 16);
    att_check_case({"plain Hq=Hkv", {6, 17}, 2, 2, 4, 0}, 17);
}

// Model-sized shapes on the device: Qwen2.5-0.5B's heads (14/2, D 64) at the training batch
// of 4 x 1024 tokens, Llama's D 128, and a window; with timings.
static void test_attention_big(void) {
    if (!CUDA_TEST_BIG) return;
    att_check_case({"qwen 4x1024", {1024, 1024, 1024, 1024}, 14, 2, 64, 0}, 21);
    att_check_case({"llama ragged", {700, 1, 333, 1000}, 8, 2, 128, 0}, 22);
    att_check_case({"window 100", {1024, 517, 64}, 14, 2, 64, 100}, 23);
    att_check_case({"plain D 72", {300, 200}, 4, 2, 72, 0}, 24);

    AttCase c = {"time", {1024, 1024, 1024, 1024}, 14, 2, 64, 0};
    AttRun r;
    att_setup(r, c, 31);
    cudaEvent_t e0, e1, e2;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    cudaCheck(cudaEventCreate(&e2));
    att_gpu(r, c); // warm-up
    const int reps = 20;
    cudaCheck(cudaEventRecord(e0));
    for (int i = 0; i < reps; i++)
        attention_forward(r.d_out, r.d_lse, r.d_q, r.d_k, r.d_v, r.d_off, r.B, r.N, c.Hq, c.Hkv,
                          c.D, c.window, 0);
    cudaCheck(cudaEventRecord(e1));
    for (int i = 0; i < reps; i++)
        attention_backward(r.d_dq, r.d_dk, r.d_dv, r.d_dout, r.d_out, r.d_lse, r.d_q, r.d_k, r.d_v,
                           r.d_off, r.B, r.N, c.Hq, c.Hkv, c.D, c.window, 0);
    cudaCheck(cudaEventRecord(e2));
    cudaCheck(cudaEventSynchronize(e2));
    float fwd = 0, bwd = 0;
    cudaCheck(cudaEventElapsedTime(&fwd, e0, e1));
    cudaCheck(cudaEventElapsedTime(&bwd, e1, e2));
    std::printf("\n    4 x 1024 tokens, 14/2 heads, D 64: forward %.3f ms, backward %.3f ms",
                fwd / reps, bwd / reps);
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaEventDestroy(e2);
    att_free(r);
}

// ---- decode ----------------------------------------------------------------------------------

struct DecCase {
    const char *name;
    std::vector<int> plens;       // prompt lengths
    std::vector<int> slot_prompt; // [rows]
    std::vector<int> slot_len;    // [rows] tokens in each slot's cache before the step
    std::vector<int> slots;       // [n] the slots fed this step
    int gen_cap, Hq, Hkv, D, window;
};

// kv_append, decode_attention (with and without split key ranges) and kv_advance against a
// direct softmax in double over the prompt's keys then the slot's own.
static void dec_check_case(const DecCase &c, uint64_t seed) {
    const int B = (int)c.plens.size(), rows = (int)c.slot_prompt.size(), n = (int)c.slots.size();
    const int KV = c.Hkv * c.D, Q = c.Hq * c.D, rep = c.Hq / c.Hkv;
    std::vector<int> poff(B + 1, 0);
    for (int b = 0; b < B; b++) poff[b + 1] = poff[b] + c.plens[b];
    const int Np = poff[B];
    std::vector<float> pk = rand_vec((size_t)Np * KV, seed, 1.5f), pv = rand_vec(Np * KV, seed + 1);
    std::vector<float> gk = rand_vec((size_t)rows * c.gen_cap * KV, seed + 2, 1.5f);
    std::vector<float> gv = rand_vec((size_t)rows * c.gen_cap * KV, seed + 3);
    std::vector<float> kn = rand_vec((size_t)n * KV, seed + 4, 1.5f),
                       vn = rand_vec(n * KV, seed + 5);
    std::vector<float> q = rand_vec((size_t)n * Q, seed + 6, 1.5f);
    round_bf16(pk), round_bf16(pv), round_bf16(gk), round_bf16(gv), round_bf16(kn);
    round_bf16(vn), round_bf16(q);

    bf16 *d_pk = to_dev_bf16(pk), *d_pv = to_dev_bf16(pv), *d_gk = to_dev_bf16(gk),
         *d_gv = to_dev_bf16(gv), *d_kn = to_dev_bf16(kn), *d_vn = to_dev_bf16(vn),
         *d_q = to_dev_bf16(q), *d_out = dev_alloc<bf16>((size_t)n * Q);
    int *d_poff = to_dev(poff), *d_sp = to_dev(c.slot_prompt), *d_len = to_dev(c.slot_len),
        *d_slots = to_dev(c.slots);
    float *d_scratch = dev_alloc<float>(decode_attention_scratch_floats(n, c.Hq, c.D));

    // the step's keys and values into the slots' caches
    kv_append(d_gk, d_gv, d_kn, d_vn, d_slots, d_len, n, c.gen_cap, KV, 0);
    for (int r = 0; r < n; r++) {
        const size_t at = ((size_t)c.slots[r] * c.gen_cap + c.slot_len[c.slots[r]]) * KV;
        std::memcpy(&gk[at], &kn[(size_t)r * KV], KV * sizeof(float));
        std::memcpy(&gv[at], &vn[(size_t)r * KV], KV * sizeof(float));
    }
    CU_ASSERT(same_bits(from_dev_bf16(d_gk, gk.size()), gk));
    CU_ASSERT(same_bits(from_dev_bf16(d_gv, gv.size()), gv));

    // reference: query r, head h over keys t = first .. pos of prompt + own
    std::vector<float> want((size_t)n * Q);
    int max_keys = 0;
    for (int r = 0; r < n; r++) {
        const int s = c.slots[r], p = c.slot_prompt[s], plen = c.plens[p];
        const int pos = plen + c.slot_len[s];
        const int first = c.window > 0 && pos - c.window + 1 > 0 ? pos - c.window + 1 : 0;
        max_keys = std::max(max_keys, pos - first + 1);
        for (int h = 0; h < c.Hq; h++) {
            const int g = h / rep;
            std::vector<double> w;
            std::vector<const float *> vals;
            for (int t = first; t <= pos; t++) {
                const size_t row = t < plen ? (size_t)(poff[p] + t) * KV
                                            : ((size_t)s * c.gen_cap + (t - plen)) * KV;
                const float *kr = (t < plen ? pk.data() : gk.data()) + row + (size_t)g * c.D;
                vals.push_back((t < plen ? pv.data() : gv.data()) + row + (size_t)g * c.D);
                double dot = 0;
                for (int d = 0; d < c.D; d++) dot += (double)q[(size_t)r * Q + h * c.D + d] * kr[d];
                w.push_back(dot / std::sqrt((double)c.D));
            }
            double mx = w[0], sum = 0;
            for (double x : w) mx = std::max(mx, x);
            for (double &x : w) sum += (x = std::exp(x - mx));
            for (int d = 0; d < c.D; d++) {
                double o = 0;
                for (size_t t = 0; t < w.size(); t++) o += w[t] * vals[t][d];
                want[(size_t)r * Q + h * c.D + d] = (float)(o / sum);
            }
        }
    }

    char what[160];
    // one block per (query, kv head)
    cudaCheck(cudaMemset(d_out, 0xff, (size_t)n * Q * sizeof(bf16)));
    decode_attention(d_out, d_q, d_pk, d_pv, d_poff, d_gk, d_gv, d_slots, d_sp, d_len, n, c.gen_cap,
                     c.Hq, c.Hkv, c.D, c.window, max_keys, nullptr, 0);
    std::vector<float> got = from_dev_bf16(d_out, (size_t)n * Q);
    std::snprintf(what, sizeof what, "%s decode", c.name);
    const double e1 = rel_err(what, got, want, TOL_BF16);
    CU_ASSERT(e1 <= TOL_BF16);
    // the same again gives the same bits
    decode_attention(d_out, d_q, d_pk, d_pv, d_poff, d_gk, d_gv, d_slots, d_sp, d_len, n, c.gen_cap,
                     c.Hq, c.Hkv, c.D, c.window, max_keys, nullptr, 0);
    CU_ASSERT(same_bits(from_dev_bf16(d_out, (size_t)n * Q), got));
    // split key ranges: a generous bound on the keys makes the launcher split (some splits
    // then have no key at all)
    cudaCheck(cudaMemset(d_out, 0xff, (size_t)n * Q * sizeof(bf16)));
    decode_attention(d_out, d_q, d_pk, d_pv, d_poff, d_gk, d_gv, d_slots, d_sp, d_len, n, c.gen_cap,
                     c.Hq, c.Hkv, c.D, c.window, 1 << 16, d_scratch, 0);
    std::snprintf(what, sizeof what, "%s decode split", c.name);
    const double e2 = rel_err(what, from_dev_bf16(d_out, (size_t)n * Q), want, TOL_BF16);
    CU_ASSERT(e2 <= TOL_BF16);
    std::printf("\n    %s: decode %.2g, split %.2g", c.name, e1, e2);

    kv_advance(d_len, d_slots, n, 0);
    std::vector<int> len = c.slot_len;
    for (int s : c.slots) len[s]++;
    CU_ASSERT(from_dev(d_len, rows) == len);

    cudaFree(d_pk), cudaFree(d_pv), cudaFree(d_gk), cudaFree(d_gv), cudaFree(d_kn);
    cudaFree(d_vn), cudaFree(d_q), cudaFree(d_out), cudaFree(d_poff), cudaFree(d_sp);
    cudaFree(d_len), cudaFree(d_slots), cudaFree(d_scratch);
}

// Two prompts, five slots with different lengths (one empty, one about to fill), four fed.
static void test_decode_attention(void) {
    const DecCase base = {"", {6, 11}, {0, 1, 1, 0, 1}, {0, 3, 7, 5, 1}, {3, 0, 2, 4}, 8, 4, 2,
                          16, 0};
    DecCase c = base;
    c.name = "D 16";
    dec_check_case(c, 41);
    c.name = "D 16 window 5", c.window = 5;
    dec_check_case(c, 42);
    c.name = "D 4 Hq=Hkv window 9", c.D = 4, c.Hq = 2, c.window = 9;
    dec_check_case(c, 43);
    c = base;
    c.name = "D 4 rep 4", c.D = 4, c.Hq = 8;
    dec_check_case(c, 44);
}

// The sampler's shape on the device: 256 slots of 128-token prompts, up to 255 tokens each.
static void test_decode_attention_big(void) {
    if (!CUDA_TEST_BIG) return;
    DecCase c = {"sampler", {}, {}, {}, {}, 256, 14, 2, 64, 0};
    for (int b = 0; b < 32; b++) c.plens.push_back(100 + (b * 7) % 29);
    for (int s = 0; s < 256; s++) {
        c.slot_prompt.push_back(s / 8);
        c.slot_len.push_back((s * 37) % 255); // < gen_cap
        c.slots.push_back(s);
    }
    dec_check_case(c, 51);
    c.name = "sampler window 64", c.window = 64;
    dec_check_case(c, 52);
}

void register_cuda_attention_tests(void) {
    static const TestCase tests[] = {
        {"forward and backward, tensor cores, GQA, ragged", test_attention_mma_gqa},
        {"forward and backward, tensor cores, window 3", test_attention_mma_window},
        {"forward and backward, tensor cores, 3 heads per kv head", test_attention_mma_rep3},
        {"forward and backward, plain kernels (D 4)", test_attention_plain},
        {"forward and backward, model shapes (device only)", test_attention_big},
        {"kv append, decode attention, kv advance", test_decode_attention},
        {"decode attention, sampler shape (device only)", test_decode_attention_big},
        {NULL, NULL},
    };
    add_suite("cuda_attention", tests);
}
