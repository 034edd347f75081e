// USI kernels: the hot loops, in plain C.
//
// Conventions (llm.c style):
// - every op is a `<op>_forward` / `<op>_backward` pair; shapes are in the first comment;
// - activations are channels-last: images [N, H, W, C], tokens [N, T, C], rows [M, C];
// - conv weights are OHWI: [Cout, KH, KW, Cin/groups];
// - backward functions ACCUMULATE into gradient buffers (`+=`), so callers zero them first
//   (or pass buffers that already hold gradients from other uses of the same tensor);
// - a `_naive` reference sits beside every optimised kernel, used only by the tests;
// - non-GEMM kernels split work so that each thread owns a disjoint slice of the output,
//   which makes results deterministic for a given thread count.
#ifndef USI_KERNELS_H
#define USI_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------------------
// Threads: one budget for BLAS and for the kernel pool.

/// Sets the number of threads used by BLAS and by the kernel pool (n >= 1).
void usi_set_num_threads(int n);
/// The current thread budget.
int usi_get_num_threads(void);
/// Sets flush-to-zero and denormals-are-zero for the calling thread (pool threads do it
/// themselves when they start).
void usi_flush_denormals(void);
/// Runs fn(ctx, task) for task in [0, n_tasks) on the kernel pool; returns when all are done.
/// Tasks must write disjoint memory. Runs inline when the budget is one thread.
void usi_parallel_for(int n_tasks, void (*fn)(void *ctx, int task), void *ctx);

// ----------------------------------------------------------------------------------------
// Instruction-set dispatch. The library is compiled for the platform's baseline and picks
// faster code at run time: x86-64-v3 copies of the kernels (AVX2/FMA; chosen by the loader
// from cpuid) and hand-written AVX2, AVX-512 and AVX512-BF16 paths (chosen by the level
// below). $USI_CPU=baseline|avx2|avx512|avx512bf16, read once, caps the level for the whole
// process (an unknown value caps nothing); it never raises it above what the CPU has.

/// Cumulative instruction-set levels (each includes the ones below).
enum usi_cpu_level {
    USI_CPU_BASELINE = 0,     // x86-64 (SSE2) or any other platform: portable C
    USI_CPU_AVX2 = 1,         // x86-64-v3: AVX2, FMA, BMI2
    USI_CPU_AVX512 = 2,       // + AVX-512F
    USI_CPU_AVX512_BF16 = 3,  // + AVX-512BW/VL and AVX512-BF16 (vdpbf16ps)
};
/// The level the library's own dispatch uses on the calling thread: the CPU's, capped by
/// $USI_CPU and by usi_cpu_cap_thread. Kernels decide on the calling thread, before they
/// hand work to the pool, so a per-thread cap covers the whole call.
int usi_cpu_level(void);
/// The CPU's level, ignoring every cap.
int usi_cpu_detected_level(void);
/// Caps usi_cpu_level on the calling thread (for tests of the fallback paths); -1 removes
/// the cap. Cannot raise the level.
void usi_cpu_cap_thread(int level);
/// "baseline", "avx2", "avx512", "avx512bf16" -> the level; -1 for anything else.
int usi_cpu_parse_level(const char *name);
/// The name of a level (as $USI_CPU spells it).
const char *usi_cpu_level_name(int level);

// ----------------------------------------------------------------------------------------
// GEMM: the only place that names a BLAS.
// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(X) = X or X^T.
void usi_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);
void usi_sgemm_naive(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc);

/// Kernel choice of usi_sgemm_packed: the best usi_cpu_level allows, the portable C kernel,
/// or the AVX-512 kernel (a request above what the level allows gets the best it allows).
enum usi_gemm_isa { USI_GEMM_ISA_BEST = 0, USI_GEMM_ISA_PORTABLE = 1, USI_GEMM_ISA_AVX512 = 2 };
/// The best kernel usi_cpu_level allows on the calling thread (USI_GEMM_ISA_PORTABLE or
/// USI_GEMM_ISA_AVX512).
int usi_sgemm_packed_best_isa(void);
/// Our own register-blocked SGEMM for the tall-skinny conv products (no BLAS):
/// C[M,N] = alpha * op(A) op(B) + beta * C + bias, row-major; bias [N] broadcast over rows
/// (may be NULL). Parallel over disjoint blocks of C; results do not depend on the thread
/// count. All four transpose combinations.
void usi_sgemm_packed(int isa, int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc, const float *bias);
/// Writes dst[r * ldd + p] = A[i0 + r][k0 + p] for r < rows, p < kb: a GEMM operand
/// produced block by block (a convolution's im2col rows).
typedef void (*usi_fill_rows_fn)(const void *ctx, float *dst, int64_t ldd, int i0, int rows,
                                 int k0, int kb);
