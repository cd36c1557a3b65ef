/* AVX-512: gemm (many activation rows against a block of weight rows).
 * Compiled twice like quants.c: plain, and with TS_VNNI for vpdpbusd.
 *
 * Weights are unpacked once per panel of up to 32 rows and a chunk of KC elements into unsigned
 * bytes laid out so that one register holds four consecutive quants of each of 16 rows. The
 * activations then are the broadcast operand: four int8 of one token meet 16 rows in one
 * vpdpbusd, and the panel, unpacked once, serves every token of the call. Below PANEL_MIN
 * tokens the transpose costs more than it saves: the rows stay in element order and each
 * row's block sum is gathered into its lane by a tree of shuffles instead (block_dot_rows).
 * The 32-element formats, Q4_K, Q5_K and Q6_K take a third path up to FEW_MAX tokens
 * (gemm_few_legacy, gemm_few_kquant: unpack and transpose in registers, no panel in memory).
 * Every path gives a (row, token) the same integer block sums and float operations, whatever
 * else is in the call.
 *
 * Sums stay exact integers as far as the formats allow, as in the per-row dots: a quant's
 * offset (Q4_0 8, Q5_0 16, Q8_0 and IQ4_NL 128, MXFP4 12, Q3_K 4, Q6_K 32) enters each block's integer
 * sum as -offset * sum(xq); k-quant sub-block scales multiply exact integers and one float
 * scale (d * dx) applies per super-block; 32-element formats take d_w * d_x per block, and the
 * minimums of Q4_1, Q5_1, Q2_K, Q4_K and Q5_K add min * sum(x) beside it. */
#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "packed.h"
#include "quants.h"
#include "ts/kernels.h"
#include "ts/prefetch.h"

#define TS_INLINE static inline __attribute__((always_inline))

/* acc + sums of four u8*s8 products per int32 lane. Without VNNI they pass through int16
 * (maddubs saturates): only for unsigned quants below 64. */
#ifdef TS_VNNI
TS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }
#else
TS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
#endif

TS_INLINE uint32_t load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

TS_INLINE float f16_at(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

#define PANEL_MIN 6       /* tokens from which the panel's quants are transposed (measured) */
#define PANEL 32          /* weight rows unpacked together: two registers of 16 */
#define KC 512            /* elements per chunk: the unpacked panel (16 KB) stays in L1 */
#define TT 4              /* tokens per tile */
#define MAX_BLK (KC / 16) /* blocks per chunk at the smallest block (16: Q2_K, Q3_K, Q6_K) */

typedef struct {
    /* q[2 * k4 + h]: bytes 4 * k4 .. 4 * k4 + 3 of the chunk for rows 16h .. 16h + 15. */
    __m512i q[KC / 4 * 2];
    /* Per block and row. 32-element formats: dw = d, mw = the minimum (Q4_1, Q5_1). k-quants:
     * dw = the sub-block scale, mw = the sub-block min (Q4_K, Q5_K), both small integers. */
    _Alignas(64) float dw[MAX_BLK][PANEL];
    _Alignas(64) float mw[MAX_BLK][PANEL];
    /* Per k-quant super-block and row: d and -dmin. */
    _Alignas(64) float ds[KC / TS_QK_K][PANEL];
    _Alignas(64) float dm[KC / TS_QK_K][PANEL];
} panel;

/* Q4_K and Q5_K: eight 6-bit scales and mins per super-block. */
TS_INLINE int is_k45(int type) { return type == TS_TYPE_Q4_K || type == TS_TYPE_Q5_K; }

/* Formats with a minimum per block (mw). */
TS_INLINE int has_min(int type) {
    return type == TS_TYPE_Q4_1 || type == TS_TYPE_Q5_1 || type == TS_TYPE_Q2_K || is_k45(type);
}

/* Quant offset folded into the integer sums; 0 where a minimum or none applies. */
TS_INLINE int quant_offset(int type) {
    return type == TS_TYPE_Q4_0 ? 8 : type == TS_TYPE_Q5_0 ? 16 : type == TS_TYPE_Q8_0 || type == TS_TYPE_IQ4_NL ? 128
         : type == TS_TYPE_MXFP4 ? 12 : type == TS_TYPE_Q3_K ? 4 : type == TS_TYPE_Q6_K ? 32 : 0;
}

/* Elements per scale block and the activation format of each weight type. */
TS_INLINE int block_elems(int type) {
    return type == TS_TYPE_Q2_K || type == TS_TYPE_Q3_K || type == TS_TYPE_Q6_K ? 16 : 32;
}
TS_INLINE int act_is_q8k(int type) { return is_k45(type) || block_elems(type) == 16; }

/* ---- unpacking: one weight row's chunk to unsigned bytes in element order ------------------ */

/* Blocks b and b + 1 (`two`; else b twice) of one weight row as unsigned quants in element
 * order: lanes 0-31 block b, 32-63 block b + 1. Low nibbles are elements 0..15 of a block, high
 * 16..31. */
TS_INLINE __m512i legacy_pair(int type, const uint8_t *blk, int bs, int two) {
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
        const uint64_t bits = load_u32(blk + qs - 4) | (uint64_t)load_u32(blk1 + qs - 4) << 32;
        v = _mm512_mask_add_epi8(v, _cvtu64_mask64(bits), v, _mm512_set1_epi8(16));
    }
    /* IQ4_NL: the codebook value of each index, + 128 to make it unsigned. */
    if (type == TS_TYPE_IQ4_NL) v = ts_avx512_iq4_shifted(v);
    if (type == TS_TYPE_MXFP4) v = ts_avx512_mxfp4_shifted(v);
    return v;
}

/* d of blocks whose first dwords are the lanes of g: an f16, or MXFP4's E8M0 byte. */
TS_INLINE __m512 head_d(int type, __m512i g) {
    if (type == TS_TYPE_MXFP4) return ts_avx512_e8m0_half(_mm512_and_si512(g, _mm512_set1_epi32(0xFF)));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* Blocks [b0, b0 + nb) of a 32-element format. */
TS_INLINE void unpack_legacy(int type, const uint8_t *wr, int64_t b0, int nb, uint8_t *u, float *dw, float *mw) {
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
TS_INLINE const uint8_t *k45_qs(int type, const uint8_t *blk) {
    return type == TS_TYPE_Q5_K ? ((const ts_block_q5_K *)blk)->qs : ((const ts_block_q4_K *)blk)->qs;
}

/* [sc0 .. sc7, m0 .. m7] of one super-block as floats. */
TS_INLINE __m512 k45_scales(const uint8_t *blk) {
    const uint8_t *scales = ((const ts_block_q4_K *)blk)->scales;
    /* Bytes 0..3 hold sc0..3 and 4..7 m0..3 (low 6 bits); sc4..7 and m4..7 take their low
     * 4 bits from the nibbles of bytes 8..11 and their top 2 bits from the top of bytes 0..7. */
    const uint32_t m6 = 0x3F3F3F3Fu, n4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const uint32_t a = load_u32(scales), b = load_u32(scales + 4), c = load_u32(scales + 8);
    const __m128i sm = _mm_setr_epi32((int)(a & m6), (int)((c & n4) | ((a >> 6) & m2) << 4), (int)(b & m6),
                                      (int)(((c >> 4) & n4) | ((b >> 6) & m2) << 4));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm));
}

