/* AVX-512: one weight row's chunk unpacked to unsigned bytes in element order, per format, with
 * its scales: the panels' source (gemm_panel.c) and the few-token paths' pieces (gemm_few.c). */
#ifndef TS_X86_AVX512_GEMM_UNPACK_H
#define TS_X86_AVX512_GEMM_UNPACK_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "gemm.h"

/* Blocks b and b + 1 (`two`; else b twice) of one weight row as unsigned quants in element
 * order: lanes 0-31 block b, 32-63 block b + 1. Low nibbles are elements 0..15 of a block, high
 * 16..31. */
TS_ALWAYS_INLINE __m512i legacy_pair(int type, const uint8_t *blk, int bs, int two) {
    const uint8_t *blk1 = two ? blk + bs : blk;
    if (type == TS_TYPE_Q8_0) {
        const __m512i v = _mm512_mask_broadcast_i64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2))),
                                                      0xF0, _mm256_loadu_si256((const __m256i *)(blk1 + 2)));
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    /* d (and m) first; Q5_0 / Q5_1 then have qh before qs; MXFP4's scale is one byte. */
    const int qs = type == TS_TYPE_Q4_1 ? 4 : type == TS_TYPE_Q5_0 ? 6 : type == TS_TYPE_Q5_1 ? 8 : type == TS_TYPE_MXFP4 ? 1 : 2;
    __m512i v = ts_avx512_nibble_pair(blk + qs, blk1 + qs);
    if (type == TS_TYPE_Q5_0 || type == TS_TYPE_Q5_1) {
        /* qh bit i is the fifth bit of element i. */
        const uint64_t bits = ts_avx512_load_u32(blk + qs - 4) | (uint64_t)ts_avx512_load_u32(blk1 + qs - 4) << 32;
        v = _mm512_mask_add_epi8(v, _cvtu64_mask64(bits), v, _mm512_set1_epi8(16));
    }
    /* IQ4_NL: the codebook value of each index, + 128 to make it unsigned. */
    if (type == TS_TYPE_IQ4_NL) v = ts_avx512_iq4_shifted(v);
    if (type == TS_TYPE_MXFP4) v = ts_avx512_mxfp4_shifted(v);
    return v;
}

/* d of blocks whose first dwords are the lanes of g: an f16, or MXFP4's E8M0 byte. */
TS_ALWAYS_INLINE __m512 head_d(int type, __m512i g) {
    if (type == TS_TYPE_MXFP4) return ts_avx512_e8m0_half(_mm512_and_si512(g, _mm512_set1_epi32(0xFF)));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* Blocks [b0, b0 + nb) of a 32-element format. */
TS_ALWAYS_INLINE void unpack_legacy(int type, const uint8_t *wr, int64_t b0, int nb, uint8_t *u, float *dw, float *mw) {
    const int bs = ts_q8x32_block_bytes(type);
    const uint8_t *blk0 = wr + (size_t)b0 * bs;
    for (int b = 0; b < nb; b += 2) {
        const __m512i v = legacy_pair(type, blk0 + (size_t)b * bs, bs, b + 1 < nb);
        if (b + 1 < nb) _mm512_storeu_si512(u + 32 * b, v);
        else _mm256_storeu_si256((__m256i *)(u + 32 * b), _mm512_castsi512_si256(v));
    }
    /* Each block's first four bytes: d, and the minimum m above it. */
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(bs));
    for (int b = 0; b < nb; b += 16) {
        const __mmask16 m = nb - b >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nb - b)) - 1);
        const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, blk0 + (size_t)b * bs, 1);
        _mm512_storeu_ps(dw + b, head_d(type, g));
        if (has_min(type)) _mm512_storeu_ps(mw + b, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16))));
    }
}

/* Q4_K and Q5_K: 6-bit scale sc_j and min m_j per 32 elements; element 64i + k is the low
 * nibble of qs[32i + k] for k < 32, else the high nibble of qs[32i + k - 32]; Q5_K's fifth bit
 * of element 32b + l is bit b of qh[l]. The two layouts share d, dmin and scales at the start. */
TS_ALWAYS_INLINE const uint8_t *k45_qs(int type, const uint8_t *blk) {
    return type == TS_TYPE_Q5_K ? ((const ts_block_q5_K *)blk)->qs : ((const ts_block_q4_K *)blk)->qs;
}

/* [sc0 .. sc7, m0 .. m7] of one super-block as floats. */
TS_ALWAYS_INLINE __m512 k45_scales(const uint8_t *blk) {
    const uint8_t *scales = ((const ts_block_q4_K *)blk)->scales;
    /* Bytes 0..3 hold sc0..3 and 4..7 m0..3 (low 6 bits); sc4..7 and m4..7 take their low
     * 4 bits from the nibbles of bytes 8..11 and their top 2 bits from the top of bytes 0..7. */
    const uint32_t m6 = 0x3F3F3F3Fu, n4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const uint32_t a = ts_avx512_load_u32(scales), b = ts_avx512_load_u32(scales + 4), c = ts_avx512_load_u32(scales + 8);
    const __m128i sm = _mm_setr_epi32((int)(a & m6), (int)((c & n4) | ((a >> 6) & m2) << 4), (int)(b & m6),
                                      (int)(((c >> 4) & n4) | ((b >> 6) & m2) << 4));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm));
}

/* Elements 64i .. 64i + 63 (i < 4) of one k-quant super-block as unsigned quants in element
 * order (Q6_K: q + 32). */