/// C[M,N] = A B^T + bias with A [M, K] never materialised: `fill` produces each row block's
/// K-slice in per-thread scratch just before the micro-kernels read it; B is [N, K] row-major.
/// Bit-identical to materialising A and calling usi_sgemm_packed(isa, 0, 1, ..., beta 0).
/// Returns 0 (C untouched) only when K <= 0 or out of memory.
int usi_sgemm_packed_fill_a(int isa, int M, int N, int K, usi_fill_rows_fn fill,
                            const void *ctx, const float *B, int ldb, float *C, int ldc,
                            const float *bias);

/// Precision of a GEMM's inputs (accumulation is FP32 either way).
enum usi_precision { USI_PRECISION_FP32 = 0, USI_PRECISION_BF16 = 1 };
/// Weights W [N, K] packed once as the B operand of C = A W^T (a frozen layer's forward).
typedef struct usi_packed_weights usi_packed_weights;
/// Whether products with packed weights of `precision` run at the calling thread's level:
/// FP32 on the AVX-512 kernel, BF16 (vdpbf16ps) with AVX512-BF16.
int usi_precision_supported(int precision);
/// Packs W [N, K] (row-major, ldw): FP32 as the packed kernel's panels, or rounded to BF16
/// (nearest even). NULL when the precision does not run here (usi_precision_supported) or
/// out of memory: the caller keeps its unpacked FP32 path.
usi_packed_weights *usi_pack_weights(int precision, int N, int K, const float *W, int ldw);
void usi_packed_weights_free(usi_packed_weights *w);
/// USI_PRECISION_FP32 or USI_PRECISION_BF16 (-1 for NULL).
int usi_packed_weights_precision(const usi_packed_weights *w);
/// C[M, N] = A[M, K] W^T + bias (bias [N] may be NULL), assigned. FP32 weights give exactly
/// usi_sgemm_packed(BEST, 0, 1, ...)'s result; BF16 weights round A to BF16 block by block
/// inside the product. Returns 0 (C untouched) when the weights' precision does not run at
/// the calling thread's level (see usi_cpu_cap_thread): the caller runs its FP32 path.
int usi_gemm_packed_weights(int M, const float *A, int lda, const usi_packed_weights *w,
                            float *C, int ldc, const float *bias);
/// Rounds to the nearest BF16 value (ties to even), as the BF16 kernels round their inputs.
float usi_bf16_round(float x);
/// Reference: A and W rounded with usi_bf16_round, products summed in double.
void usi_gemm_bf16_naive(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                         float *C, int ldc, const float *bias);

// ----------------------------------------------------------------------------------------
// Elementwise and strided copies.

/// Strided N-d copy (ndim <= 8): dst[i] (=|+=) src[i] over `shape`, with element strides.
/// A stride of 0 broadcasts. `accumulate` adds instead of assigning.
void usi_copy_strided(float *dst, const int64_t *dst_strides, const float *src,
                      const int64_t *src_strides, const int64_t *shape, int ndim,
                      int accumulate);

enum usi_binary_op { USI_ADD = 0, USI_SUB = 1, USI_MUL = 2, USI_DIV = 3 };
/// out = a (op) b with broadcasting described by element strides (0 = broadcast), ndim <= 8.
void usi_binary_forward(int op, float *out, const float *a, const int64_t *a_strides,
                        const float *b, const int64_t *b_strides, const int64_t *shape,
                        int ndim);

