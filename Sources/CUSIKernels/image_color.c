// Pixel operations with Pillow's exact arithmetic: ImageOps (autocontrast, equalize, LUTs)
// and ImageEnhance (Image.blend in float32 with truncation, SMOOTH filter), plus colour
// conversions (libImaging/Convert.c).
#pragma STDC FP_CONTRACT OFF
#include "usi_image.h"
#include "usi_dispatch.h"

#include <stdlib.h>
#include <string.h>

USI_MULTIVERSION
void usi_image_apply_lut(uint8_t *image, size_t n_pixels, int channels, const uint8_t *lut) {
    size_t n = n_pixels * (size_t)channels;
    for (size_t i = 0; i < n; i++) image[i] = lut[image[i]];
}

USI_MULTIVERSION
void usi_image_apply_channel_luts(uint8_t *image, size_t n_pixels, int channels,
                                  const uint8_t *luts) {
    if (channels == 3) {
        const uint8_t *l0 = luts, *l1 = luts + 256, *l2 = luts + 512;
        for (size_t p = 0; p < n_pixels; p++) {
            uint8_t *px = image + 3 * p;
            px[0] = l0[px[0]];
            px[1] = l1[px[1]];
            px[2] = l2[px[2]];
        }
        return;
    }
    for (size_t p = 0; p < n_pixels; p++)
        for (int c = 0; c < channels; c++)
            image[p * channels + c] = luts[c * 256 + image[p * channels + c]];
}

USI_MULTIVERSION
void usi_image_histogram(const uint8_t *image, size_t n_pixels, int channels, int64_t *hist) {
    memset(hist, 0, sizeof(int64_t) * 256 * (size_t)channels);
    for (size_t p = 0; p < n_pixels; p++)
        for (int c = 0; c < channels; c++) hist[c * 256 + image[p * channels + c]]++;
}

USI_MULTIVERSION
void usi_image_autocontrast(uint8_t *image, size_t n_pixels, int channels) {
    int64_t *hist = malloc(sizeof(int64_t) * 256 * (size_t)channels);
    uint8_t *luts = malloc(256 * (size_t)channels);
    if (!hist || !luts) { free(hist); free(luts); return; }
    usi_image_histogram(image, n_pixels, channels, hist);
    for (int c = 0; c < channels; c++) {
        const int64_t *h = hist + c * 256;
        uint8_t *lut = luts + c * 256;
        int lo, hi;
        for (lo = 0; lo < 256; lo++) if (h[lo]) break;
        for (hi = 255; hi >= 0; hi--) if (h[hi]) break;
        if (hi <= lo) {
            for (int i = 0; i < 256; i++) lut[i] = (uint8_t)i;
        } else {
            double scale = 255.0 / (hi - lo);
            double offset = -lo * scale;
            for (int i = 0; i < 256; i++) {
                double v = i * scale + offset;
                int ix = (int)v;  // Python int() truncates toward zero
                lut[i] = (uint8_t)(ix < 0 ? 0 : (ix > 255 ? 255 : ix));
            }
        }
    }
    usi_image_apply_channel_luts(image, n_pixels, channels, luts);
    free(hist);
    free(luts);
}

USI_MULTIVERSION
void usi_image_equalize(uint8_t *image, size_t n_pixels, int channels) {
    int64_t *hist = malloc(sizeof(int64_t) * 256 * (size_t)channels);
    uint8_t *luts = malloc(256 * (size_t)channels);
    if (!hist || !luts) { free(hist); free(luts); return; }
    usi_image_histogram(image, n_pixels, channels, hist);
    for (int c = 0; c < channels; c++) {
        const int64_t *h = hist + c * 256;
        uint8_t *lut = luts + c * 256;
        int64_t total = 0, last = 0, nonzero = 0;
        for (int i = 0; i < 256; i++)
            if (h[i]) { total += h[i]; last = h[i]; nonzero++; }
        int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
        if (step == 0) {
            for (int i = 0; i < 256; i++) lut[i] = (uint8_t)i;
        } else {
            int64_t n = step / 2;
            for (int i = 0; i < 256; i++) {
                int64_t v = n / step;
                lut[i] = (uint8_t)(v > 255 ? 255 : v);
                n += h[i];
            }
        }
    }
    usi_image_apply_channel_luts(image, n_pixels, channels, luts);
    free(hist);
    free(luts);
}

