// Activations, PyTorch definitions and gradient conventions. x, y [n].
// Forward: y = f(x). Backward: dx += dy * f'(x) (reads y for sigmoid/tanh when given).
// The fast loops use branch-free vectorisable exp/tanh/erfc from usi_internal.h; the naive
// references use libm in double.
#include "usi_internal.h"

#define SQRT_2_OVER_PI 0.79788456080286535588f
#define INV_SQRT_2PI 0.39894228040143267794f

typedef struct {
    int kind;
    float *y;        // forward output / backward dx
    const float *x;
    const float *dy;
    const float *yy; // saved forward output (backward), may be NULL
    float alpha;
} act_ctx;

USI_MULTIVERSION
static void act_fwd_range(void *v, int64_t b, int64_t e) {
    const act_ctx *c = (const act_ctx *)v;
    float *restrict y = c->y + b;
    const float *restrict x = c->x + b;
    int64_t n = e - b;
    float alpha = c->alpha;
    switch (c->kind) {
    case USI_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case USI_RELU6:
        for (int64_t i = 0; i < n; i++) {
            float v0 = x[i] > 0.0f ? x[i] : 0.0f;
            y[i] = v0 < 6.0f ? v0 : 6.0f;
        }
        break;
    case USI_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * alpha;
        break;
    case USI_GELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * usi_normal_cdf(x[i]);
        break;
    case USI_GELU_TANH:
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i];
            float inner = SQRT_2_OVER_PI * (xi + 0.044715f * xi * xi * xi);
            y[i] = 0.5f * xi * (1.0f + usi_tanhf(inner));
        }
        break;
    case USI_SILU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + usi_expf(-x[i]));
        break;
    case USI_HARDSWISH:
        for (int64_t i = 0; i < n; i++) {
            float r = x[i] + 3.0f;
            r = r > 0.0f ? r : 0.0f;
            r = r < 6.0f ? r : 6.0f;
            y[i] = x[i] * r / 6.0f;
        }
        break;
    case USI_HARDSIGMOID:
        for (int64_t i = 0; i < n; i++) {
            float r = x[i] + 3.0f;
            r = r > 0.0f ? r : 0.0f;
            r = r < 6.0f ? r : 6.0f;
            y[i] = r / 6.0f;
        }
        break;
    case USI_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + usi_expf(-x[i]));
        break;
    case USI_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = usi_tanhf(x[i]);
        break;
    default:
        break;
    }
}

USI_MULTIVERSION
static void act_bwd_range(void *v, int64_t b, int64_t e) {
    const act_ctx *c = (const act_ctx *)v;
    float *restrict dx = c->y + b;
    const float *restrict x = c->x ? c->x + b : NULL;
    const float *restrict dy = c->dy + b;
    const float *restrict y = c->yy ? c->yy + b : NULL;
    int64_t n = e - b;
    float alpha = c->alpha;
    switch (c->kind) {
    case USI_RELU:
        if (x)
            for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
        else
            for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case USI_RELU6:
        for (int64_t i = 0; i < n; i++) dx[i] += (x[i] > 0.0f && x[i] < 6.0f) ? dy[i] : 0.0f;
        break;
    case USI_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : dy[i] * alpha;
        break;
    case USI_GELU:
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i];
            float pdf = INV_SQRT_2PI * usi_expf(-0.5f * xi * xi);
            dx[i] += dy[i] * (usi_normal_cdf(xi) + xi * pdf);
        }
        break;
    case USI_GELU_TANH:
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i];
            float x2 = xi * xi;
            float inner = SQRT_2_OVER_PI * (xi + 0.044715f * x2 * xi);
            float t = usi_tanhf(inner);
            float left = 0.5f * xi, right = 1.0f + t;
            float dleft = 0.5f * right;
            float dright = left * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x2);
            dx[i] += dy[i] * (dleft + dright);
        }
        break;
    case USI_SILU:
        for (int64_t i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + usi_expf(-x[i]));
            dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case USI_HARDSWISH:
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i];
            float g = xi <= -3.0f ? 0.0f : (xi < 3.0f ? xi / 3.0f + 0.5f : 1.0f);  // torch 2.x: 0 at -3, 1 at 3
            dx[i] += dy[i] * g;
        }
        break;
    case USI_HARDSIGMOID:
        for (int64_t i = 0; i < n; i++)
            dx[i] += (x[i] > -3.0f && x[i] < 3.0f) ? dy[i] / 6.0f : 0.0f;
        break;
    case USI_SIGMOID:
        if (y)
            for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i]) * y[i];
        else
            for (int64_t i = 0; i < n; i++) {
                float s = 1.0f / (1.0f + usi_expf(-x[i]));
                dx[i] += dy[i] * (1.0f - s) * s;
            }
        break;
    case USI_TANH:
        if (y)
            for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        else
            for (int64_t i = 0; i < n; i++) {
                float t = usi_tanhf(x[i]);
                dx[i] += dy[i] * (1.0f - t * t);
            }
        break;
    default:
        break;
    }
}