/// y[i] = a * x[i] + b  (n elements)
void usi_affine(float *y, const float *x, float a, float b, size_t n);
/// y[i] += x[i]
void usi_accumulate(float *y, const float *x, size_t n);
/// y[i] = x[i] * m[i]
void usi_mul(float *y, const float *x, const float *m, size_t n);
/// Sum over the middle axis: x [outer, n, inner] -> out [outer, inner] (assigned).
void usi_reduce_sum(float *out, const float *x, int64_t outer, int64_t n, int64_t inner);
/// Sum of all n elements, accumulated in double.
double usi_sum_all(const float *x, size_t n);
/// 1 if any element is NaN or +-Inf.
int usi_has_nonfinite(const float *x, size_t n);

// ----------------------------------------------------------------------------------------
// Activations. x, y [n]. Backward: dx += dy * f'(x); kernels read x (and y where cheaper).

enum usi_activation {
    USI_RELU = 0,
    USI_RELU6 = 1,
    USI_LEAKY_RELU = 2,  // alpha = negative slope
    USI_GELU = 3,        // erf form
    USI_GELU_TANH = 4,   // tanh approximation
    USI_SILU = 5,
    USI_HARDSWISH = 6,
    USI_HARDSIGMOID = 7,
    USI_SIGMOID = 8,
    USI_TANH = 9,
};
void usi_activation_forward(int kind, float *y, const float *x, size_t n, float alpha);
void usi_activation_backward(int kind, float *dx, const float *dy, const float *x,
                             const float *y, size_t n, float alpha);
void usi_activation_forward_naive(int kind, float *y, const float *x, size_t n, float alpha);
void usi_activation_backward_naive(int kind, float *dx, const float *dy, const float *x,
                                   const float *y, size_t n, float alpha);

// ----------------------------------------------------------------------------------------
// Convolution, channels-last, via im2col + GEMM over the whole batch.

typedef struct {
    int N, H, W, C;      // input [N, H, W, C]
    int OC;              // output channels; output [N, OH, OW, OC]
    int KH, KW;          // kernel
    int SH, SW;          // stride
    int PT, PL;          // padding before (top, left); bottom/right follow from OH, OW
    int DH, DW;          // dilation
    int OH, OW;          // output size (the caller decides; TF-"same" padding is asymmetric)
    int groups;          // C and OC divisible by groups
} usi_conv_shape;

/// Elements of the im2col buffer the conv kernels need (0 when none is needed).
size_t usi_conv2d_workspace_size(const usi_conv_shape *s);
/// col [N*OH*OW, groups, KH, KW, C/groups] from x [N, H, W, C]; zero outside the image.
void usi_im2col(float *col, const float *x, const usi_conv_shape *s);
/// dx [N, H, W, C] += scatter of dcol (the adjoint of usi_im2col).
void usi_col2im(float *dx, const float *dcol, const usi_conv_shape *s);
/// out [N, OH, OW, OC] = conv(x, w [OC, KH, KW, C/groups]) + bias [OC] (bias may be NULL).
void usi_conv2d_forward(float *out, const float *x, const float *w, const float *bias,
                        const usi_conv_shape *s, float *workspace);
/// dx += ..., dw += ..., dbias += ... ; any of dx, dw, dbias may be NULL to skip it.
void usi_conv2d_backward(float *dx, float *dw, float *dbias, const float *dout,
                         const float *x, const float *w, const usi_conv_shape *s,
                         float *workspace);
void usi_conv2d_forward_naive(float *out, const float *x, const float *w, const float *bias,
                              const usi_conv_shape *s);
/// out = conv(x, w) + bias with w packed by usi_pack_weights(precision, OC, KH*KW*C, w, ...)
/// (groups 1 only: a [OC, KH, KW, C] weight is that [OC, K] matrix). The column matrix is
/// filled block by block inside the product (and rounded to BF16 there for BF16 weights).
/// FP32 weights give usi_conv2d_forward's result to the bit. Returns 0 (out untouched) for
/// grouped convolutions or when the weights' precision does not run at the calling thread's
/// level: the caller runs usi_conv2d_forward.
int usi_conv2d_forward_packed(float *out, const float *x, const usi_packed_weights *w,
                              const float *bias, const usi_conv_shape *s);
