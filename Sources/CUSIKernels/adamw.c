// AdamW (torch.optim.AdamW, non-amsgrad, single-tensor path), elementwise over flat storage.
// Scalars are formed in double and applied in float, in PyTorch's order of operations:
//   p *= 1 - lr*wd;  m.lerp_(g, 1-b1);  v = v*b2 + (1-b2)*g*g;
//   denom = sqrt(v)/sqrt(bc2) + eps;  p += -(lr/bc1) * (m / denom).
#include "usi_internal.h"

typedef struct {
    float *p, *m, *v;
    const float *g;
    float decay, w1, b2, w2, bc2s, eps, neg_step;
} adamw_ctx;

USI_MULTIVERSION
static void adamw_range(void *vctx, int64_t b, int64_t e) {
    const adamw_ctx *k = (const adamw_ctx *)vctx;
    float *restrict p = k->p, *restrict m = k->m, *restrict v = k->v;
    const float *restrict g = k->g;
    const float decay = k->decay, w1 = k->w1, b2 = k->b2, w2 = k->w2, bc2s = k->bc2s,
                eps = k->eps, ns = k->neg_step;
    const int lerp_low = w1 < 0.5f;
    const float w1c = 1.0f - w1;
    for (int64_t i = b; i < e; i++) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = lerp_low ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * w1c;
        float vi = v[i] * b2 + w2 * gi * gi;
        float denom = sqrtf(vi) / bc2s + eps;
        p[i] = pi + ns * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

// param, grad, m, v [n]; step is 1-based (after increment).
USI_MULTIVERSION
void usi_adamw_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    if (n == 0) return;
    if (step < 1) step = 1;
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    adamw_ctx k = {
        param, m, v, grad,
        (float)(1.0 - (double)lr * (double)weight_decay),
        (float)(1.0 - (double)beta1),
        beta2,
        (float)(1.0 - (double)beta2),
        (float)sqrt(bc2),
        eps,
        (float)(-((double)lr / bc1)),
    };
    usi_parallel_range((int64_t)n, 8, adamw_range, &k);
}
