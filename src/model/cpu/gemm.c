// gemc's fp32 GEMM (see gemm.h for the contract: every output element is one fixed sequence of
// IEEE operations in k order, whatever the blocking, the threads or the instruction set).
//
// The structure is the usual one of BLIS and OpenBLAS, kept small:
//   for each block of NC columns (jc), for each panel of KC values of k (pc), in k order:
//     pack op(B) [kc, nc] into strips of NR columns (zero-padded at the edge), then compute
//     every MR x NR tile of C, reading op(A) in place, with a micro-kernel
//     that runs the panel's FMA chain per element from 0 in registers and adds it to C (or
//     stores it, on the first panel without accumulate).
// KC is part of the definition (gemm.h), the same for every family. The tiles are spread over
// the OpenMP threads in tasks of MC rows x NCH columns; which thread computes a tile changes
// nothing in its bits.
#include "model/cpu/gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

#include <omp.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define GEMM_X86 1
#endif

#define KC     GEMM_KC // an NR strip of B is KC * NR * 4 bytes (L1)
#define NC     4096    // columns per packed block of B
#define MC     96      // rows per task (a multiple of every MR)
#define NCH    256     // columns per task (a multiple of every NR)
#define MR_MAX 6
#define NR_MAX 32

// A micro-kernel: for the C tile [MR, NR] (leading dimension ldc), the product a b of one panel,
// each element one FMA chain from 0 in k order, then added to the element (load) or stored in
// it. Row r of a at step k is a[r * rs + k * ks] (op(A) read in place, or a zero-padded edge
// strip); b is a packed strip [kc][NR].
typedef void (*MicroKernel)(int kc, const float *a, long rs, long ks, const float *b, float *c,
                            long ldc, int load);

// ---- scalar (any CPU; the definition written as a kernel) ----------------------------------

#define MR_SCALAR 4
#define NR_SCALAR 8

static void kernel_scalar(int kc, const float *a, long rs, long ks, const float *b, float *c,
                          long ldc, int load) {
    float acc[MR_SCALAR][NR_SCALAR] = {{0}};
    for (int k = 0; k < kc; k++, a += ks, b += NR_SCALAR)
        for (int r = 0; r < MR_SCALAR; r++)
            for (int j = 0; j < NR_SCALAR; j++) acc[r][j] = fmaf(a[r * rs], b[j], acc[r][j]);
    for (int r = 0; r < MR_SCALAR; r++)
        for (int j = 0; j < NR_SCALAR; j++)
            c[r * ldc + j] = load ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

#ifdef GEMM_X86
// ---- AVX2 + FMA: 6 rows x 16 columns, 12 accumulators of 8 floats ---------------------------

#define MR_AVX2 6
#define NR_AVX2 16

// One row of a tile: two vectors of accumulators, zeroed; the FMA step of row r at one k; the
// store, adding C first when load. The kernels below spell out their rows with these.
#define AVX2_ZERO(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps()
#define AVX2_STEP(r)                                                                               \
    do {                                                                                           \
        const __m256 ar = _mm256_broadcast_ss(a + (r)*rs);                                         \
        c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0);                                                \
        c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);                                                \
    } while (0)
#define AVX2_STORE(r)                                                                              \
    do {                                                                                           \
        if (load) {                                                                                \
            c##r##0 = _mm256_add_ps(_mm256_loadu_ps(c + (r)*ldc), c##r##0);                        \
            c##r##1 = _mm256_add_ps(_mm256_loadu_ps(c + (r)*ldc + 8), c##r##1);                    \
        }                                                                                          \
        _mm256_storeu_ps(c + (r)*ldc, c##r##0);                                                    \
        _mm256_storeu_ps(c + (r)*ldc + 8, c##r##1);                                                \
    } while (0)

// clang-format off
__attribute__((target("avx2,fma")))
static void kernel_avx2(int kc, const float *a, long rs, long ks, const float *b, float *c,
                        long ldc, int load) {
    AVX2_ZERO(0); AVX2_ZERO(1); AVX2_ZERO(2); AVX2_ZERO(3); AVX2_ZERO(4); AVX2_ZERO(5);
    for (int k = 0; k < kc; k++, a += ks, b += NR_AVX2) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        AVX2_STEP(0); AVX2_STEP(1); AVX2_STEP(2); AVX2_STEP(3); AVX2_STEP(4); AVX2_STEP(5);
    }
    AVX2_STORE(0); AVX2_STORE(1); AVX2_STORE(2); AVX2_STORE(3); AVX2_STORE(4); AVX2_STORE(5);
}
// clang-format on

// ---- AVX-512: 6 rows x 32 columns, 12 accumulators of 16 floats ----------------------------

#define MR_AVX512 6
#define NR_AVX512 32

#define AVX512_ZERO(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps()
#define AVX512_STEP(r)                                                                             \
    do {                                                                                           \
        const __m512 ar = _mm512_set1_ps(a[(r)*rs]);                                               \
        c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0);                                                \
        c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1);                                                \
    } while (0)