/// Weights of a 3x3 convolution transformed for Winograd F(2x2, 3x3) and packed once (the 16
/// matrices U = G g G^T, FP32 or BF16).
typedef struct usi_winograd_weights usi_winograd_weights;
/// Transforms and packs w [OC, 3, 3, C] (OHWI); NULL when `precision` does not run here or
/// out of memory.
usi_winograd_weights *usi_winograd_pack(int precision, int OC, int C, const float *w);
void usi_winograd_free(usi_winograd_weights *w);
/// Whether usi_conv2d_forward_winograd takes this shape: 3x3, stride 1, dilation 1, groups 1,
/// at least 16 channels in and out, and an output whose 2x2 tiles save >= 30 % of the multiplies.
int usi_winograd_applies(const usi_conv_shape *s);
/// out = conv(x, w) + bias by Winograd F(2x2, 3x3): within about 1e-6 relative of the direct
/// form in FP32 (rounding differs), independent of the thread count. Returns 0 (out untouched,
/// or partly written on out of memory) when the shape does not apply or the weights' precision
/// does not run at the calling thread's level: the caller runs the direct form.
int usi_conv2d_forward_winograd(float *out, const float *x, const usi_winograd_weights *w,
                                const float *bias, const usi_conv_shape *s);
void usi_conv2d_backward_naive(float *dx, float *dw, float *dbias, const float *dout,
                               const float *x, const float *w, const usi_conv_shape *s);

/// Depthwise conv (groups == C == OC): w [C, KH, KW, 1]. Vectorised along C.
void usi_dwconv2d_forward(float *out, const float *x, const float *w, const float *bias,
                          const usi_conv_shape *s);
void usi_dwconv2d_backward(float *dx, float *dw, float *dbias, const float *dout,
                           const float *x, const float *w, const usi_conv_shape *s);

// ----------------------------------------------------------------------------------------
// Normalisation over rows x [M, C] (channels-last BatchNorm: M = N*H*W).

/// Training mode: batch statistics. mean, invstd [C] are written (saved for backward);
/// var_biased [C] receives the biased batch variance (for running statistics).
void usi_batchnorm_forward_train(float *y, float *mean, float *invstd, float *var_biased,
                                 const float *x, const float *gamma, const float *beta,
                                 int64_t M, int C, float eps);
/// Eval mode: y = (x - rmean) / sqrt(rvar + eps) * gamma + beta.
void usi_batchnorm_forward_eval(float *y, const float *x, const float *rmean,
                                const float *rvar, const float *gamma, const float *beta,
                                int64_t M, int C, float eps);
/// Training-mode backward; gamma/dgamma/dbeta may be NULL (no affine).
void usi_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                            const float *x, const float *mean, const float *invstd,
                            const float *gamma, int64_t M, int C);
/// Eval-mode backward (statistics are constants).
void usi_batchnorm_backward_eval(float *dx, float *dgamma, float *dbeta, const float *dy,
                                 const float *x, const float *rmean, const float *rvar,
                                 const float *gamma, int64_t M, int C, float eps);

/// Synchronised BatchNorm, the sums each rank contributes: with dy NULL, sum1 = sum(x - shift)
/// and sum2 = sum((x - shift)^2) per channel; with dy, sum1 = sum(dy) and
/// sum2 = sum(dy * (x - shift)) (shift = the mean). Doubles, assigned.
void usi_batchnorm_sums(double *sum1, double *sum2, const float *x, const float *dy, const float *shift,
                        int64_t M, int C);
/// y = (x - mean) * invstd * gamma + beta with given statistics; gamma/beta may be NULL.
void usi_batchnorm_normalize(float *y, const float *x, const float *mean, const float *invstd,
                             const float *gamma, const float *beta, int64_t M, int C);
/// Synchronised BatchNorm's input gradient from the sums over every rank (count values per
/// channel in all): dx += gamma * invstd * (dy - sum_dy / count
/// - (x - mean) * invstd^2 * sum_dy_xmu / count). gamma may be NULL.
void usi_batchnorm_backward_input(float *dx, const float *dy, const float *x, const float *mean,
                                  const float *invstd, const float *gamma, const double *sum_dy,
                                  const double *sum_dy_xmu, double count, int64_t M, int C);

