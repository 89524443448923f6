// The sampler's fused softmax-entropy-sample step (sample_rows, head.cuh): one block per row
// of logits, one draw per row, with the raw and sampled log-probs and entropies and the
// self-certainty. The softmax sums are online (softmax.cuh); sample_rows also keeps
// D = sum (z-m), for the self-certainty (RowState). Rows are read as float4s where they are
// 16-byte aligned (V % 4 == 0). Every reduction has a fixed order: the same inputs give the
// same bits.
#include <climits>
#include <cstdint>
#include <cstring>

#include "model/cuda/head.cuh"
#include "model/cuda/softmax.cuh"

#define SAMPLE_THREADS 1024 // sample_rows: a block per row; each warp owns one chunk of it

// ---- sampling: the pass over a row ----------------------------------------------------------
//
// Three modes, chosen on the host from the configuration (the same for every row):
//   GREEDY  temperature 0 or top_k 1: the pass, then the argmax.
//   PLAIN   temperature > 0, nothing cut: the pass also sums the sampling weights; warp w owns
//           the contiguous chunk [w L, (w+1) L) of the row, so the chunks' sampling masses are
//           known in id order and the inverse CDF rescans only the chunk it lands in.
//   KEPT    top-k and/or top-p cut: the pass, then radix selections of the kept set and of the
//           drawn token in ranking order (kept_find below).
enum { MODE_GREEDY, MODE_PLAIN, MODE_KEPT };

// What a thread, then a warp (its chunk), knows of a row.
//
// D (ENT only) is the self-certainty's sum D = sum (z - raw.m) over the n ids seen, kept
// relative to the running max like S and T: rebasing onto m_new adds n (m_old - m_new). Every
// term and every rebase is <= 0, so D is a sum of terms of one sign and its relative error stays
// at the order of eps times the length of the longest sequential chain (about V/1024 + 37 adds),
// whatever the logits' offset: KL = ln S - D/V - ln V then errs by about that times |D/V| (the
// mean gap to the max, a few nats). The alternative, sum z then D = sum z - V m at the fold,
// cancels: its error scales with |z| rather than |z - m|, so a row shifted by a constant (the
// softmax does not change) would lose digits. n is a count in a float (exact: V <= 2^24).
struct RowState {
    Soft raw;      // every id
    float Ss, Ts;  // sampling weights e^((z - raw.m)/temp) of ids < n_draw, and their T
    float Sx, pad; // the same weights of ids >= n_draw (logp_old's softmax counts every id)
    float bm;      // the largest logit of ids < n_draw, at id bi (the lowest on ties)
    int bi;
    float D, n; // ENT: sum (z - raw.m) over the n ids seen (self-certainty)
};

// The sampler's scaled difference, as sampler.c computes it: temperature 1 gives the same bits.
__device__ __forceinline__ float scaled(float d, float temp) {
    return temp == 1.0f ? d : d / temp;
}

// Rebases sampling sums (Ss, Ts) by d = m_old - m_new <= 0 of the raw logits: their own
// difference is d / temp.
template <bool ENT>
__device__ __forceinline__ void smp_rebase(float &Ss, float &Ts, float d, float temp) {
    if (Ss > 0) {
        const float ds = scaled(d, temp), c = expf(ds);
        if (ENT) Ts = c * (Ts + ds * Ss);
        Ss *= c;
    }
}

template <bool ENT, int MODE>
__device__ __forceinline__ void state_rebase(RowState &st, float m, float temp) {
    // KEPT keeps the untruncated sampling sums too: logp_old's normaliser
    if (MODE != MODE_GREEDY) {
        smp_rebase<ENT>(st.Ss, st.Ts, st.raw.m - m, temp);
        smp_rebase<false>(st.Sx, st.pad, st.raw.m - m, temp);
    }
    if (ENT && st.n > 0) st.D += st.n * (st.raw.m - m); // (n == 0: m is -inf, nothing to move)
    soft_rebase<ENT>(st.raw, m);
}