#define AVX512_STORE(r)                                                                            \
    do {                                                                                           \
        if (load) {                                                                                \
            c##r##0 = _mm512_add_ps(_mm512_loadu_ps(c + (r)*ldc), c##r##0);                        \
            c##r##1 = _mm512_add_ps(_mm512_loadu_ps(c + (r)*ldc + 16), c##r##1);                   \
        }                                                                                          \
        _mm512_storeu_ps(c + (r)*ldc, c##r##0);                                                    \
        _mm512_storeu_ps(c + (r)*ldc + 16, c##r##1);                                               \
    } while (0)

// clang-format off
__attribute__((target("avx512f")))
static void kernel_avx512(int kc, const float *a, long rs, long ks, const float *b, float *c,
                          long ldc, int load) {
    AVX512_ZERO(0); AVX512_ZERO(1); AVX512_ZERO(2); AVX512_ZERO(3); AVX512_ZERO(4); AVX512_ZERO(5);
    for (int k = 0; k < kc; k++, a += ks, b += NR_AVX512) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        AVX512_STEP(0); AVX512_STEP(1); AVX512_STEP(2); AVX512_STEP(3); AVX512_STEP(4);
        AVX512_STEP(5);
    }
    AVX512_STORE(0); AVX512_STORE(1); AVX512_STORE(2); AVX512_STORE(3); AVX512_STORE(4);
    AVX512_STORE(5);
}
// clang-format on
#endif

// ---- the kernel family ---------------------------------------------------------------------

static int isa_supported(GemmIsa isa) {
#ifdef GEMM_X86
    __builtin_cpu_init();
    if (isa == GEMM_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == GEMM_ISA_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return isa == GEMM_ISA_SCALAR;
}

static const char *const ISA_NAMES[] = {"scalar", "avx2", "avx512"};

const char *gemm_isa_name(GemmIsa isa) {
    return (unsigned)isa < sizeof ISA_NAMES / sizeof ISA_NAMES[0] ? ISA_NAMES[isa] : "?";
}

static int g_isa = -1; // not chosen yet

static GemmIsa isa_choose(void) {
    const char *env = getenv("GEMC_ISA");
    if (env && *env) {
        for (int i = 0; i < 3; i++)
            if (strcmp(env, ISA_NAMES[i]) == 0) {
                if (!isa_supported((GemmIsa)i))
                    gemc_fatal(
                        "GEMC_ISA=%s: this CPU cannot run the %s kernels. HINT: unset GEMC_ISA "
                        "(gemc picks the widest the CPU has) or set it to avx2 or scalar",
                        env, env);
                return (GemmIsa)i;
            }
        gemc_fatal(
            "GEMC_ISA=%s: not a kernel family. HINT: use avx512, avx2 or scalar, or unset it", env);
    }
    if (isa_supported(GEMM_ISA_AVX512)) return GEMM_ISA_AVX512;
    if (isa_supported(GEMM_ISA_AVX2)) return GEMM_ISA_AVX2;
    return GEMM_ISA_SCALAR;
}

GemmIsa gemm_isa(void) {
    if (g_isa < 0) g_isa = (int)isa_choose();
    return (GemmIsa)g_isa;
}

int gemm_set_isa(GemmIsa isa) {
    if (!isa_supported(isa)) return -1;
    g_isa = (int)isa;
    return 0;
}

typedef struct {
    MicroKernel kernel;
    int mr, nr;
    int avx2; // the packing may use AVX2 (every family but the scalar one)
} Family;

static Family family(GemmIsa isa) {
    switch (isa) {
#ifdef GEMM_X86
    case GEMM_ISA_AVX512:
        return (Family){kernel_avx512, MR_AVX512, NR_AVX512, 1};
    case GEMM_ISA_AVX2:
        return (Family){kernel_avx2, MR_AVX2, NR_AVX2, 1};
#endif
    default:
        return (Family){kernel_scalar, MR_SCALAR, NR_SCALAR, 0};
    }
}

// ---- packing -------------------------------------------------------------------------------

#ifdef GEMM_X86
// dst[k * ldd + j] = src[j * lds + k] for j, k < 8 (exact: only moves).
__attribute__((target("avx2"))) static void transpose_8x8(float *dst, int ldd, const float *src,
                                                          int lds) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + (size_t)i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (size_t)(i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}
#endif

// dst [kc][nr] = op(B) k values p0 .. p0 + kc, columns j0 .. j0 + n; columns past n are zeros.
static void pack_b(float *dst, const float *B, int ldb, int trans, int j0, int n, int p0, int kc,
                   int nr, int avx2) {
    if (!trans) { // op(B)[k][j] = B[k][j]: each k is a contiguous run of columns
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            float *d = dst + (size_t)k * nr;
            memcpy(d, src, (size_t)n * sizeof(float));
            for (int j = n; j < nr; j++) d[j] = 0.0f;
        }
        return;
    }
    // op(B)[k][j] = B[j][k] (a weight [OC, IC] used as w^T): blocks of 8 columns x 8 k values
    // transposed in registers where the CPU has AVX2, the rest one element at a time
    int j8 = 0, k8 = 0;
#ifdef GEMM_X86
    if (avx2) {
        j8 = n / 8 * 8, k8 = kc / 8 * 8;
        for (int j = 0; j < j8; j += 8)
            for (int k = 0; k < k8; k += 8)
                transpose_8x8(dst + (size_t)k * nr + j, nr, B + (size_t)(j0 + j) * ldb + p0 + k,
                              ldb);
    }
#else
    (void)avx2;
#endif
    for (int j = 0; j < nr; j++)
        for (int k = j < j8 ? k8 : 0; k < kc; k++)
            dst[(size_t)k * nr + j] = j < n ? B[(size_t)(j0 + j) * ldb + p0 + k] : 0.0f;
}

// ---- the product ---------------------------------------------------------------------------

// The packing buffers of the calling thread, kept from call to call (a fresh multi-megabyte
// allocation per call would fault its pages in every time).
static _Thread_local float *t_buf;
static _Thread_local size_t t_cap;

static float *pack_buffer(size_t floats) {
    if (floats > t_cap) {
        free(t_buf);
        size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
        t_buf = aligned_alloc(64, bytes);
        if (!t_buf) gemc_fatal("out of memory: %zu bytes for the GEMM's packed panels", bytes);
        t_cap = bytes / sizeof(float);
    }
    return t_buf;
}

// One MR x NR tile of C with m x n valid elements: straight into C when whole, else through a
// scratch tile so that the elements outside C are neither read nor written.
static void tile(const Family *f, int kc, const float *a, long rs, long ks, const float *b,
                 float *C, int ldc, int m, int n, int load) {
    if (m == f->mr && n == f->nr) {
        f->kernel(kc, a, rs, ks, b, C, ldc, load);
        return;
    }
    float t[MR_MAX * NR_MAX];
    if (load)
        for (int r = 0; r < m; r++) memcpy(t + r * f->nr, C + (size_t)r * ldc, n * sizeof(float));
    f->kernel(kc, a, rs, ks, b, t, f->nr, load);
    for (int r = 0; r < m; r++) memcpy(C + (size_t)r * ldc, t + r * f->nr, n * sizeof(float));
}

// The rows i .. i + m of C's block (jc, pc) for the column strips j0 .. j1 of the packed B.
// op(A) is read in place (row r at step k: a + r * rs + k * ks); a strip of fewer than MR rows
// is copied into a zero-padded one first, so that the kernel never reads past op(A).
static void rows_times_strips(const Family *f, int trans_a, const float *A, int lda, int i, int m,
                              int pc, int kc, const float *bp, int j0, int j1, int nc, float *C,
                              int ldc, int load) {
    const float *a = trans_a ? A + (size_t)pc * lda + i : A + (size_t)i * lda + pc;
    long rs = trans_a ? 1 : lda, ks = trans_a ? lda : 1;
    float edge[MR_MAX * KC];
    if (m < f->mr) {
        for (int k = 0; k < kc; k++)
            for (int r = 0; r < f->mr; r++) edge[k * f->mr + r] = r < m ? a[r * rs + k * ks] : 0.0f;
        a = edge, rs = 1, ks = f->mr;
    }
    for (int j = j0; j < j1; j += f->nr) {
        const int n = nc - j < f->nr ? nc - j : f->nr;
        tile(f, kc, a, rs, ks, bp + (size_t)(j / f->nr) * f->nr * kc, C + j, ldc, m, n, load);
    }
}

#ifdef GEMM_X86
// M <= 8 rows times a weight used as w^T (op(B)[k][j] = W[j][k]: a decode step's rows times
// the model's weights): the 8 lanes of a vector are the rows of A, so that each weight row is
// read once, in place, as a stream of broadcasts, and nothing is packed or transposed. At is
// op(A) transposed, [K][8], zero past row M. Per element the same panels and the same FMA
// chain from 0 as the kernels (fma(w, a, acc) = fma(a, w, acc): one rounding of the same
// product), then the same add to C.
__attribute__((target("avx2,fma"))) static void rows_by_weights(int M, int N, int K,
                                                                const float *At, const float *W,
                                                                int ldw, int accumulate, float *C,
                                                                int ldc) {
    const int nblocks = (N + 7) / 8;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblocks; blk++) {
        const int j0 = blk * 8, jb = N - j0 < 8 ? N - j0 : 8;
        // the block's 8 weight rows (past N: row j0 again, its results never stored)
        const float *w0 = W + (size_t)j0 * ldw;
        const float *w1 = jb > 1 ? w0 + ldw : w0, *w2 = jb > 2 ? w0 + 2 * (size_t)ldw : w0;
        const float *w3 = jb > 3 ? w0 + 3 * (size_t)ldw : w0;
        const float *w4 = jb > 4 ? w0 + 4 * (size_t)ldw : w0;
        const float *w5 = jb > 5 ? w0 + 5 * (size_t)ldw : w0;
        const float *w6 = jb > 6 ? w0 + 6 * (size_t)ldw : w0;
        const float *w7 = jb > 7 ? w0 + 7 * (size_t)ldw : w0;
        for (int pc = 0; pc < K; pc += KC) {
            const int k1 = K - pc < KC ? K : pc + KC;
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
                   c7 = c0;
            for (int k = pc; k < k1; k++) {
                const __m256 a = _mm256_loadu_ps(At + (size_t)k * 8);
                c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(w0 + k), a, c0);
                c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(w1 + k), a, c1);
                c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(w2 + k), a, c2);
                c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(w3 + k), a, c3);
                c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(w4 + k), a, c4);
                c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(w5 + k), a, c5);
                c6 = _mm256_fmadd_ps(_mm256_broadcast_ss(w6 + k), a, c6);
                c7 = _mm256_fmadd_ps(_mm256_broadcast_ss(w7 + k), a, c7);
            }
            const __m256 acc[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
            const int load = accumulate || pc > 0;
            for (int u = 0; u < jb; u++) {
                float t[8];
                _mm256_storeu_ps(t, acc[u]);
                for (int i = 0; i < M; i++) {
                    float *c = C + (size_t)i * ldc + j0 + u;
                    *c = load ? *c + t[i] : t[i];
                }
            }
        }
    }
}
#endif

