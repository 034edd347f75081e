// Element-type conversions of file data to float32 (safetensors F16/BF16 weights), in C so a
// consumer's debug build reads a teacher as fast as a release one.
#include <stdint.h>
#include <string.h>

#include "usi_dispatch.h"
#include "usi_kernels.h"

// IEEE half -> float, exact (subnormals, infinities, NaN payloads).
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0) {
        float f = (float)mantissa * 0x1p-24f;  // zero or subnormal: exact in float
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

// dst[n] <- src[n] (little-endian IEEE half, any alignment).
USI_MULTIVERSION void usi_f16_to_f32(float *dst, const void *src, int64_t n) {
    const uint8_t *s = (const uint8_t *)src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = half_to_float(h);
    }
}

// dst[n] <- src[n] (little-endian bfloat16, any alignment): the high half of a float.
USI_MULTIVERSION void usi_bf16_to_f32(float *dst, const void *src, int64_t n) {
    const uint8_t *s = (const uint8_t *)src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        memcpy(dst + i, &bits, 4);
    }
}
