// Pooling, channels-last. x [N, H, W, C], out [N, OH, OW, C]; shapes as usi_conv_shape
// (KH, KW, SH, SW, PT, PL, DH, DW, OH, OW; OC == C, groups unused). Forward splits over
// output rows (n, oh); backward scatters within disjoint (image, channel-block) slices, in a
// fixed order, so it is deterministic.
#include "usi_internal.h"

#include <float.h>

#define POOL_CBLOCK 64

typedef struct {
    float *out;
    int32_t *argmax;
    const float *x;
    const usi_conv_shape *s;
    int count_include_pad;
    // adaptive
    int N, H, W, C, OH, OW;
} pool_ctx;

USI_MULTIVERSION
static void maxpool_fwd_range(void *v, int64_t r0, int64_t r1) {
    const pool_ctx *k = (const pool_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / s->OH), oh = (int)(r % s->OH);
        int ih0 = oh * s->SH - s->PT;
        for (int ow = 0; ow < s->OW; ow++) {
            size_t o = ((size_t)r * s->OW + ow) * C;
            float *restrict out = k->out + o;
            int32_t *restrict am = k->argmax ? k->argmax + o : NULL;
            int iw0 = ow * s->SW - s->PL;
            int first = 1;
            for (int kh = 0; kh < s->KH; kh++) {
                int ih = ih0 + kh * s->DH;
                if (ih < 0 || ih >= H) continue;
                for (int kw = 0; kw < s->KW; kw++) {
                    int iw = iw0 + kw * s->DW;
                    if (iw < 0 || iw >= W) continue;
                    size_t base = (((size_t)n * H + ih) * W + iw) * C;
                    const float *restrict xp = k->x + base;
                    int32_t bi = (int32_t)base;
                    if (first) {
                        for (int c = 0; c < C; c++) out[c] = xp[c];
                        if (am)
                            for (int c = 0; c < C; c++) am[c] = bi + c;
                        first = 0;
                        continue;
                    }
                    // PyTorch: take the new value when it is larger or NaN
                    if (am) {
                        for (int c = 0; c < C; c++) {
                            float val = xp[c];
                            int take = (val > out[c]) | (val != val);
                            out[c] = take ? val : out[c];
                            am[c] = take ? bi + c : am[c];
                        }
                    } else {
                        for (int c = 0; c < C; c++) {
                            float val = xp[c];
                            int take = (val > out[c]) | (val != val);
                            out[c] = take ? val : out[c];
                        }
                    }
                }
            }
            if (first) {  // window entirely in the padding
                for (int c = 0; c < C; c++) out[c] = -INFINITY;
                if (am)
                    for (int c = 0; c < C; c++) am[c] = -1;
            }
        }
    }
}

// out [N, OH, OW, C]; argmax [N, OH, OW, C] = flat index into x (may be NULL).
USI_MULTIVERSION
void usi_maxpool2d_forward(float *out, int32_t *argmax, const float *x,
                           const usi_conv_shape *s) {
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || s->C <= 0) return;
    pool_ctx k = {out, argmax, x, s, 0, 0, 0, 0, 0, 0, 0};
    usi_parallel_range((int64_t)s->N * s->OH, (int64_t)s->OW * s->C * s->KH * s->KW,
                       maxpool_fwd_range, &k);
}

typedef struct {
    float *dx;
    const float *dout;
    const int32_t *argmax;
    const usi_conv_shape *s;
    int count_include_pad;
    int cblocks;
    int N, H, W, C, OH, OW;
} poolb_ctx;

// Items are (n, channel block) pairs.
USI_MULTIVERSION
static void maxpool_bwd_range(void *v, int64_t i0, int64_t i1) {
    const poolb_ctx *k = (const poolb_ctx *)v;
    const int C = k->C;
    const int64_t P = (int64_t)k->OH * k->OW;
    for (int64_t it = i0; it < i1; it++) {
        int n = (int)(it / k->cblocks), cb = (int)(it % k->cblocks);
        int c0 = cb * POOL_CBLOCK, c1 = c0 + POOL_CBLOCK < C ? c0 + POOL_CBLOCK : C;
        for (int64_t p = 0; p < P; p++) {
            size_t o = ((size_t)n * P + p) * C;
            const float *d = k->dout + o;
            const int32_t *am = k->argmax + o;
            for (int c = c0; c < c1; c++)
                if (am[c] >= 0) k->dx[am[c]] += d[c];
        }
    }
}