// M <= MC rows (a decode step, a short prefill): each strip of NR columns of op(B) is packed
// where it is used, panel by panel, into a buffer that stays in L1, and all M rows go by it;
// the strips are spread over the threads. The big shared buffer of the general path would
// send every packed weight through memory twice, which for few rows is most of the time.
// Each element sees the same panels in the same order as on the general path.
static void few_rows(const Family *f, int trans_a, int trans_b, int M, int N, int K, const float *A,
                     int lda, const float *B, int ldb, int accumulate, float *C, int ldc) {
    const int nstrips = (N + f->nr - 1) / f->nr;
#pragma omp parallel
    {
        float strip[KC * NR_MAX];
#pragma omp for schedule(static)
        for (int s = 0; s < nstrips; s++) {
            const int j = s * f->nr, n = N - j < f->nr ? N - j : f->nr;
            for (int pc = 0; pc < K; pc += KC) {
                const int kc = K - pc < KC ? K - pc : KC;
                pack_b(strip, B, ldb, trans_b, j, n, pc, kc, f->nr, f->avx2);
                for (int i = 0; i < M; i += f->mr) {
                    const int m = M - i < f->mr ? M - i : f->mr;
                    rows_times_strips(f, trans_a, A, lda, i, m, pc, kc, strip, 0, n, n,
                                      C + (size_t)i * ldc + j, ldc, accumulate || pc > 0);
                }
            }
        }
    }
}

