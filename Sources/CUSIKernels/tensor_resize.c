#include <stddef.h>
#include "usi_resize.h"
#include "usi_dispatch.h"

// Source coordinate and weights along one axis, PyTorch's align_corners=False rule.
static void axis_weights(int out_size, int in_size, int i, int *i0, int *i1, float *w1) {
    float scale = (float)in_size / (float)out_size;
    float src = (i + 0.5f) * scale - 0.5f;
    if (src < 0) src = 0;
    int lo = (int)src;
    if (lo > in_size - 1) lo = in_size - 1;
    *i0 = lo;
    *i1 = lo < in_size - 1 ? lo + 1 : lo;
    *w1 = src - (float)lo;
}

USI_MULTIVERSION
void usi_resize_bilinear_nhwc(float *out, const float *x, int N, int H, int W, int C, int OH, int OW) {
    for (int n = 0; n < N; n++) {
        const float *img = x + (size_t)n * H * W * C;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1; float wh;
            axis_weights(OH, H, oh, &h0, &h1, &wh);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1; float ww;
                axis_weights(OW, W, ow, &w0, &w1, &ww);
                const float *a = img + ((size_t)h0 * W + w0) * C, *b = img + ((size_t)h0 * W + w1) * C;
                const float *c = img + ((size_t)h1 * W + w0) * C, *d = img + ((size_t)h1 * W + w1) * C;
                float *o = out + (((size_t)n * OH + oh) * OW + ow) * C;
                for (int k = 0; k < C; k++) {
                    float top = a[k] + (b[k] - a[k]) * ww, bottom = c[k] + (d[k] - c[k]) * ww;
                    o[k] = top + (bottom - top) * wh;
                }
            }
        }
    }
}