/* Elements 64i .. 64i + 63 (i < 4) of one k-quant super-block as unsigned quants in element
 * order (Q6_K: q + 32). */
TS_INLINE __m512i kquant_reg(int type, const uint8_t *blk, int i) {
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
TS_INLINE void unpack_k45(int type, const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *mw, float *ds,
                          float *dm) {
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
TS_INLINE void unpack_q6_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *ds) {
    for (int s = 0; s < ns; s++) {
        const ts_block_q6_K *blk = (const ts_block_q6_K *)wr + s0 + s;
        _mm512_storeu_ps(dw + 16 * s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)blk->scales))));
        ds[s * PANEL] = f16_at(&blk->d);
        for (int i = 0; i < 4; i++) _mm512_storeu_si512(u + 256 * s + 64 * i, kquant_reg(TS_TYPE_Q6_K, (const uint8_t *)blk, i));
    }
}

/* Q2_K and Q3_K keep their low two bits in 32-byte groups: element 128g + 32j + l is bits 2j of
 * qs[32g + l]. */
TS_INLINE __m256i low2(const uint8_t *qs, int g, int j) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), _mm256_set1_epi8(3));
}

/* Super-blocks of Q3_K: u = low two bits + 4 * the hmask bit (bit 4g + j of hmask[l] for the
 * element above), so the value is u - 4; sixteen signed 6-bit scales, one per 16 elements. */
