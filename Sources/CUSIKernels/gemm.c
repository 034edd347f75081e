// GEMM: the only file that names a BLAS (CBLAS, row-major). Swap this file to use another
// BLAS (e.g. Accelerate on macOS).
#include "usi_internal.h"

#include <cblas.h>

void openblas_set_num_threads(int num_threads);

void usi_set_num_threads(int n) {
    if (n < 1) n = 1;
    openblas_set_num_threads(n);
    usi_pool_resize(n);
}

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major.
USI_MULTIVERSION
void usi_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        for (int i = 0; i < M; i++) {
            float *c = C + (size_t)i * ldc;
            if (beta == 0.0f)
                memset(c, 0, (size_t)N * sizeof(float));
            else if (beta != 1.0f)
                for (int j = 0; j < N; j++) c[j] *= beta;
        }
        return;
    }
    if (usi_gemm_is_packed()) {
        usi_sgemm_packed(USI_GEMM_ISA_BEST, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
                         C, ldc, NULL);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

// Reference: direct triple loop with double accumulation.
USI_MULTIVERSION
void usi_sgemm_naive(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * (double)b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * (double)*c));
        }
    }
}