TS_ALWAYS_INLINE __m512i kquant_reg(int type, const uint8_t *blk, int i) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == TS_TYPE_Q6_K) {
        /* Element 128h + 32k + l: 4 bits from ql[64h + 32(k&1) + l] (high nibble when k >= 2),
         * 2 bits from qh[32h + l] at bit 2k. */
        const ts_block_q6_K *b = (const ts_block_q6_K *)blk;
        const __m512i l = _mm512_loadu_si512(b->ql + 64 * (i / 2));
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * (i / 2))));
        const __m512i m30 = _mm512_set1_epi8(0x30);
        const __m512i halves = i % 2 ? _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1)
                                     : _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
        if (i % 2 == 0) return _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(q, halves), m30));
        return _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                               _mm512_and_si512(_mm512_srlv_epi16(q, halves), m30));
    }
    const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(k45_qs(type, blk) + 32 * i)));
    __m512i v = _mm512_and_si512(_mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0)), m4);
    if (type == TS_TYPE_Q5_K) {
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const ts_block_q5_K *)blk)->qh));
        const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << 2 * i)), _mm256_set1_epi8((char)(2 << 2 * i)), 1);
        v = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(qh, bit), v, _mm512_set1_epi8(16));
    }
    return v;
}

/* Super-blocks [s0, s0 + ns) of Q4_K or Q5_K. */
TS_ALWAYS_INLINE void unpack_k45(int type, const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *mw,
                                 float *ds, float *dm) {
    const size_t bytes = type == TS_TYPE_Q5_K ? sizeof(ts_block_q5_K) : sizeof(ts_block_q4_K);
    for (int s = 0; s < ns; s++) {
        const uint8_t *blk = wr + (size_t)(s0 + s) * bytes;
        const __m512 v = k45_scales(blk);
        _mm256_storeu_ps(dw + 8 * s, _mm512_castps512_ps256(v));
        _mm256_storeu_ps(mw + 8 * s, _mm512_extractf32x8_ps(v, 1));
        ds[s * PANEL] = f16_at(&((const ts_block_q4_K *)blk)->d);
        dm[s * PANEL] = -f16_at(&((const ts_block_q4_K *)blk)->dmin);
        for (int i = 0; i < 4; i++) _mm512_storeu_si512(u + 256 * s + 64 * i, kquant_reg(type, blk, i));
    }
}

/* Super-blocks of Q6_K: u = q + 32 (six bits), signed scale per 16 elements. */
TS_ALWAYS_INLINE void unpack_q6_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *ds) {
    for (int s = 0; s < ns; s++) {
        const ts_block_q6_K *blk = (const ts_block_q6_K *)wr + s0 + s;
        _mm512_storeu_ps(dw + 16 * s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)blk->scales))));
        ds[s * PANEL] = f16_at(&blk->d);
        for (int i = 0; i < 4; i++) _mm512_storeu_si512(u + 256 * s + 64 * i, kquant_reg(TS_TYPE_Q6_K, (const uint8_t *)blk, i));
    }
}

/* Q2_K and Q3_K keep their low two bits in 32-byte groups: element 128g + 32j + l is bits 2j of
 * qs[32g + l]. */
TS_ALWAYS_INLINE __m256i low2(const uint8_t *qs, int g, int j) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), _mm256_set1_epi8(3));
}

/* Super-blocks of Q3_K: u = low two bits + 4 * the hmask bit (bit 4g + j of hmask[l] for the
 * element above), so the value is u - 4; sixteen signed 6-bit scales, one per 16 elements. */
TS_ALWAYS_INLINE void unpack_q3_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *ds) {
    for (int s = 0; s < ns; s++) {
        const ts_block_q3_K *blk = (const ts_block_q3_K *)wr + s0 + s;
        _mm512_storeu_ps(dw + 16 * s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ts_avx512_q3_K_scales(blk->scales))));
        ds[s * PANEL] = f16_at(&blk->d);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)blk->hmask);
        for (int g = 0; g < 2; g++)
            for (int j = 0; j < 4; j++) {
                const __m256i lo = low2(blk->qs, g, j);
                const __mmask32 high = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((char)(1 << (4 * g + j))));
                _mm256_storeu_si256((__m256i *)(u + 256 * s + 128 * g + 32 * j),
                                    _mm256_mask_add_epi8(lo, high, lo, _mm256_set1_epi8(4)));
            }
    }
}

/* Super-blocks of Q2_K: u = the two bits; per 16 elements a 4-bit scale (low nibble of
 * scales[i]) and a 4-bit minimum (high nibble). */
TS_ALWAYS_INLINE void unpack_q2_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *mw, float *ds,
                                  float *dm) {
    for (int s = 0; s < ns; s++) {
        const ts_block_q2_K *blk = (const ts_block_q2_K *)wr + s0 + s;
        const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)blk->scales));
        _mm512_storeu_ps(dw + 16 * s, _mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(0x0F))));
        _mm512_storeu_ps(mw + 16 * s, _mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4)));
        ds[s * PANEL] = f16_at(&blk->d);
        dm[s * PANEL] = -f16_at(&blk->dmin);
        for (int g = 0; g < 2; g++)
            for (int j = 0; j < 4; j++)
                _mm256_storeu_si256((__m256i *)(u + 256 * s + 128 * g + 32 * j), low2(blk->qs, g, j));
    }
}

#endif