TS_INLINE void unpack_q3_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *ds) {
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
TS_INLINE void unpack_q2_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *mw, float *ds,
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

/* 16 rows of 16 int32 -> 16 columns: c[j] lane i = r[i] lane j. */
TS_INLINE void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    /* r[4k + e], 128-bit lane L: column 4L + e of rows 4k .. 4k + 3. */
    for (int k = 0; k < 4; k++) {
        r[4 * k + 0] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        r[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        r[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        r[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    /* A 4x4 transpose of 128-bit lanes for each e. */
    for (int e = 0; e < 4; e++) {
        const __m512i v0 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0x44), v1 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0xEE);
        t[e] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        t[4 + e] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        t[8 + e] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        t[12 + e] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
    for (int j = 0; j < 16; j++) r[j] = t[j];
}

/* Rows [0, rows) of the panel from w (rows w_stride apart), elements [e0, e0 + ke); rows up
 * to the next 16 are zero. Each row is unpacked in element order into tmp, then 16x16
 * transposes of dwords turn rows into register lanes: one scale per lane, and (transpose_quants)
 * four quants per lane. */
TS_INLINE void panel_fill(int type, int rows, const uint8_t *w, size_t w_stride, int64_t e0, int ke, panel *P,
                          uint8_t tmp[PANEL][KC], int transpose_quants) {
    _Alignas(64) float dw[PANEL][MAX_BLK], mw[PANEL][MAX_BLK];
    const int half = rows > 16 ? 2 : 1;
    const int kb = block_elems(type), nblk = ke / kb;
    for (int r = 0; r < rows; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        if (is_k45(type))
            unpack_k45(type, wr, e0 / TS_QK_K, ke / TS_QK_K, tmp[r], dw[r], mw[r], &P->ds[0][r], &P->dm[0][r]);
        else if (type == TS_TYPE_Q6_K) unpack_q6_K(wr, e0 / TS_QK_K, ke / TS_QK_K, tmp[r], dw[r], &P->ds[0][r]);
        else if (type == TS_TYPE_Q3_K) unpack_q3_K(wr, e0 / TS_QK_K, ke / TS_QK_K, tmp[r], dw[r], &P->ds[0][r]);
        else if (type == TS_TYPE_Q2_K)
            unpack_q2_K(wr, e0 / TS_QK_K, ke / TS_QK_K, tmp[r], dw[r], mw[r], &P->ds[0][r], &P->dm[0][r]);
        else unpack_legacy(type, wr, e0 / TS_QK, nblk, tmp[r], dw[r], mw[r]);
    }
    for (int r = rows; r < 16 * half; r++) {
        memset(tmp[r], 0, (size_t)ke);
        memset(dw[r], 0, sizeof(dw[r]));
        if (has_min(type)) memset(mw[r], 0, sizeof(mw[r]));
        for (int sb = 0; sb < KC / TS_QK_K; sb++) P->ds[sb][r] = P->dm[sb][r] = 0.0f;
    }
    __m512i v[16];
    for (int h = 0; h < half; h++) {
        for (int g = 0; transpose_quants && 64 * g < ke; g++) {
            for (int i = 0; i < 16; i++) v[i] = _mm512_load_si512((const void *)(tmp[16 * h + i] + 64 * g));
            transpose16(v);
            for (int j = 0; j < 16; j++) P->q[2 * (16 * g + j) + h] = v[j];
        }
        for (int g = 0; 16 * g < nblk; g++) {
            for (int i = 0; i < 16; i++) v[i] = _mm512_load_si512((const void *)&dw[16 * h + i][16 * g]);
            transpose16(v);
            for (int j = 0; j < 16; j++) _mm512_store_si512((void *)&P->dw[16 * g + j][16 * h], v[j]);
            if (!has_min(type)) continue;
            for (int i = 0; i < 16; i++) v[i] = _mm512_load_si512((const void *)&mw[16 * h + i][16 * g]);
            transpose16(v);
            for (int j = 0; j < 16; j++) _mm512_store_si512((void *)&P->mw[16 * g + j][16 * h], v[j]);
        }
    }
}

/* panel_fill from weights in ts/repack.h's layout (rows 16 or 32): their registers already hold
 * each row's quants in its lanes, so the panel is a copy with the nibbles split, no transpose. */
TS_INLINE void panel_fill_packed(int type, int rows, const uint8_t *w, size_t w_stride, int64_t e0, int ke, panel *P) {
    if (type == TS_TYPE_Q4_K || type == TS_TYPE_Q6_K) {
        const size_t sb_bytes = TS_PACK_ROWS * (type == TS_TYPE_Q6_K ? sizeof(ts_block_q6_K) : sizeof(ts_block_q4_K));
        const int per_sb = TS_QK_K / block_elems(type);
        for (int h = 0; h < rows / 16; h++)
            for (int s = 0; s < ke / TS_QK_K; s++) {
                const uint8_t *blk = w + (size_t)16 * h * w_stride + (size_t)(e0 / TS_QK_K + s) * sb_bytes;
                __m512 sc[16], d, dm;
                ts_packed_k_scales(type, blk, sc);
                for (int b = 0; b < per_sb; b++) _mm512_store_ps(&P->dw[per_sb * s + b][16 * h], sc[b]);
                for (int b = 0; has_min(type) && b < per_sb; b++) _mm512_store_ps(&P->mw[per_sb * s + b][16 * h], sc[8 + b]);
                for (int run = 0; run < 8; run++) {
                    __m512i q[8];
                    ts_packed_k_quants(type, blk, run, q);
                    for (int j = 0; j < 8; j++) _mm512_store_si512(&P->q[2 * (64 * s + 8 * run + j) + h], q[j]);
                }
                ts_packed_k_d(type, blk, &d, &dm);
                _mm512_store_ps(&P->ds[s][16 * h], d);
                _mm512_store_ps(&P->dm[s][16 * h], dm);
            }
        return;
    }
    const int bs = ts_q8x32_block_bytes(type), nblk = ke / TS_QK;
    for (int h = 0; h < rows / 16; h++) {
        const uint8_t *g = w + (size_t)16 * h * w_stride + (size_t)(e0 / TS_QK) * TS_PACK_ROWS * bs;
        for (int b = 0; b < nblk; b++) {
            const uint8_t *blk = g + (size_t)b * TS_PACK_ROWS * bs;
            __m512i q[8];
            ts_packed_quants(type, blk, q);
            for (int j = 0; j < 8; j++) _mm512_store_si512(&P->q[2 * (8 * b + j) + h], q[j]);
            _mm512_store_ps(&P->dw[b][16 * h], ts_packed_d(blk));
            if (has_min(type)) _mm512_store_ps(&P->mw[b][16 * h], ts_packed_m(type, blk));
        }
    }
}

/* ---- the tile: 16 * NH rows x TT tokens over one chunk ---------------------------------------- */

/* Activation block b (global index) of a token row: its int8 quants, and its scale (q8x32:
 * followed by d * sum(xq); q8k: the super-block's). */
TS_INLINE const uint8_t *act_qs(int type, const uint8_t *x, int64_t b) {
    if (!act_is_q8k(type)) return x + (size_t)b * sizeof(ts_block_q8x32) + offsetof(ts_block_q8x32, qs);
    const int64_t e = b * block_elems(type);
    return x + (size_t)(e / TS_QK_K) * sizeof(ts_block_q8k) + offsetof(ts_block_q8k, qs) + (size_t)(e % TS_QK_K);
}

TS_INLINE const float *act_d(int type, const uint8_t *x, int64_t b) {
    if (!act_is_q8k(type)) return (const float *)(x + (size_t)b * sizeof(ts_block_q8x32));
    return (const float *)(x + (size_t)(b * block_elems(type) / TS_QK_K) * sizeof(ts_block_q8k));
}

/* For one token row and blocks [b0, b0 + nblk): off, the integer -offset * sum(xq) that starts
 * each block's sum, or for Q2_K / Q4_K / Q5_K sx, the block's sum(xq). Writes whole runs of 16 (Q4_K, Q5_K: 8)
 * entries. q8x32 keeps d * sum(xq), exact in float (d has half precision), so s / d rounds
 * back to the sum. */
TS_INLINE void token_sums(int type, const uint8_t *x, int64_t b0, int nblk, int32_t *off, float *sx) {
    const int o = quant_offset(type);
    if (is_k45(type)) {
        for (int b = 0; b < nblk; b += 8) {
            const ts_block_q8k *xb = (const ts_block_q8k *)x + (b0 + b) / 8;
            const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
            _mm256_storeu_ps(sx + b, _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, _mm256_set1_epi16(1))));
        }
    } else if (type == TS_TYPE_Q2_K) {
        for (int b = 0; b < nblk; b += 16) {
            const ts_block_q8k *xb = (const ts_block_q8k *)x + (b0 + b) / 16;
            _mm512_storeu_ps(sx + b, _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)xb->bsums))));
        }
    } else if (act_is_q8k(type)) { /* Q3_K, Q6_K */
        for (int b = 0; b < nblk; b += 16) {
            const ts_block_q8k *xb = (const ts_block_q8k *)x + (b0 + b) / 16;
            const __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)xb->bsums));
            _mm512_storeu_si512(off + b, _mm512_mullo_epi32(bs, _mm512_set1_epi32(-o)));
        }
    } else if (o) {
        const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32((int)sizeof(ts_block_q8x32)));
        for (int b = 0; b < nblk; b += 16) {
            const __mmask16 m = nblk - b >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nblk - b)) - 1);
            const uint8_t *base = x + (size_t)(b0 + b) * sizeof(ts_block_q8x32);
            const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 1);
            const __m512 sd = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base + 4, 1);
            const __mmask16 nz = _mm512_mask_cmp_ps_mask(m, d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
            const __m512i sum = _mm512_maskz_cvtps_epi32(nz, _mm512_maskz_div_ps(nz, sd, d));
            _mm512_storeu_si512(off + b, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-o)));
        }
    }
}

/* id[h][t] = off[t][b] + sum(u * xq) over block b (global b0 + b) for rows 16h .. 16h + 15. */
TS_INLINE void block_dot(int type, int NH, int T, const panel *P, int64_t b0, int b, const uint8_t *const xt[TT],
                         const int32_t *const off[TT], __m512i id[2][TT]) {
    const int kb = block_elems(type);
    for (int t = 0; t < T; t++) {
        id[0][t] = quant_offset(type) ? _mm512_set1_epi32(off[t][b]) : _mm512_setzero_si512();
        id[1][t] = id[0][t];
    }
    const __m512i *wq = &P->q[2 * (b * kb / 4)];
    const uint8_t *xq[TT];
    for (int t = 0; t < T; t++) xq[t] = act_qs(type, xt[t], b0 + b);
    for (int k = 0; k < kb / 4; k++) {
        const __m512i w0 = _mm512_load_si512(&wq[2 * k]);
        const __m512i w1 = NH > 1 ? _mm512_load_si512(&wq[2 * k + 1]) : w0;
        for (int t = 0; t < T; t++) {
            const __m512i a = _mm512_set1_epi32((int)load_u32(xq[t] + 4 * k));
            id[0][t] = dot_u8s8(id[0][t], w0, a);
            if (NH > 1) id[1][t] = dot_u8s8(id[1][t], w1, a);
        }
    }
}

