// Convolution, channels-last, as im2col + GEMM over (chunks of) the whole batch.
//
// x [N, H, W, C], w [OC, KH, KW, C/groups] (OHWI), out [N, OH, OW, OC].
// col [rows, groups, KH, KW, Cg] with rows = images*OH*OW; for group g the GEMM is
//   out_g [rows, OCg] (ldc OC, column offset g*OCg) = col_g [rows, Kg] (lda groups*Kg,
//   column offset g*Kg) x W_g^T, W_g = rows g*OCg.. of w viewed as [OC, Kg].
// A 1x1 / stride-1 / unpadded conv (any groups) has col == x and needs no workspace.
// The workspace holds the im2col of a chunk of whole images (about USI_CONV_CHUNK_ROWS
// output pixels), so it stays small and warm in cache; backward reuses it for dcol.
#include "usi_internal.h"

#include <stdlib.h>

// Output rows per GEMM call. OpenBLAS (2 threads, AVX-512) runs the tall-skinny conv GEMMs
// ~25% faster in row blocks of 1-2k than in one call over 32k rows (measured: M=32768,
// N=64, K=576: 130 GFLOP/s in one call, 170 in blocks of 2048).
#ifndef USI_CONV_CHUNK_ROWS
#define USI_CONV_CHUNK_ROWS 2048
#endif

static int is_pointwise(const usi_conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->SH == 1 && s->SW == 1 && s->PT == 0 && s->PL == 0 &&
           s->OH == s->H && s->OW == s->W;
}

static int64_t col_width(const usi_conv_shape *s) { return (int64_t)s->KH * s->KW * s->C; }

// Images per im2col chunk.
static int chunk_images(const usi_conv_shape *s) {
    int64_t per = (int64_t)s->OH * s->OW;
    if (per <= 0) return s->N > 0 ? s->N : 1;
    int64_t nb = (USI_CONV_CHUNK_ROWS + per - 1) / per;
    if (nb > s->N) nb = s->N;
    return nb < 1 ? 1 : (int)nb;
}

// Elements of the workspace: im2col of one chunk of images (0 for pointwise convs).
size_t usi_conv2d_workspace_size(const usi_conv_shape *s) {
    if (is_pointwise(s) || s->N <= 0) return 0;
    return (size_t)chunk_images(s) * (size_t)s->OH * (size_t)s->OW * (size_t)col_width(s);
}

static inline void copy_run(float *restrict d, const float *restrict src, int64_t n) {
    if (n >= 16)
        memcpy(d, src, (size_t)n * sizeof(float));
    else
        for (int64_t i = 0; i < n; i++) d[i] = src[i];
}

static inline void zero_run(float *d, int64_t n) {
    if (n >= 16)
        memset(d, 0, (size_t)n * sizeof(float));
    else
        for (int64_t i = 0; i < n; i++) d[i] = 0.0f;
}

static inline void add_run(float *restrict d, const float *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] += src[i];
}

typedef struct {
    float *col;
    const float *cdata;  // x (im2col) or dcol (col2im)
    float *dx;
    const usi_conv_shape *s;
    int n0;  // first image of the chunk
} i2c_ctx;