void gemm_f32(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
              const float *B, int ldb, int accumulate, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    const Family f = family(gemm_isa());
#ifdef GEMM_X86
    if (M <= 8 && trans_b && f.avx2) {
        float *at = pack_buffer((size_t)K * 8);
        for (int k = 0; k < K; k++)
            for (int i = 0; i < 8; i++)
                at[(size_t)k * 8 + i] = i >= M    ? 0.0f
                                        : trans_a ? A[(size_t)k * lda + i]
                                                  : A[(size_t)i * lda + k];
        rows_by_weights(M, N, K, at, B, ldb, accumulate, C, ldc);
        return;
    }
#endif
    if (M <= MC) {
        few_rows(&f, trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
        return;
    }
    const int kc_max = K < KC ? K : KC, nc_max = N < NC ? N : NC;
    float *bp = pack_buffer((size_t)((nc_max + f.nr - 1) / f.nr) * f.nr * kc_max);
    const int mtasks = (M + MC - 1) / MC;

#pragma omp parallel
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = N - jc < NC ? N - jc : NC;
        const int nstrips = (nc + f.nr - 1) / f.nr, ntasks = (nc + NCH - 1) / NCH;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const int load = accumulate || pc > 0;
#pragma omp for schedule(static)
            for (int s = 0; s < nstrips; s++) {
                const int j = s * f.nr, n = nc - j < f.nr ? nc - j : f.nr;
                pack_b(bp + (size_t)s * f.nr * kc, B, ldb, trans_b, jc + j, n, pc, kc, f.nr,
                       f.avx2);
            }
            // every tile of the block, in tasks of MC rows x NCH columns; within a task the
            // rows of A go by for each strip of B (which stays in L1)
#pragma omp for collapse(2) schedule(dynamic, 1)
            for (int tm = 0; tm < mtasks; tm++)
                for (int tn = 0; tn < ntasks; tn++) {
                    const int i_end = (tm + 1) * MC < M ? (tm + 1) * MC : M;
                    const int j0 = tn * NCH, j1 = j0 + NCH < nc ? j0 + NCH : nc;
                    for (int i = tm * MC; i < i_end; i += f.mr) {
                        const int m = M - i < f.mr ? M - i : f.mr;
                        rows_times_strips(&f, trans_a, A, lda, i, m, pc, kc, bp, j0, j1, nc,
                                          C + (size_t)i * ldc + jc, ldc, load);
                    }
                }
        }
    }
}

