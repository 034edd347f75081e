#include <math.h>
#include "usi_unary.h"
#include "usi_dispatch.h"

USI_MULTIVERSION
void usi_unary_forward(int kind, float *y, const float *x, size_t n) {
    switch (kind) {
    case USI_EXP: for (size_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case USI_LOG: for (size_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case USI_SQRT: for (size_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case USI_SQUARE: for (size_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
    case USI_ABS: for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    }
}

USI_MULTIVERSION
void usi_unary_backward(int kind, float *dx, const float *dy, const float *x, const float *y, size_t n) {
    switch (kind) {
    case USI_EXP: for (size_t i = 0; i < n; i++) dx[i] += dy[i] * y[i]; break;
    case USI_LOG: for (size_t i = 0; i < n; i++) dx[i] += dy[i] / x[i]; break;
    case USI_SQRT: for (size_t i = 0; i < n; i++) dx[i] += dy[i] * 0.5f / y[i]; break;
    case USI_SQUARE: for (size_t i = 0; i < n; i++) dx[i] += dy[i] * 2.0f * x[i]; break;
    case USI_ABS:  // PyTorch: sign(x), 0 at 0
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (float)((x[i] > 0) - (x[i] < 0));
        break;
    }
}

USI_MULTIVERSION
void usi_clamp_forward(float *y, const float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

USI_MULTIVERSION
void usi_clamp_backward(float *dx, const float *dy, const float *x, size_t n, float lo, float hi) {
    // PyTorch passes the gradient where lo <= x <= hi.
    for (size_t i = 0; i < n; i++) dx[i] += (x[i] >= lo && x[i] <= hi) ? dy[i] : 0.0f;
}
