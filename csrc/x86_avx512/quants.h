/* Helpers shared by the AVX-512 quantized kernels (csrc/x86_avx512/quants*.c), inlined per build. */
#ifndef TS_X86_AVX512_QUANTS_H
#define TS_X86_AVX512_QUANTS_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ts/fp16.h"
#include "ts/kernels.h"

/* Every quants*.c file is compiled once plain and once with TS_VNNI; the two builds link into
 * one library, so their external names must differ. */
#ifdef TS_VNNI
#define TS_AVX512_NAME(name) name##_vnni
#else
#define TS_AVX512_NAME(name) name
#endif

void TS_AVX512_NAME(ts_avx512_register_legacy)(ts_kernels *k);
void TS_AVX512_NAME(ts_avx512_register_kquants)(ts_kernels *k);
void TS_AVX512_NAME(ts_avx512_register_iquants)(ts_kernels *k);
void TS_AVX512_NAME(ts_avx512_register_float)(ts_kernels *k);
void TS_AVX512_NAME(ts_avx512_register_attention)(ts_kernels *k);

/* Kernels are built from small helpers taking constant layout arguments; they must inline
 * so that those arguments fold into immediates and index vectors. */
#define TS_ALWAYS_INLINE static inline __attribute__((always_inline))

/* (a & mask) | b in one vpternlogd: a's kept bits with b's merged in. */
static inline __m512i ts_avx512_and_or(__m512i a, __m512i mask, __m512i b) {
    return _mm512_ternarylogic_epi32(a, b, mask, 0xEC);
}

/* A zero register by the xor idiom, which register renaming resolves without an execution
 * port. Left to itself the compiler copies one shared zero into every VNNI accumulator, and
 * each copy is a uop on the two ports that run all 512-bit work. */
static inline __m512i ts_avx512_fresh_zero(void) {
    __m512i z;
    __asm__ volatile("vpxord %0, %0, %0" : "=v"(z));
    return z;
}

/* Sums of four u*s products per int32 lane: u unsigned bytes, s signed bytes. Without VNNI
 * the pairs pass through int16 with saturation, so callers keep 2*u*|s| < 2^15. */
static inline __m512i ts_avx512_dot_u8s8(__m512i u, __m512i s) {
#ifdef TS_VNNI
    return _mm512_dpbusd_epi32(ts_avx512_fresh_zero(), u, s);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}

/* acc + sums of two int16 products per int32 lane. */
static inline __m512i ts_avx512_dot_s16(__m512i acc, __m512i a, __m512i b) {
#ifdef TS_VNNI
    return _mm512_dpwssd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

/* The 16 packed bytes of each of two blocks as 32 nibbles each, in element order:
 * 128-bit lanes [a & 15, a >> 4, b & 15, b >> 4]. */
static inline __m512i ts_avx512_nibble_pair(const uint8_t *a, const uint8_t *b) {
    const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)a));
    v = _mm512_mask_broadcast_i32x4(v, (__mmask16)0xFF00, _mm_loadu_si128((const __m128i *)b));
    return _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(0x0F));
}

/* Signed weights times signed activations: |w| as the unsigned side, the sign moved onto x
 * (neg: the lanes where w < 0). Activations never hold -128, so negating them is exact. */
static inline __m512i ts_avx512_dot_signed(__m512i absw, __mmask64 neg, __m512i x) {
    return ts_avx512_dot_u8s8(absw, _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x));
}

/* IQ4_NL / IQ4_XS codebook of 4-bit indices q: |value| per byte, and the negative ones (q < 8). */
static inline __m512i ts_avx512_iq4_abs(__m512i q) {
    const __m128i table = _mm_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(table), q);
}
/* The codebook values + 128, all unsigned: the VNNI side, with the offset removed through s. */
static inline __m512i ts_avx512_iq4_shifted(__m512i q) {
    const __m128i table = _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153,
                                        (char)166, (char)181, (char)197, (char)217, (char)241);
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(table), q);
}
static inline __mmask64 ts_avx512_iq4_neg(__m512i q) {
    return _mm512_testn_epi8_mask(q, _mm512_set1_epi8(8));
}

/* MXFP4's doubled e2m1 codes of 4-bit indices q, + 12: unsigned and below 25, so maddubs pairs
 * stay inside int16 without VNNI; the offset leaves through s. */
static inline __m512i ts_avx512_mxfp4_shifted(__m512i q) {
    const __m128i table = _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(table), q);
}

/* ts_e8m0_half_to_f32 of each int32 lane e (0..255). */
static inline __m512 ts_avx512_e8m0_half(__m512i e) {
    const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
    const __m512i tiny = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), e);
    return _mm512_castsi512_ps(_mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2)), normal, tiny));
}

/* int32 lanes holding small v (|v| < 2^15) -> v in both int16 halves: the scale operand of
 * ts_avx512_dot_s16 for the two int16 pair sums of each lane. */
TS_ALWAYS_INLINE __m512i ts_avx512_dup16(__m512i v) {
    /* (v & 0xFFFF) | ((v << 16) & ~0xFFFF) */
    return _mm512_ternarylogic_epi32(v, _mm512_slli_epi32(v, 16), _mm512_set1_epi32(0xFFFF), 0xE4);
}

/* vpermd indices spreading dup16 scales over a register of 64 elements. idx32: sub-blocks of
 * 32, the register's halves take scales 2k and 2k+1. idx16: sub-blocks of 16, its 128-bit
 * lanes take scales 4k..4k+3. */
TS_ALWAYS_INLINE __m512i ts_avx512_idx32(int k) {
    const int a = 2 * k, b = 2 * k + 1;
    return _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
}
TS_ALWAYS_INLINE __m512i ts_avx512_idx16(int k) {
    const int a = 4 * k;
    return _mm512_setr_epi32(a, a, a, a, a + 1, a + 1, a + 1, a + 1, a + 2, a + 2, a + 2, a + 2, a + 3, a + 3, a + 3,
                             a + 3);
}

/* Q3_K's 16 6-bit scales as int8, offset 32 removed. Bytes 0-7 hold their low nibbles (scales
 * 0-7 low, 8-15 high nibble); bits 4-5 come from bytes 8-11, two bits per group of four. The 16
 * bytes read start 4 before the scales (inside the block: hmask and qs come first). */
static inline __m128i ts_avx512_q3_K_scales(const uint8_t *s) {
    const __m128i v = _mm_loadu_si128((const __m128i *)(s - 4));
    const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 1)); /* bytes 0-3, 4-7, 0-3, 4-7 */
    const __m128i c = _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 3, 3, 3)); /* bytes 8-11 */
    const __m128i lo = _mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 4, 4));
    /* Rotations bring bits 2j..2j+1 of each byte of c to bits 4-5 of the same byte. */
    const __m128i hi = _mm_and_si128(_mm_rolv_epi32(c, _mm_setr_epi32(4, 2, 0, 30)), _mm_set1_epi8(0x30));
    const __m128i r = _mm_ternarylogic_epi32(lo, hi, _mm_set1_epi8(0x0F), 0xEC) /* (lo & 0x0F) | hi */;
    return _mm_sub_epi8(r, _mm_set1_epi8(32));
}

static inline uint32_t ts_avx512_load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

#endif