// im2col of output rows [r0, r1), r = (n - n0) * OH + oh.
USI_MULTIVERSION
static void im2col_range(void *v, int64_t r0, int64_t r1) {
    const i2c_ctx *c = (const i2c_ctx *)v;
    const usi_conv_shape *s = c->s;
    const int H = s->H, W = s->W, C = s->C, KH = s->KH, KW = s->KW, G = s->groups;
    const int Cg = C / G;
    const int64_t K = col_width(s), Kg = K / G;
    for (int64_t r = r0; r < r1; r++) {
        int n = c->n0 + (int)(r / s->OH), oh = (int)(r % s->OH);
        const float *xn = c->cdata + (size_t)n * H * W * C;
        int ih0 = oh * s->SH - s->PT;
        for (int ow = 0; ow < s->OW; ow++) {
            float *dst = c->col + ((size_t)r * s->OW + ow) * K;
            int iw0 = ow * s->SW - s->PL;
            for (int kh = 0; kh < KH; kh++) {
                int ih = ih0 + kh * s->DH;
                if (G == 1) {
                    float *d = dst + (size_t)kh * KW * C;
                    if (ih < 0 || ih >= H) {
                        zero_run(d, (int64_t)KW * C);
                        continue;
                    }
                    const float *xr = xn + (size_t)ih * W * C;
                    if (s->DW == 1) {
                        int lo = iw0 < 0 ? -iw0 : 0;
                        int hi = W - iw0 < KW ? W - iw0 : KW;
                        if (lo > KW) lo = KW;
                        if (hi < lo) hi = lo;
                        zero_run(d, (int64_t)lo * C);
                        copy_run(d + (size_t)lo * C, xr + (size_t)(iw0 + lo) * C,
                                 (int64_t)(hi - lo) * C);
                        zero_run(d + (size_t)hi * C, (int64_t)(KW - hi) * C);
                    } else {
                        for (int kw = 0; kw < KW; kw++) {
                            int iw = iw0 + kw * s->DW;
                            if (iw < 0 || iw >= W)
                                zero_run(d + (size_t)kw * C, C);
                            else
                                copy_run(d + (size_t)kw * C, xr + (size_t)iw * C, C);
                        }
                    }
                } else {
                    int rowok = ih >= 0 && ih < H;
                    for (int kw = 0; kw < KW; kw++) {
                        int iw = iw0 + kw * s->DW;
                        int ok = rowok && iw >= 0 && iw < W;
                        float *d = dst + ((size_t)kh * KW + kw) * Cg;
                        const float *xp = ok ? xn + ((size_t)ih * W + iw) * C : NULL;
                        if (Cg == 1) {
                            for (int g = 0; g < G; g++) d[(size_t)g * Kg] = ok ? xp[g] : 0.0f;
                        } else {
                            for (int g = 0; g < G; g++) {
                                if (ok)
                                    copy_run(d + (size_t)g * Kg, xp + (size_t)g * Cg, Cg);
                                else
                                    zero_run(d + (size_t)g * Kg, Cg);
                            }
                        }
                    }
                }
            }
        }
    }
}

static void im2col_images(float *col, const float *x, const usi_conv_shape *s, int n0, int n1) {
    i2c_ctx c = {col, x, NULL, s, n0};
    usi_parallel_range((int64_t)(n1 - n0) * s->OH, (int64_t)s->OW * col_width(s), im2col_range,
                       &c);
}

// col2im as a gather: task rows are input rows r = (n - n0) * H + ih, each collecting from
// every (oh, kh) that touches it, in a fixed order.
USI_MULTIVERSION
static void col2im_range(void *v, int64_t r0, int64_t r1) {
    const i2c_ctx *c = (const i2c_ctx *)v;
    const usi_conv_shape *s = c->s;
    const int H = s->H, W = s->W, C = s->C, KH = s->KH, KW = s->KW, G = s->groups;
    const int Cg = C / G;
    const int64_t K = col_width(s), Kg = K / G;
    for (int64_t r = r0; r < r1; r++) {
        int nl = (int)(r / H), ih = (int)(r % H);
        float *dxr = c->dx + ((size_t)(c->n0 + nl) * H + ih) * W * C;
        for (int kh = 0; kh < KH; kh++) {
            int t = ih + s->PT - kh * s->DH;
            if (t < 0 || t % s->SH != 0) continue;
            int oh = t / s->SH;
            if (oh >= s->OH) continue;
            const float *crow = c->cdata + ((size_t)nl * s->OH + oh) * s->OW * K;
            for (int ow = 0; ow < s->OW; ow++) {
                const float *src = crow + (size_t)ow * K;
                int iw0 = ow * s->SW - s->PL;
                if (G == 1) {
                    const float *sk = src + (size_t)kh * KW * C;
                    if (s->DW == 1) {
                        int lo = iw0 < 0 ? -iw0 : 0;
                        int hi = W - iw0 < KW ? W - iw0 : KW;
                        if (hi > lo)
                            add_run(dxr + (size_t)(iw0 + lo) * C, sk + (size_t)lo * C,
                                    (int64_t)(hi - lo) * C);
                    } else {
                        for (int kw = 0; kw < KW; kw++) {
                            int iw = iw0 + kw * s->DW;
                            if (iw >= 0 && iw < W)
                                add_run(dxr + (size_t)iw * C, sk + (size_t)kw * C, C);
                        }
                    }
                } else {
                    for (int kw = 0; kw < KW; kw++) {
                        int iw = iw0 + kw * s->DW;
                        if (iw < 0 || iw >= W) continue;
                        const float *sk = src + ((size_t)kh * KW + kw) * Cg;
                        float *d = dxr + (size_t)iw * C;
                        if (Cg == 1)
                            for (int g = 0; g < G; g++) d[g] += sk[(size_t)g * Kg];
                        else
                            for (int g = 0; g < G; g++)
                                add_run(d + (size_t)g * Cg, sk + (size_t)g * Kg, Cg);
                    }
                }
            }
        }
    }
}