/* block_dot from row-major quants (rq: the chunk's unpacked rows), for calls with few tokens
 * where transposing the panel costs more than it saves: each row's block meets the token's in
 * its own lanes, then a tree of shuffles sums them into lane r. Integer sums: the same id. */
TS_INLINE void block_dot_rows(int type, int NH, int T, const uint8_t (*rq)[KC], int64_t b0, int b,
                              const uint8_t *const xt[TT], const int32_t *const off[TT], __m512i id[2][TT]) {
    const int kb = block_elems(type);
    for (int h = 0; h < NH; h++) {
        const uint8_t (*q)[KC] = rq + 16 * h;
        __m512i z[8];
        /* 32-element blocks: z[k] = rows k and k + 8. Blocks of 16: rows k, k + 4, k + 8, k + 12. */
        if (kb == 32)
            for (int k = 0; k < 8; k++)
                z[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256((const __m256i *)(q[k] + 32 * b))),
                                          _mm256_load_si256((const __m256i *)(q[k + 8] + 32 * b)), 1);
        else
            for (int k = 0; k < 4; k++) {
                __m512i v = _mm512_castsi128_si512(_mm_load_si128((const __m128i *)(q[k] + 16 * b)));
                v = _mm512_inserti32x4(v, _mm_load_si128((const __m128i *)(q[k + 4] + 16 * b)), 1);
                v = _mm512_inserti32x4(v, _mm_load_si128((const __m128i *)(q[k + 8] + 16 * b)), 2);
                z[k] = _mm512_inserti32x4(v, _mm_load_si128((const __m128i *)(q[k + 12] + 16 * b)), 3);
            }
        for (int t = 0; t < T; t++) {
            const uint8_t *xq = act_qs(type, xt[t], b0 + b);
            __m512i p[8], s[4], r;
            if (kb == 32) {
                const __m512i a = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xq));
                for (int k = 0; k < 8; k++) p[k] = dot_u8s8(_mm512_setzero_si512(), z[k], a);
                for (int j = 0; j < 4; j++)
                    s[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * j], p[2 * j + 1]),
                                            _mm512_unpackhi_epi32(p[2 * j], p[2 * j + 1]));
                /* 128-bit lane L of u0 / u1: the sums of quarter L of p[0..3] / p[4..7]. */
                const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(s[0], s[1]), _mm512_unpackhi_epi64(s[0], s[1]));
                const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(s[2], s[3]), _mm512_unpackhi_epi64(s[2], s[3]));
                /* Lanes: rows 0-3, 8-11, 4-7, 12-15; then in order. */
                const __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, 0x88), _mm512_shuffle_i32x4(u0, u1, 0xDD));
                r = _mm512_shuffle_i32x4(w, w, 0xD8);
            } else {
                const __m512i a = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xq));
                for (int k = 0; k < 4; k++) p[k] = dot_u8s8(_mm512_setzero_si512(), z[k], a);
                for (int j = 0; j < 2; j++)
                    s[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * j], p[2 * j + 1]),
                                            _mm512_unpackhi_epi32(p[2 * j], p[2 * j + 1]));
                r = _mm512_add_epi32(_mm512_unpacklo_epi64(s[0], s[1]), _mm512_unpackhi_epi64(s[0], s[1]));
            }
            id[h][t] = quant_offset(type) ? _mm512_add_epi32(r, _mm512_set1_epi32(off[t][b])) : r;
        }
    }
}

/* Rows 16h .. 16h + 15 (h < NH) x T tokens over one chunk, stored (first) or added to y; with rq,
 * from row-major quants (block_dot_rows), else from the panel's transposed ones. */
TS_INLINE void tile(int type, int NH, int T, const panel *P, const uint8_t (*rq)[KC], int64_t b0, int nblk,
                    const uint8_t *const xt[TT], const int32_t *const off[TT], const float *const sx[TT], int nt,
                    float *y, size_t ys, int first, __mmask16 last_rows) {
    __m512 acc[2][TT];
    __m512i id[2][TT];
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) acc[h][t] = _mm512_setzero_ps();
    if (act_is_q8k(type)) {
        /* Integer sub-block sums times integer scales are exact in float below 2^24. */
        const int per_sb = TS_QK_K / block_elems(type);
        for (int sb = 0; sb < nblk; sb += per_sb) {
            __m512 part[2][TT];
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) part[h][t] = _mm512_setzero_ps();
            for (int b = sb; b < sb + per_sb; b++) {
                if (rq) block_dot_rows(type, NH, T, rq, b0, b, xt, off, id);
                else block_dot(type, NH, T, P, b0, b, xt, off, id);
                for (int h = 0; h < NH; h++) {
                    const __m512 sc = _mm512_load_ps(&P->dw[b][16 * h]);
                    for (int t = 0; t < T; t++)
                        part[h][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id[h][t]), sc, part[h][t]);
                }
            }
            for (int h = 0; h < NH; h++) {
                const __m512 d = _mm512_load_ps(&P->ds[sb / per_sb][16 * h]);
                for (int t = 0; t < T; t++)
                    acc[h][t] = _mm512_fmadd_ps(part[h][t], _mm512_mul_ps(d, _mm512_set1_ps(*act_d(type, xt[t], b0 + sb))),
                                                acc[h][t]);
            }
            if (has_min(type)) {
                for (int h = 0; h < NH; h++)
                    for (int t = 0; t < T; t++) part[h][t] = _mm512_setzero_ps();
                for (int b = sb; b < sb + per_sb; b++)
                    for (int h = 0; h < NH; h++) {
                        const __m512 mn = _mm512_load_ps(&P->mw[b][16 * h]);
                        for (int t = 0; t < T; t++) part[h][t] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sx[t][b]), part[h][t]);
                    }
                for (int h = 0; h < NH; h++) {
                    const __m512 dmin = _mm512_load_ps(&P->dm[sb / per_sb][16 * h]);
                    for (int t = 0; t < T; t++)
                        acc[h][t] = _mm512_fmadd_ps(part[h][t], _mm512_mul_ps(dmin, _mm512_set1_ps(*act_d(type, xt[t], b0 + sb))),
                                                    acc[h][t]);
                }
            }
        }
    } else {
        for (int b = 0; b < nblk; b++) {
            if (rq) block_dot_rows(type, NH, T, rq, b0, b, xt, off, id);
            else block_dot(type, NH, T, P, b0, b, xt, off, id);
            for (int h = 0; h < NH; h++) {
                const __m512 dw = _mm512_load_ps(&P->dw[b][16 * h]);
                for (int t = 0; t < T; t++) {
                    const float *ds = act_d(type, xt[t], b0 + b); /* d, then d * sum(xq) */
                    acc[h][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id[h][t]), _mm512_mul_ps(dw, _mm512_set1_ps(ds[0])),
                                                acc[h][t]);
                    if (has_min(type))
                        acc[h][t] = _mm512_fmadd_ps(_mm512_load_ps(&P->mw[b][16 * h]), _mm512_set1_ps(ds[1]), acc[h][t]);
                }
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < NH; h++) {
            float *yo = y + (size_t)t * ys + 16 * h;
            const __mmask16 m = h == NH - 1 ? last_rows : (__mmask16)0xFFFF;
            __m512 v = acc[h][t];
            if (!first) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, yo));
            _mm512_mask_storeu_ps(yo, m, v);
        }
}

