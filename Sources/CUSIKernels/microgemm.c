// Our own SGEMM for the convolution GEMMs: tall-skinny products (M = N*OH*OW rows of tens
// of thousands, N = 16..1k output columns, K = 16..5k) where OpenBLAS's generic blocking is
// weak. BLIS/llm.c style:
//
//   C[M,N] = alpha * op(A) op(B) + beta * C + bias   (row-major; bias [N] may be NULL)
//
// - a register-blocked MR x NR microkernel (AVX-512: 12 x 32, 24 zmm accumulators; portable
//   C: 6 x 16) computes one tile of C over a KC-slice of K and folds it into C;
// - op(A) is read in place: a micro-panel is MR rows (A row-major, stride lda) or MR
//   contiguous columns (A transposed, k-major); only a ragged last micro-panel is copied;
// - op(B) is packed into k-major NR-wide panels: a transposed B (conv weights [OC, K]) once
//   per call, a plain B (im2col rows, activations) per task and K-slice, just before use;
// - tasks own disjoint blocks of C (row blocks x panel blocks) and run on the kernel pool;
//   each C element is summed by one task, over K in the same fixed KC order, so results do
//   not depend on the thread count or the partition.
#include "usi_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define UG_X86 1
#endif

#define UG_KC 256       // K-slice per microkernel call (B micro-panel KC x 32 floats = 32 KB)
#define UG_MC_PANELS 16 // micro-panels of MR rows per row block of a task
#define UG_MAX_MR 12
#define UG_MAX_NR 32

typedef struct {
    float alpha, beta;
    int first;           // first K-slice: C = beta*C + alpha*acc + bias; later: C += alpha*acc
    const float *bias;   // bias of this tile's columns (NULL = none)
} ug_epi;

// acc [MR][NR] -> C tile (mr x nr valid), portable epilogue.
static inline void ug_store_generic(const float *acc, int NR, float *c, int64_t ldc, int mr,
                                    int nr, const ug_epi *e) {
    for (int i = 0; i < mr; i++) {
        float *cr = c + (size_t)i * ldc;
        const float *ar = acc + (size_t)i * NR;
        if (!e->first) {
            for (int j = 0; j < nr; j++) cr[j] += e->alpha * ar[j];
        } else {
            for (int j = 0; j < nr; j++) {
                float v = e->alpha * ar[j];
                if (e->beta != 0.0f) v += e->beta * cr[j];
                if (e->bias) v += e->bias[j];
                cr[j] = v;
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Portable kernel: 6 x 16, plain C the compiler vectorises (AVX2/FMA in the x86-64-v3 copy,
// SSE2 in the baseline copy, NEON on arm).

#define UG_GEN_MR 6
#define UG_GEN_NR 16

static inline __attribute__((always_inline)) void
ug_kern_generic_impl(int k, const float *restrict a, int64_t ars, int64_t acs,
                     const float *restrict b, int64_t brs, float *restrict c, int64_t ldc,
                     int mr, int nr, const ug_epi *e) {
    float acc[UG_GEN_MR * UG_GEN_NR];
    for (int t = 0; t < UG_GEN_MR * UG_GEN_NR; t++) acc[t] = 0.0f;
    for (int p = 0; p < k; p++) {
        const float *bp = b + (size_t)p * brs;
        const float *ap = a + (size_t)p * acs;
        for (int i = 0; i < UG_GEN_MR; i++) {
            float ai = ap[(size_t)i * ars];
            for (int j = 0; j < UG_GEN_NR; j++) acc[i * UG_GEN_NR + j] += ai * bp[j];
        }
    }
    ug_store_generic(acc, UG_GEN_NR, c, ldc, mr, nr, e);
}

// A row-major (element (i, p) at a[i*lda + p]).
USI_MULTIVERSION
static void ug_kern_generic_rows(int k, const float *a, int64_t lda, const float *b,
                                 int64_t brs, float *c, int64_t ldc, int mr, int nr,
                                 const ug_epi *e) {
    ug_kern_generic_impl(k, a, lda, 1, b, brs, c, ldc, mr, nr, e);
}

// A k-major (element (i, p) at a[p*lda + i]).
USI_MULTIVERSION
static void ug_kern_generic_kmaj(int k, const float *a, int64_t lda, const float *b,
                                 int64_t brs, float *c, int64_t ldc, int mr, int nr,
                                 const ug_epi *e) {
    ug_kern_generic_impl(k, a, 1, lda, b, brs, c, ldc, mr, nr, e);
}

// ----------------------------------------------------------------------------------------
// AVX-512 kernel: 12 x 32 (24 accumulators, two B vectors, A broadcast from memory).

#if UG_X86
#define UG_TGT __attribute__((target("avx512f,fma")))

static inline __attribute__((always_inline)) UG_TGT void
ug_kern_avx512_impl(int k, const float *restrict a, int64_t ars, int64_t acs,
                    const float *restrict b, int64_t brs, float *restrict c, int64_t ldc,
                    int mr, int nr, const ug_epi *e) {
    __m512 x0 = _mm512_setzero_ps(), y0 = x0, x1 = x0, y1 = x0, x2 = x0, y2 = x0, x3 = x0,
           y3 = x0, x4 = x0, y4 = x0, x5 = x0, y5 = x0, x6 = x0, y6 = x0, x7 = x0, y7 = x0,
           x8 = x0, y8 = x0, x9 = x0, y9 = x0, x10 = x0, y10 = x0, x11 = x0, y11 = x0;
    if (!e->first || e->beta != 0.0f) {
        // The epilogue reads this C tile: start fetching it now, so the loads at the end do
        // not stall on memory (measured, dx of a 1x1 conv, K = 64: 82 -> ~180 GFLOP/s).
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + 16), _MM_HINT_T0);
        }
    }
#define UG_ROW(i)                                                  \
    do {                                                           \
        __m512 ai = _mm512_set1_ps(a[(i) * ars]);                  \
        x##i = _mm512_fmadd_ps(ai, b0, x##i);                      \
        y##i = _mm512_fmadd_ps(ai, b1, y##i);                      \
    } while (0)
    for (int p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        UG_ROW(0); UG_ROW(1); UG_ROW(2); UG_ROW(3); UG_ROW(4); UG_ROW(5);
        UG_ROW(6); UG_ROW(7); UG_ROW(8); UG_ROW(9); UG_ROW(10); UG_ROW(11);
        a += acs;
        b += brs;
    }
#undef UG_ROW
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                            : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1u);
    const __m512 va = _mm512_set1_ps(e->alpha), vb = _mm512_set1_ps(e->beta);
    const int scale = e->alpha != 1.0f, first = e->first, usebeta = e->first && e->beta != 0.0f;
    __m512 bias0 = _mm512_setzero_ps(), bias1 = bias0;
    if (first && e->bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, e->bias);
        bias1 = _mm512_maskz_loadu_ps(m1, e->bias + 16);
    }
#define UG_OUT(i)                                                                    \
    if ((i) < mr) {                                                                  \
        float *cr = c + (size_t)(i) * ldc;                                           \
        __m512 v0 = x##i, v1 = y##i;                                                 \
        if (scale) {                                                                 \
            v0 = _mm512_mul_ps(va, v0);                                              \
            v1 = _mm512_mul_ps(va, v1);                                              \
        }                                                                            \
        if (!first) {                                                                \
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));                   \
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));              \
        } else {                                                                     \
            if (usebeta) {                                                           \
                v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);         \
                v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);    \
            }                                                                        \
            v0 = _mm512_add_ps(v0, bias0);                                           \
            v1 = _mm512_add_ps(v1, bias1);                                           \
        }                                                                            \
        _mm512_mask_storeu_ps(cr, m0, v0);                                           \
        _mm512_mask_storeu_ps(cr + 16, m1, v1);                                      \
    }
    UG_OUT(0) UG_OUT(1) UG_OUT(2) UG_OUT(3) UG_OUT(4) UG_OUT(5)
    UG_OUT(6) UG_OUT(7) UG_OUT(8) UG_OUT(9) UG_OUT(10) UG_OUT(11)