static void col2im_images(float *dx, const float *dcol, const usi_conv_shape *s, int n0,
                          int n1) {
    i2c_ctx c = {NULL, dcol, dx, s, n0};
    int64_t work = (int64_t)s->W * s->C * ((s->KH + s->SH - 1) / s->SH) *
                   ((s->KW + s->SW - 1) / s->SW);
    usi_parallel_range((int64_t)(n1 - n0) * s->H, work, col2im_range, &c);
}

// col [N*OH*OW, groups, KH, KW, Cg] from x [N, H, W, C].
USI_MULTIVERSION
void usi_im2col(float *col, const float *x, const usi_conv_shape *s) {
    im2col_images(col, x, s, 0, s->N);
}

// dx [N, H, W, C] += col2im(dcol [N*OH*OW, groups, KH, KW, Cg]).
USI_MULTIVERSION
void usi_col2im(float *dx, const float *dcol, const usi_conv_shape *s) {
    col2im_images(dx, dcol, s, 0, s->N);
}

// Rows per GEMM call over a pointwise conv: our packed kernel blocks the rows itself (one
// call), OpenBLAS runs faster in row blocks (see USI_CONV_CHUNK_ROWS).
static int64_t gemm_chunk_rows(int64_t M) {
    return usi_gemm_is_packed() ? M : USI_CONV_CHUNK_ROWS;
}

typedef struct {
    const usi_conv_shape *s;
    const float *x;
} fill_ctx;

