#include "usi_random.h"
#include "usi_dispatch.h"

// SplitMix64 finaliser as a hash of (seed, index).
static inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

USI_MULTIVERSION
void usi_dropout_mask(float *mask, size_t n, float p, uint64_t seed) {
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const uint64_t base = mix64(seed);
    for (size_t i = 0; i < n; i++) {
        float u = (float)(mix64(base ^ (uint64_t)i) >> 40) * 0x1.0p-24f;
        mask[i] = u < p ? 0.0f : keep_scale;
    }
}