#undef UG_OUT
}

UG_TGT static void ug_kern_avx512_rows(int k, const float *a, int64_t lda, const float *b,
                                       int64_t brs, float *c, int64_t ldc, int mr, int nr,
                                       const ug_epi *e) {
    ug_kern_avx512_impl(k, a, lda, 1, b, brs, c, ldc, mr, nr, e);
}

UG_TGT static void ug_kern_avx512_kmaj(int k, const float *a, int64_t lda, const float *b,
                                       int64_t brs, float *c, int64_t ldc, int mr, int nr,
                                       const ug_epi *e) {
    ug_kern_avx512_impl(k, a, 1, lda, b, brs, c, ldc, mr, nr, e);
}
#endif

// ----------------------------------------------------------------------------------------
// Kernel selection.

typedef void (*ug_kern_fn)(int k, const float *a, int64_t lda, const float *b, int64_t brs,
                           float *c, int64_t ldc, int mr, int nr, const ug_epi *e);

typedef struct {
    int mr, nr;
    ug_kern_fn rows;  // A row-major
    ug_kern_fn kmaj;  // A k-major
} ug_isa;

static const ug_isa g_generic = {UG_GEN_MR, UG_GEN_NR, ug_kern_generic_rows, ug_kern_generic_kmaj};
#if UG_X86
static const ug_isa g_avx512 = {12, 32, ug_kern_avx512_rows, ug_kern_avx512_kmaj};
#endif

int usi_sgemm_packed_best_isa(void) {
    return usi_cpu_level() >= USI_CPU_AVX512 ? USI_GEMM_ISA_AVX512 : USI_GEMM_ISA_PORTABLE;
}

static const ug_isa *ug_pick(int isa) {
    int best = usi_sgemm_packed_best_isa();
    if (isa == USI_GEMM_ISA_BEST || isa > best) isa = best;
#if UG_X86
    if (isa == USI_GEMM_ISA_AVX512) return &g_avx512;
#endif
    return &g_generic;
}

// ----------------------------------------------------------------------------------------
// Per-thread scratch (packed B of a call, ragged panels); freed when the thread exits.

typedef struct {
    size_t cap;  // floats
    float *data;
} ug_scratch;

static pthread_key_t g_scratch_key[2];
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void ug_scratch_free(void *p) {
    ug_scratch *s = (ug_scratch *)p;
    if (s) free(s->data);
    free(s);
}