// Implicit im2col for the packed GEMM (groups 1): rows [i0, i0 + rows) of the column matrix,
// columns [k0, k0 + kb), written straight into the GEMM's per-thread A block.
USI_MULTIVERSION
static void conv_fill_rows(const void *v, float *dst, int64_t ldd, int i0, int rows, int k0,
                           int kb) {
    const usi_conv_shape *s = ((const fill_ctx *)v)->s;
    const float *x = ((const fill_ctx *)v)->x;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW, OW = s->OW;
    const int64_t per = (int64_t)s->OH * OW, run = (int64_t)KW * C;  // a kh-row of the window
    const int kh0 = k0 / (int)run, kh1 = (k0 + kb - 1) / (int)run;
    for (int r = 0; r < rows; r++) {
        int64_t m = (int64_t)i0 + r;
        int n = (int)(m / per), oh = (int)(m % per) / OW, ow = (int)(m % per) % OW;
        const float *xn = x + (size_t)n * H * W * C;
        int ih0 = oh * s->SH - s->PT, iw0 = ow * s->SW - s->PL;
        float *d = dst + (size_t)r * ldd;  // column k of the matrix is d[k - k0]
        for (int kh = kh0; kh <= kh1; kh++) {
            // This kh-row's columns [a, b) within the slice.
            int64_t a = (int64_t)kh * run, b = a + run;
            if (a < k0) a = k0;
            if (b > k0 + kb) b = k0 + kb;
            int ih = ih0 + kh * s->DH;
            if (ih < 0 || ih >= H) {
                zero_run(d + (a - k0), b - a);
                continue;
            }
            const float *xr = xn + (size_t)ih * W * C;
            if (s->DW == 1) {
                // Columns [lo*C, hi*C) of the kh-row come from one contiguous run of x.
                int lo = iw0 < 0 ? -iw0 : 0, hi = W - iw0 < KW ? W - iw0 : KW;
                if (lo > KW) lo = KW;
                if (hi < lo) hi = lo;
                int64_t base = (int64_t)kh * run, vlo = base + (int64_t)lo * C, vhi = base + (int64_t)hi * C;
                int64_t c0 = a > vlo ? a : vlo, c1 = b < vhi ? b : vhi;
                if (c0 > a) zero_run(d + (a - k0), (c0 < b ? c0 : b) - a);
                if (c1 > c0) copy_run(d + (c0 - k0), xr + ((int64_t)iw0 * C + (c0 - base)), c1 - c0);
                if (b > vhi) {
                    int64_t z = vhi > a ? vhi : a;
                    zero_run(d + (z - k0), b - z);
                }
            } else {
                for (int64_t k = a; k < b;) {
                    int kw = (int)((k - (int64_t)kh * run) / C), c = (int)((k - (int64_t)kh * run) % C);
                    int64_t len = C - c < b - k ? C - c : b - k;
                    int iw = iw0 + kw * s->DW;
                    if (iw < 0 || iw >= W)
                        zero_run(d + (k - k0), len);
                    else
                        copy_run(d + (k - k0), xr + (size_t)iw * C + c, len);
                    k += len;
                }
            }
        }
    }
}

// out [N, OH, OW, OC] = conv(x [N, H, W, C], w [OC, KH, KW, C/groups]) + bias [OC]
USI_MULTIVERSION
void usi_conv2d_forward(float *out, const float *x, const float *w, const float *bias,
                        const usi_conv_shape *s, float *workspace) {
    const int G = s->groups, OC = s->OC, OCg = OC / G;
    const int64_t K = col_width(s), Kg = K / G;
    const int64_t per = (int64_t)s->OH * s->OW;
    if (s->N <= 0 || per <= 0 || OC <= 0) return;
    if (is_pointwise(s)) {
        int64_t M = (int64_t)s->N * per;
        int64_t step = gemm_chunk_rows(M);
        for (int64_t m0 = 0; m0 < M; m0 += step) {
            int Mc = (int)(M - m0 < step ? M - m0 : step);
            for (int g = 0; g < G; g++)
                usi_conv_gemm(0, 1, Mc, OCg, (int)Kg, x + (size_t)m0 * s->C + (size_t)g * Kg,
                              s->C, w + (size_t)g * OCg * Kg, (int)Kg, 0.0f,
                              out + (size_t)m0 * OC + (size_t)g * OCg, OC,
                              bias ? bias + (size_t)g * OCg : NULL);
        }
        return;
    }
    if (G == 1 && usi_gemm_is_packed()) {
        // The column matrix is built block by block where the GEMM reads it (measured:
        // materialising it cost as much memory traffic as the GEMM's arithmetic).
        fill_ctx ctx = {s, x};
        if (usi_sgemm_packed_fill_a(USI_GEMM_ISA_BEST, (int)(s->N * per), OC, (int)K, conv_fill_rows,
                                    &ctx, w, (int)K, out, OC, bias))
            return;
    }
    int nb = chunk_images(s);
    for (int n0 = 0; n0 < s->N; n0 += nb) {
        int n1 = n0 + nb < s->N ? n0 + nb : s->N;
        int Mc = (int)((int64_t)(n1 - n0) * per);
        im2col_images(workspace, x, s, n0, n1);
        float *oc = out + (size_t)n0 * per * OC;
        for (int g = 0; g < G; g++)
            usi_conv_gemm(0, 1, Mc, OCg, (int)Kg, workspace + (size_t)g * Kg, (int)K,
                          w + (size_t)g * OCg * Kg, (int)Kg, 0.0f, oc + (size_t)g * OCg, OC,
                          bias ? bias + (size_t)g * OCg : NULL);
    }
}

