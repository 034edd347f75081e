// USI optimiser loops that are not in usi_kernels.h: SGD, the EMA of weights, and the
// reductions behind gradient clipping. Plain C over flat float storage (llm.c style).
#ifndef USI_OPTIM_H
#define USI_OPTIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/// SGD step over flat storage with torch.optim.SGD semantics (single-tensor path):
///   d = grad + weight_decay * param
///   if momentum != 0:
///       buf = first_step ? d : momentum * buf + (1 - dampening) * d
///       d = nesterov ? d + momentum * buf : buf
///   param -= lr * d
/// param, grad, momentum_buffer [n]; momentum_buffer may be NULL when momentum == 0.
/// first_step != 0 initialises the buffer with d (PyTorch clones d, without dampening).
void usi_sgd_step(float *param, const float *grad, float *momentum_buffer, size_t n, float lr,
                  float momentum, float dampening, float weight_decay, int nesterov,
                  int first_step);

/// Exponential moving average, in place: ema = decay * ema + (1 - decay) * x, computed as
/// PyTorch's `ema.lerp_(x, 1 - decay)` (the weight 1 - decay is formed in double, so a decay
/// such as 0.99996 keeps its time constant). ema, x [n].
void usi_ema_update(float *ema, const float *x, size_t n, double decay);

/// Sum of x[i]^2 over n elements, accumulated in double. The partition depends only on n,
/// so the result does not depend on the thread count.
double usi_optim_sum_squares(const float *x, size_t n);

/// Naive references (single loop, used by the tests).
void usi_sgd_step_naive(float *param, const float *grad, float *momentum_buffer, size_t n,
                        float lr, float momentum, float dampening, float weight_decay,
                        int nesterov, int first_step);
void usi_ema_update_naive(float *ema, const float *x, size_t n, double decay);

#ifdef __cplusplus
}
#endif
#endif