// Adds logit x <= st.raw.m of id i.
template <bool ENT, int MODE>
__device__ __forceinline__ void state_add(RowState &st, float x, int i, int n_draw, float temp) {
    const float d = x - st.raw.m, e = expf(d);
    st.raw.S += e;
    if (ENT) {
        st.raw.T += e > 0 ? e * d : 0.0f;
        st.D += d, st.n += 1.0f;
    }
    if (i >= n_draw) {
        if (MODE != MODE_GREEDY) st.Sx += temp == 1.0f ? e : expf(scaled(d, temp));
        return;
    }
    if (x > st.bm) st.bm = x, st.bi = i; // ids arrive in increasing order: strict keeps the lowest
    if (MODE != MODE_GREEDY) {
        const float ds = scaled(d, temp), es = temp == 1.0f ? e : expf(ds);
        st.Ss += es;
        if (ENT) st.Ts += es > 0 ? es * ds : 0.0f;
    }
}

template <bool ENT, int MODE>
__device__ __forceinline__ RowState state_merge(RowState a, RowState b, float temp) {
    const float m = fmaxf(a.raw.m, b.raw.m);
    RowState r;
    state_rebase<ENT, MODE>(a, m, temp);
    state_rebase<ENT, MODE>(b, m, temp);
    r.raw = Soft{m, a.raw.S + b.raw.S, a.raw.T + b.raw.T, 0.0f};
    r.Ss = a.Ss + b.Ss, r.Ts = a.Ts + b.Ts;
    r.Sx = a.Sx + b.Sx, r.pad = 0.0f;
    r.D = a.D + b.D, r.n = a.n + b.n;
    const bool take_b = b.bm > a.bm || (b.bm == a.bm && b.bi < a.bi);
    r.bm = take_b ? b.bm : a.bm, r.bi = take_b ? b.bi : a.bi;
    return r;
}

// The pass: warp w reads its chunk [w L, (w+1) L) of z [V] (L a multiple of 4), 128 logits a
// step, and returns the chunk's state in every lane.
template <bool VEC, bool ENT, int MODE>
__device__ RowState row_pass(const float *z, int V, int n_draw, float temp, int L) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int c0 = imin(warp * L, V), c1 = imin(c0 + L, V);
    RowState st = {
        {-INFINITY, 0.0f, 0.0f, 0.0f}, 0.0f, 0.0f, 0.0f, 0.0f, -INFINITY, INT_MAX, 0.0f, 0.0f};
    if (VEC) {
#pragma unroll 4
        for (int i = c0 + 4 * lane; i < c1; i += 128) {
            const float4 v = *(const float4 *)(z + i);
            const float mx = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
            if (mx > st.raw.m) state_rebase<ENT, MODE>(st, mx, temp);
            state_add<ENT, MODE>(st, v.x, i, n_draw, temp);
            state_add<ENT, MODE>(st, v.y, i + 1, n_draw, temp);
            state_add<ENT, MODE>(st, v.z, i + 2, n_draw, temp);
            state_add<ENT, MODE>(st, v.w, i + 3, n_draw, temp);
        }
    } else {
        for (int i = c0 + lane; i < c1; i += 32) {
            const float x = z[i];
            if (x > st.raw.m) state_rebase<ENT, MODE>(st, x, temp);
            state_add<ENT, MODE>(st, x, i, n_draw, temp);
        }
    }
    for (int o = 16; o > 0; o >>= 1) st = state_merge<ENT, MODE>(st, shfl_xor_struct(st, o), temp);
    return st;
}

// ---- sampling: top-k / top-p by radix selection ----------------------------------------------
//
// Tokens rank by logit, descending, ties by lower id (sampler.c's order). The key
//   ord(z) << 32 | ~id   (ord: the float's bits made monotonic, -0 folded onto +0)
// is larger exactly when a token ranks first, and unique, so "the best n tokens" is "the keys
// >= some key" and each selection is a search for one key: 4 bits of it per pass over the row,
// from the top, with a 16-bin histogram of the candidates' counts and sampling masses.
//
// The masses are fixed point: a weight w = e^((z - md)/temp) in [0, 1] (md the largest
// drawable logit) is the integer w 2^40 (w's 24 significant bits kept exactly), so histograms
// sum exactly and in any order (deterministic without a fixed reduction order) and a bin's mass
// is exactly the sum of its sub-bins'. Each thread counts into its own column of the dynamic
// shared memory, hist [16, blockDim] (entries count << 52 | mass; at most 4095 logits per thread
// per pass, hence SAMPLE_MAX_V), then the columns are summed into 16 bins.

#define FX_ONE  1099511627776.0f // 2^40
#define FX_CNT  (1ull << 52)     // one logit in a histogram entry
#define FX_MASS (FX_CNT - 1)

enum { FIND_COUNT, FIND_MASS_GE, FIND_MASS_GT };

