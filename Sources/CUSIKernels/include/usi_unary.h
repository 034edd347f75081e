// Pointwise math functions (not activations): y = f(x), dx += dy * f'(x).
#ifndef USI_UNARY_H
#define USI_UNARY_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
enum usi_unary { USI_EXP = 0, USI_LOG = 1, USI_SQRT = 2, USI_SQUARE = 3, USI_ABS = 4 };
void usi_unary_forward(int kind, float *y, const float *x, size_t n);
/// Reads x and y (the forward output) as convenient.
void usi_unary_backward(int kind, float *dx, const float *dy, const float *x, const float *y, size_t n);
/// y = min(max(x, lo), hi); dx += dy where lo < x < hi.
void usi_clamp_forward(float *y, const float *x, size_t n, float lo, float hi);
void usi_clamp_backward(float *dx, const float *dy, const float *x, size_t n, float lo, float hi);
#ifdef __cplusplus
}
#endif
#endif