// dx [N, H, W, C] += ..., dw [OC, KH, KW, Cg] += ..., dbias [OC] += ... (each may be NULL)
USI_MULTIVERSION
void usi_conv2d_backward(float *dx, float *dw, float *dbias, const float *dout,
                         const float *x, const float *w, const usi_conv_shape *s,
                         float *workspace) {
    const int G = s->groups, OC = s->OC, OCg = OC / G, C = s->C, Cg = C / G;
    const int64_t K = col_width(s), Kg = K / G;
    const int64_t per = (int64_t)s->OH * s->OW;
    if (s->N <= 0 || per <= 0 || OC <= 0) return;
    if (dbias) usi_colsum_add(dbias, dout, (int64_t)s->N * per, OC);
    if (!dx && !dw) return;
    if (is_pointwise(s)) {
        int64_t M = (int64_t)s->N * per;
        // dw accumulates over row chunks in order: each GEMM's operands stay in cache
        // (measured, M=32768: ours 75-105 GFLOP/s in one call, 190-230 in 2048-row chunks).
        if (dw)
            for (int64_t m0 = 0; m0 < M; m0 += USI_CONV_CHUNK_ROWS) {
                int Mc = (int)(M - m0 < USI_CONV_CHUNK_ROWS ? M - m0 : USI_CONV_CHUNK_ROWS);
                for (int g = 0; g < G; g++)
                    usi_conv_gemm(1, 0, OCg, (int)Kg, Mc, dout + (size_t)m0 * OC + (size_t)g * OCg,
                                  OC, x + (size_t)m0 * C + (size_t)g * Kg, C, 1.0f,
                                  dw + (size_t)g * OCg * Kg, (int)Kg, NULL);
            }
        if (dx) {
            int64_t step = gemm_chunk_rows(M);
            for (int64_t m0 = 0; m0 < M; m0 += step) {
                int Mc = (int)(M - m0 < step ? M - m0 : step);
                for (int g = 0; g < G; g++)
                    usi_conv_gemm(0, 0, Mc, Cg, OCg, dout + (size_t)m0 * OC + (size_t)g * OCg,
                                  OC, w + (size_t)g * OCg * Kg, (int)Kg, 1.0f,
                                  dx + (size_t)m0 * C + (size_t)g * Cg, C, NULL);
            }
        }
        return;
    }
    int nb = chunk_images(s);
    for (int n0 = 0; n0 < s->N; n0 += nb) {
        int n1 = n0 + nb < s->N ? n0 + nb : s->N;
        int Mc = (int)((int64_t)(n1 - n0) * per);
        const float *dc = dout + (size_t)n0 * per * OC;
        if (dw) {
            im2col_images(workspace, x, s, n0, n1);
            for (int g = 0; g < G; g++)
                usi_conv_gemm(1, 0, OCg, (int)Kg, Mc, dc + (size_t)g * OCg, OC,
                              workspace + (size_t)g * Kg, (int)K, 1.0f,
                              dw + (size_t)g * OCg * Kg, (int)Kg, NULL);
        }
        if (dx) {
            for (int g = 0; g < G; g++)
                usi_conv_gemm(0, 0, Mc, (int)Kg, OCg, dc + (size_t)g * OCg, OC,
                              w + (size_t)g * OCg * Kg, (int)Kg, 0.0f,
                              workspace + (size_t)g * Kg, (int)K, NULL);
            col2im_images(dx, workspace, s, n0, n1);
        }
    }
}

