/* AVX2 + FMA + F16C: helpers shared by the quantized dot products of this folder. */
#ifndef TS_X86_AVX2_QUANTS_H
#define TS_X86_AVX2_QUANTS_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "ts/fp16.h"
#include "ts/kernels.h"

static inline float ts_avx2_hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i ts_avx2_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16 bytes from a in the low 128-bit lane, 16 bytes from b in the high one. */
static inline __m256i ts_avx2_load_pair(const void *a, const void *b) {
    return _mm256_set_m128i(_mm_loadu_si128((const __m128i *)b), _mm_loadu_si128((const __m128i *)a));
}

static inline uint32_t ts_avx2_load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* int16 sums of adjacent products w*y for signed w and y (|y| <= 127). maddubs wants its
 * left operand unsigned, so |w| goes left and w's sign moves onto y; |w| <= 128 and
 * |y| <= 127 keep each pair sum below the int16 saturation point. */
static inline __m256i ts_avx2_dot_i8(__m256i w, __m256i y) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w));
}

/* The IQ4_NL / IQ4_XS codebook, in both 128-bit lanes for pshufb. */
static inline __m256i ts_avx2_iq4_values(void) {
    static const int8_t values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1, 13, 25, 38, 53, 69, 89, 113};
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)values));
}

/* MXFP4's doubled e2m1 codes (GGML's kvalues_mxfp4), in both 128-bit lanes for pshufb. */
static inline __m256i ts_avx2_mxfp4_values(void) {
    static const int8_t values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)values));
}

/* The 16 packed 6-bit Q3_K scales as int8, offset removed: low nibbles from bytes 0..7
 * (scales 0..7 low halves, 8..15 high halves), top two bits from bytes 8..11. Unpacked in
 * general registers, which the vector ports around it leave idle. */
static inline __m128i ts_avx2_q3_K_scales(const uint8_t raw[12]) {
    uint64_t lo;
    uint32_t hi;
    memcpy(&lo, raw, 8);
    memcpy(&hi, raw + 8, 4);
    const uint64_t nib = 0x0F0F0F0F0F0F0F0FULL;
    const uint64_t top_a = (uint64_t)(hi & 0x03030303u) | (uint64_t)((hi >> 2) & 0x03030303u) << 32;
    const uint64_t top_b = (uint64_t)((hi >> 4) & 0x03030303u) | (uint64_t)((hi >> 6) & 0x03030303u) << 32;
    const __m128i sc = _mm_set_epi64x((long long)(((lo >> 4) & nib) | top_b << 4),
                                      (long long)((lo & nib) | top_a << 4));
    return _mm_sub_epi8(sc, _mm_set1_epi8(32));
}

/* k-quant and IQ4_XS dot products (quants_k.c). */
void ts_register_avx2_kquants(ts_kernels *k);
/* Codebook i-quant dot products (quants_iq.c). */
void ts_register_avx2_iquants(ts_kernels *k);

#endif
