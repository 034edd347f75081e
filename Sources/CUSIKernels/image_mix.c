// Mixup / CutMix on a float batch x [N, H, W, C] with timm's pairing: sample i is mixed
// with sample N-1-i of the unmixed batch (x.flip(0)). An odd middle sample mixes with
// itself, i.e. stays unchanged.
#include "usi_image.h"
#include "usi_dispatch.h"

USI_MULTIVERSION
void usi_batch_mixup(float *x, int n, size_t sample_size, float lam) {
    const float other = 1.0f - lam;
    for (int i = 0; i < n / 2; i++) {
        float *a = x + (size_t)i * sample_size;
        float *b = x + (size_t)(n - 1 - i) * sample_size;
        for (size_t k = 0; k < sample_size; k++) {
            float va = a[k], vb = b[k];
            a[k] = va * lam + vb * other;
            b[k] = vb * lam + va * other;
        }
    }
}

USI_MULTIVERSION
void usi_batch_cutmix(float *x, int n, int h, int w, int c, int y0, int y1, int x0, int x1) {
    if (y1 <= y0 || x1 <= x0) return;
    const size_t sample = (size_t)h * w * c;
    const size_t span = (size_t)(x1 - x0) * c;
    for (int i = 0; i < n / 2; i++) {
        float *a = x + (size_t)i * sample;
        float *b = x + (size_t)(n - 1 - i) * sample;
        for (int y = y0; y < y1; y++) {
            float *ra = a + ((size_t)y * w + x0) * c;
            float *rb = b + ((size_t)y * w + x0) * c;
            for (size_t k = 0; k < span; k++) {
                float t = ra[k];
                ra[k] = rb[k];
                rb[k] = t;
            }
        }
    }
}
