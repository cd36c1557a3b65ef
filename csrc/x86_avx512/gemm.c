/* AVX-512: gemm (many activation rows against a block of weight rows).
 * Compiled twice like quants.c: plain, and with TS_VNNI for vpdpbusd.
 *
 * Weights are unpacked once per panel of up to 32 rows and a chunk of KC elements into unsigned
 * bytes laid out so that one register holds four consecutive quants of each of 16 rows. The
 * activations then are the broadcast operand: four int8 of one token meet 16 rows in one
 * vpdpbusd, and the panel, unpacked once, serves every token of the call.
 *
 * Sums stay exact integers as far as the formats allow, as in the per-row dots: a quant's
 * offset (Q4_0 8, Q5_0 16, Q8_0 128, Q6_K 32) enters each block's integer sum as
 * -offset * sum(xq); k-quant sub-block scales multiply exact integers and one float scale
 * (d * dx) applies per super-block; 32-element formats take d_w * d_x per block, and Q4_1 /
 * Q4_K minimums add min * sum(x) beside it. */
#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ts/kernels.h"

#define TS_INLINE static inline __attribute__((always_inline))

/* acc + sums of four u8*s8 products per int32 lane, and of two s16*s16 products. Without VNNI
 * the u8*s8 pairs pass through int16 (maddubs saturates): only for unsigned quants below 64. */
#ifdef TS_VNNI
TS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }
TS_INLINE __m512i dot_s16(__m512i acc, __m512i a, __m512i b) { return _mm512_dpwssd_epi32(acc, a, b); }
#else
TS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
TS_INLINE __m512i dot_s16(__m512i acc, __m512i a, __m512i b) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
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

TS_INLINE float f32_at(const void *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* Up to FEW accumulators reduced and stored (first: stored, else added) to y[c*ys + r]. */
TS_INLINE void store_cols(const __m512 *acc, int nc, float *y, size_t ys, int first) {
    for (int c = 0; c < nc; c++) {
        const float v = _mm512_reduce_add_ps(acc[c]);
        y[c * ys] = first ? v : y[c * ys] + v;
    }
}

#define PANEL 32          /* weight rows unpacked together: two registers of 16 */
#define KC 512            /* elements per chunk: the unpacked panel (16 KB) stays in L1 */
#ifndef TT
#define TT 4              /* tokens per tile */
#endif
#define MAX_BLK (KC / 16) /* blocks per chunk at the smallest block (Q6_K's 16) */

typedef struct {
    /* q[2 * k4 + h]: bytes 4 * k4 .. 4 * k4 + 3 of the chunk for rows 16h .. 16h + 15. */
    __m512i q[KC / 4 * 2];
    /* Per block and row. 32-element formats: dw = d, mw = Q4_1's min. k-quants: dw = the
     * sub-block scale, mw = Q4_K's sub-block min, both small integers. */
    _Alignas(64) float dw[MAX_BLK][PANEL];
    _Alignas(64) float mw[MAX_BLK][PANEL];
    /* Per k-quant super-block and row: d and -dmin. */
    _Alignas(64) float ds[KC / TS_QK_K][PANEL];
    _Alignas(64) float dm[KC / TS_QK_K][PANEL];
} panel;

/* Formats with a minimum per block (mw). */
TS_INLINE int has_min(int type) { return type == TS_TYPE_Q4_1 || type == TS_TYPE_Q4_K; }

/* Quant offset folded into the integer sums; 0 where a minimum or none applies. */
TS_INLINE int quant_offset(int type) {
    return type == TS_TYPE_Q4_0 ? 8 : type == TS_TYPE_Q5_0 ? 16 : type == TS_TYPE_Q8_0 ? 128 : type == TS_TYPE_Q6_K ? 32 : 0;
}

/* Elements per scale block and the activation format of each weight type. */
TS_INLINE int block_elems(int type) { return type == TS_TYPE_Q6_K ? 16 : 32; }
TS_INLINE int act_is_q8k(int type) { return type == TS_TYPE_Q4_K || type == TS_TYPE_Q6_K; }

/* Tokens from which a call unpacks panels (below: few-token tiles), as measured: k-quants
 * unpack more per weight byte. */
TS_INLINE int panel_min(int type) { return act_is_q8k(type) ? 12 : 6; }


/* ---- unpacking: one weight row's chunk to unsigned bytes in element order ------------------ */

TS_INLINE int legacy_size(int type) {
    return type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
}

/* Blocks [b0, b0 + nb) of a 32-element format: low nibbles are elements 0..15, high 16..31. */
TS_INLINE void unpack_legacy(int type, const uint8_t *wr, int64_t b0, int nb, uint8_t *u, float *dw, float *mw) {
    const int bs = legacy_size(type);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const uint8_t *blk0 = wr + (size_t)b0 * bs;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = blk0 + (size_t)b * bs;
        __m256i v;
        if (type == TS_TYPE_Q8_0) {
            v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_set1_epi8((char)0x80));
        } else {
            const int qs = type == TS_TYPE_Q4_0 ? 2 : type == TS_TYPE_Q4_1 ? 4 : 6;
            const __m128i p = _mm_loadu_si128((const __m128i *)(blk + qs));
            v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(p, m4)),
                                        _mm_and_si128(_mm_srli_epi16(p, 4), m4), 1);
            /* qh bit i is the fifth bit of element i. */
            if (type == TS_TYPE_Q5_0) v = _mm256_mask_add_epi8(v, (__mmask32)load_u32(blk + 2), v, _mm256_set1_epi8(16));
        }
        _mm256_storeu_si256((__m256i *)(u + 32 * b), v);
    }
    /* Each block's first four bytes: d, and Q4_1's m above it. */
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(bs));
    for (int b = 0; b < nb; b += 16) {
        const __mmask16 m = nb - b >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nb - b)) - 1);
        const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, blk0 + (size_t)b * bs, 1);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
        _mm512_storeu_ps(dw + b, d);
        if (type == TS_TYPE_Q4_1) _mm512_storeu_ps(mw + b, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16))));
    }
}