// ---- weights packed once ---------------------------------------------------------------------
// A weight W [N, K] used as W^T (C = A W^T: every matmul of a forward) laid out once as the
// strips the micro-kernels read: strip s is [K][nr] (columns s*nr .. s*nr+nr of W^T, zero past
// N), so the panel pc of strip s is the contiguous [kc][nr] block at p + s*K*nr + pc*nr. A call
// then reads each weight once, in order, and packs nothing: what a decode step (one to a few
// rows per call) needs to run at the memory's speed. Each element is still the sequence of the
// definition, so the bits are those of gemm_f32.

size_t gemm_packed_floats(int N, int K) {
    const Family f = family(gemm_isa());
    return ((size_t)(N + f.nr - 1) / f.nr * f.nr * K + 15) / 16 * 16; // 64-byte multiples
}

void gemm_pack_weight(GemmPackedWeight *pw, float *dst, const float *W, int N, int K, int ldw) {
    const Family f = family(gemm_isa());
    const int nstrips = (N + f.nr - 1) / f.nr;
    pw->N = N, pw->K = K, pw->nr = f.nr, pw->isa = (int)gemm_isa(), pw->p = dst;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < nstrips; s++) {
        const int j = s * f.nr, n = N - j < f.nr ? N - j : f.nr;
        pack_b(dst + (size_t)s * K * f.nr, W, ldw, 1, j, n, 0, K, f.nr, f.avx2);
    }
}