static void ug_scratch_init(void) {
    pthread_key_create(&g_scratch_key[0], ug_scratch_free);
    pthread_key_create(&g_scratch_key[1], ug_scratch_free);
}

// A 64-byte-aligned buffer of n floats owned by the calling thread (slot 0: packed B of the
// call this thread drives; slot 1: a task's ragged panels). NULL when out of memory.
static float *ug_scratch_get(int slot, size_t n) {
    pthread_once(&g_scratch_once, ug_scratch_init);
    ug_scratch *s = (ug_scratch *)pthread_getspecific(g_scratch_key[slot]);
    if (!s) {
        s = (ug_scratch *)calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(g_scratch_key[slot], s);
    }
    if (s->cap < n) {
        free(s->data);
        size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
        s->data = (float *)aligned_alloc(64, bytes);
        s->cap = s->data ? n : 0;
    }
    return s->data;
}

// ----------------------------------------------------------------------------------------
// The driver.

typedef struct {
    const ug_isa *isa;
    int ta, M, N, K;
    float alpha, beta;
    const float *A;
    int64_t lda;
    const float *B;    // B row-major [K, N] (brs = ldb) or packed panels (brs = NR)
    int64_t ldb;
    int b_packed;      // B packed: panel jp at B + jp*K*NR, rows of NR floats
    float *C;
    int64_t ldc;
    const float *bias;
    int mc;            // rows per row block (multiple of MR)
    int mb, nb;        // row blocks, panel blocks
    int npanels, panels_per_block;
    usi_fill_rows_fn fill_a;  // A produced on demand (A and lda unused), or NULL
    const void *fill_ctx;
} ug_job;

// Copies k rows of a B panel (nr <= NR columns) into dst [k][NR], zero-padded.
static void ug_pack_b(float *dst, const float *b, int64_t ldb, int k, int nr, int NR) {
    if (nr == UG_MAX_NR && NR == UG_MAX_NR) {
        for (int p = 0; p < k; p++) memcpy(dst + (size_t)p * UG_MAX_NR, b + (size_t)p * ldb,
                                           UG_MAX_NR * sizeof(float));
        return;
    }
    for (int p = 0; p < k; p++) {
        const float *src = b + (size_t)p * ldb;
        float *d = dst + (size_t)p * NR;
        for (int j = 0; j < nr; j++) d[j] = src[j];
        for (int j = nr; j < NR; j++) d[j] = 0.0f;
    }
}

// Copies a ragged A micro-panel (mr < MR rows) over k steps into dst [k][MR], zero-padded.
static void ug_pack_a_ragged(float *dst, const float *a, int ta, int64_t lda, int k, int mr,
                             int MR) {
    for (int p = 0; p < k; p++) {
        float *d = dst + (size_t)p * MR;
        for (int i = 0; i < mr; i++) d[i] = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
        for (int i = mr; i < MR; i++) d[i] = 0.0f;
    }
}

// Task t's block of C: rows [i0, i1), panels [p0, p1); 0 when it is empty.
static int ug_task_block(const ug_job *j, int t, int *i0, int *i1, int *p0, int *p1) {
    int ib = t / j->nb, jb = t % j->nb;
    *i0 = ib * j->mc;
    *i1 = *i0 + j->mc < j->M ? *i0 + j->mc : j->M;
    *p0 = jb * j->panels_per_block;
    *p1 = *p0 + j->panels_per_block < j->npanels ? *p0 + j->panels_per_block : j->npanels;
    return *i0 < *i1 && *p0 < *p1;
}

USI_MULTIVERSION
static void ug_task(void *v, int t) {
    const ug_job *j = (const ug_job *)v;
    const ug_isa *isa = j->isa;
    const int MR = isa->mr, NR = isa->nr;
    int i0, i1, p0, p1;
    if (!ug_task_block(j, t, &i0, &i1, &p0, &p1)) return;
    const int ragged_m = ((i1 - i0) % MR) != 0;
    float *bbuf = NULL, *abuf = NULL;
    if (!j->b_packed || ragged_m) {
        float *s = ug_scratch_get(1, (size_t)UG_KC * (NR + MR));
        if (!s) return;  // out of memory: leave C as is (cannot happen for sane sizes)
        bbuf = s;
        abuf = s + (size_t)UG_KC * NR;
    }
    for (int kc = 0; kc < j->K; kc += UG_KC) {
        int kb = j->K - kc < UG_KC ? j->K - kc : UG_KC;
        ug_epi e = {j->alpha, j->beta, kc == 0, NULL};
        const float *arag = NULL;  // the ragged A micro-panel, packed once per K-slice
        if (ragged_m) {
            int ir = i1 - (i1 - i0) % MR;
            const float *a = j->ta ? j->A + (size_t)kc * j->lda + ir
                                   : j->A + (size_t)ir * j->lda + kc;
            ug_pack_a_ragged(abuf, a, j->ta, j->lda, kb, i1 - ir, MR);
            arag = abuf;
        }
        for (int jp = p0; jp < p1; jp++) {
            int c0 = jp * NR;
            int nr = j->N - c0 < NR ? j->N - c0 : NR;
            const float *b;
            int64_t brs;
            if (j->b_packed) {
                b = j->B + (size_t)jp * j->K * NR + (size_t)kc * NR;
                brs = NR;
            } else {
                // Copied even when whole: read in place, rows of B a power-of-two apart
                // (ldb 256, 1024...) fall into few L1 sets and miss (measured: dx of a 1x1
                // conv 256->64 at 112 GFLOP/s in place, vs ~200 packed).
                ug_pack_b(bbuf, j->B + (size_t)kc * j->ldb + c0, j->ldb, kb, nr, NR);
                b = bbuf;
                brs = NR;
            }
            e.bias = j->bias ? j->bias + c0 : NULL;
            for (int i = i0; i < i1; i += MR) {
                int mr = i1 - i < MR ? i1 - i : MR;
                float *c = j->C + (size_t)i * j->ldc + c0;
                if (mr < MR)
                    isa->kmaj(kb, arag, MR, b, brs, c, j->ldc, mr, nr, &e);
                else if (j->ta)
                    isa->kmaj(kb, j->A + (size_t)kc * j->lda + i, j->lda, b, brs, c, j->ldc, mr,
                              nr, &e);
                else
                    isa->rows(kb, j->A + (size_t)i * j->lda + kc, j->lda, b, brs, c, j->ldc, mr,
                              nr, &e);
            }
        }
    }
}