/* Super-blocks [s0, s0 + ns) of Q4_K: 6-bit scale sc_j and min m_j per 32 elements; element
 * 64i + k is the low nibble of qs[32i + k] for k < 32, else the high nibble of qs[32i + k - 32]. */
TS_INLINE void unpack_q4_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *mw, float *ds,
                           float *dm) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int s = 0; s < ns; s++) {
        const ts_block_q4_K *blk = (const ts_block_q4_K *)wr + s0 + s;
        /* Bytes 0..3 hold sc0..3 and 4..7 m0..3 (low 6 bits); sc4..7 and m4..7 take their low
         * 4 bits from the nibbles of bytes 8..11 and their top 2 bits from the top of bytes 0..7. */
        const uint32_t m6 = 0x3F3F3F3Fu, n4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
        const uint32_t a = load_u32(blk->scales), b = load_u32(blk->scales + 4), c = load_u32(blk->scales + 8);
        const __m128i sm = _mm_setr_epi32((int)(a & m6), (int)((c & n4) | ((a >> 6) & m2) << 4), (int)(b & m6),
                                          (int)(((c >> 4) & n4) | ((b >> 6) & m2) << 4));
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm));
        _mm256_storeu_ps(dw + 8 * s, _mm512_castps512_ps256(v));
        _mm256_storeu_ps(mw + 8 * s, _mm512_extractf32x8_ps(v, 1));
        ds[s * PANEL] = f16_at(&blk->d);
        dm[s * PANEL] = -f16_at(&blk->dmin);
        for (int i = 0; i < 4; i++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * i));
            _mm256_storeu_si256((__m256i *)(u + 256 * s + 64 * i), _mm256_and_si256(q, m4));
            _mm256_storeu_si256((__m256i *)(u + 256 * s + 64 * i + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        }
    }
}

/* Super-blocks of Q6_K: u = q + 32 (six bits), signed scale per 16 elements. Element
 * 128j + 32k + i: 4 bits from ql[64j + 32(k&1) + i] (high nibble when k >= 2), 2 bits from
 * qh[32j + i] at bit 2k. */