// dx [N, H, W, C] += scatter of dout [N, OH, OW, C] through argmax.
USI_MULTIVERSION
void usi_maxpool2d_backward(float *dx, const float *dout, const int32_t *argmax,
                            const usi_conv_shape *s) {
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || s->C <= 0) return;
    int cblocks = (s->C + POOL_CBLOCK - 1) / POOL_CBLOCK;
    poolb_ctx k = {dx, dout, argmax, s, 0, cblocks, s->N, s->H, s->W, s->C, s->OH, s->OW};
    usi_parallel_range((int64_t)s->N * cblocks,
                       (int64_t)s->OH * s->OW * (s->C < POOL_CBLOCK ? s->C : POOL_CBLOCK),
                       maxpool_bwd_range, &k);
}

// PyTorch's avg-pool window: [hs, he) x [ws, we) clipped to the image and the divisor.
static inline void avg_window(const usi_conv_shape *s, int oh, int ow, int cip, int *hs,
                              int *he, int *ws, int *we, float *inv) {
    int h0 = oh * s->SH - s->PT, w0 = ow * s->SW - s->PL;
    int h1 = h0 + s->KH, w1 = w0 + s->KW;
    if (h1 > s->H + s->PT) h1 = s->H + s->PT;
    if (w1 > s->W + s->PL) w1 = s->W + s->PL;
    int pool = (h1 - h0) * (w1 - w0);
    if (h0 < 0) h0 = 0;
    if (w0 < 0) w0 = 0;
    if (h1 > s->H) h1 = s->H;
    if (w1 > s->W) w1 = s->W;
    int cnt = (h1 > h0 && w1 > w0) ? (h1 - h0) * (w1 - w0) : 0;
    int div = cip ? pool : cnt;
    *hs = h0;
    *he = h1;
    *ws = w0;
    *we = w1;
    *inv = div > 0 ? 1.0f / (float)div : 0.0f;
}

USI_MULTIVERSION
static void avgpool_fwd_range(void *v, int64_t r0, int64_t r1) {
    const pool_ctx *k = (const pool_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / s->OH), oh = (int)(r % s->OH);
        for (int ow = 0; ow < s->OW; ow++) {
            float *restrict out = k->out + ((size_t)r * s->OW + ow) * C;
            int hs, he, ws, we;
            float inv;
            avg_window(s, oh, ow, k->count_include_pad, &hs, &he, &ws, &we, &inv);
            for (int c = 0; c < C; c++) out[c] = 0.0f;
            for (int ih = hs; ih < he; ih++)
                for (int iw = ws; iw < we; iw++) {
                    const float *restrict xp = k->x + (((size_t)n * H + ih) * W + iw) * C;
                    for (int c = 0; c < C; c++) out[c] += xp[c];
                }
            for (int c = 0; c < C; c++) out[c] *= inv;
        }
    }
}

// out [N, OH, OW, C] = average pooling of x (no dilation; DH/DW are ignored).
USI_MULTIVERSION
void usi_avgpool2d_forward(float *out, const float *x, const usi_conv_shape *s,
                           int count_include_pad) {
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || s->C <= 0) return;
    pool_ctx k = {out, NULL, x, s, count_include_pad, 0, 0, 0, 0, 0, 0};
    usi_parallel_range((int64_t)s->N * s->OH, (int64_t)s->OW * s->C * s->KH * s->KW,
                       avgpool_fwd_range, &k);
}

USI_MULTIVERSION
static void avgpool_bwd_range(void *v, int64_t i0, int64_t i1) {
    const poolb_ctx *k = (const poolb_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C;
    for (int64_t it = i0; it < i1; it++) {
        int n = (int)(it / k->cblocks), cb = (int)(it % k->cblocks);
        int c0 = cb * POOL_CBLOCK, c1 = c0 + POOL_CBLOCK < C ? c0 + POOL_CBLOCK : C;
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++) {
                const float *restrict d = k->dout + (((size_t)n * s->OH + oh) * s->OW + ow) * C;
                int hs, he, ws, we;
                float inv;
                avg_window(s, oh, ow, k->count_include_pad, &hs, &he, &ws, &we, &inv);
                for (int ih = hs; ih < he; ih++)
                    for (int iw = ws; iw < we; iw++) {
                        float *restrict dxp = k->dx + (((size_t)n * H + ih) * W + iw) * C;
                        for (int c = c0; c < c1; c++) dxp[c] += d[c] * inv;
                    }
            }
    }
}