// A task of usi_sgemm_packed_fill_a: per K-slice, the row block's A is filled into scratch
// (about 200 KB, it stays in L2) and every panel's micro-kernels read it there. Same slices,
// kernels and order as ug_task, so the result is the materialised product's to the bit.
USI_MULTIVERSION
static void ug_task_fill_a(void *v, int t) {
    const ug_job *j = (const ug_job *)v;
    const ug_isa *isa = j->isa;
    const int MR = isa->mr, NR = isa->nr;
    int i0, i1, p0, p1;
    if (!ug_task_block(j, t, &i0, &i1, &p0, &p1)) return;
    const int rows = i1 - i0, padded = (rows + MR - 1) / MR * MR;
    // Rows UG_KC + 16 floats apart: a power-of-two stride would put the MR rows a micro-kernel
    // reads into few L1 sets.
    const int64_t lda = UG_KC + 16;
    float *abuf = ug_scratch_get(1, (size_t)padded * lda);
    if (!abuf) return;  // out of memory: leave C as is (cannot happen for sane sizes)
    for (int kc = 0; kc < j->K; kc += UG_KC) {
        int kb = j->K - kc < UG_KC ? j->K - kc : UG_KC;
        j->fill_a(j->fill_ctx, abuf, lda, i0, rows, kc, kb);
        // The last micro-panel's missing rows are read (and discarded) by the kernel.
        for (int r = rows; r < padded; r++) memset(abuf + (size_t)r * lda, 0, (size_t)kb * sizeof(float));
        ug_epi e = {j->alpha, j->beta, kc == 0, NULL};
        for (int jp = p0; jp < p1; jp++) {
            int c0 = jp * NR;
            int nr = j->N - c0 < NR ? j->N - c0 : NR;
            const float *b = j->B + (size_t)jp * j->K * NR + (size_t)kc * NR;
            e.bias = j->bias ? j->bias + c0 : NULL;
            for (int i = i0; i < i1; i += MR) {
                int mr = i1 - i < MR ? i1 - i : MR;
                isa->rows(kb, abuf + (size_t)(i - i0) * lda, lda, b, NR,
                          j->C + (size_t)i * j->ldc + c0, j->ldc, mr, nr, &e);
            }
        }
    }
}

typedef struct {
    float *dst;
    const float *B;
    int64_t ldb;
    int N, K, NR;
    int avx2;  // usi_cpu_level() >= USI_CPU_AVX2, decided on the calling thread
} ug_packb_job;

#if UG_X86
#define UG_AVX2 __attribute__((target("avx2,fma")))

// dst[i*ldd + r] = src[r*lds + i] for an 8 x 8 block.
static inline __attribute__((always_inline)) UG_AVX2 void ug_transpose8(float *dst, int64_t ldd, const float *src, int64_t lds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds),
           r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds),
           r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds),
           r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
           t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
           t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// Columns [0, nr / 8 * 8) of panel d (NR wide), K-rows [k0, k1), from B rows c0.. ([N, K]
// row-major): 8 x 8 blocks transposed in registers (a scalar copy of a transposed block is one
// load and one store per element). Returns the columns done.
UG_AVX2 static int ug_packb_cols_avx2(float *d, int NR, const float *B, int64_t ldb, int c0,
                                      int nr, int k0, int k1) {
    int jj = 0;
    for (; jj + 8 <= nr; jj += 8) {
        const float *src = B + (size_t)(c0 + jj) * ldb;
        int p = k0;
        for (; p + 8 <= k1; p += 8) ug_transpose8(d + (size_t)p * NR + jj, NR, src + p, ldb);
        for (int r = 0; r < 8; r++)
            for (int q = p; q < k1; q++) d[(size_t)q * NR + jj + r] = src[(size_t)r * ldb + q];
    }
    return jj;
}
#endif