TS_INLINE void unpack_q6_K(const uint8_t *wr, int64_t s0, int ns, uint8_t *u, float *dw, float *ds) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (int s = 0; s < ns; s++) {
        const ts_block_q6_K *blk = (const ts_block_q6_K *)wr + s0 + s;
        _mm512_storeu_ps(dw + 16 * s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)blk->scales))));
        ds[s * PANEL] = f16_at(&blk->d);
        for (int j = 0; j < 2; j++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * j));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * j + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * j));
            uint8_t *o = u + 256 * s + 128 * j;
            _mm256_storeu_si256((__m256i *)o, _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                                             _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)));
            _mm256_storeu_si256((__m256i *)(o + 32), _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                                                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)));
            _mm256_storeu_si256((__m256i *)(o + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                                                    _mm256_and_si256(qh, m30)));
            _mm256_storeu_si256((__m256i *)(o + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                                                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)));
        }
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
 * to the next 16 are zero. Each row is unpacked in element order, then 16x16 transposes of
 * dwords turn rows into register lanes: four quants per lane, and one scale per lane. */
TS_INLINE void panel_fill(int type, int rows, const uint8_t *w, size_t w_stride, int64_t e0, int ke, panel *P) {
    _Alignas(64) uint8_t tmp[PANEL][KC];
    _Alignas(64) float dw[PANEL][MAX_BLK], mw[PANEL][MAX_BLK];
    const int half = rows > 16 ? 2 : 1;
    const int kb = block_elems(type), nblk = ke / kb;
    for (int r = 0; r < rows; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        if (type == TS_TYPE_Q4_K)
            unpack_q4_K(wr, e0 / TS_QK_K, ke / TS_QK_K, tmp[r], dw[r], mw[r], &P->ds[0][r], &P->dm[0][r]);
        else if (type == TS_TYPE_Q6_K) unpack_q6_K(wr, e0 / TS_QK_K, ke / TS_QK_K, tmp[r], dw[r], &P->ds[0][r]);
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
        for (int g = 0; 64 * g < ke; g++) {
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
 * each block's sum, or for Q4_K sx, the block's sum(xq). Writes whole runs of 16 (Q4_K: 8)
 * entries. q8x32 keeps d * sum(xq), exact in float (d has half precision), so s / d rounds
 * back to the sum. */
TS_INLINE void token_sums(int type, const uint8_t *x, int64_t b0, int nblk, int32_t *off, float *sx) {
    const int o = quant_offset(type);
    if (type == TS_TYPE_Q4_K) {
        for (int b = 0; b < nblk; b += 8) {
            const ts_block_q8k *xb = (const ts_block_q8k *)x + (b0 + b) / 8;
            const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
            _mm256_storeu_ps(sx + b, _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, _mm256_set1_epi16(1))));
        }
    } else if (type == TS_TYPE_Q6_K) {
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
TS_INLINE void block_dot(int type, int NH, const panel *P, int64_t b0, int b, const uint8_t *const xt[TT],
                         const int32_t *const off[TT], __m512i id[2][TT]) {
    const int kb = block_elems(type);
    for (int t = 0; t < TT; t++) {
        id[0][t] = quant_offset(type) ? _mm512_set1_epi32(off[t][b]) : _mm512_setzero_si512();
        id[1][t] = id[0][t];
    }
    const __m512i *wq = &P->q[2 * (b * kb / 4)];
    const uint8_t *xq[TT];
    for (int t = 0; t < TT; t++) xq[t] = act_qs(type, xt[t], b0 + b);
    for (int k = 0; k < kb / 4; k++) {
        const __m512i w0 = _mm512_load_si512(&wq[2 * k]);
        const __m512i w1 = NH > 1 ? _mm512_load_si512(&wq[2 * k + 1]) : w0;
        for (int t = 0; t < TT; t++) {
            const __m512i a = _mm512_set1_epi32((int)load_u32(xq[t] + 4 * k));
            id[0][t] = dot_u8s8(id[0][t], w0, a);
            if (NH > 1) id[1][t] = dot_u8s8(id[1][t], w1, a);
        }
    }
}

/* Rows 16h .. 16h + 15 (h < NH) x TT tokens over one chunk, stored (first) or added to y. */
TS_INLINE void tile(int type, int NH, const panel *P, int64_t b0, int nblk, const uint8_t *const xt[TT],
                    const int32_t *const off[TT], const float *const sx[TT], int nt, float *y, size_t ys,
                    int first, __mmask16 last_rows) {
    __m512 acc[2][TT];
    __m512i id[2][TT];
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < TT; t++) acc[h][t] = _mm512_setzero_ps();
    if (act_is_q8k(type)) {
        /* Integer sub-block sums times integer scales are exact in float below 2^24. */
        const int per_sb = TS_QK_K / block_elems(type);
        for (int sb = 0; sb < nblk; sb += per_sb) {
            __m512 part[2][TT];
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < TT; t++) part[h][t] = _mm512_setzero_ps();
            for (int b = sb; b < sb + per_sb; b++) {
                block_dot(type, NH, P, b0, b, xt, off, id);
                for (int h = 0; h < NH; h++) {
                    const __m512 sc = _mm512_load_ps(&P->dw[b][16 * h]);
                    for (int t = 0; t < TT; t++)
                        part[h][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id[h][t]), sc, part[h][t]);
                }
            }
            for (int h = 0; h < NH; h++) {
                const __m512 d = _mm512_load_ps(&P->ds[sb / per_sb][16 * h]);
                for (int t = 0; t < TT; t++)
                    acc[h][t] = _mm512_fmadd_ps(part[h][t], _mm512_mul_ps(d, _mm512_set1_ps(*act_d(type, xt[t], b0 + sb))),
                                                acc[h][t]);
            }
            if (type == TS_TYPE_Q4_K) {
                for (int h = 0; h < NH; h++)
                    for (int t = 0; t < TT; t++) part[h][t] = _mm512_setzero_ps();
                for (int b = sb; b < sb + per_sb; b++)
                    for (int h = 0; h < NH; h++) {
                        const __m512 mn = _mm512_load_ps(&P->mw[b][16 * h]);
                        for (int t = 0; t < TT; t++) part[h][t] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sx[t][b]), part[h][t]);
                    }
                for (int h = 0; h < NH; h++) {
                    const __m512 dmin = _mm512_load_ps(&P->dm[sb / per_sb][16 * h]);
                    for (int t = 0; t < TT; t++)
                        acc[h][t] = _mm512_fmadd_ps(part[h][t], _mm512_mul_ps(dmin, _mm512_set1_ps(*act_d(type, xt[t], b0 + sb))),
                                                    acc[h][t]);
                }
            }
        }
    } else {
        for (int b = 0; b < nblk; b++) {
            block_dot(type, NH, P, b0, b, xt, off, id);
            for (int h = 0; h < NH; h++) {
                const __m512 dw = _mm512_load_ps(&P->dw[b][16 * h]);
                for (int t = 0; t < TT; t++) {
                    const float *ds = act_d(type, xt[t], b0 + b); /* d, then d * sum(xq) */
                    acc[h][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id[h][t]), _mm512_mul_ps(dw, _mm512_set1_ps(ds[0])),
                                                acc[h][t]);
                    if (type == TS_TYPE_Q4_1)
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

/* y[c * y_stride + r] = dot(w row r, x row c) for r < nr, c < nc. The activations' block sums are
 * taken once per call for all tokens (or, without memory for them, per tile). */
TS_INLINE void gemm_panels(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                           size_t x_stride, float *y, size_t y_stride) {
    _Alignas(64) panel P;
    _Alignas(64) int32_t off_tile[TT][MAX_BLK];
    _Alignas(64) float sx_tile[TT][MAX_BLK];
    const int kb = block_elems(type);
    const int need_sums = quant_offset(type) || type == TS_TYPE_Q4_K;
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
            panel_fill(type, rows, wp, w_stride, e0, ke, &P);
            for (int t0 = 0; t0 < nc; t0 += TT) {
                const int nt = nc - t0 < TT ? nc - t0 : TT;
                /* Missing tokens of the last tile repeat the last one and are not stored. */
                const uint8_t *xt[TT];
                const int32_t *off[TT];
                const float *sx[TT];
                for (int t = 0; t < TT; t++) {
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
                if (rows > 16) tile(type, 2, &P, e0 / kb, ke / kb, xt, off, sx, nt, yt, y_stride, e0 == 0, last_rows);
                else tile(type, 1, &P, e0 / kb, ke / kb, xt, off, sx, nt, yt, y_stride, e0 == 0, last_rows);
            }
        }
    }
    free(sums);
}

/* ---- few tokens, 32-element blocks ---------------------------------------------------------
 * Below panel_min tokens unpacking a panel costs more than it saves; these tiles unpack each
 * weight block in registers for up to FEW tokens instead.
 *
 * Blocks go in fours, one per 128-bit lane: one register holds elements 0..15 of four blocks,
 * another elements 16..31, so that the integer dot of a block lands in one lane's four int32
 * and a single conversion and FMA serve four blocks. The activations of a chunk of blocks are
 * rearranged that way once per call (shared by all weight rows of the tile), with their scales
 * spread over their lanes and the per-block offset term; each weight quad is then unpacked
 * once and meets up to four activation rows. */

#define FEW 4    /* tokens per few-token tile */
#define CHUNK 64 /* blocks per chunk: the rearranged activations of FEW rows stay in L1 */

typedef struct {
    __m512i lo[CHUNK / 4];  /* elements 0..15 of each block (Q8_0: plus 128, the unsigned side) */
    __m512i hi[CHUNK / 4];  /* elements 16..31 */
    __m512 d[CHUNK / 4];    /* x.d over each block's four lanes; 0 for a missing block */
    __m512i off[CHUNK / 4]; /* Q4_0 / Q5_0: -offset * (sums of 4 quants), the integer start */
    __m512 s[CHUNK / 4];    /* Q4_1: x.s / 4 over each block's lanes, the minimum's partner */
} act_chunk;

/* Four 16-byte pieces p[0..3] as the four 128-bit lanes of one register. */
TS_INLINE __m512i load_quad(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p1), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* Float lanes 4k..4k+3 = lane 2k + odd of the eight in f. */
TS_INLINE __m512 spread4(__m256 f, int odd) {
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(odd),
                                         _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6));
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(f));
}