// out = conv(x, w) + bias with packed weights (groups 1): the forward's GEMMs with the weight
// packing done once.
USI_MULTIVERSION
int usi_conv2d_forward_packed(float *out, const float *x, const usi_packed_weights *w,
                              const float *bias, const usi_conv_shape *s) {
    if (s->groups != 1 || !w || !usi_precision_supported(usi_packed_weights_precision(w))) return 0;
    const int64_t per = (int64_t)s->OH * s->OW;
    if (s->N <= 0 || per <= 0 || s->OC <= 0) return 1;
    const int M = (int)(s->N * per);
    if (is_pointwise(s)) return usi_gemm_packed_weights(M, x, s->C, w, out, s->OC, bias);
    fill_ctx ctx = {s, x};
    return usi_gemm_packed_weights_fill(M, conv_fill_rows, &ctx, NULL, 0, w, out, s->OC, bias);
}

// ----------------------------------------------------------------------------------------
// Naive references: direct loops, double accumulation.

USI_MULTIVERSION
void usi_conv2d_forward_naive(float *out, const float *x, const float *w, const float *bias,
                              const usi_conv_shape *s) {
    const int G = s->groups, Cg = s->C / G, OCg = s->OC / G;
    for (int n = 0; n < s->N; n++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++)
                for (int oc = 0; oc < s->OC; oc++) {
                    int g = oc / OCg;
                    double acc = bias ? bias[oc] : 0.0;
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            int ih = oh * s->SH - s->PT + kh * s->DH;
                            int iw = ow * s->SW - s->PL + kw * s->DW;
                            if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                            for (int c = 0; c < Cg; c++)
                                acc += (double)x[(((size_t)n * s->H + ih) * s->W + iw) * s->C +
                                                 g * Cg + c] *
                                       w[(((size_t)oc * s->KH + kh) * s->KW + kw) * Cg + c];
                        }
                    out[(((size_t)n * s->OH + oh) * s->OW + ow) * s->OC + oc] = (float)acc;
                }
}

USI_MULTIVERSION
void usi_conv2d_backward_naive(float *dx, float *dw, float *dbias, const float *dout,
                               const float *x, const float *w, const usi_conv_shape *s) {
    const int G = s->groups, Cg = s->C / G, OCg = s->OC / G;
    size_t nx = (size_t)s->N * s->H * s->W * s->C;
    size_t nw = (size_t)s->OC * s->KH * s->KW * Cg;
    double *ax = (double *)calloc(nx, sizeof(double));
    double *aw = (double *)calloc(nw, sizeof(double));
    double *ab = (double *)calloc((size_t)s->OC, sizeof(double));
    if (!ax || !aw || !ab) {
        free(ax);
        free(aw);
        free(ab);
        return;
    }
    for (int n = 0; n < s->N; n++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++)
                for (int oc = 0; oc < s->OC; oc++) {
                    int g = oc / OCg;
                    double d = dout[(((size_t)n * s->OH + oh) * s->OW + ow) * s->OC + oc];
                    ab[oc] += d;
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            int ih = oh * s->SH - s->PT + kh * s->DH;
                            int iw = ow * s->SW - s->PL + kw * s->DW;
                            if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                            for (int c = 0; c < Cg; c++) {
                                size_t xi = (((size_t)n * s->H + ih) * s->W + iw) * s->C + g * Cg + c;
                                size_t wi = (((size_t)oc * s->KH + kh) * s->KW + kw) * Cg + c;
                                ax[xi] += d * w[wi];
                                aw[wi] += d * x[xi];
                            }
                        }
                }
    if (dx)
        for (size_t i = 0; i < nx; i++) dx[i] = (float)(dx[i] + ax[i]);
    if (dw)
        for (size_t i = 0; i < nw; i++) dw[i] = (float)(dw[i] + aw[i]);
    if (dbias)
        for (int i = 0; i < s->OC; i++) dbias[i] = (float)(dbias[i] + ab[i]);
    free(ax);
    free(aw);
    free(ab);
}