// Packs panels [p0, p1) of a transposed B ([N, K] row-major) into k-major NR-wide panels.
USI_MULTIVERSION
static void ug_packb_range(void *v, int64_t p0, int64_t p1) {
    const ug_packb_job *j = (const ug_packb_job *)v;
    const int NR = j->NR;
    for (int64_t jp = p0; jp < p1; jp++) {
        float *d = j->dst + (size_t)jp * j->K * NR;
        int c0 = (int)jp * NR;
        int nr = j->N - c0 < NR ? j->N - c0 : NR;
        // In K-blocks of UG_KC, so the block of the panel being written stays in L1 while
        // its NR source rows are read (a whole panel of a deep layer would not).
        for (int k0 = 0; k0 < j->K; k0 += UG_KC) {
            int k1 = k0 + UG_KC < j->K ? k0 + UG_KC : j->K;
            int jj = 0;
#if UG_X86
            if (j->avx2) jj = ug_packb_cols_avx2(d, NR, j->B, j->ldb, c0, nr, k0, k1);
#endif
            for (; jj < nr; jj++) {
                const float *src = j->B + (size_t)(c0 + jj) * j->ldb;
                for (int p = k0; p < k1; p++) d[(size_t)p * NR + jj] = src[p];
            }
        }
        for (int jj = nr; jj < NR; jj++)
            for (int p = 0; p < j->K; p++) d[(size_t)p * NR + jj] = 0.0f;
    }
}

// Packs a transposed B ([N, K] row-major) for the whole call into the driving thread's
// scratch; 0 when out of memory.
static int ug_pack_b_call(ug_job *j, const float *B, int64_t ldb) {
    const int NR = j->isa->nr;
    float *bp = ug_scratch_get(0, (size_t)j->npanels * NR * (size_t)j->K);
    if (!bp) return 0;
    ug_packb_job pj = {bp, B, ldb, j->N, j->K, NR, usi_cpu_level() >= USI_CPU_AVX2};
    usi_parallel_range(j->npanels, (int64_t)j->K * NR, ug_packb_range, &pj);
    j->B = bp;
    j->ldb = NR;
    j->b_packed = 1;
    return 1;
}

// Partition: row blocks of MC rows; when they are too few to feed the pool, split the
// panels too. Any partition gives the same result.
static void ug_plan(ug_job *j) {
    const int MR = j->isa->mr;
    int threads = usi_get_num_threads();
    int mc = MR * UG_MC_PANELS;
    int mb = (j->M + mc - 1) / mc;
    int want = threads > 1 ? 4 * threads : 1;
    if (mb < want && j->M > MR) {  // smaller row blocks first (down to 4 micro-panels)
        int rows = (j->M + want - 1) / want;
        int minrows = 4 * MR;
        if (rows < minrows) rows = minrows;
        mc = (rows + MR - 1) / MR * MR;
        mb = (j->M + mc - 1) / mc;
    }
    int nb = 1;
    if (mb < want) {
        nb = (want + mb - 1) / mb;
        if (nb > j->npanels) nb = j->npanels;
    }
    j->mc = mc;
    j->mb = mb;
    j->panels_per_block = (j->npanels + nb - 1) / nb;
    j->nb = (j->npanels + j->panels_per_block - 1) / j->panels_per_block;
}

USI_MULTIVERSION
void usi_sgemm_packed(int isa_req, int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc, const float *bias) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        for (int i = 0; i < M; i++) {
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < N; j++) {
                float v = beta == 0.0f ? 0.0f : beta * c[j];
                c[j] = bias ? v + bias[j] : v;
            }
        }
        return;
    }
    ug_job j = {0};
    j.isa = ug_pick(isa_req);
    j.ta = trans_a ? 1 : 0;
    j.M = M;
    j.N = N;
    j.K = K;
    j.alpha = alpha;
    j.beta = beta;
    j.A = A;
    j.lda = lda;
    j.C = C;
    j.ldc = ldc;
    j.bias = bias;
    j.npanels = (N + j.isa->nr - 1) / j.isa->nr;
    if (trans_b) {
        if (!ug_pack_b_call(&j, B, ldb)) {  // out of memory: the reference is still right
            usi_sgemm_naive(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            if (bias)
                for (int i = 0; i < M; i++)
                    for (int c = 0; c < N; c++) C[(size_t)i * ldc + c] += bias[c];
            return;
        }
    } else {
        j.B = B;
        j.ldb = ldb;
        j.b_packed = 0;
    }
    ug_plan(&j);
    usi_parallel_for(j.mb * j.nb, ug_task, &j);
}

USI_MULTIVERSION
int usi_sgemm_packed_fill_a(int isa_req, int M, int N, int K, usi_fill_rows_fn fill,
                            const void *ctx, const float *B, int ldb, float *C, int ldc,
                            const float *bias) {
    if (M <= 0 || N <= 0) return 1;
    ug_job j = {0};
    j.isa = ug_pick(isa_req);
    j.M = M;
    j.N = N;
    j.K = K;
    j.alpha = 1.0f;
    j.C = C;
    j.ldc = ldc;
    j.bias = bias;
    j.fill_a = fill;
    j.fill_ctx = ctx;
    j.npanels = (N + j.isa->nr - 1) / j.isa->nr;
    if (K <= 0 || !ug_pack_b_call(&j, B, ldb)) return 0;
    ug_plan(&j);
    usi_parallel_for(j.mb * j.nb, ug_task_fill_a, &j);
    return 1;
}