TS_INLINE void act_prepare(int type, const ts_block_q8x32 *x, int nbc, act_chunk *a) {
    static const int8_t zero[TS_QK] = {0};
    for (int g = 0; 4 * g < nbc; g++) {
        const int8_t *q[4];
        float ds[8];
        for (int k = 0; k < 4; k++) {
            const int i = 4 * g + k;
            q[k] = i < nbc ? x[i].qs : zero;
            ds[2 * k] = i < nbc ? x[i].d : 0.0f;
            ds[2 * k + 1] = i < nbc ? x[i].s * 0.25f : 0.0f;
        }
        __m512i lo = load_quad((const uint8_t *)q[0], (const uint8_t *)q[1], (const uint8_t *)q[2],
                               (const uint8_t *)q[3]);
        __m512i hi = load_quad((const uint8_t *)q[0] + 16, (const uint8_t *)q[1] + 16,
                               (const uint8_t *)q[2] + 16, (const uint8_t *)q[3] + 16);
        const __m256 dsv = _mm256_loadu_ps(ds);
        a->d[g] = spread4(dsv, 0);
        if (type == TS_TYPE_Q4_1) a->s[g] = spread4(dsv, 1);
        if (type == TS_TYPE_Q4_0 || type == TS_TYPE_Q5_0) {
            const __m512i off = _mm512_set1_epi8(type == TS_TYPE_Q4_0 ? 8 : 16);
            const __m512i sum = dot_u8s8(dot_u8s8(_mm512_setzero_si512(), off, lo), off, hi);
            a->off[g] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
        }
        if (type == TS_TYPE_Q8_0) {
            lo = _mm512_xor_si512(lo, _mm512_set1_epi8((char)0x80));
            hi = _mm512_xor_si512(hi, _mm512_set1_epi8((char)0x80));
        }
        a->lo[g] = lo;
        a->hi[g] = hi;
    }
}