__device__ __forceinline__ unsigned long long rank_key(float x, int i) {
    unsigned b = __float_as_uint(x);
    if (b == 0x80000000u) b = 0; // -0 == +0 for the CPU's comparisons: rank by id
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((unsigned long long)b << 32) | (unsigned)~(unsigned)i;
}

// f(i, z[i]) for every i < n, the block's threads strided over the row.
template <bool VEC, class F>
__device__ __forceinline__ void for_each_logit(const float *z, int n, F &&f) {
    int tail = 0;
    if (VEC) {
        const float4 *z4 = (const float4 *)z;
        for (int k = threadIdx.x; k < n / 4; k += blockDim.x) {
            const float4 v = z4[k];
            f(4 * k, v.x), f(4 * k + 1, v.y), f(4 * k + 2, v.z), f(4 * k + 3, v.w);
        }
        tail = n / 4 * 4;
    }
    for (int i = tail + threadIdx.x; i < n; i += blockDim.x) f(i, z[i]);
}

// Among the candidates (ids < n with key >= kmin; for FIND_MASS_GT also w 2^40 >= 1), walking
// them in ranking order, the key of the first at which
//   FIND_COUNT    the count reaches param (= k):                      top-k's last token
//   FIND_MASS_GE  the mass reaches param (= top_p) times the total:     top-p's last token
//   FIND_MASS_GT  the mass exceeds param (= u) times the total:         the inverse CDF
// or 0 when there is no candidate. qS, qT (FIND_MASS_GT, or NULL): the candidates' sampling sums
// S, T in fp32 relative to md, from the first pass. Every thread of the block calls it with the
// same arguments and gets the same key.
template <bool VEC, bool ENT>
__device__ unsigned long long kept_find(const float *z, int n, unsigned long long kmin, int mode,
                                        double param, float md, float temp,
                                        unsigned long long *hist, float *qS, float *qT) {
    __shared__ unsigned s_cnt[16];
    __shared__ unsigned long long s_mass[16];
    __shared__ unsigned long long s_key;
    const int t = threadIdx.x, T = blockDim.x;
    unsigned long long prefix = 0, above = 0; // the key's bits found; what ranks above its bin
    unsigned long long goal = mode == FIND_COUNT ? (unsigned long long)param : 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        const bool first = shift == 60;
        // (the previous level's last barrier: nobody still reads the columns or the bins)
        for (int b = 0; b < 16; b++) hist[b * T + t] = 0;
        if (t < 16) s_cnt[t] = 0, s_mass[t] = 0;
        float fs = 0.0f, ft = 0.0f;
        for_each_logit<VEC>(z, n, [&](int i, float x) {
            const unsigned long long key = rank_key(x, i);
            if (key < kmin || (!first && (key >> (shift + 4)) != (prefix >> (shift + 4)))) return;
            unsigned long long inc = FX_CNT;
            if (mode != FIND_COUNT) {
                const float ds = scaled(x - md, temp), w = expf(ds);
                if (first) fs += w, ft += ENT && w > 0 ? w * ds : 0.0f;
                const unsigned long long fx = (unsigned long long)(w * FX_ONE);
                if (mode == FIND_MASS_GT && fx == 0) return; // never drawn, as e == 0 on the CPU
                inc += fx;
            }
            hist[(int)((key >> shift) & 15) * T + t] += inc;
        });
        if (first && qS) { // (uniform: every thread has the same qS)
            *qS = block_sum(fs);
            *qT = ENT ? block_sum(ft) : 0.0f;
        }
        __syncthreads();
        { // thread t sums bin b of columns g, g + G, ...: consecutive threads, consecutive words
            const int G = T / 16, b = t / G, g = t % G;
            unsigned long long c = 0, ms = 0;
            for (int j = 0; j < 16; j++) {
                const unsigned long long h = hist[b * T + g + j * G];
                c += h >> 52, ms += h & FX_MASS;
            }
            if (c) { // integer sums: the same whatever order the atomics land in
                atomicAdd(&s_cnt[b], (unsigned)c);
                atomicAdd(&s_mass[b], ms);
            }
        }
        __syncthreads();
        if (first && mode != FIND_COUNT) {
            unsigned long long total = 0;
            for (int b = 0; b < 16; b++) total += s_mass[b];
            // the target in fp32, as sampler.c has it (top_p * total, u * S): tied weights put
            // exact multiples of a weight on both sides of the comparison
            const float target = (float)param * (float)((double)total / FX_ONE);
            const double goal_fx = (double)target * FX_ONE;
            if (mode == FIND_MASS_GE) { // cum >= target, cum an integer
                goal = (unsigned long long)ceil(goal_fx);
            } else { // cum > target; u < 1 keeps the goal below the total
                goal = (unsigned long long)floor(goal_fx);
                if (total > 0 && goal >= total) goal = total - 1;
            }
        }
        // the bins best first: the first whose mass (count) takes the walk to the goal
        int sel = -1, last = -1;
        unsigned long long last_above = above;
        for (int b = 15; b >= 0; b--) {
            const unsigned c = s_cnt[b];
            if (!c) continue;
            const unsigned long long a = above + (mode == FIND_COUNT ? c : s_mass[b]);
            last = b, last_above = above;
            if (mode == FIND_MASS_GT ? a > goal : a >= goal) {
                sel = b;
                break;
            }
            above = a;
        }
        // exact sums always reach the goal; were they not to, the last candidate is the answer
        if (sel < 0) sel = last, above = last_above;
        const unsigned count = sel >= 0 ? s_cnt[sel] : 0;
        __syncthreads(); // everyone has read the bins
        if (sel < 0) return 0;
        prefix |= (unsigned long long)sel << shift;
        if (shift == 0) return prefix;
        if (count == 1) { // one candidate left in the bin: its key ends the search
            for_each_logit<VEC>(z, n, [&](int i, float x) {
                const unsigned long long key = rank_key(x, i);
                if (key < kmin || (key >> shift) != (prefix >> shift)) return;
                if (mode == FIND_MASS_GT &&
                    (unsigned long long)(expf(scaled(x - md, temp)) * FX_ONE) == 0)
                    return;
                s_key = key;
            });
            __syncthreads();
            return s_key;
        }
    }
    return 0; // (not reached: shift 0 returns)
}