// dx [N, H, W, C] += adjoint of the average pooling applied to dout [N, OH, OW, C].
USI_MULTIVERSION
void usi_avgpool2d_backward(float *dx, const float *dout, const usi_conv_shape *s,
                            int count_include_pad) {
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || s->C <= 0) return;
    int cblocks = (s->C + POOL_CBLOCK - 1) / POOL_CBLOCK;
    poolb_ctx k = {dx, dout, NULL, s, count_include_pad, cblocks,
                   s->N, s->H, s->W, s->C, s->OH, s->OW};
    usi_parallel_range((int64_t)s->N * cblocks,
                       (int64_t)s->OH * s->OW * s->KH * s->KW *
                           (s->C < POOL_CBLOCK ? s->C : POOL_CBLOCK),
                       avgpool_bwd_range, &k);
}

// ----------------------------------------------------------------------------------------
// Adaptive average pooling: bins [floor(i*H/OH), ceil((i+1)*H/OH)).

static inline void adaptive_bin(int i, int in, int out, int *b, int *e) {
    *b = (int)(((int64_t)i * in) / out);
    *e = (int)((((int64_t)i + 1) * in + out - 1) / out);
}

USI_MULTIVERSION
static void adaptive_fwd_range(void *v, int64_t r0, int64_t r1) {
    const pool_ctx *k = (const pool_ctx *)v;
    const int H = k->H, W = k->W, C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / k->OH), oh = (int)(r % k->OH);
        int hs, he;
        adaptive_bin(oh, H, k->OH, &hs, &he);
        for (int ow = 0; ow < k->OW; ow++) {
            int ws, we;
            adaptive_bin(ow, W, k->OW, &ws, &we);
            float *restrict out = k->out + ((size_t)r * k->OW + ow) * C;
            for (int c = 0; c < C; c++) out[c] = 0.0f;
            for (int ih = hs; ih < he; ih++)
                for (int iw = ws; iw < we; iw++) {
                    const float *restrict xp = k->x + (((size_t)n * H + ih) * W + iw) * C;
                    for (int c = 0; c < C; c++) out[c] += xp[c];
                }
            float inv = 1.0f / (float)((he - hs) * (we - ws));
            for (int c = 0; c < C; c++) out[c] *= inv;
        }
    }
}

