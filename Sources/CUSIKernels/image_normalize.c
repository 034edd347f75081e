// uint8 [n, C_in] -> normalised float [n, C_out], the last step of every transform.
#include "usi_image.h"
#include "usi_dispatch.h"

USI_MULTIVERSION
void usi_image_normalize(float *dst, const uint8_t *src, size_t n_pixels, int in_channels,
                         int out_channels, const float *mean, const float *std) {
    // y = (v / 255 - mean) / std = v * a + b with a = 1 / (255 std), b = -mean / std,
    // evaluated per channel through a 256-entry table (exactly the same value per code).
    float table[4][256];
    int tc = out_channels < 4 ? out_channels : 4;
    for (int c = 0; c < tc; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    if (in_channels == out_channels && out_channels == 3) {
        for (size_t p = 0; p < n_pixels; p++) {
            dst[3 * p + 0] = table[0][src[3 * p + 0]];
            dst[3 * p + 1] = table[1][src[3 * p + 1]];
            dst[3 * p + 2] = table[2][src[3 * p + 2]];
        }
    } else if (in_channels == 1 && out_channels == 3) {
        for (size_t p = 0; p < n_pixels; p++) {
            uint8_t v = src[p];
            dst[3 * p + 0] = table[0][v];
            dst[3 * p + 1] = table[1][v];
            dst[3 * p + 2] = table[2][v];
        }
    } else if (in_channels == 3 && out_channels == 1) {
        for (size_t p = 0; p < n_pixels; p++) {
            const uint8_t *px = src + 3 * p;
            uint8_t l = (uint8_t)((px[0] * 19595 + px[1] * 38470 + px[2] * 7471 + 0x8000) >> 16);
            dst[p] = table[0][l];
        }
    } else if (in_channels == out_channels && out_channels <= 4) {
        size_t n = n_pixels * (size_t)out_channels;
        for (size_t i = 0; i < n; i++) dst[i] = table[i % out_channels][src[i]];
    } else {
        size_t n = n_pixels * (size_t)out_channels;
        for (size_t i = 0; i < n; i++) {
            int c = (int)(i % out_channels);
            dst[i] = ((float)src[(i / out_channels) * in_channels + (c % in_channels)] / 255.0f -
                      mean[c]) / std[c];
        }
    }
}