#ifdef GEMM_X86
// The narrow kernels: M (1 .. 8) rows of A times S whole strips (S * nr columns) of one k
// panel, every weight vector loaded once and used by all M rows; M * S * nr / width
// accumulators, each an FMA chain from 0 in k order, then added to C (load) or stored. M and S
// are constants in each instance (narrow_kernel below), so the accumulators live in registers.
// b is the panel of the first strip, ss the distance between strips.
#define NARROW_MAX_M 8
// narrow_FAM(M, S, ...) of a family whose vectors are BITS wide (W floats) and strips NRF wide;
// the intrinsics are _mmBITS_*_ps.
#define NARROW_FAMILY(fam, tgt, BITS, W, NRF)                                                      \
    __attribute__((target(tgt), always_inline)) static inline void narrow_##fam(                   \
        const int M, const int S, int kc, const float *a, long lda, const float *b, long ss,       \
        float *c, long ldc, int load) {                                                            \
        enum { NR = NRF, PER = NRF / W };                                                          \
        const int V = S * PER;                                                                     \
        __m##BITS acc[NARROW_MAX_M][8];                                                            \
        _Pragma("GCC unroll 8") for (int i = 0; i < M; i++)                                        \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) acc[i][v] =                        \
                _mm##BITS##_setzero_ps();                                                          \
        for (int k = 0; k < kc; k++) {                                                             \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) {                                  \
                const __m##BITS w = _mm##BITS##_loadu_ps(b + (size_t)(v / PER) * ss +              \
                                                         (size_t)k * NR + (v % PER) * W);          \
                _Pragma("GCC unroll 8") for (int i = 0; i < M; i++) acc[i][v] =                    \
                    _mm##BITS##_fmadd_ps(_mm##BITS##_set1_ps(a[(size_t)i * lda + k]), w,           \
                                         acc[i][v]);                                               \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < M; i++)                                        \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) {                                  \
            float *cp = c + (size_t)i * ldc + (v / PER) * NR + (v % PER) * W;                      \
            _mm##BITS##_storeu_ps(                                                                 \
                cp, load ? _mm##BITS##_add_ps(_mm##BITS##_loadu_ps(cp), acc[i][v]) : acc[i][v]);   \
        }                                                                                          \
    }
NARROW_FAMILY(avx512, "avx512f", 512, 16, NR_AVX512)
NARROW_FAMILY(avx2, "avx2,fma", 256, 8, NR_AVX2)

typedef void (*NarrowKernel)(int kc, const float *a, long lda, const float *b, long ss, float *c,
                             long ldc, int load);

// One instance per (family, M, S): the shapes a call picks from (narrow_pick).
#define NARROW_INSTANCE(fam, tgt, M, S)                                                            \
    __attribute__((target(tgt))) static void narrow_##fam##_##M##x##S(                             \
        int kc, const float *a, long lda, const float *b, long ss, float *c, long ldc, int load) { \
        narrow_##fam(M, S, kc, a, lda, b, ss, c, ldc, load);                                       \
    }