/* ---- few tokens of a 32-element format: 16 rows in lanes, straight from the weights -------- */

/* d (and for Q4_1 / Q5_1 the minimum m after it) of block b of 16 rows (byte offsets rix from
 * w) as floats: one gather of the blocks' first dwords. */
TS_INLINE void rows_dm(int type, const uint8_t *w, __m512i rix, int64_t b, int bs, __m512 *d, __m512 *m) {
    const __m512i g = _mm512_i32gather_epi32(rix, w + (size_t)b * bs, 1);
    *d = head_d(type, g);
    if (has_min(type)) *m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
}

#define FEW_MAX 16 /* tokens the register path takes in one pass over the weights */

/* 16 bytes from each of four rows, one per 128-bit lane. */
TS_INLINE __m512i load_x4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p1), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* A 4x4 transpose of dwords inside each 128-bit lane: a[j] dword i <- a[i] dword j. */
TS_INLINE void transpose4_lanes(__m512i a[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    a[0] = _mm512_unpacklo_epi64(t0, t2);
    a[1] = _mm512_unpackhi_epi64(t0, t2);
    a[2] = _mm512_unpacklo_epi64(t1, t3);
    a[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The fifth bits of Q5_0 / Q5_1 for the four rows of load_x4: bit 16L + k is qh bit k (hi: 16 + k)
 * of the row in lane L, the elements the lane's low (high) nibbles hold. */
TS_INLINE uint64_t qh_x4(const uint8_t *const p[4], int hi) {
    uint64_t m = 0;
    for (int l = 0; l < 4; l++) m |= (uint64_t)((load_u32(p[l]) >> (hi ? 16 : 0)) & 0xFFFFu) << 16 * l;
    return m;
}

/* The quants of blocks b .. b + nblk - 1 (nblk 1 or 2) of 16 rows (row r at rp[r]) of a 4-bit
 * format, unsigned, laid out as legacy_pair's after transpose16: q[8h + j] lane r = quants
 * 4j .. 4j + 3 of block b + h of row r. Each register is first loaded with the 16 bytes of quants
 * of rows i, i + 4, i + 8, i + 12 (one per 128-bit lane), so an in-lane 4x4 transpose of dwords
 * puts the rows in lane order: half the shuffles of transpose16, which with the unpacking bound
 * the few-token path's cost per weight byte (Q5_0 ~10% less time per call, 1 and 8 tokens). */
TS_INLINE void few_quants(int type, const uint8_t *const rp[16], int64_t b, int bs, int nblk, __m512i q[16]) {
    /* d (and m) first; Q5_0 / Q5_1 then have qh before qs; MXFP4's scale is one byte. */
    const int qs = type == TS_TYPE_Q4_1 ? 4 : type == TS_TYPE_Q5_0 ? 6 : type == TS_TYPE_Q5_1 ? 8 : type == TS_TYPE_MXFP4 ? 1 : 2;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int h = 0; h < nblk; h++) {
        const size_t o = (size_t)(b + h) * bs + qs;
        __m512i lo[4], hi[4];
        for (int i = 0; i < 4; i++) {
            const __m512i x = load_x4(rp[i] + o, rp[i + 4] + o, rp[i + 8] + o, rp[i + 12] + o);
            /* Low nibbles are elements 0..15, high ones 16..31. */
            lo[i] = _mm512_and_si512(x, m4);
            hi[i] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
            if (type == TS_TYPE_Q5_0 || type == TS_TYPE_Q5_1) {
                const uint8_t *qh[4] = {rp[i] + o - 4, rp[i + 4] + o - 4, rp[i + 8] + o - 4, rp[i + 12] + o - 4};
                lo[i] = _mm512_mask_add_epi8(lo[i], _cvtu64_mask64(qh_x4(qh, 0)), lo[i], _mm512_set1_epi8(16));
                hi[i] = _mm512_mask_add_epi8(hi[i], _cvtu64_mask64(qh_x4(qh, 1)), hi[i], _mm512_set1_epi8(16));
            }
            if (type == TS_TYPE_IQ4_NL) {
                lo[i] = ts_avx512_iq4_shifted(lo[i]);
                hi[i] = ts_avx512_iq4_shifted(hi[i]);
            }
            if (type == TS_TYPE_MXFP4) {
                lo[i] = ts_avx512_mxfp4_shifted(lo[i]);
                hi[i] = ts_avx512_mxfp4_shifted(hi[i]);
            }
        }
        transpose4_lanes(lo);
        transpose4_lanes(hi);
        for (int j = 0; j < 4; j++) {
            q[8 * h + j] = lo[j];
            q[8 * h + 4 + j] = hi[j];
        }
    }
}

/* The end of a chunk of KC elements in the few-token paths: the first chunk starts each token's
 * sum, later ones add to it in order (tile()'s order), and the accumulators restart. */
TS_INLINE void few_chunk_end(__m512 *acc, __m512 *ysum, int nc, int first) {
    for (int t = 0; t < nc; t++) {
        ysum[t] = first ? acc[t] : _mm512_add_ps(acc[t], ysum[t]);
        acc[t] = _mm512_setzero_ps();
    }
}

/* The 16 rows' results from r0 (keep: those that exist) for each of nc tokens. */
TS_INLINE void few_store(float *y, size_t y_stride, int r0, __mmask16 keep, const __m512 *ysum, int nc) {
    for (int t = 0; t < nc; t++) _mm512_mask_storeu_ps(y + (size_t)t * y_stride + r0, keep, ysum[t]);
}

/* gemm_panels for nc <= FEW_MAX tokens of a 32-element format. Panels cost an unpack into memory
 * and a transpose per chunk whoever uses them; with few tokens that is most of the work, and a
 * row-major block_dot_rows pays a tree of shuffles per token instead. Here 16 rows are loaded,
 * unpacked and transposed in registers once per pair of blocks (one register: four quants of
 * each row), and every token meets them with eight vpdpbusd per block. Each (row, token) takes
 * the integer block sums and float operations of tile(): per block acc += id * (d_w * d_x)
 * (+ m_w * s_x), acc restarting at every chunk of KC elements and the chunks summed into y in
 * order, so the bits equal those of the panel path. The next 16 rows are prefetched while these
 * are computed: each row is read in a few short pieces, too short for the prefetcher to follow.
 * Returns 0 without memory for the block sums (the caller then takes the panel path). */
TS_INLINE int gemm_few_legacy(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t y_stride) {
    const int bs = ts_q8x32_block_bytes(type), o = quant_offset(type);
    const int64_t nb = n / TS_QK, stride = (nb + 15) / 16 * 16;
    int32_t *off = o ? malloc((size_t)nc * (size_t)stride * 4) : NULL;
    if (o && !off) return 0;
    for (int t = 0; o && t < nc; t++)
        token_sums(type, (const uint8_t *)x + (size_t)t * x_stride, 0, (int)nb, off + (size_t)t * stride, NULL);
    const int pair_bytes = 2 * bs;
    for (int r0 = 0; r0 < nr; r0 += 16) {
        const int rows = nr - r0 < 16 ? nr - r0 : 16;
        const uint8_t *wg = (const uint8_t *)w + (size_t)r0 * w_stride;
        /* Lanes past the last row repeat it; they are not stored. */
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512i rix = _mm512_mullo_epi32(_mm512_min_epi32(lane, _mm512_set1_epi32(rows - 1)),
                                               _mm512_set1_epi32((int)w_stride));
        const __mmask16 keep = (__mmask16)((1u << rows) - 1);
        const uint8_t *wn = (const uint8_t *)w + (size_t)(r0 + 16) * w_stride;
        const int next = nr - r0 - 16 < 16 ? nr - r0 - 16 : 16;
        const uint8_t *rp[16];
        for (int r = 0; r < 16; r++) rp[r] = wg + (size_t)(r < rows ? r : rows - 1) * w_stride;
        __m512 acc[FEW_MAX], ysum[FEW_MAX];
        for (int t = 0; t < nc; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b += 2) {
            const int two = b + 1 < nb;
            for (int r = 0; r < next; r++) ts_prefetch_ahead(wn + (size_t)r * w_stride + (size_t)b * bs, (size_t)pair_bytes, 0);
            __m512i q[16];
            /* q[j] lane r: quants 4j .. 4j + 3 of row r (j >= 8: block b + 1). Q8_0's blocks are two
             * 16-byte pieces: few_quants' loads would take as many shuffle-port uops as they save. */
            if (type == TS_TYPE_Q8_0) {
                for (int r = 0; r < 16; r++) q[r] = legacy_pair(type, rp[r] + (size_t)b * bs, bs, two);
                transpose16(q);
            } else {
                few_quants(type, rp, b, bs, 1 + two, q);
            }
            __m512 dw[2], mw[2];
            for (int h = 0; h < 1 + two; h++) rows_dm(type, wg, rix, b + h, bs, &dw[h], &mw[h]);
            for (int t = 0; t < nc; t++) {
                const uint8_t *xt = (const uint8_t *)x + (size_t)t * x_stride;
                for (int h = 0; h < 1 + two; h++) {
                    const uint8_t *xq = act_qs(type, xt, b + h);
                    __m512i id = o ? _mm512_set1_epi32(off[(size_t)t * stride + b + h]) : _mm512_setzero_si512();
                    for (int j = 0; j < 8; j++) id = dot_u8s8(id, q[8 * h + j], _mm512_set1_epi32((int)load_u32(xq + 4 * j)));
                    const float *ds = act_d(type, xt, b + h); /* d, then d * sum(xq) */
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id), _mm512_mul_ps(dw[h], _mm512_set1_ps(ds[0])), acc[t]);
                    if (has_min(type)) acc[t] = _mm512_fmadd_ps(mw[h], _mm512_set1_ps(ds[1]), acc[t]);
                }
            }
            /* A chunk of KC elements ends here (pairs never straddle one). */
            if ((b + 2) % (KC / TS_QK) == 0 || b + 2 >= nb) few_chunk_end(acc, ysum, nc, b < KC / TS_QK);
        }
        few_store(y, y_stride, r0, keep, ysum, nc);
    }
    free(off);
    return 1;
}