/* Bits 16h .. 16h+15 of each of the four qh words, as one 64-bit byte mask. */
TS_INLINE __mmask64 q5_mask(const uint32_t qh[4], int h) {
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) m |= (uint64_t)((qh[k] >> (16 * h)) & 0xFFFF) << (16 * k);
    return (__mmask64)m;
}

TS_INLINE void gemm_q8x32_rows(int type, int nc, int nbc, int nr, const uint8_t *w, size_t w_stride,
                               const act_chunk *act, float *y, size_t ys, int first) {
    const int bs = type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
    const int qs = type == TS_TYPE_Q4_0 || type == TS_TYPE_Q8_0 ? 2 : type == TS_TYPE_Q4_1 ? 4 : 6;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        __m512 acc[FEW];
        for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
        for (int g = 0; 4 * g < nbc; g++) {
            /* A missing block repeats the last one; its activation scale is 0. */
            const uint8_t *b[4];
            for (int k = 0; k < 4; k++) b[k] = wr + (size_t)(4 * g + k < nbc ? 4 * g + k : nbc - 1) * bs;
            __m512i lo, hi;
            if (type == TS_TYPE_Q8_0) {
                lo = load_quad(b[0] + qs, b[1] + qs, b[2] + qs, b[3] + qs);
                hi = load_quad(b[0] + qs + 16, b[1] + qs + 16, b[2] + qs + 16, b[3] + qs + 16);
            } else {
                /* Low nibbles are elements 0..15, high nibbles 16..31. */
                const __m512i v = load_quad(b[0] + qs, b[1] + qs, b[2] + qs, b[3] + qs);
                lo = _mm512_and_si512(v, m4);
                hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            if (type == TS_TYPE_Q5_0) {
                /* qh bit i is the fifth bit of element i. */
                const uint32_t qh[4] = {load_u32(b[0] + 2), load_u32(b[1] + 2), load_u32(b[2] + 2),
                                        load_u32(b[3] + 2)};
                lo = _mm512_mask_add_epi8(lo, q5_mask(qh, 0), lo, _mm512_set1_epi8(16));
                hi = _mm512_mask_add_epi8(hi, q5_mask(qh, 1), hi, _mm512_set1_epi8(16));
            }
            /* [d, m] of each block (Q4_1), else d and two quant bytes. */
            const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32((int)load_u32(b[0]), (int)load_u32(b[1]),
                                                             (int)load_u32(b[2]), (int)load_u32(b[3])));
            const __m512 dw = spread4(dm, 0);
            const __m512 mw = spread4(dm, 1);
            /* Q8_0: the activations carry +128; take 128 * (sums of 4 weight quants) back out. */
            __m512i corr = _mm512_setzero_si512();
            if (type == TS_TYPE_Q8_0) {
                const __m512i k128 = _mm512_set1_epi8((char)0x80);
                corr = _mm512_sub_epi32(corr, dot_u8s8(dot_u8s8(corr, k128, lo), k128, hi));
            }
            for (int c = 0; c < nc; c++) {
                const act_chunk *x = &act[c];
                __m512i dot;
                if (type == TS_TYPE_Q8_0) dot = dot_u8s8(dot_u8s8(corr, x->lo[g], lo), x->hi[g], hi);
                else if (type == TS_TYPE_Q4_1) dot = dot_u8s8(dot_u8s8(corr, lo, x->lo[g]), hi, x->hi[g]);
                else dot = dot_u8s8(dot_u8s8(x->off[g], lo, x->lo[g]), hi, x->hi[g]);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, x->d[g]), acc[c]);
                if (type == TS_TYPE_Q4_1) acc[c] = _mm512_fmadd_ps(mw, x->s[g], acc[c]);
            }
        }
        store_cols(acc, nc, y + r, ys, first);
    }
}