NARROW_INSTANCE(avx512, "avx512f", 1, 4)
NARROW_INSTANCE(avx512, "avx512f", 2, 4)
NARROW_INSTANCE(avx512, "avx512f", 3, 2)
NARROW_INSTANCE(avx512, "avx512f", 4, 2)
NARROW_INSTANCE(avx512, "avx512f", 5, 1)
NARROW_INSTANCE(avx512, "avx512f", 6, 1)
NARROW_INSTANCE(avx512, "avx512f", 7, 1)
NARROW_INSTANCE(avx512, "avx512f", 8, 1)
NARROW_INSTANCE(avx512, "avx512f", 1, 1)
NARROW_INSTANCE(avx512, "avx512f", 2, 1)
NARROW_INSTANCE(avx512, "avx512f", 3, 1)
NARROW_INSTANCE(avx512, "avx512f", 4, 1)
NARROW_INSTANCE(avx2, "avx2,fma", 1, 4)
NARROW_INSTANCE(avx2, "avx2,fma", 2, 2)
NARROW_INSTANCE(avx2, "avx2,fma", 3, 2)
NARROW_INSTANCE(avx2, "avx2,fma", 4, 1)
NARROW_INSTANCE(avx2, "avx2,fma", 5, 1)
NARROW_INSTANCE(avx2, "avx2,fma", 1, 1)
NARROW_INSTANCE(avx2, "avx2,fma", 2, 1)
NARROW_INSTANCE(avx2, "avx2,fma", 3, 1)

// The widest narrow kernel for m rows of this family (S strips at a time), or NULL when m rows
// are for the micro-kernel. single: the one-strip instance (for a call with few strips).
static NarrowKernel narrow_pick(GemmIsa isa, int m, int single, int *S) {
    static const NarrowKernel k512[9][2] = {
        {NULL, NULL},
        {narrow_avx512_1x4, narrow_avx512_1x1},
        {narrow_avx512_2x4, narrow_avx512_2x1},
        {narrow_avx512_3x2, narrow_avx512_3x1},
        {narrow_avx512_4x2, narrow_avx512_4x1},
        {narrow_avx512_5x1, narrow_avx512_5x1},
        {narrow_avx512_6x1, narrow_avx512_6x1},
        {narrow_avx512_7x1, narrow_avx512_7x1},
        {narrow_avx512_8x1, narrow_avx512_8x1},
    };
    static const int s512[9] = {0, 4, 4, 2, 2, 1, 1, 1, 1};
    static const NarrowKernel k256[6][2] = {
        {NULL, NULL},
        {narrow_avx2_1x4, narrow_avx2_1x1},
        {narrow_avx2_2x2, narrow_avx2_2x1},
        {narrow_avx2_3x2, narrow_avx2_3x1},
        {narrow_avx2_4x1, narrow_avx2_4x1},
        {narrow_avx2_5x1, narrow_avx2_5x1},
    };
    static const int s256[6] = {0, 4, 2, 2, 1, 1};
    if (isa == GEMM_ISA_AVX512 && m >= 1 && m <= 8) {
        *S = single ? 1 : s512[m];
        return k512[m][single];
    }
    if (isa == GEMM_ISA_AVX2 && m >= 1 && m <= 5) {
        *S = single ? 1 : s256[m];
        return k256[m][single];
    }
    return NULL;
}

// Rows i .. i+m of C times the strips s0 .. s0+S of the packed weight, panel by panel, with the
// narrow kernel nk; a group that runs past N goes through a scratch tile.
static void narrow_group(NarrowKernel nk, int S, const GemmPackedWeight *w, int s0, int m,
                         const float *A, int lda, int accumulate, float *C, int ldc) {
    const int K = w->K, nr = w->nr, j0 = s0 * nr;
    const int n = w->N - j0 < S * nr ? w->N - j0 : S * nr;
    float t[NARROW_MAX_M * 4 * NR_MAX];
    float *c = C + j0;
    long ldt = ldc;
    if (n < S * nr) { // the edge: through t, whose columns past n are never copied back
        c = t, ldt = S * nr;
        if (accumulate)
            for (int i = 0; i < m; i++)
                memcpy(t + i * ldt, C + (size_t)i * ldc + j0, (size_t)n * sizeof(float));
    }
    for (int pc = 0; pc < K; pc += KC) {
        const int kc = K - pc < KC ? K - pc : KC;
        nk(kc, A + pc, lda, w->p + (size_t)s0 * K * nr + (size_t)pc * nr, (long)K * nr, c, ldt,
           accumulate || pc > 0);
    }
    if (c == t)
        for (int i = 0; i < m; i++)
            memcpy(C + (size_t)i * ldc + j0, t + i * ldt, (size_t)n * sizeof(float));
}
#endif