/* gemm_panels for nc <= FEW_MAX tokens of Q4_K, Q5_K or Q6_K, as gemm_few_legacy does it: per
 * super-block, the 16 rows' sub-block scales (one transpose), then per 64 elements their quants
 * (another), each met by every token. The float operations are tile()'s: per super-block
 * part += id * sc over its sub-blocks in order, acc += part * (d * d_x), and for Q4_K / Q5_K
 * part' += m * sum(xq) likewise, acc += part' * (-dmin * d_x); acc restarts at every chunk.
 * Returns 0 without memory for the block sums. */
TS_INLINE int gemm_few_kquant(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t y_stride) {
    const int kb = block_elems(type), o = quant_offset(type), mins = has_min(type);
    const int per_sb = TS_QK_K / kb, per_reg = 64 / kb, dwords = kb / 4;
    const int64_t ns = n / TS_QK_K, nb = n / kb, stride = (nb + 15) / 16 * 16;
    const size_t bytes = type == TS_TYPE_Q6_K ? sizeof(ts_block_q6_K)
                       : type == TS_TYPE_Q5_K ? sizeof(ts_block_q5_K) : sizeof(ts_block_q4_K);
    /* Per token and sub-block: -offset * sum(xq) (Q6_K) or sum(xq) (Q4_K, Q5_K). */
    void *sums = malloc((size_t)nc * (size_t)stride * 4);
    if (!sums) return 0;
    for (int t = 0; t < nc; t++)
        token_sums(type, (const uint8_t *)x + (size_t)t * x_stride, 0, (int)nb, (int32_t *)sums + (size_t)t * stride,
                   (float *)sums + (size_t)t * stride);
    for (int r0 = 0; r0 < nr; r0 += 16) {
        const int rows = nr - r0 < 16 ? nr - r0 : 16;
        const uint8_t *wg = (const uint8_t *)w + (size_t)r0 * w_stride;
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512i rix = _mm512_mullo_epi32(_mm512_min_epi32(lane, _mm512_set1_epi32(rows - 1)),
                                               _mm512_set1_epi32((int)w_stride));
        const __mmask16 keep = (__mmask16)((1u << rows) - 1);
        const uint8_t *wn = (const uint8_t *)w + (size_t)(r0 + 16) * w_stride;
        const int next = nr - r0 - 16 < 16 ? nr - r0 - 16 : 16;
        __m512 acc[FEW_MAX], ysum[FEW_MAX], part[FEW_MAX];
        for (int t = 0; t < nc; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
        for (int64_t s = 0; s < ns; s++) {
            for (int r = 0; r < next; r++) ts_prefetch_ahead(wn + (size_t)r * w_stride + (size_t)s * bytes, bytes, 0);
            const uint8_t *blk[16];
            for (int r = 0; r < 16; r++) blk[r] = wg + (size_t)(r < rows ? r : rows - 1) * w_stride + (size_t)s * bytes;
            /* sc[b] lane r: sub-block b's scale of row r; Q4_K / Q5_K: sc[8 + b] its min. */
            __m512i sc[16];
            for (int r = 0; r < 16; r++)
                sc[r] = _mm512_castps_si512(type == TS_TYPE_Q6_K
                    ? _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const ts_block_q6_K *)blk[r])->scales)))
                    : k45_scales(blk[r]));
            transpose16(sc);
            __m512 d, dm = _mm512_setzero_ps();
            if (type == TS_TYPE_Q6_K) {
                /* The dword ending with d: reading from d itself would pass the block's end. */
                const __m512i g = _mm512_i32gather_epi32(rix, wg + (size_t)s * bytes + offsetof(ts_block_q6_K, d) - 2, 1);
                d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
            } else {
                const __m512i g = _mm512_i32gather_epi32(rix, wg + (size_t)s * bytes, 1); /* d, dmin */
                d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
                const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
                dm = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dmin), _mm512_set1_epi32(INT32_MIN)));
            }
            for (int t = 0; t < nc; t++) part[t] = _mm512_setzero_ps();
            for (int i = 0; i < 4; i++) {
                __m512i q[16];
                for (int r = 0; r < 16; r++) q[r] = kquant_reg(type, blk[r], i);
                transpose16(q); /* q[j] lane r: quants 64i + 4j .. 64i + 4j + 3 of row r */
                for (int t = 0; t < nc; t++) {
                    const uint8_t *xt = (const uint8_t *)x + (size_t)t * x_stride;
                    for (int c = 0; c < per_reg; c++) {
                        const int64_t b = s * per_sb + i * per_reg + c;
                        const uint8_t *xq = act_qs(type, xt, b);
                        __m512i id = o ? _mm512_set1_epi32(((const int32_t *)sums)[(size_t)t * stride + b])
                                       : _mm512_setzero_si512();
                        for (int j = 0; j < dwords; j++)
                            id = dot_u8s8(id, q[dwords * c + j], _mm512_set1_epi32((int)load_u32(xq + 4 * j)));
                        part[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id), _mm512_castsi512_ps(sc[i * per_reg + c]), part[t]);
                    }
                }
            }
            for (int t = 0; t < nc; t++) {
                const uint8_t *xt = (const uint8_t *)x + (size_t)t * x_stride;
                const float dx = *act_d(type, xt, s * per_sb);
                acc[t] = _mm512_fmadd_ps(part[t], _mm512_mul_ps(d, _mm512_set1_ps(dx)), acc[t]);
                if (!mins) continue;
                const float *sx = (const float *)sums + (size_t)t * stride + s * per_sb;
                __m512 pm = _mm512_setzero_ps();
                for (int b = 0; b < per_sb; b++) pm = _mm512_fmadd_ps(_mm512_castsi512_ps(sc[8 + b]), _mm512_set1_ps(sx[b]), pm);
                acc[t] = _mm512_fmadd_ps(pm, _mm512_mul_ps(dm, _mm512_set1_ps(dx)), acc[t]);
            }
            if ((s + 1) % (KC / TS_QK_K) == 0 || s + 1 == ns) few_chunk_end(acc, ysum, nc, s < KC / TS_QK_K);
        }
        few_store(y, y_stride, r0, keep, ysum, nc);
    }
    free(sums);
    return 1;
}