// x [N, H, W, C] -> out [N, OH, OW, C]
USI_MULTIVERSION
void usi_adaptive_avgpool2d_forward(float *out, const float *x, int N, int H, int W, int C,
                                    int OH, int OW) {
    if (N <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
    pool_ctx k = {out, NULL, x, NULL, 0, N, H, W, C, OH, OW};
    int64_t win = ((int64_t)H / OH + 1) * ((int64_t)W / OW + 1);
    usi_parallel_range((int64_t)N * OH, (int64_t)OW * C * win, adaptive_fwd_range, &k);
}

USI_MULTIVERSION
static void adaptive_bwd_range(void *v, int64_t i0, int64_t i1) {
    const poolb_ctx *k = (const poolb_ctx *)v;
    const int H = k->H, W = k->W, C = k->C;
    for (int64_t it = i0; it < i1; it++) {
        int n = (int)(it / k->cblocks), cb = (int)(it % k->cblocks);
        int c0 = cb * POOL_CBLOCK, c1 = c0 + POOL_CBLOCK < C ? c0 + POOL_CBLOCK : C;
        for (int oh = 0; oh < k->OH; oh++) {
            int hs, he;
            adaptive_bin(oh, H, k->OH, &hs, &he);
            for (int ow = 0; ow < k->OW; ow++) {
                int ws, we;
                adaptive_bin(ow, W, k->OW, &ws, &we);
                float inv = 1.0f / (float)((he - hs) * (we - ws));
                const float *restrict d = k->dout + (((size_t)n * k->OH + oh) * k->OW + ow) * C;
                for (int ih = hs; ih < he; ih++)
                    for (int iw = ws; iw < we; iw++) {
                        float *restrict dxp = k->dx + (((size_t)n * H + ih) * W + iw) * C;
                        for (int c = c0; c < c1; c++) dxp[c] += d[c] * inv;
                    }
            }
        }
    }
}

// dx [N, H, W, C] += adjoint of adaptive average pooling applied to dout [N, OH, OW, C].
USI_MULTIVERSION
void usi_adaptive_avgpool2d_backward(float *dx, const float *dout, int N, int H, int W,
                                     int C, int OH, int OW) {
    if (N <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
    int cblocks = (C + POOL_CBLOCK - 1) / POOL_CBLOCK;
    poolb_ctx k = {dx, dout, NULL, NULL, 0, cblocks, N, H, W, C, OH, OW};
    int64_t work = (int64_t)H * W * (C < POOL_CBLOCK ? C : POOL_CBLOCK) * 2;
    usi_parallel_range((int64_t)N * cblocks, work, adaptive_bwd_range, &k);
}

// ----------------------------------------------------------------------------------------
// Naive references: one output element at a time, PyTorch's formulas written out.

USI_MULTIVERSION
void usi_maxpool2d_forward_naive(float *out, int32_t *argmax, const float *x,
                                 const usi_conv_shape *s) {
    for (int n = 0; n < s->N; n++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++)
                for (int c = 0; c < s->C; c++) {
                    float best = -INFINITY;
                    int32_t bi = -1;
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            int ih = oh * s->SH - s->PT + kh * s->DH;
                            int iw = ow * s->SW - s->PL + kw * s->DW;
                            if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                            int32_t idx = (int32_t)((((size_t)n * s->H + ih) * s->W + iw) * s->C + c);
                            float val = x[idx];
                            if (bi < 0 || val > best || isnan(val)) {
                                best = val;
                                bi = idx;
                            }
                        }
                    size_t o = (((size_t)n * s->OH + oh) * s->OW + ow) * s->C + c;
                    out[o] = best;
                    if (argmax) argmax[o] = bi;
                }
}

static int naive_avg_divisor(const usi_conv_shape *s, int oh, int ow, int cip) {
    int hstart = oh * s->SH - s->PT, wstart = ow * s->SW - s->PL;
    int hend = hstart + s->KH < s->H + s->PT ? hstart + s->KH : s->H + s->PT;
    int wend = wstart + s->KW < s->W + s->PL ? wstart + s->KW : s->W + s->PL;
    int pool_size = (hend - hstart) * (wend - wstart);
    if (cip) return pool_size;
    int cnt = 0;
    for (int ih = hstart; ih < hend; ih++)
        for (int iw = wstart; iw < wend; iw++)
            if (ih >= 0 && ih < s->H && iw >= 0 && iw < s->W) cnt++;
    return cnt;
}

USI_MULTIVERSION
void usi_avgpool2d_forward_naive(float *out, const float *x, const usi_conv_shape *s,
                                 int count_include_pad) {
    for (int n = 0; n < s->N; n++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++) {
                int div = naive_avg_divisor(s, oh, ow, count_include_pad);
                for (int c = 0; c < s->C; c++) {
                    double acc = 0.0;
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            int ih = oh * s->SH - s->PT + kh, iw = ow * s->SW - s->PL + kw;
                            if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                            acc += x[(((size_t)n * s->H + ih) * s->W + iw) * s->C + c];
                        }
                    out[(((size_t)n * s->OH + oh) * s->OW + ow) * s->C + c] =
                        div > 0 ? (float)(acc / div) : 0.0f;
                }
            }
}

USI_MULTIVERSION
void usi_avgpool2d_backward_naive(float *dx, const float *dout, const usi_conv_shape *s,
                                  int count_include_pad) {
    for (int n = 0; n < s->N; n++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++) {
                int div = naive_avg_divisor(s, oh, ow, count_include_pad);
                if (div <= 0) continue;
                for (int c = 0; c < s->C; c++) {
                    float g = dout[(((size_t)n * s->OH + oh) * s->OW + ow) * s->C + c] / (float)div;
                    for (int kh = 0; kh < s->KH; kh++)
                        for (int kw = 0; kw < s->KW; kw++) {
                            int ih = oh * s->SH - s->PT + kh, iw = ow * s->SW - s->PL + kw;
                            if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                            dx[(((size_t)n * s->H + ih) * s->W + iw) * s->C + c] += g;
                        }
                }
            }
}

USI_MULTIVERSION
void usi_adaptive_avgpool2d_forward_naive(float *out, const float *x, int N, int H, int W,
                                          int C, int OH, int OW) {
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int hs = (int)floor((double)oh * H / OH), he = (int)ceil((double)(oh + 1) * H / OH);
                int ws = (int)floor((double)ow * W / OW), we = (int)ceil((double)(ow + 1) * W / OW);
                for (int c = 0; c < C; c++) {
                    double acc = 0.0;
                    for (int ih = hs; ih < he; ih++)
                        for (int iw = ws; iw < we; iw++)
                            acc += x[(((size_t)n * H + ih) * W + iw) * C + c];
                    out[(((size_t)n * OH + oh) * OW + ow) * C + c] =
                        (float)(acc / ((he - hs) * (we - ws)));
                }
            }
}
