// Optimiser loops beside usi_adamw_step: SGD (torch.optim.SGD, single-tensor path), the EMA
// of weights (timm ModelEmaV3's lerp), and the sum of squares behind gradient clipping.
// Scalars are formed in double and applied in float, in PyTorch's order of operations.
#include "usi_internal.h"
#include "usi_optim.h"

// ----------------------------------------------------------------------------------------
// SGD

typedef struct {
    float *p, *buf;
    const float *g;
    float neg_lr, momentum, keep, wd;
    int nesterov, first;
} sgd_ctx;

USI_MULTIVERSION
static void sgd_range(void *vctx, int64_t b, int64_t e) {
    const sgd_ctx *k = (const sgd_ctx *)vctx;
    float *restrict p = k->p, *restrict buf = k->buf;
    const float *restrict g = k->g;
    const float neg_lr = k->neg_lr, mu = k->momentum, keep = k->keep, wd = k->wd;
    if (!buf) {  // plain SGD
        for (int64_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            p[i] = p[i] + neg_lr * d;
        }
        return;
    }
    if (k->first) {
        for (int64_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            float u = k->nesterov ? d + mu * d : d;
            p[i] = p[i] + neg_lr * u;
        }
        return;
    }
    if (k->nesterov) {
        for (int64_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            float m = buf[i] * mu + keep * d;
            buf[i] = m;
            p[i] = p[i] + neg_lr * (d + mu * m);
        }
    } else {
        for (int64_t i = b; i < e; i++) {
            float d = g[i] + wd * p[i];
            float m = buf[i] * mu + keep * d;
            buf[i] = m;
            p[i] = p[i] + neg_lr * m;
        }
    }
}

// param, grad, momentum_buffer [n] (buffer NULL when momentum == 0).
USI_MULTIVERSION
void usi_sgd_step(float *param, const float *grad, float *momentum_buffer, size_t n, float lr,
                  float momentum, float dampening, float weight_decay, int nesterov,
                  int first_step) {
    if (n == 0) return;
    sgd_ctx k = {
        param, momentum != 0.0f ? momentum_buffer : NULL, grad,
        (float)(-(double)lr), momentum, (float)(1.0 - (double)dampening), weight_decay,
        nesterov != 0, first_step != 0,
    };
    usi_parallel_range((int64_t)n, 4, sgd_range, &k);
}

USI_MULTIVERSION
void usi_sgd_step_naive(float *param, const float *grad, float *momentum_buffer, size_t n,
                        float lr, float momentum, float dampening, float weight_decay,
                        int nesterov, int first_step) {
    for (size_t i = 0; i < n; i++) {
        float d = grad[i] + weight_decay * param[i];
        if (momentum != 0.0f) {
            float m = first_step ? d
                                 : momentum_buffer[i] * momentum + (float)(1.0 - (double)dampening) * d;
            momentum_buffer[i] = m;
            d = nesterov ? d + momentum * m : m;
        }
        param[i] = param[i] + (float)(-(double)lr) * d;
    }
}

// ----------------------------------------------------------------------------------------
// EMA: ema.lerp_(x, w) with w = 1 - decay (PyTorch's lerp: the form depends on w < 0.5).

typedef struct {
    float *ema;
    const float *x;
    float w;
} ema_ctx;

USI_MULTIVERSION
static void ema_range(void *vctx, int64_t b, int64_t e) {
    const ema_ctx *k = (const ema_ctx *)vctx;
    float *restrict a = k->ema;
    const float *restrict x = k->x;
    const float w = k->w;
    if (w < 0.5f) {
        for (int64_t i = b; i < e; i++) a[i] = a[i] + w * (x[i] - a[i]);
    } else {
        const float wc = 1.0f - w;
        for (int64_t i = b; i < e; i++) a[i] = x[i] - (x[i] - a[i]) * wc;
    }
}

// ema, x [n]
USI_MULTIVERSION
void usi_ema_update(float *ema, const float *x, size_t n, double decay) {
    if (n == 0) return;
    ema_ctx k = {ema, x, (float)(1.0 - decay)};
    usi_parallel_range((int64_t)n, 1, ema_range, &k);
}

USI_MULTIVERSION
void usi_ema_update_naive(float *ema, const float *x, size_t n, double decay) {
    for (size_t i = 0; i < n; i++) ema[i] = (float)(decay * ema[i] + (1.0 - decay) * x[i]);
}

// ----------------------------------------------------------------------------------------
// Sum of squares (gradient clipping), deterministic for any thread count.

USI_MULTIVERSION
static double sumsq_contig(const float *x, int64_t n) {
    // Eight double lanes so the loop vectorises without reassociating a single accumulator.
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    double s = 0.0;
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

USI_MULTIVERSION
double usi_optim_sum_squares(const float *x, size_t n) {
    return usi_chunked_reduce(x, (int64_t)n, sumsq_contig);
}