void gemm_f32_packed(int M, const float *A, int lda, const GemmPackedWeight *w, int accumulate,
                     float *C, int ldc) {
    const int N = w->N, K = w->K;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    const Family f = family((GemmIsa)w->isa);
    const int nstrips = (N + f.nr - 1) / f.nr;
#ifdef GEMM_X86
    int S = 1;
    // few rows (a decode step): each group of S strips streams its weights once for all M rows;
    // a call of few strips takes one strip per task so that every thread has some
    const int single = nstrips < 8 * omp_get_max_threads();
    const NarrowKernel nk = narrow_pick((GemmIsa)w->isa, M, single, &S);
    if (nk) {
        const int ngroups = (nstrips + S - 1) / S;
#pragma omp parallel for schedule(static)
        for (int g = 0; g < ngroups; g++) {
            const int s0 = g * S, sg = nstrips - s0 < S ? nstrips - s0 : S;
            if (sg == S)
                narrow_group(nk, S, w, s0, M, A, lda, accumulate, C, ldc);
            else // the last, shorter group: one strip at a time
                for (int s = s0; s < nstrips; s++) {
                    int one;
                    narrow_group(narrow_pick((GemmIsa)w->isa, M, 1, &one), 1, w, s, M, A, lda,
                                 accumulate, C, ldc);
                }
        }
        return;
    }
#endif
    // more rows: tasks of MC rows x NCH columns; in a task, strip by strip, each panel of the
    // strip ([KC, nr], in L1) goes by all the task's whole MR-row blocks, panel after panel (so
    // each element still sees the panels in order); the last, shorter block of rows through a
    // narrow kernel where there is one, else zero-padded for the micro-kernel
    const int mtasks = (M + MC - 1) / MC, spt = NCH / f.nr, ntasks = (nstrips + spt - 1) / spt;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int tm = 0; tm < mtasks; tm++)
        for (int tn = 0; tn < ntasks; tn++) {
            const int i0 = tm * MC, i1 = i0 + MC < M ? i0 + MC : M;
            const int whole = i0 + (i1 - i0) / f.mr * f.mr; // rows i0 .. whole in MR blocks
            const int s1 = (tn + 1) * spt < nstrips ? (tn + 1) * spt : nstrips;
            for (int s = tn * spt; s < s1; s++) {
                const int j = s * f.nr, n = N - j < f.nr ? N - j : f.nr;
                for (int pc = 0; pc < K; pc += KC) {
                    const int kc = K - pc < KC ? K - pc : KC;
                    for (int i = i0; i < whole; i += f.mr)
                        rows_times_strips(&f, 0, A, lda, i, f.mr, pc, kc,
                                          w->p + (size_t)s * K * f.nr + (size_t)pc * f.nr, 0, n, n,
                                          C + (size_t)i * ldc + j, ldc, accumulate || pc > 0);
                }
                if (whole == i1) continue;
                const int m = i1 - whole;
#ifdef GEMM_X86
                int one;
                const NarrowKernel rk = narrow_pick((GemmIsa)w->isa, m, 1, &one);
                if (rk) {
                    narrow_group(rk, 1, w, s, m, A + (size_t)whole * lda, lda, accumulate,
                                 C + (size_t)whole * ldc, ldc);
                    continue;
                }
#endif
                for (int pc = 0; pc < K; pc += KC) {
                    const int kc = K - pc < KC ? K - pc : KC;
                    rows_times_strips(&f, 0, A, lda, whole, m, pc, kc,
                                      w->p + (size_t)s * K * f.nr + (size_t)pc * f.nr, 0, n, n,
                                      C + (size_t)whole * ldc + j, ldc, accumulate || pc > 0);
                }
            }
        }
}

void gemm_f32_reference(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, int accumulate, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float c = accumulate ? C[(size_t)i * ldc + j] : 0.0f;
            for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
                float p = 0.0f;
                for (int k = k0; k < K && k < k0 + GEMM_KC; k++) {
                    const float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                    const float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                    p = fmaf(a, b, p);
                }
                c = accumulate || k0 > 0 ? c + p : p;
            }
            C[(size_t)i * ldc + j] = c;
        }
}
