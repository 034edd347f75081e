// Private helpers shared by the kernel files (not part of the public header).
#ifndef USI_INTERNAL_H
#define USI_INTERNAL_H

#include "usi_dispatch.h"
#include "usi_kernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// Minimum elements of work per task that pays for a pool dispatch.
#define USI_GRAIN 32768
// Upper bound on tasks whose partition depends only on the problem size.
#define USI_MAX_FIXED_TASKS 64

#define USI_PI 3.14159265358979323846

// threads.c
void usi_pool_resize(int n);

// microgemm.c: the conv GEMMs, C[M,N] = op(A) op(B) + beta * C + bias (bias may be NULL):
// usi_sgemm_packed where the CPU has AVX-512, usi_sgemm (BLAS) otherwise.
void usi_conv_gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc, const float *bias);
// Whether usi_sgemm and usi_conv_gemm run our packed kernel (it blocks the rows itself:
// callers pass all).
int usi_gemm_is_packed(void);

// microgemm.c: C[M, N] = A W^T + bias with packed weights, A given (fill NULL) or produced
// block by block by `fill` (A unused); 0 when the weights' precision does not run here.
int usi_gemm_packed_weights_fill(int M, usi_fill_rows_fn fill, const void *ctx, const float *A,
                                 int lda, const usi_packed_weights *w, float *C, int ldc,
                                 const float *bias);

// elementwise.c: out [C] += column sums of x [M, C] (double partials over fixed row chunks,
// added in chunk order: deterministic for any thread count).
void usi_colsum_add(float *out, const float *x, int64_t M, int64_t C);

/// Runs fn(ctx, begin, end) over contiguous ranges of [0, n). The partition depends on the
/// thread budget, so use it only where the result does not depend on the partition
/// (each element of the output is computed by one call).
typedef void (*usi_range_fn)(void *ctx, int64_t begin, int64_t end);
void usi_parallel_range(int64_t n, int64_t work_per_item, usi_range_fn fn, void *ctx);

/// Number of tasks for a reduction over `items` items of `work_per_item` elements each;
/// depends only on the problem size (so results do not depend on the thread count).
int usi_fixed_tasks(int64_t items, int64_t work_per_item);

/// A reduction of one contiguous chunk, e.g. its sum in double.
typedef double (*usi_chunk_reduce_fn)(const float *x, int64_t n);
/// Sum of `chunk` over fixed chunks of x [n] (partition depends only on n; combined in order).
double usi_chunked_reduce(const float *x, int64_t n, usi_chunk_reduce_fn chunk);

/// Contiguous range of task t when splitting n items into `tasks` parts.
static inline void usi_split(int64_t n, int tasks, int t, int64_t *begin, int64_t *end) {
    int64_t q = n / tasks, r = n % tasks;
    int64_t b = (int64_t)t * q + (t < r ? t : r);
    *begin = b;
    *end = b + q + (t < r ? 1 : 0);
}

// ----------------------------------------------------------------------------------------
// Vectorisable float math (branch-free; loops that call these auto-vectorise).

/// exp(x), ~1 ulp on [-87, 88.7] (Cephes polynomial); 0 below, +inf above; NaN propagates.
static inline float usi_expf(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.7f ? 88.7f : xc;
    float fx = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    float z = r * r;
    float y = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * z + r + 1.0f;
    int32_t n = (int32_t)fx - 1;  // 2^(n-1) * 2 keeps n = 128 finite
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float p2;
    memcpy(&p2, &bits, sizeof p2);
    float res = y * p2 * 2.0f;
    res = x < -87.0f ? 0.0f : res;
    res = x > 88.72f ? INFINITY : res;
    return res;
}

/// tanh(x) (Cephes tanhf scheme: odd polynomial below 0.625, exp form above).
static inline float usi_tanhf(float x) {
    float ax = fabsf(x);
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float e = usi_expf(2.0f * ax);
    float big = 1.0f - 2.0f / (e + 1.0f);
    big = x < 0.0f ? -big : big;
    return ax < 0.625f ? small : big;
}

/// erfc(z) for z >= 0 with relative error ~1.2e-7 (Numerical Recipes' Chebyshev fit).
static inline float usi_erfc_pos(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
              t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
              t * (-0.82215223f + t * 0.17087277f))))))));
    return t * usi_expf(-z * z + p);
}

/// Phi(x) = 0.5 * (1 + erf(x / sqrt 2)), accurate in relative terms on both tails.
static inline float usi_normal_cdf(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float half = 0.5f * usi_erfc_pos(z);
    float upper = 1.0f - half;
    return x >= 0.0f ? upper : half;
}

#endif