// Every GEMM (convolutions, usi_sgemm): our kernel where usi_cpu_level allows AVX-512, BLAS
// otherwise (OpenBLAS picks its own kernels for the CPU).
#ifndef USI_USES_PACKED_GEMM
#define USI_USES_PACKED_GEMM 1
#endif

int usi_gemm_is_packed(void) {
    return USI_USES_PACKED_GEMM && usi_sgemm_packed_best_isa() >= USI_GEMM_ISA_AVX512;
}

USI_MULTIVERSION
void usi_conv_gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc, const float *bias) {
    // Its rounding error on the resnet10t conv GEMMs is OpenBLAS's (rms vs the double-sum
    // reference 0.8-1.25x). It was off once because the train-mode fixture had a ReLU input
    // within float32 noise of zero, which it rounded to the other side (see
    // Tools/fixtures/make_cnn_fixtures.py, TRAIN_SEED).
    if (usi_gemm_is_packed()) {
        usi_sgemm_packed(USI_GEMM_ISA_BEST, trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb,
                         beta, C, ldc, bias);
        return;
    }
    if (bias) {
        for (int i = 0; i < M; i++) {
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < N; j++) c[j] = (beta == 0.0f ? 0.0f : beta * c[j]) + bias[j];
        }
        beta = 1.0f;
    }
    usi_sgemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

// ----------------------------------------------------------------------------------------
// Weights packed once (a frozen layer: the teacher), in FP32 or BF16.
//
// C[M,N] = A[M,K] W^T + bias with W [N, K] (conv weights OHWI viewed as [OC, KH*KW*C], linear
// weights [out, in]): the B operand of every forward GEMM. The FP32 form is the per-call
// packing of ug_pack_b_call made once, so its products are the unpacked path's to the bit.
// The BF16 form holds W rounded to BF16 (round to nearest even) as k-pairs, the operand
// layout of vdpbf16ps: panel jp, pair p, column j -> the 32-bit word (W[c0+j][2p],
// W[c0+j][2p+1]). A is rounded to BF16 per task and K-slice, inside the block the micro-kernel
// reads (from the conv's im2col fill or straight from A), never in a pass of its own. Each
// vdpbf16ps adds two exact products (BF16 x BF16 fits FP32's mantissa) into FP32 accumulators.

struct usi_packed_weights {
    int precision;    // USI_PRECISION_FP32 or USI_PRECISION_BF16
    int N, K;
    int npanels;      // of UG_MAX_NR (32) columns
    int64_t kpairs;   // BF16: ceil(K / 2)
    void *data;       // FP32 [npanels][K][32] floats; BF16 [npanels][kpairs][32] uint32
};

// Round to nearest even; NaN stays NaN (quiet), infinities stay infinite.
static inline uint16_t ug_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float usi_bf16_round(float x) {
    uint32_t u = (uint32_t)ug_bf16_bits(x) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int usi_precision_supported(int precision) {
    if (precision == USI_PRECISION_FP32) return usi_cpu_level() >= USI_CPU_AVX512;
    if (precision == USI_PRECISION_BF16) return usi_cpu_level() >= USI_CPU_AVX512_BF16;
    return 0;
}

typedef struct {
    uint32_t *dst;
    const float *W;
    int64_t ldw;
    int N, K;
    int64_t kpairs;
} ug_packbf_job;

USI_MULTIVERSION
static void ug_packbf_range(void *v, int64_t p0, int64_t p1) {
    const ug_packbf_job *j = (const ug_packbf_job *)v;
    for (int64_t jp = p0; jp < p1; jp++) {
        uint32_t *d = j->dst + (size_t)jp * j->kpairs * UG_MAX_NR;
        int c0 = (int)jp * UG_MAX_NR;
        for (int jj = 0; jj < UG_MAX_NR; jj++) {
            const float *w = c0 + jj < j->N ? j->W + (size_t)(c0 + jj) * j->ldw : NULL;
            for (int64_t p = 0; p < j->kpairs; p++) {
                uint32_t lo = w ? ug_bf16_bits(w[2 * p]) : 0;
                uint32_t hi = w && 2 * p + 1 < j->K ? ug_bf16_bits(w[2 * p + 1]) : 0;
                d[(size_t)p * UG_MAX_NR + jj] = lo | (hi << 16);
            }
        }
    }
}

usi_packed_weights *usi_pack_weights(int precision, int N, int K, const float *W, int ldw) {
    if (N <= 0 || K <= 0 || !usi_precision_supported(precision)) return NULL;
    usi_packed_weights *p = (usi_packed_weights *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->precision = precision;
    p->N = N;
    p->K = K;
    p->npanels = (N + UG_MAX_NR - 1) / UG_MAX_NR;
    p->kpairs = ((int64_t)K + 1) / 2;
    size_t bytes = precision == USI_PRECISION_BF16
                       ? (size_t)p->npanels * (size_t)p->kpairs * UG_MAX_NR * sizeof(uint32_t)
                       : (size_t)p->npanels * (size_t)K * UG_MAX_NR * sizeof(float);
    p->data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p->data) {
        free(p);
        return NULL;
    }
    if (precision == USI_PRECISION_BF16) {
        ug_packbf_job pj = {(uint32_t *)p->data, W, ldw, N, K, p->kpairs};
        usi_parallel_range(p->npanels, p->kpairs * UG_MAX_NR, ug_packbf_range, &pj);
    } else {
        ug_packb_job pj = {(float *)p->data, W, ldw, N, K, UG_MAX_NR, usi_cpu_level() >= USI_CPU_AVX2};
        usi_parallel_range(p->npanels, (int64_t)K * UG_MAX_NR, ug_packb_range, &pj);
    }
    return p;
}

void usi_packed_weights_free(usi_packed_weights *w) {
    if (!w) return;
    free(w->data);
    free(w);
}

int usi_packed_weights_precision(const usi_packed_weights *w) { return w ? w->precision : -1; }

#if UG_X86
#define UG_BF16 __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))
#define UG_KCB 512  // K-slice of the BF16 kernel (a B micro-panel 256 pairs x 32 = 32 KB)

// 12 x 32 tile over kp k-pairs: A rows of BF16 (row i at a + i*lda, pairs contiguous), B the
// packed panel (32 words per pair). first: C = acc + bias; otherwise C += acc.
UG_BF16 static void ug_kern_bf16(int64_t kp, const uint16_t *a, int64_t lda, const uint32_t *b,
                                 float *c, int64_t ldc, int mr, int nr, int first,
                                 const float *bias) {
    __m512 x0 = _mm512_setzero_ps(), y0 = x0, x1 = x0, y1 = x0, x2 = x0, y2 = x0, x3 = x0,
           y3 = x0, x4 = x0, y4 = x0, x5 = x0, y5 = x0, x6 = x0, y6 = x0, x7 = x0, y7 = x0,
           x8 = x0, y8 = x0, x9 = x0, y9 = x0, x10 = x0, y10 = x0, x11 = x0, y11 = x0;
    if (!first)
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + 16), _MM_HINT_T0);
        }