TS_INLINE void gemm_q8x32(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    const int bs = type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
    const int64_t nb = n / TS_QK;
    act_chunk act[FEW];
    for (int64_t b0 = 0; b0 < nb; b0 += CHUNK) {
        const int nbc = nb - b0 < CHUNK ? (int)(nb - b0) : CHUNK;
        for (int c = 0; c < nc; c++)
            act_prepare(type, (const ts_block_q8x32 *)((const char *)x + (size_t)c * x_stride) + b0, nbc, &act[c]);
        const uint8_t *wc = (const uint8_t *)w + (size_t)b0 * bs;
        /* A constant column count lets the accumulators live in registers. */
        switch (nc) {
        case 1: gemm_q8x32_rows(type, 1, nbc, nr, wc, w_stride, act, y, y_stride, b0 == 0); break;
        case 2: gemm_q8x32_rows(type, 2, nbc, nr, wc, w_stride, act, y, y_stride, b0 == 0); break;
        case 3: gemm_q8x32_rows(type, 3, nbc, nr, wc, w_stride, act, y, y_stride, b0 == 0); break;
        default: gemm_q8x32_rows(type, 4, nbc, nr, wc, w_stride, act, y, y_stride, b0 == 0); break;
        }
    }
}

/* ---- few tokens, k-quants ---------------------------------------------------------------------
 * A super-block's quants become unsigned bytes in element order, 64 to a register; maddubs
 * pairs them with the activations (below int16 saturation: u <= 63, |x| <= 127) and dpwssd
 * applies each 16- or 32-element sub-block's integer scale. Weight unpacking and scales are
 * shared by all activation rows of the tile; only d * x.d is per row and super-block. */

