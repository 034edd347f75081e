// Counter-based random masks: element i depends only on (seed, i), so the mask is the same
// for any thread count and can be generated in parallel.
#ifndef USI_RANDOM_H
#define USI_RANDOM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/// mask [n]: 0 with probability p, else 1/(1-p) (inverted dropout).
void usi_dropout_mask(float *mask, size_t n, float p, uint64_t seed);
#ifdef __cplusplus
}
#endif
#endif