// y [n] = f(x [n])
USI_MULTIVERSION
void usi_activation_forward(int kind, float *y, const float *x, size_t n, float alpha) {
    act_ctx c = {kind, y, x, NULL, NULL, alpha};
    usi_parallel_range((int64_t)n, 4, act_fwd_range, &c);
}

// dx [n] += dy [n] * f'(x [n]); y (the forward output) may be NULL. x may be NULL only for
// relu (then y is used), sigmoid and tanh (y is required then).
USI_MULTIVERSION
void usi_activation_backward(int kind, float *dx, const float *dy, const float *x,
                             const float *y, size_t n, float alpha) {
    if (!dx) return;
    act_ctx c = {kind, dx, x, dy, y, alpha};
    usi_parallel_range((int64_t)n, 4, act_bwd_range, &c);
}

// ----------------------------------------------------------------------------------------
// Naive references: libm in double, one element at a time.

USI_MULTIVERSION
static double naive_f(int kind, double x, double alpha) {
    switch (kind) {
    case USI_RELU: return x > 0 ? x : 0;
    case USI_RELU6: return x < 0 ? 0 : (x > 6 ? 6 : x);
    case USI_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case USI_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));  // = 0.5x(1+erf(x/sqrt2)), no cancellation
    case USI_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / USI_PI) * (x + 0.044715 * x * x * x)));
    case USI_SILU: return x / (1.0 + exp(-x));
    case USI_HARDSWISH: {
        double r = x + 3 < 0 ? 0 : (x + 3 > 6 ? 6 : x + 3);
        return x * r / 6.0;
    }
    case USI_HARDSIGMOID: {
        double r = x + 3 < 0 ? 0 : (x + 3 > 6 ? 6 : x + 3);
        return r / 6.0;
    }
    case USI_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case USI_TANH: return tanh(x);
    default: return 0;
    }
}

USI_MULTIVERSION
static double naive_df(int kind, double x, double alpha) {
    switch (kind) {
    case USI_RELU: return x > 0 ? 1 : 0;
    case USI_RELU6: return (x > 0 && x < 6) ? 1 : 0;
    case USI_LEAKY_RELU: return x > 0 ? 1 : alpha;
    case USI_GELU: return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * USI_PI);
    case USI_GELU_TANH: {
        double k = sqrt(2.0 / USI_PI);
        double t = tanh(k * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    }
    case USI_SILU: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    case USI_HARDSWISH: return x <= -3 ? 0 : (x < 3 ? (2 * x + 3) / 6.0 : 1);
    case USI_HARDSIGMOID: return (x > -3 && x < 3) ? 1.0 / 6.0 : 0;
    case USI_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 - s);
    }
    case USI_TANH: {
        double t = tanh(x);
        return 1 - t * t;
    }
    default: return 0;
    }
}

USI_MULTIVERSION
void usi_activation_forward_naive(int kind, float *y, const float *x, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) y[i] = (float)naive_f(kind, x[i], alpha);
}

// Computes the derivative from x (y is unused by the reference).
USI_MULTIVERSION
void usi_activation_backward_naive(int kind, float *dx, const float *dy, const float *x,
                                   const float *y, size_t n, float alpha) {
    (void)y;
    for (size_t i = 0; i < n; i++)
        dx[i] = (float)((double)dx[i] + (double)dy[i] * naive_df(kind, x[i], alpha));
}