// Image.blend(degenerate, image, alpha) for one sample, as libImaging/Blend.c.
static inline uint8_t usi_blend(int degenerate, int value, float alpha) {
    if (alpha >= 0 && alpha <= 1.0) return (uint8_t)(degenerate + alpha * (value - degenerate));
    float t = (float)(degenerate + alpha * (value - degenerate));
    if (t <= 0.0) return 0;
    if (t >= 255.0) return 255;
    return (uint8_t)t;
}

USI_MULTIVERSION
void usi_image_brightness(uint8_t *image, size_t n_pixels, int channels, float factor) {
    if (factor == 1.0f) return;
    size_t n = n_pixels * (size_t)channels;
    uint8_t lut[256];
    for (int i = 0; i < 256; i++) lut[i] = factor == 0.0f ? 0 : usi_blend(0, i, factor);
    for (size_t i = 0; i < n; i++) image[i] = lut[image[i]];
}

static inline uint8_t usi_luma(const uint8_t *rgb) {
    return (uint8_t)((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

USI_MULTIVERSION
void usi_image_color(uint8_t *image, size_t n_pixels, int channels, float factor) {
    if (channels != 3 || factor == 1.0f) return;
    for (size_t p = 0; p < n_pixels; p++) {
        uint8_t *px = image + 3 * p;
        int l = usi_luma(px);
        if (factor == 0.0f) {
            px[0] = px[1] = px[2] = (uint8_t)l;
        } else {
            px[0] = usi_blend(l, px[0], factor);
            px[1] = usi_blend(l, px[1], factor);
            px[2] = usi_blend(l, px[2], factor);
        }
    }
}

USI_MULTIVERSION
void usi_image_contrast(uint8_t *image, size_t n_pixels, int channels, float factor) {
    // mean of the L image (ImageStat over the histogram), rounded as int(mean + 0.5)
    int64_t hist[256];
    memset(hist, 0, sizeof hist);
    if (channels == 3) {
        for (size_t p = 0; p < n_pixels; p++) hist[usi_luma(image + 3 * p)]++;
    } else {
        for (size_t p = 0; p < n_pixels; p++) hist[image[p * channels]]++;
    }
    double sum = 0;
    for (int i = 0; i < 256; i++) sum += (double)(i * hist[i]);
    int mean = n_pixels ? (int)(sum / (double)n_pixels + 0.5) : 0;
    if (factor == 1.0f) return;
    uint8_t lut[256];
    for (int i = 0; i < 256; i++) lut[i] = factor == 0.0f ? (uint8_t)mean : usi_blend(mean, i, factor);
    usi_image_apply_lut(image, n_pixels, channels, lut);
}

// ImageFilter.SMOOTH: kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 in float32, offset 0 (+0.5 for
// rounding), border rows and columns copied (libImaging/Filter.c, ImagingFilter3x3).
USI_MULTIVERSION
static void usi_smooth(uint8_t *out, const uint8_t *in, int w, int h, int C) {
    const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    const float kernel[9] = {k1, k1, k1, k1, k5, k1, k1, k1, k1};
    const size_t stride = (size_t)w * C;
    memcpy(out, in, stride);
    for (int y = 1; y < h - 1; y++) {
        const uint8_t *r_1 = in + (size_t)(y - 1) * stride;
        const uint8_t *r0 = in + (size_t)y * stride;
        const uint8_t *r1 = in + (size_t)(y + 1) * stride;
        uint8_t *o = out + (size_t)y * stride;
        memcpy(o, r0, (size_t)C);
        for (int x = 1; x < w - 1; x++) {
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)x * C + c;
                float ss = 0.5f;
                ss += (float)r1[i - C] * kernel[0] + (float)r1[i] * kernel[1] + (float)r1[i + C] * kernel[2];
                ss += (float)r0[i - C] * kernel[3] + (float)r0[i] * kernel[4] + (float)r0[i + C] * kernel[5];
                ss += (float)r_1[i - C] * kernel[6] + (float)r_1[i] * kernel[7] + (float)r_1[i + C] * kernel[8];
                ss = ss < 0.0f ? 0.0f : ss;
                ss = ss > 255.0f ? 255.0f : ss;
                o[i] = (uint8_t)ss;
            }
        }
        if (w > 1) memcpy(o + (size_t)(w - 1) * C, r0 + (size_t)(w - 1) * C, (size_t)C);
    }
    if (h > 1) memcpy(out + (size_t)(h - 1) * stride, in + (size_t)(h - 1) * stride, stride);
}

USI_MULTIVERSION
void usi_image_sharpness(uint8_t *image, int w, int h, int channels, float factor,
                         uint8_t *scratch) {
    if (factor == 1.0f || w < 3 || h < 3) return;  // PIL returns a copy for tiny images
    usi_smooth(scratch, image, w, h, channels);
    size_t n = (size_t)w * h * channels;
    if (factor == 0.0f) {
        memcpy(image, scratch, n);
        return;
    }
    for (size_t i = 0; i < n; i++) image[i] = usi_blend(scratch[i], image[i], factor);
}

USI_MULTIVERSION
void usi_image_rgb_to_gray(uint8_t *dst, const uint8_t *src, size_t n_pixels) {
    for (size_t p = 0; p < n_pixels; p++) dst[p] = usi_luma(src + 3 * p);
}

USI_MULTIVERSION
void usi_image_keep_channels(uint8_t *dst, const uint8_t *src, size_t n_pixels, int src_channels,
                             int dst_channels) {
    // forwards: pixel p is written at or before where it was read, so dst may alias src
    for (size_t p = 0; p < n_pixels; p++)
        for (int c = 0; c < dst_channels; c++)
            dst[p * (size_t)dst_channels + c] = src[p * (size_t)src_channels + c];
}

USI_MULTIVERSION
void usi_image_gray16_to_gray8_clip(uint8_t *dst, const uint16_t *src, size_t n_pixels) {
    for (size_t p = 0; p < n_pixels; p++) {
        uint16_t v = src[p];
        dst[p] = v > 255 ? 255 : (uint8_t)v;
    }
}

USI_MULTIVERSION
void usi_image_gray_to_rgb(uint8_t *dst, const uint8_t *src, size_t n_pixels) {
    // iterate backwards so dst may alias src (in-place expansion)
    for (size_t p = n_pixels; p-- > 0;) {
        uint8_t v = src[p];
        dst[3 * p] = dst[3 * p + 1] = dst[3 * p + 2] = v;
    }
}

USI_MULTIVERSION
void usi_image_cmyk_to_rgb(uint8_t *dst, const uint8_t *src, size_t n_pixels) {
    // src holds libjpeg's raw (Adobe-inverted) CMYK; PIL reads it as "CMYK;I", i.e.
    // C' = 255 - raw, then cmyk2rgb: out = clip(nk - MULDIV255(C', nk)), nk = 255 - K'.
    for (size_t p = 0; p < n_pixels; p++) {
        const uint8_t *in = src + 4 * p;
        int nk = in[3];  // 255 - (255 - raw K)
        for (int c = 0; c < 3; c++) {
            int cc = 255 - in[c];
            int tmp = cc * nk + 128;
            int v = nk - (((tmp >> 8) + tmp) >> 8);
            dst[3 * p + c] = (uint8_t)(v <= 0 ? 0 : (v < 256 ? v : 255));
        }
    }
}