/* y[c * y_stride + r] = dot(w row r, x row c) for r < nr, c < nc. The activations' block sums are
 * taken once per call for all tokens (or, without memory for them, per tile). Each (row, token)
 * takes the same operations whatever the other rows and tokens of the call, so a token's result
 * does not depend on the batch it came in. packed: w in ts/repack.h's layout, panels only. */
TS_INLINE void gemm_panels(int type, int packed, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                           const void *x, size_t x_stride, float *y, size_t y_stride) {
    _Alignas(64) panel P;
    _Alignas(64) uint8_t rows_u[PANEL][KC];
    _Alignas(64) int32_t off_tile[TT][MAX_BLK];
    _Alignas(64) float sx_tile[TT][MAX_BLK];
    if (!packed && nc <= FEW_MAX && !act_is_q8k(type) && gemm_few_legacy(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride))
        return;
    if (!packed && nc <= FEW_MAX && (is_k45(type) || type == TS_TYPE_Q6_K) &&
        gemm_few_kquant(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride))
        return;
    const int kb = block_elems(type);
    const int few = !packed && nc < PANEL_MIN;
    const uint8_t (*rq)[KC] = few ? (const uint8_t (*)[KC])rows_u : NULL;
    const int need_sums = quant_offset(type) || (act_is_q8k(type) && has_min(type));
    /* Per token: its block sums, padded to whole runs of 16. */
    const int64_t stride = (n / kb + 15) / 16 * 16;
    void *sums = need_sums ? malloc((size_t)nc * (size_t)stride * 4) : NULL;
    if (sums)
        for (int t = 0; t < nc; t++)
            token_sums(type, (const uint8_t *)x + (size_t)t * x_stride, 0, (int)(n / kb),
                       (int32_t *)sums + (size_t)t * stride, (float *)sums + (size_t)t * stride);
    for (int r0 = 0; r0 < nr; r0 += PANEL) {
        const int rows = nr - r0 < PANEL ? nr - r0 : PANEL;
        const __mmask16 last_rows = (__mmask16)((1u << ((rows - 1) % 16 + 1)) - 1);
        const uint8_t *wp = (const uint8_t *)w + (size_t)r0 * w_stride;
        for (int64_t e0 = 0; e0 < n; e0 += KC) {
            const int ke = n - e0 < KC ? (int)(n - e0) : KC;
            if (packed) panel_fill_packed(type, rows, wp, w_stride, e0, ke, &P);
            else panel_fill(type, rows, wp, w_stride, e0, ke, &P, rows_u, !few);
            for (int t0 = 0; t0 < nc;) {
                const int left = nc - t0;
                /* Few tokens go in tiles of 4, 2, 1; else a last partial tile repeats its last
                 * token, which is not stored. */
                const int T = !few || left >= TT ? TT : left >= 2 ? 2 : 1;
                const int nt = left < T ? left : T;
                const uint8_t *xt[TT];
                const int32_t *off[TT];
                const float *sx[TT];
                for (int t = 0; t < T; t++) {
                    const int tok = t0 + (t < nt ? t : nt - 1);
                    xt[t] = (const uint8_t *)x + (size_t)tok * x_stride;
                    if (sums) {
                        off[t] = (const int32_t *)sums + (size_t)tok * stride + e0 / kb;
                        sx[t] = (const float *)sums + (size_t)tok * stride + e0 / kb;
                    } else {
                        if (need_sums) token_sums(type, xt[t], e0 / kb, ke / kb, off_tile[t], sx_tile[t]);
                        off[t] = off_tile[t];
                        sx[t] = sx_tile[t];
                    }
                }
                float *yt = y + (size_t)t0 * y_stride + r0;
                const int64_t b0 = e0 / kb;
                const int nblk = ke / kb, first = e0 == 0;
#define TS_TILE(nh, t) tile(type, nh, t, &P, rq, b0, nblk, xt, off, sx, nt, yt, y_stride, first, last_rows)
                if (rows > 16) {
                    if (T == TT) TS_TILE(2, TT);
                    else if (T == 2) TS_TILE(2, 2);
                    else TS_TILE(2, 1);
                } else {
                    if (T == TT) TS_TILE(1, TT);
                    else if (T == 2) TS_TILE(1, 2);
                    else TS_TILE(1, 1);
                }
#undef TS_TILE
                t0 += nt;
            }
        }
    }
    free(sums);
}

