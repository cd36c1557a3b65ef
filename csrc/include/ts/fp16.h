/* Portable half and bfloat16 conversions (bit exact with IEEE round-to-nearest-even). */
#ifndef TS_FP16_H
#define TS_FP16_H

#include <stdint.h>
#include <string.h>

static inline float ts_fp32_from_bits(uint32_t w) { float f; memcpy(&f, &w, 4); return f; }
static inline uint32_t ts_fp32_to_bits(float f) { uint32_t w; memcpy(&w, &f, 4); return w; }

static inline float ts_f16_to_f32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & UINT32_C(0x80000000);
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = UINT32_C(0xE0) << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized = ts_fp32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = UINT32_C(126) << 23;
    const float magic_bias = 0.5f;
    const float denormalized = ts_fp32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = UINT32_C(1) << 27;
    const uint32_t result = sign |
        (two_w < denormalized_cutoff ? ts_fp32_to_bits(denormalized) : ts_fp32_to_bits(normalized));
    return ts_fp32_from_bits(result);
}

static inline uint16_t ts_f32_to_f16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (f < 0 ? -f : f) * scale_to_inf;
    base *= scale_to_zero;
    const uint32_t w = ts_fp32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & UINT32_C(0x80000000);
    uint32_t bias = shl1_w & UINT32_C(0xFF000000);
    if (bias < UINT32_C(0x71000000)) bias = UINT32_C(0x71000000);
    base = ts_fp32_from_bits((bias >> 1) + UINT32_C(0x07800000)) + base;
    const uint32_t bits = ts_fp32_to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & UINT32_C(0x00007C00);
    const uint32_t mantissa_bits = bits & UINT32_C(0x00000FFF);
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > UINT32_C(0xFF000000) ? UINT16_C(0x7E00) : nonsign));
}

/* x rounded to the nearest half, the precision ggml stores activation block scales in; values
 * outside the normal half range stay as they are rather than flush to 0 or overflow to inf. */
static inline float ts_f16_round(float x) {
    const float a = x < 0 ? -x : x;
    return (a >= 0x1.0p-14f && a <= 65504.0f) ? ts_f16_to_f32(ts_f32_to_f16(x)) : x;
}

static inline float ts_bf16_to_f32(uint16_t h) { return ts_fp32_from_bits((uint32_t)h << 16); }

/* Half of the E8M0 scale 2^(e - 127), as ggml keeps MXFP4's codes doubled (integers): e 0 and 1
 * give the subnormals 2^-128 and 2^-127. e = 255 (NaN in the OCP format) reads as 2^127, as in
 * ggml and gguf.quants. */
static inline float ts_e8m0_half_to_f32(uint8_t e) {
    return ts_fp32_from_bits(e < 2 ? UINT32_C(0x00200000) << e : (uint32_t)(e - 1) << 23);
}

#endif
