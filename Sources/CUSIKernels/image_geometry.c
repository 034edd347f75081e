// Affine warps with Pillow's exact sampling (libImaging/Geometry.c, ImagingGenericTransform):
// each output pixel centre (x + .5, y + .5) is mapped through the matrix; points outside
// the source keep the fill colour; bicubic uses Pillow's a = -1 cubic and truncates.
#pragma STDC FP_CONTRACT OFF
#include "usi_image.h"
#include "usi_dispatch.h"

#include <math.h>
#include <string.h>

#define USI_FLOOR(v) ((v) < 0.0 ? ((int)floor(v)) : ((int)(v)))

static inline int usi_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

static inline uint8_t usi_trunc8(double v) {
    if (v <= 0.0) return 0;
    if (v >= 255.0) return 255;
    return (uint8_t)v;
}

#define USI_CUBIC(v, v1, v2, v3, v4, d)                  \
    do {                                                 \
        double p1 = (v2);                                \
        double p2 = -(v1) + (v3);                        \
        double p3 = 2 * ((v1) - (v2)) + (v3) - (v4);     \
        double p4 = -(v1) + (v2) - (v3) + (v4);          \
        v = p1 + (d) * (p2 + (d) * (p3 + (d) * p4));     \
    } while (0)

USI_MULTIVERSION
static void usi_sample_bicubic(uint8_t *out, const uint8_t *src, int w, int h, int C,
                               double xin, double yin) {
    xin -= 0.5;
    yin -= 0.5;
    int x = USI_FLOOR(xin), y = USI_FLOOR(yin);
    double dx = xin - x, dy = yin - y;
    x--;
    y--;
    int xs[4], rows[4];
    for (int i = 0; i < 4; i++) xs[i] = usi_clampi(x + i, 0, w - 1) * C;
    // Pillow clamps the first row and repeats the previous row for rows past the edge,
    // which is the same as clamping every row index.
    for (int i = 0; i < 4; i++) rows[i] = usi_clampi(y + i, 0, h - 1);
    for (int c = 0; c < C; c++) {
        double v[4];
        for (int r = 0; r < 4; r++) {
            const uint8_t *in = src + (size_t)rows[r] * w * C + c;
            double a = in[xs[0]], b = in[xs[1]], cc = in[xs[2]], d = in[xs[3]];
            USI_CUBIC(v[r], a, b, cc, d, dx);
        }
        double res;
        USI_CUBIC(res, v[0], v[1], v[2], v[3], dy);
        out[c] = usi_trunc8(res);
    }
}

USI_MULTIVERSION
static void usi_sample_bilinear(uint8_t *out, const uint8_t *src, int w, int h, int C,
                                double xin, double yin) {
    xin -= 0.5;
    yin -= 0.5;
    int x = USI_FLOOR(xin), y = USI_FLOOR(yin);
    double dx = xin - x, dy = yin - y;
    int x0 = usi_clampi(x, 0, w - 1) * C, x1 = usi_clampi(x + 1, 0, w - 1) * C;
    int r0 = usi_clampi(y, 0, h - 1), r1 = usi_clampi(y + 1, 0, h - 1);
    for (int c = 0; c < C; c++) {
        const uint8_t *a = src + (size_t)r0 * w * C + c;
        const uint8_t *b = src + (size_t)r1 * w * C + c;
        double v1 = a[x0] + (a[x1] - a[x0]) * dx;
        double v2 = b[x0] + (b[x1] - b[x0]) * dx;
        double v = v1 + (v2 - v1) * dy;
        out[c] = (uint8_t)v;
    }
}

USI_MULTIVERSION
void usi_image_affine(uint8_t *dst, const uint8_t *src, int w, int h, int channels,
                      const double m[6], int filter, const uint8_t *fill) {
    const int C = channels;
    for (int y = 0; y < h; y++) {
        uint8_t *out = dst + (size_t)y * w * C;
        double yin0 = y + 0.5;
        for (int x = 0; x < w; x++, out += C) {
            double xin0 = x + 0.5;
            double xx = m[0] * xin0 + m[1] * yin0 + m[2];
            double yy = m[3] * xin0 + m[4] * yin0 + m[5];
            if (xx < 0.0 || xx >= w || yy < 0.0 || yy >= h) {
                memcpy(out, fill, (size_t)C);
                continue;
            }
            if (filter == USI_RESAMPLE_BICUBIC) {
                usi_sample_bicubic(out, src, w, h, C, xx, yy);
            } else if (filter == USI_RESAMPLE_BILINEAR) {
                usi_sample_bilinear(out, src, w, h, C, xx, yy);
            } else {
                // Pillow's nearest path for affine uses integer truncation of the mapped
                // centre (ImagingTransformAffine); floor matches for in-range points.
                int xi = (int)xx, yi = (int)yy;
                memcpy(out, src + ((size_t)yi * w + xi) * C, (size_t)C);
            }
        }
    }
}
