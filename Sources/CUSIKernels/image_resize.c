// Antialiased resize with Pillow's exact semantics (libImaging/Resample.c), crop and flip.
// Pillow: two separable passes (horizontal first, only over the rows the vertical pass
// needs), coefficients normalised to sum 1 and stored as 22-bit fixed point, each pass
// rounds and clips to uint8.
#pragma STDC FP_CONTRACT OFF
#include "usi_image.h"
#include "usi_dispatch.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define USI_PRECISION_BITS (32 - 8 - 2)

static inline double usi_bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static inline double usi_bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static inline uint8_t usi_clip8_fixed(int v) {
    v >>= USI_PRECISION_BITS;  // arithmetic shift, as Pillow's lookup table index
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc. Returns ksize (0 on failure).
USI_MULTIVERSION
static int usi_precompute_coeffs(int in_size, float in0, float in1, int out_size, int filter,
                                 int **bounds_out, int32_t **kk_out) {
    double support_base = filter == USI_RESAMPLE_BICUBIC ? 2.0 : 1.0;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_base * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (out_size <= 0 || ksize <= 0 || out_size > INT_MAX / (ksize * (int)sizeof(double)))
        return 0;
    double *pre = malloc((size_t)ksize * sizeof(double));
    int32_t *kk = malloc((size_t)out_size * ksize * sizeof(int32_t));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    if (!pre || !kk || !bounds) {
        free(pre); free(kk); free(bounds);
        return 0;
    }
    double inv_filterscale = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x;
        for (x = 0; x < xmax; x++) {
            double arg = (x + xmin - center + 0.5) * inv_filterscale;
            double w = filter == USI_RESAMPLE_BICUBIC ? usi_bicubic_filter(arg)
                                                     : usi_bilinear_filter(arg);
            pre[x] = w;
            ww += w;
        }
        if (ww != 0.0)
            for (x = 0; x < xmax; x++) pre[x] /= ww;
        for (; x < ksize; x++) pre[x] = 0;
        int32_t *k = &kk[(size_t)xx * ksize];
        for (x = 0; x < ksize; x++) {
            if (pre[x] < 0)
                k[x] = (int32_t)(-0.5 + pre[x] * (1 << USI_PRECISION_BITS));
            else
                k[x] = (int32_t)(0.5 + pre[x] * (1 << USI_PRECISION_BITS));
        }
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    free(pre);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

// Horizontal pass: rows [row0, row0 + rows) of src -> out [rows, out_w, C].
USI_MULTIVERSION
static void usi_resample_horizontal(uint8_t *out, int out_w, const uint8_t *src, int src_stride,
                                    int row0, int rows, int C, int ksize, const int *bounds,
                                    const int32_t *kk) {
    const int half = 1 << (USI_PRECISION_BITS - 1);
    for (int y = 0; y < rows; y++) {
        const uint8_t *line = src + (size_t)(y + row0) * src_stride;
        uint8_t *o = out + (size_t)y * out_w * C;
        if (C == 3) {
            for (int xx = 0; xx < out_w; xx++) {
                int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
                const int32_t *k = &kk[(size_t)xx * ksize];
                const uint8_t *p = line + (size_t)xmin * 3;
                int s0 = half, s1 = half, s2 = half;
                for (int x = 0; x < xmax; x++) {
                    int32_t w = k[x];
                    s0 += p[3 * x + 0] * w;
                    s1 += p[3 * x + 1] * w;
                    s2 += p[3 * x + 2] * w;
                }
                o[3 * xx + 0] = usi_clip8_fixed(s0);
                o[3 * xx + 1] = usi_clip8_fixed(s1);
                o[3 * xx + 2] = usi_clip8_fixed(s2);
            }
        } else {
            for (int xx = 0; xx < out_w; xx++) {
                int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
                const int32_t *k = &kk[(size_t)xx * ksize];
                for (int c = 0; c < C; c++) {
                    int s = half;
                    for (int x = 0; x < xmax; x++) s += line[(size_t)(xmin + x) * C + c] * k[x];
                    o[(size_t)xx * C + c] = usi_clip8_fixed(s);
                }
            }
        }
    }
}

// Vertical pass: src [*, w, C] (row stride src_stride) -> out [out_h, w, C].
USI_MULTIVERSION
static void usi_resample_vertical(uint8_t *out, int out_h, int w, const uint8_t *src,
                                  int src_stride, int C, int ksize, const int *bounds,
                                  const int32_t *kk, int row_shift) {
    const int half = 1 << (USI_PRECISION_BITS - 1);
    const size_t n = (size_t)w * C;
    int *acc = malloc(n * sizeof(int));
    if (!acc) return;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = bounds[yy * 2] - row_shift, ymax = bounds[yy * 2 + 1];
        const int32_t *k = &kk[(size_t)yy * ksize];
        for (size_t i = 0; i < n; i++) acc[i] = half;
        for (int y = 0; y < ymax; y++) {
            const uint8_t *line = src + (size_t)(ymin + y) * src_stride;
            int32_t wgt = k[y];
            for (size_t i = 0; i < n; i++) acc[i] += line[i] * wgt;
        }
        uint8_t *o = out + (size_t)yy * n;
        for (size_t i = 0; i < n; i++) o[i] = usi_clip8_fixed(acc[i]);
    }
    free(acc);
}

USI_MULTIVERSION
int usi_image_resize(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh,
                     int src_stride, int channels, const float box[4], int filter) {
    if (!dst || !src || dw <= 0 || dh <= 0 || sw <= 0 || sh <= 0 || channels <= 0) return -1;
    if (filter != USI_RESAMPLE_BILINEAR && filter != USI_RESAMPLE_BICUBIC) return -1;
    if (box[0] < 0 || box[1] < 0 || box[2] > sw || box[3] > sh || box[2] <= box[0] ||
        box[3] <= box[1])
        return -1;
    const int C = channels;
    int need_h = dw != sw || box[0] != 0 || box[2] != dw;
    int need_v = dh != sh || box[1] != 0 || box[3] != dh;

    int *bounds_v = NULL, *bounds_h = NULL;
    int32_t *kk_v = NULL, *kk_h = NULL;
    int ksize_v = usi_precompute_coeffs(sh, box[1], box[3], dh, filter, &bounds_v, &kk_v);
    if (!ksize_v) return -1;
    int ybox_first = bounds_v[0];
    int ybox_last = bounds_v[dh * 2 - 2] + bounds_v[dh * 2 - 1];

    if (!need_h && !need_v) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dw * C, src + (size_t)y * src_stride, (size_t)dw * C);
        free(bounds_v); free(kk_v);
        return 0;
    }
    if (need_h) {
        int ksize_h = usi_precompute_coeffs(sw, box[0], box[2], dw, filter, &bounds_h, &kk_h);
        if (!ksize_h) { free(bounds_v); free(kk_v); return -1; }
        if (!need_v) {
            usi_resample_horizontal(dst, dw, src, src_stride, 0, dh, C, ksize_h, bounds_h, kk_h);
        } else {
            int rows = ybox_last - ybox_first;
            uint8_t *tmp = malloc((size_t)rows * dw * C);
            if (!tmp) { free(bounds_v); free(kk_v); free(bounds_h); free(kk_h); return -1; }
            usi_resample_horizontal(tmp, dw, src, src_stride, ybox_first, rows, C, ksize_h,
                                    bounds_h, kk_h);
            usi_resample_vertical(dst, dh, dw, tmp, dw * C, C, ksize_v, bounds_v, kk_v,
                                  ybox_first);
            free(tmp);
        }
        free(bounds_h); free(kk_h);
    } else {
        usi_resample_vertical(dst, dh, dw, src, src_stride, C, ksize_v, bounds_v, kk_v, 0);
    }
    free(bounds_v); free(kk_v);
    return 0;
}

USI_MULTIVERSION
void usi_image_crop(uint8_t *dst, const uint8_t *src, int src_stride, int x, int y, int w,
                    int h, int channels) {
    for (int r = 0; r < h; r++)
        memcpy(dst + (size_t)r * w * channels,
               src + (size_t)(y + r) * src_stride + (size_t)x * channels, (size_t)w * channels);
}

USI_MULTIVERSION
void usi_image_hflip(uint8_t *image, int w, int h, int channels) {
    for (int y = 0; y < h; y++) {
        uint8_t *row = image + (size_t)y * w * channels;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            for (int c = 0; c < channels; c++) {
                uint8_t t = row[a * channels + c];
                row[a * channels + c] = row[b * channels + c];
                row[b * channels + c] = t;
            }
        }
    }
}