// ---- sampling: the kernel ----------------------------------------------------------------

// grid n, block SAMPLE_THREADS; dynamic shared memory 16 * SAMPLE_THREADS * 8 bytes for KEPT.
template <bool VEC, bool ENT, int MODE>
__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(SampleOut out, const float *logits, const float *u, int V, int n_draw, float temp,
                  int top_k, float top_p) {
    DYNAMIC_SHARED(unsigned long long, sample_hist);
    __shared__ RowState chunk[32];
    __shared__ float sh_sum[SAMPLE_THREADS]; // PLAIN's rescan: each thread's weight
    __shared__ float sh_group[32];           // and each warp's
    __shared__ int sh_pick;
    __shared__ float sh_rest;
    const int row = blockIdx.x, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    const float *z = logits + (size_t)row * V;
    const int L = ((V + nw - 1) / nw + 3) / 4 * 4; // chunk length: float4-aligned starts

    const RowState st = row_pass<VEC, ENT, MODE>(z, V, n_draw, temp, L);
    if (lane == 0) chunk[threadIdx.x / 32] = st;
    __syncthreads();

    // Every thread folds the chunks in order relative to the row's max m (the same bits).
    float m = -INFINITY;
    for (int w = 0; w < nw; w++) m = fmaxf(m, chunk[w].raw.m);
    Soft raw = {m, 0.0f, 0.0f, 0.0f};
    float Ssum = 0.0f, Tsum = 0.0f, Sx = 0.0f, bm = -INFINITY, D = 0.0f;
    int bi = INT_MAX;
    for (int w = 0; w < nw; w++) {
        RowState c = chunk[w];
        state_rebase<ENT, MODE>(c, m, temp);
        raw.S += c.raw.S, raw.T += c.raw.T;
        Ssum += c.Ss, Tsum += c.Ts, Sx += c.Sx;
        D += c.D;                            // (0 without ENT)
        if (c.bm > bm) bm = c.bm, bi = c.bi; // chunks in id order: strict keeps the lowest id
    }
    const float lnS = logf(raw.S);
    const float H_raw = ENT ? fmaxf(lnS - raw.T / raw.S, 0.0f) : 0.0f;
    // KL(uniform || p) = ln S - D/V - ln V as sampler.c computes it, clamped at 0 (rounding can
    // leave -1e-7 for a uniform p)
    const float cert = ENT ? fmaxf(lnS - D / (float)V - logf((float)V), 0.0f) : 0.0f;
    const int amax = bi == INT_MAX ? 0 : bi; // (no finite drawable logit: id 0, as the CPU)

    // Writes the row's outputs for token tok, its sampling difference ds = (z - ref)/temp and
    // the sampling sums S, Tq relative to the same ref.
    auto emit = [&](int tok, float ds, float S, float Tq) {
        out.token[row] = tok;
        out.logp_raw[row] = (z[tok] - m) - lnS;
        out.entropy_raw[row] = H_raw;
        out.certainty[row] = cert;
        out.logp_sample[row] = MODE == MODE_GREEDY ? 0.0f : ds - logf(S);
        // softmax(z / T) before top-k and top-p, over every id (drawable or not)
        out.logp_old[row] = MODE == MODE_GREEDY || temp == 1.0f
                                ? out.logp_raw[row]
                                : scaled(z[tok] - m, temp) - logf(Ssum + Sx);
        out.entropy_sample[row] =
            MODE == MODE_GREEDY || !ENT ? 0.0f : fmaxf(logf(S) - Tq / S, 0.0f);
    };

    if (MODE == MODE_GREEDY) {
        if (threadIdx.x == 0) emit(amax, 0.0f, 1.0f, 0.0f);
        return;
    }

    if (MODE == MODE_KEPT) {
        // weights relative to the largest drawable logit bm (the CPU's are relative to the
        // row's max: the same up to rounding, and the best kept token weighs exactly 1)
        unsigned long long kmin = 0;
        if (top_k > 0 && top_k < n_draw)
            kmin = kept_find<VEC, ENT>(z, n_draw, kmin, FIND_COUNT, top_k, bm, temp, sample_hist,
                                       nullptr, nullptr);
        if (top_p < 1.0f)
            kmin = kept_find<VEC, ENT>(z, n_draw, kmin, FIND_MASS_GE, top_p, bm, temp, sample_hist,
                                       nullptr, nullptr);
        float qS = 0.0f, qT = 0.0f;
        const unsigned long long key = kept_find<VEC, ENT>(z, n_draw, kmin, FIND_MASS_GT, u[row],
                                                           bm, temp, sample_hist, &qS, &qT);
        if (threadIdx.x == 0) {
            const int tok = key ? (int)~(unsigned)key : amax;
            emit(tok, scaled(z[tok] - bm, temp), qS, qT);
        }
        return;
    }

    // PLAIN: the chunk the inverse CDF lands in (ids in order, weights relative to m as on the
    // CPU), then the rest of the walk inside it. Rounding can leave a walk short of its target:
    // then the last token of non-zero weight, as sampler.c's draw() does.
    const float target = u[row] * Ssum;
    int c = -1, clast = -1;
    float cum = 0.0f, rest = INFINITY;
    for (int w = 0; w < nw; w++) {
        float Ss = chunk[w].Ss, Ts = 0.0f;
        smp_rebase<false>(Ss, Ts, chunk[w].raw.m - m, temp); // the bits of the fold above
        if (Ss > 0) {
            clast = w;
            if (cum + Ss > target) {
                c = w, rest = target - cum;
                break;
            }
            cum += Ss;
        }
    }
    if (c < 0) c = clast;
    if (c < 0) { // no drawable weight at all: id 0, as the CPU
        if (threadIdx.x == 0) emit(0, scaled(z[0] - m, temp), Ssum, Tsum);
        return;
    }
    auto weight = [&](int i) { return expf(scaled(z[i] - m, temp)); };
    // thread t weighs a contiguous piece [t0, t1) of the chunk's drawable ids
    const int a0 = c * L, a1 = imin(imin(a0 + L, V), n_draw);
    const int per = (a1 - a0 + (int)blockDim.x - 1) / (int)blockDim.x;
    const int t0 = imin(a0 + (int)threadIdx.x * per, a1), t1 = imin(t0 + per, a1);
    float s = 0.0f;
    for (int i = t0; i < t1; i++) s += weight(i);
    sh_sum[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x < 32) { // warp 0: the group of 32 pieces, then the piece
        float g = 0.0f;
        if (lane < nw)
            for (int j = 0; j < 32; j++) g += sh_sum[lane * 32 + j];
        sh_group[lane] = g;
        __syncwarp();
        if (lane == 0) {
            float r = rest, acc = 0.0f;
            int gs = -1, glast = -1;
            for (int j = 0; j < nw; j++) {
                if (!(sh_group[j] > 0)) continue;
                glast = j;
                if (acc + sh_group[j] > r) {
                    gs = j;
                    break;
                }
                acc += sh_group[j];
            }
            if (gs < 0)
                gs = glast, r = INFINITY;
            else
                r -= acc;
            int ts = -1, tlast = -1;
            acc = 0.0f;
            for (int j = 0; gs >= 0 && j < 32; j++) {
                const float v = sh_sum[gs * 32 + j];
                if (!(v > 0)) continue;
                tlast = gs * 32 + j;
                if (acc + v > r) {
                    ts = tlast;
                    break;
                }
                acc += v;
            }
            if (ts < 0)
                ts = tlast, r = INFINITY;
            else
                r -= acc;
            sh_pick = ts, sh_rest = r;
        }
    }
    __syncthreads();
    const int pick = sh_pick;
    if (pick < 0 ? threadIdx.x == 0 : (int)threadIdx.x == pick) {
        int tok = -1, last = -1;
        float acc = 0.0f;
        for (int i = t0; pick >= 0 && i < t1; i++) {
            const float e = weight(i);
            if (!(e > 0)) continue;
            last = i, acc += e;
            if (acc > sh_rest) {
                tok = i;
                break;
            }
        }
        if (tok < 0) tok = last >= 0 ? last : amax; // (amax: a chunk of underflowed weights)
        emit(tok, scaled(z[tok] - m, temp), Ssum, Tsum);
    }
}