TS_INLINE const ts_block_q8k *act_k(const void *x, size_t x_stride, int c) {
    return (const ts_block_q8k *)((const char *)x + (size_t)c * x_stride);
}

/* Q4_K's packed 6-bit scales and mins -> int16 [sc0..sc7, m0..m7]. Bytes 0..3 hold sc0..3 and
 * m0..3 are bytes 4..7 (low 6 bits each); sc4..7 and m4..7 take their low 4 bits from the
 * nibbles of bytes 8..11 and their top 2 bits from the spare top bits of bytes 0..7. */
TS_INLINE __m256i q4_K_scales16(const uint8_t *raw) {
    const uint32_t m6 = 0x3F3F3F3Fu, m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const uint32_t a = load_u32(raw), b = load_u32(raw + 4), c = load_u32(raw + 8);
    const uint32_t sc_lo = a & m6, sc_hi = (c & m4) | ((a >> 6) & m2) << 4;
    const uint32_t mn_lo = b & m6, mn_hi = ((c >> 4) & m4) | ((b >> 6) & m2) << 4;
    return _mm256_cvtepu8_epi16(_mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)mn_lo, (int)mn_hi));
}

/* int16 lanes 0..15 = lane lo of v, 16..31 = lane hi. */
TS_INLINE __m512i spread16(__m256i v, int lo, int hi) {
    const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(v));
}

TS_INLINE void gemm_q4_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    for (int r = 0; r < nr; r++) {
        const ts_block_q4_K *wr = (const ts_block_q4_K *)((const char *)w + (size_t)r * w_stride);
        __m512 acc[FEW];
        __m256 accm[FEW];
        for (int c = 0; c < nc; c++) {
            acc[c] = _mm512_setzero_ps();
            accm[c] = _mm256_setzero_ps();
        }
        for (int64_t b = 0; b < nb; b++) {
            const __m256i sm = q4_K_scales16(wr[b].scales);
            /* The min of 32 elements, once per 16 of them to meet bsums: m0 m0 m1 m1 .. m7 m7. */
            const __m256i mins = _mm256_permutexvar_epi16(
                _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), sm);
            /* Elements 64j .. 64j+31 are the low nibbles of qs[32j ..], the next 32 the high ones. */
            __m512i u[4], sc[4];
            for (int j = 0; j < 4; j++) {
                const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr[b].qs + 32 * j)));
                u[j] = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0)),
                                        _mm512_set1_epi8(0x0F));
                sc[j] = spread16(sm, 2 * j, 2 * j + 1);
            }
            const float d = f16_at(&wr[b].d), dmin = f16_at(&wr[b].dmin);
            for (int c = 0; c < nc; c++) {
                const ts_block_q8k *xb = act_k(x, x_stride, c) + b;
                __m512i isum = _mm512_setzero_si512();
                for (int j = 0; j < 4; j++)
                    isum = dot_s16(isum, _mm512_maddubs_epi16(u[j], _mm512_loadu_si512(xb->qs + 64 * j)), sc[j]);
                const __m256i imin = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)xb->bsums));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * xb->d), acc[c]);
                accm[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_set1_ps(dmin * xb->d), accm[c]);
            }
        }
        for (int c = 0; c < nc; c++) {
            const __m256 lo = _mm256_sub_ps(_mm512_castps512_ps256(acc[c]), accm[c]);
            acc[c] = _mm512_insertf32x8(acc[c], lo, 0);
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

TS_INLINE void gemm_q6_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    for (int r = 0; r < nr; r++) {
        const ts_block_q6_K *wr = (const ts_block_q6_K *)((const char *)w + (size_t)r * w_stride);
        __m512 acc[FEW];
        for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wr[b].scales));
            /* Quants are stored as u - 32: the -32 * sum(scale * bsums) term starts each sum. */
            const __m256i bias = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
            /* Elements 128j + 32k + i: 4 bits from ql[64j + 32(k&1) + i] (high nibble when k >= 2),
             * 2 bits from qh[32j + i] at bit 2k. u[2j] holds k = 0, 1 and u[2j+1] k = 2, 3. */
            __m512i u[4], sc[4];
            for (int j = 0; j < 2; j++) {
                const __m512i ql = _mm512_loadu_si512(wr[b].ql + 64 * j);
                const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr[b].qh + 32 * j)));
                const __m512i h01 = _mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4));
                const __m512i h23 = _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
                u[2 * j] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(h01, m30));
                u[2 * j + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_and_si512(h23, m30));
            }
            /* int16 lane l of chunk t covers elements 64t + 2l, 2l+1: scale 4t + l/8. */
            for (int t = 0; t < 4; t++) {
                const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * t)),
                    _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                                       17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                                       1, 0), 3));
                sc[t] = _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16));
            }
            const float d = f16_at(&wr[b].d);
            for (int c = 0; c < nc; c++) {
                const ts_block_q8k *xb = act_k(x, x_stride, c) + b;
                __m512i isum = _mm512_zextsi256_si512(
                    _mm256_madd_epi16(bias, _mm256_loadu_si256((const __m256i *)xb->bsums)));
                for (int t = 0; t < 4; t++)
                    isum = dot_s16(isum, _mm512_maddubs_epi16(u[t], _mm512_loadu_si512(xb->qs + 64 * t)), sc[t]);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * xb->d), acc[c]);
            }
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