#define TS_GEMM(name, type)                                                                              \
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,           \
                     size_t x_stride, float *y, size_t y_stride) {                                       \
        gemm_panels(type, 0, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);                          \
    }

TS_GEMM(gemm_q4_0, TS_TYPE_Q4_0)
TS_GEMM(gemm_q4_1, TS_TYPE_Q4_1)
TS_GEMM(gemm_q5_0, TS_TYPE_Q5_0)
TS_GEMM(gemm_q5_1, TS_TYPE_Q5_1)
TS_GEMM(gemm_q2_K, TS_TYPE_Q2_K)
TS_GEMM(gemm_q3_K, TS_TYPE_Q3_K)
TS_GEMM(gemm_q4_K, TS_TYPE_Q4_K)
TS_GEMM(gemm_q5_K, TS_TYPE_Q5_K)
TS_GEMM(gemm_q6_K, TS_TYPE_Q6_K)
TS_GEMM(gemm_mxfp4, TS_TYPE_MXFP4)
#ifdef TS_VNNI
/* Q8_0's and IQ4_NL's unsigned quants reach 255: beyond maddubs' int16 range, so VNNI only. */
TS_GEMM(gemm_q8_0, TS_TYPE_Q8_0)
TS_GEMM(gemm_iq4_nl, TS_TYPE_IQ4_NL)
#endif

#ifdef TS_VNNI
void ts_avx512vnni_gemm_panels_packed(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                      const void *x, size_t x_stride, float *y, size_t y_stride) {
    switch (type) {
#define TS_PACKED_CASE(t) case t: gemm_panels(t, 1, n, nr, nc, w, w_stride, x, x_stride, y, y_stride); break;
        TS_PACKED_CASE(TS_TYPE_Q4_0) TS_PACKED_CASE(TS_TYPE_Q4_1) TS_PACKED_CASE(TS_TYPE_Q5_0) TS_PACKED_CASE(TS_TYPE_Q8_0)
        TS_PACKED_CASE(TS_TYPE_Q4_K) TS_PACKED_CASE(TS_TYPE_Q6_K)
#undef TS_PACKED_CASE
    }
}
#endif

/* The types with a register path for few tokens (gemm_few_legacy, gemm_few_kquant) take one
 * row as fast as the matvec does (Qwen2.5 Q4_K/Q6_K and SmolLM2 Q4_1 decode, 1 thread). */
static void few_takes_one(ts_kernels *k) {
    static const int types[] = {TS_TYPE_Q4_0, TS_TYPE_Q4_1, TS_TYPE_Q5_0, TS_TYPE_Q5_1, TS_TYPE_Q8_0,
                                TS_TYPE_IQ4_NL, TS_TYPE_Q4_K, TS_TYPE_Q5_K, TS_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) k->gemm_one[types[i]] = k->gemm[types[i]] != NULL;
}

#ifdef TS_VNNI
void ts_register_avx512vnni_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q5_1] = gemm_q5_1;
    k->gemm[TS_TYPE_Q2_K] = gemm_q2_K;
    k->gemm[TS_TYPE_Q3_K] = gemm_q3_K;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q5_K] = gemm_q5_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
    k->gemm[TS_TYPE_Q8_0] = gemm_q8_0;
    k->gemm[TS_TYPE_IQ4_NL] = gemm_iq4_nl;
    k->gemm[TS_TYPE_MXFP4] = gemm_mxfp4;
    few_takes_one(k);
}
#else
void ts_register_avx512_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q5_1] = gemm_q5_1;
    k->gemm[TS_TYPE_Q2_K] = gemm_q2_K;
    k->gemm[TS_TYPE_Q3_K] = gemm_q3_K;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q5_K] = gemm_q5_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
    k->gemm[TS_TYPE_MXFP4] = gemm_mxfp4;
    few_takes_one(k);
}
#endif