#define UG_BROW(i)                                                              \
    do {                                                                        \
        int32_t pair;                                                           \
        memcpy(&pair, a + (size_t)(i) * lda, sizeof pair);                      \
        __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);                        \
        x##i = _mm512_dpbf16_ps(x##i, ai, b0);                                  \
        y##i = _mm512_dpbf16_ps(y##i, ai, b1);                                  \
    } while (0)
    for (int64_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
        UG_BROW(0); UG_BROW(1); UG_BROW(2); UG_BROW(3); UG_BROW(4); UG_BROW(5);
        UG_BROW(6); UG_BROW(7); UG_BROW(8); UG_BROW(9); UG_BROW(10); UG_BROW(11);
        a += 2;
        b += UG_MAX_NR;
    }
#undef UG_BROW
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                            : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1u);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = bias0;
    if (first && bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
#define UG_BOUT(i)                                                                   \
    if ((i) < mr) {                                                                  \
        float *cr = c + (size_t)(i) * ldc;                                           \
        __m512 v0 = x##i, v1 = y##i;                                                 \
        if (first) {                                                                 \
            v0 = _mm512_add_ps(v0, bias0);                                           \
            v1 = _mm512_add_ps(v1, bias1);                                           \
        } else {                                                                     \
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));                   \
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));              \
        }                                                                            \
        _mm512_mask_storeu_ps(cr, m0, v0);                                           \
        _mm512_mask_storeu_ps(cr + 16, m1, v1);                                      \
    }
    UG_BOUT(0) UG_BOUT(1) UG_BOUT(2) UG_BOUT(3) UG_BOUT(4) UG_BOUT(5)
    UG_BOUT(6) UG_BOUT(7) UG_BOUT(8) UG_BOUT(9) UG_BOUT(10) UG_BOUT(11)
#undef UG_BOUT
}

// rows x kb floats (row r at src + r*lds) -> BF16 rows (dst + r*ldd), kb rounded up to even
// with a zero. 32 floats per instruction pair (vcvtne2ps2bf16 rounds to nearest even).
UG_BF16 static void ug_to_bf16_avx512(uint16_t *dst, int64_t ldd, const float *src, int64_t lds,
                                      int rows, int kb) {
    const int kb2 = (kb + 1) & ~1;
    for (int r = 0; r < rows; r++) {
        const float *s = src + (size_t)r * lds;
        uint16_t *d = dst + (size_t)r * ldd;
        int k = 0;
        for (; k + 32 <= kb; k += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + k + 16), _mm512_loadu_ps(s + k));
            _mm512_storeu_si512(d + k, (__m512i)v);
        }
        if (k < kb2) {
            int n = kb - k;  // 0 < n < 32, or n == 0 with only the pad left (cannot happen)
            __mmask16 lo = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
            __mmask16 hi = n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1u);
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, s + k + 16),
                                             _mm512_maskz_loadu_ps(lo, s + k));
            int n2 = kb2 - k;
            _mm512_mask_storeu_epi16(d + k, n2 >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << n2) - 1u),
                                     (__m512i)v);
        }
    }
}
#endif