template <bool VEC, bool ENT, int MODE>
static void launch_sample(const SampleOut &out, const float *logits, const float *u, int n, int V,
                          int n_draw, float temp, int top_k, float top_p, cudaStream_t stream) {
    size_t smem = 0;
    if (MODE == MODE_KEPT) { // (set on every launch: the attribute is per device)
        smem = 16 * SAMPLE_THREADS * sizeof(unsigned long long);
        cudaCheck(cudaFuncSetAttribute(sample_kernel<VEC, ENT, MODE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    LAUNCH(n, SAMPLE_THREADS, smem, stream, sample_kernel<VEC, ENT, MODE>)
    (out, logits, u, V, n_draw, temp, top_k, top_p);
    cudaCheckLaunch();
}

template <bool VEC, bool ENT>
static void launch_sample_mode(int mode, const SampleOut &out, const float *logits, const float *u,
                               int n, int V, int n_draw, float temp, int top_k, float top_p,
                               cudaStream_t stream) {
    if (mode == MODE_GREEDY)
        launch_sample<VEC, ENT, MODE_GREEDY>(out, logits, u, n, V, n_draw, temp, top_k, top_p,
                                             stream);
    else if (mode == MODE_PLAIN)
        launch_sample<VEC, ENT, MODE_PLAIN>(out, logits, u, n, V, n_draw, temp, top_k, top_p,
                                            stream);
    else
        launch_sample<VEC, ENT, MODE_KEPT>(out, logits, u, n, V, n_draw, temp, top_k, top_p,
                                           stream);
}

void sample_rows(const SampleOut &out, const float *logits, const float *u, int n, int V,
                 int n_draw, float temperature, int top_k, float top_p, int with_entropy,
                 cudaStream_t stream) {
    if (n <= 0) return;
    if (V <= 0 || V > SAMPLE_MAX_V) {
        std::fprintf(stderr, "gemc: error: sample_rows: vocabulary of %d (1 to %d supported)\n", V,
                     SAMPLE_MAX_V);
        std::exit(1);
    }
    if (n_draw <= 0 || n_draw > V) n_draw = V;
    const bool greedy = !(temperature > 0) || top_k == 1;
    const bool cut = (top_k > 0 && top_k < n_draw) || top_p < 1.0f;
    const int mode = greedy ? MODE_GREEDY : cut ? MODE_KEPT : MODE_PLAIN;
    const bool vec = (uintptr_t)logits % 16 == 0 && V % 4 == 0;
    if (vec && with_entropy)
        launch_sample_mode<true, true>(mode, out, logits, u, n, V, n_draw, temperature, top_k,
                                       top_p, stream);
    else if (vec)
        launch_sample_mode<true, false>(mode, out, logits, u, n, V, n_draw, temperature, top_k,
                                        top_p, stream);
    else if (with_entropy)
        launch_sample_mode<false, true>(mode, out, logits, u, n, V, n_draw, temperature, top_k,
                                        top_p, stream);
    else
        launch_sample_mode<false, false>(mode, out, logits, u, n, V, n_draw, temperature, top_k,
                                         top_p, stream);
}