/// LayerNorm over the last axis of x [M, C]; mean, rstd [M] saved for backward.
void usi_layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t M, int C,
                           float eps);
void usi_layernorm_backward(float *dx, float *dweight, float *dbias, const float *dy,
                            const float *x, const float *mean, const float *rstd,
                            const float *weight, int64_t M, int C);

// ----------------------------------------------------------------------------------------
// Pooling, channels-last. Shapes as usi_conv_shape with OC == C, groups unused.

/// out [N, OH, OW, C]; argmax [N, OH, OW, C] holds the flat input index (for backward).
void usi_maxpool2d_forward(float *out, int32_t *argmax, const float *x,
                           const usi_conv_shape *s);
void usi_maxpool2d_backward(float *dx, const float *dout, const int32_t *argmax,
                            const usi_conv_shape *s);
/// count_include_pad: divide by the window clipped to the padded input (PyTorch), else by
/// the number of real input elements in the window.
void usi_avgpool2d_forward(float *out, const float *x, const usi_conv_shape *s,
                           int count_include_pad);
void usi_avgpool2d_backward(float *dx, const float *dout, const usi_conv_shape *s,
                            int count_include_pad);
/// Adaptive average pooling (PyTorch bins): x [N, H, W, C] -> out [N, OH, OW, C].
void usi_adaptive_avgpool2d_forward(float *out, const float *x, int N, int H, int W, int C,
                                    int OH, int OW);
void usi_adaptive_avgpool2d_backward(float *dx, const float *dout, int N, int H, int W,
                                     int C, int OH, int OW);
/// Naive references (direct loops, used by the tests). The depthwise conv's reference is
/// usi_conv2d_*_naive with groups == C.
void usi_maxpool2d_forward_naive(float *out, int32_t *argmax, const float *x,
                                 const usi_conv_shape *s);
void usi_avgpool2d_forward_naive(float *out, const float *x, const usi_conv_shape *s,
                                 int count_include_pad);
void usi_avgpool2d_backward_naive(float *dx, const float *dout, const usi_conv_shape *s,
                                  int count_include_pad);
void usi_adaptive_avgpool2d_forward_naive(float *out, const float *x, int N, int H, int W,
                                          int C, int OH, int OW);

// ----------------------------------------------------------------------------------------
// Softmax family over the last axis of x [M, C].

void usi_softmax_forward(float *y, const float *x, int64_t M, int C);
/// dx += y * (dy - sum(dy * y))
void usi_softmax_backward(float *dx, const float *dy, const float *y, int64_t M, int C);
void usi_log_softmax_forward(float *y, const float *x, int64_t M, int C);
/// dx += dy - exp(y) * sum(dy)
void usi_log_softmax_backward(float *dx, const float *dy, const float *y, int64_t M, int C);

/// Cross-entropy of logits [M, C] against soft targets [M, C] (rows need not sum to 1) or,
/// when targets is NULL, hard labels [M]. Returns the mean loss over rows; probs [M, C]
/// receives softmax(logits) for the backward.
double usi_cross_entropy_forward(float *probs, const float *logits, const float *targets,
                                 const int32_t *labels, int64_t M, int C);
/// dlogits += scale * (probs * sum(t) - t) / M  (hard labels: t is one-hot).
void usi_cross_entropy_backward(float *dlogits, const float *probs, const float *targets,
                                const int32_t *labels, int64_t M, int C, float scale);

// ----------------------------------------------------------------------------------------
// Optimiser.

/// AdamW step over flat storage (PyTorch semantics: decoupled decay, bias correction).
/// step is the 1-based step count after increment.
void usi_adamw_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, int64_t step);

#ifdef __cplusplus
}
#endif
/// dst[n] <- n little-endian IEEE halves at src (any alignment), exactly.
void usi_f16_to_f32(float *dst, const void *src, int64_t n);
/// dst[n] <- n little-endian bfloat16 values at src (any alignment), exactly.
void usi_bf16_to_f32(float *dst, const void *src, int64_t n);

#endif