/* The whole product in tiles of up to 16 weight rows x FEW tokens. */
TS_INLINE void gemm_few(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                        size_t x_stride, float *y, size_t y_stride) {
    for (int r0 = 0; r0 < nr; r0 += 16)
        for (int c0 = 0; c0 < nc; c0 += FEW) {
            const int rows = nr - r0 < 16 ? nr - r0 : 16, cols = nc - c0 < FEW ? nc - c0 : FEW;
            const uint8_t *wr = (const uint8_t *)w + (size_t)r0 * w_stride;
            const uint8_t *xc = (const uint8_t *)x + (size_t)c0 * x_stride;
            float *yc = y + (size_t)c0 * y_stride + r0;
            if (!act_is_q8k(type)) {
                gemm_q8x32(type, n, rows, cols, wr, w_stride, xc, x_stride, yc, y_stride);
                continue;
            }
            /* A constant column count lets the accumulators live in registers. */
            const int64_t nb = n / TS_QK_K;
#define TS_FEW_K(k)                                                                                  \
    (type == TS_TYPE_Q4_K ? gemm_q4_K_rows(k, nb, rows, wr, w_stride, xc, x_stride, yc, y_stride)  \
                          : gemm_q6_K_rows(k, nb, rows, wr, w_stride, xc, x_stride, yc, y_stride))
            switch (cols) {
            case 1: TS_FEW_K(1); break;
            case 2: TS_FEW_K(2); break;
            case 3: TS_FEW_K(3); break;
            default: TS_FEW_K(4); break;
            }
#undef TS_FEW_K
        }
}

#define TS_GEMM(name, type)                                                                              \
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,           \
                     size_t x_stride, float *y, size_t y_stride) {                                       \
        if (nc < panel_min(type)) gemm_few(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);            \
        else gemm_panels(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);                        \
    }

TS_GEMM(gemm_q4_0, TS_TYPE_Q4_0)
TS_GEMM(gemm_q4_1, TS_TYPE_Q4_1)
TS_GEMM(gemm_q5_0, TS_TYPE_Q5_0)
TS_GEMM(gemm_q4_K, TS_TYPE_Q4_K)
TS_GEMM(gemm_q6_K, TS_TYPE_Q6_K)
#ifdef TS_VNNI
/* Q8_0's unsigned quants reach 255: beyond maddubs' int16 range, so VNNI only. */
TS_GEMM(gemm_q8_0, TS_TYPE_Q8_0)
#endif

#ifdef TS_VNNI
void ts_register_avx512vnni_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
    k->gemm[TS_TYPE_Q8_0] = gemm_q8_0;
}
#else
void ts_register_avx512_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
}
#endif