typedef struct {
    const usi_packed_weights *w;
    int M;
    const float *A;   // A [M, K] row-major (lda), or NULL with fill
    int64_t lda;
    usi_fill_rows_fn fill;
    const void *fill_ctx;
    float *C;
    int64_t ldc;
    const float *bias;
    ug_job plan;      // the partition (ug_plan's, with the AVX-512 kernel's MR)
} ug_bf16_job;

#if UG_X86
// A task of a BF16 product: per K-slice, the row block's A (filled as FP32 into scratch, or read
// from A) becomes BF16 in scratch, and every panel's micro-kernels read it there.
USI_MULTIVERSION
static void ug_task_bf16(void *v, int t) {
    const ug_bf16_job *j = (const ug_bf16_job *)v;
    const int MR = 12, K = j->w->K;
    int i0, i1, p0, p1;
    if (!ug_task_block(&j->plan, t, &i0, &i1, &p0, &p1)) return;
    const int rows = i1 - i0, padded = (rows + MR - 1) / MR * MR;
    // Row strides off powers of two (L1 sets), in floats for the fill and in BF16 for the kernel.
    const int64_t ldf = UG_KCB + 16, ldb = UG_KCB + 32;
    size_t nf = j->fill ? (size_t)rows * ldf : 0;
    size_t nb = ((size_t)padded * ldb + 1) / 2;  // in floats
    float *s = ug_scratch_get(1, nf + nb + 16);
    if (!s) return;  // out of memory: leave C as is (cannot happen for sane sizes)
    float *fbuf = s;
    uint16_t *abf = (uint16_t *)(s + nf);
    for (int kc = 0; kc < K; kc += UG_KCB) {
        int kb = K - kc < UG_KCB ? K - kc : UG_KCB;
        if (j->fill) {
            j->fill(j->fill_ctx, fbuf, ldf, i0, rows, kc, kb);
            ug_to_bf16_avx512(abf, ldb, fbuf, ldf, rows, kb);
        } else {
            ug_to_bf16_avx512(abf, ldb, j->A + (size_t)i0 * j->lda + kc, j->lda, rows, kb);
        }
        // The last micro-panel's missing rows are read (and discarded) by the kernel.
        for (int r = rows; r < padded; r++) memset(abf + (size_t)r * ldb, 0, (size_t)(kb + 1) / 2 * 4);
        const int64_t kp = (kb + 1) / 2;
        for (int jp = p0; jp < p1; jp++) {
            int c0 = jp * UG_MAX_NR;
            int nr = j->w->N - c0 < UG_MAX_NR ? j->w->N - c0 : UG_MAX_NR;
            const uint32_t *b = (const uint32_t *)j->w->data + ((size_t)jp * j->w->kpairs + kc / 2) * UG_MAX_NR;
            for (int i = i0; i < i1; i += MR) {
                int mr = i1 - i < MR ? i1 - i : MR;
                ug_kern_bf16(kp, abf + (size_t)(i - i0) * ldb, ldb, b, j->C + (size_t)i * j->ldc + c0,
                             j->ldc, mr, nr, kc == 0, j->bias ? j->bias + c0 : NULL);
            }
        }
    }
}
#endif

int usi_gemm_packed_weights_fill(int M, usi_fill_rows_fn fill, const void *ctx, const float *A,
                                 int lda, const usi_packed_weights *w, float *C, int ldc,
                                 const float *bias) {
    if (!w || !usi_precision_supported(w->precision)) return 0;
    if (M <= 0) return 1;
    ug_job j = {0};
    j.isa = &g_avx512;
    j.M = M;
    j.N = w->N;
    j.K = w->K;
    j.alpha = 1.0f;
    j.beta = 0.0f;
    j.C = C;
    j.ldc = ldc;
    j.bias = bias;
    j.npanels = w->npanels;
    ug_plan(&j);
    if (w->precision == USI_PRECISION_FP32) {
        // The unpacked path's job with its B packing already done.
        j.ta = 0;
        j.A = A;
        j.lda = lda;
        j.B = (const float *)w->data;
        j.ldb = UG_MAX_NR;
        j.b_packed = 1;
        j.fill_a = fill;
        j.fill_ctx = ctx;
        usi_parallel_for(j.mb * j.nb, fill ? ug_task_fill_a : ug_task, &j);
        return 1;
    }
#if UG_X86
    ug_bf16_job bj = {w, M, A, lda, fill, ctx, C, ldc, bias, j};
    usi_parallel_for(j.mb * j.nb, ug_task_bf16, &bj);
    return 1;
#else
    return 0;
#endif
}

int usi_gemm_packed_weights(int M, const float *A, int lda, const usi_packed_weights *w, float *C,
                            int ldc, const float *bias) {
    return usi_gemm_packed_weights_fill(M, NULL, NULL, A, lda, w, C, ldc, bias);
}

// Reference: A and W rounded to BF16 as the kernel rounds them, products summed in double.
USI_MULTIVERSION
void usi_gemm_bf16_naive(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                         float *C, int ldc, const float *bias) {
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            double acc = bias ? bias[n] : 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)usi_bf16_round(A[(size_t)i * lda + k]) *
                       (double)usi_bf16_round(W[(size_t)n * ldw + k]);
            C[(size_t)i * ldc + n] = (float)acc;
        }
}
