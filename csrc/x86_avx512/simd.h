/* AVX-512 helpers shared by ops.c and attention.c: masks, f16 loads, exp, tanh and the 16-way
 * horizontal sum, and f32 dot products of one query with 16 keys. */
#ifndef TS_X86_AVX512_SIMD_H
#define TS_X86_AVX512_SIMD_H

#include <immintrin.h>
#include <stdint.h>

#include "ts/types.h"

/* Lanes [0, rem) of 16 (none when rem <= 0); masked loads and stores never touch memory past n. */
static inline __mmask16 tail_mask(int64_t rem) {
    return rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1u);
}

/* A whole chunk. The attention kernels store the rows they widen and read them again at once:
 * with plain moves where the mask is full (head sizes that are multiples of 16) rather than masked
 * moves of an all-ones mask, one group's decode attention over 1024 positions took 2-8% less time
 * and a step of 8 sequences over 512 positions 1.5-2% (SmolLM2, Gemma 3). */
static inline int mask_full(__mmask16 m) { return m == (__mmask16)0xFFFF; }

/* 16 halves (masked) -> 16 floats. */
static inline __m512 load_f16x16(__mmask16 m, const ts_f16 *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* x = n*ln2 + r with n = round(x/ln2) and |r| <= ln2/2; ln2 is split in two parts so that
 * r stays exact for large n. */
static inline __m512 reduce_ln2_512(__m512 x, __m512 *n) {
    *n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(0.693359375f), x);
    return _mm512_fnmadd_ps(*n, _mm512_set1_ps(-2.12194440e-4f), r);
}

/* e^x = 2^n * e^r with n = round(x/ln2), |r| <= ln2/2 and e^r from its degree-7 Taylor
 * polynomial (truncation < 1e-8); scalef applies 2^n with correct overflow and denormals.
 * The clamp only keeps r meaningful; NaN passes through (max/min return their second
 * operand when either is NaN). */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n;
    const __m512 r = reduce_ln2_512(x, &n);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* tanh|y| = m / (m + 2) with m = e^(2|y|) - 1, formed as 2^n*(e^r - 1) + (2^n - 1) with
 * e^r - 1 = r*(1 + r/2 + ...) so that small arguments keep their relative accuracy.
 * Beyond 2|y| = 20 tanh is 1 in float. */
static inline __m512 tanh512(__m512 y) {
    const __m512 sign = _mm512_and_ps(y, _mm512_set1_ps(-0.0f));
    const __m512 ay = _mm512_abs_ps(y);
    const __m512 z = _mm512_min_ps(_mm512_set1_ps(20.0f), _mm512_add_ps(ay, ay));
    __m512 n;
    const __m512 r = reduce_ln2_512(z, &n);
    __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 5040.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 s = _mm512_scalef_ps(_mm512_set1_ps(1.0f), n);
    const __m512 m = _mm512_fmadd_ps(s, _mm512_mul_ps(p, r), _mm512_sub_ps(s, _mm512_set1_ps(1.0f)));
    const __m512 t = _mm512_div_ps(m, _mm512_add_ps(m, _mm512_set1_ps(2.0f)));
    return _mm512_or_ps(t, sign);
}

/* Sixteen dot-product accumulators -> one vector whose lane i is the sum of a[i]. Folds
 * whole 128-bit lanes first (a[k], a[k+4], a[k+8], a[k+12] land in lanes 0..3 of y[k]),
 * then a 4x4 transpose-add inside each lane. */
static inline __m512 hsum16x16(const __m512 a[16]) {
    __m512 y[4];
    for (int k = 0; k < 4; k++) {
        const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(a[k], a[k + 4], 0x44),
                                        _mm512_shuffle_f32x4(a[k], a[k + 4], 0xEE));
        const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(a[k + 8], a[k + 12], 0x44),
                                        _mm512_shuffle_f32x4(a[k + 8], a[k + 12], 0xEE));
        y[k] = _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xDD));
    }
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xEE));
}

/* Scores of one query against 16 keys (rows kr[j]), as one vector. */
static inline __m512 dot16_f32(const float *q, const float *const kr[16], int head_dim) {
    __m512 acc[16];
    for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 md = tail_mask(head_dim - d);
        const __m512 qv = _mm512_maskz_loadu_ps(md, q + d);
        if (mask_full(md))
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(kr[j] + d), acc[j]);
        else
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(md, kr[j] + d), acc[j]);
    }
    return hsum16x16(acc);
}

#endif
