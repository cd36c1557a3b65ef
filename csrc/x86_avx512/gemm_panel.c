/* AVX-512: the gemm (many activation rows against a block of weight rows) of every type: the
 * panel path and the table's entries; gemm_few.c holds the register paths for few tokens.
 * Compiled twice like quants.c: plain, and with TS_VNNI for vpdpbusd.
 *
 * Weights are unpacked once per panel of up to 32 rows and a chunk of KC elements into unsigned
 * bytes laid out so that one register holds four consecutive quants of each of 16 rows. The
 * activations then are the broadcast operand: four int8 of one token meet 16 rows in one
 * vpdpbusd, and the panel, unpacked once, serves every token of the call. Below PANEL_MIN
 * tokens the transpose costs more than it saves: the rows stay in element order and each
 * row's block sum is gathered into its lane by a tree of shuffles instead (block_dot_rows).
 * The 32-element formats, Q4_K, Q5_K and Q6_K take a third path up to FEW_MAX tokens
 * (gemm_few.c: unpack and transpose in registers, no panel in memory).
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

#include "gemm.h"
#include "gemm_unpack.h"
#include "packed.h"

#define PANEL_MIN 6 /* tokens from which the panel's quants are transposed (measured) */
#define TT 4        /* tokens per tile */

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

/* Rows [0, rows) of the panel from w (rows w_stride apart), elements [e0, e0 + ke); rows up
 * to the next 16 are zero. Each row is unpacked in element order into tmp, then 16x16
 * transposes of dwords turn rows into register lanes: one scale per lane, and (transpose_quants)
 * four quants per lane. */
TS_ALWAYS_INLINE void panel_fill(int type, int rows, const uint8_t *w, size_t w_stride, int64_t e0, int ke, panel *P,
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
TS_ALWAYS_INLINE void panel_fill_packed(int type, int rows, const uint8_t *w, size_t w_stride, int64_t e0, int ke, panel *P) {
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

/* id[h][t] = off[t][b] + sum(u * xq) over block b (global b0 + b) for rows 16h .. 16h + 15. */
TS_ALWAYS_INLINE void block_dot(int type, int NH, int T, const panel *P, int64_t b0, int b, const uint8_t *const xt[TT],
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
            const __m512i a = _mm512_set1_epi32((int)ts_avx512_load_u32(xq[t] + 4 * k));
            id[0][t] = dot_u8s8(id[0][t], w0, a);
            if (NH > 1) id[1][t] = dot_u8s8(id[1][t], w1, a);
        }
    }
}

/* block_dot from row-major quants (rq: the chunk's unpacked rows), for calls with few tokens
 * where transposing the panel costs more than it saves: each row's block meets the token's in
 * its own lanes, then a tree of shuffles sums them into lane r. Integer sums: the same id. */
TS_ALWAYS_INLINE void block_dot_rows(int type, int NH, int T, const uint8_t (*rq)[KC], int64_t b0, int b,
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
TS_ALWAYS_INLINE void tile(int type, int NH, int T, const panel *P, const uint8_t (*rq)[KC], int64_t b0, int nblk,
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

/* y[c * y_stride + r] = dot(w row r, x row c) for r < nr, c < nc. The activations' block sums are
 * taken once per call for all tokens (or, without memory for them, per tile). Each (row, token)
 * takes the same operations whatever the other rows and tokens of the call, so a token's result
 * does not depend on the batch it came in. packed: w in ts/repack.h's layout, panels only. */
TS_ALWAYS_INLINE void gemm_panels(int type, int packed, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                  const void *x, size_t x_stride, float *y, size_t y_stride) {
    _Alignas(64) panel P;
    _Alignas(64) uint8_t rows_u[PANEL][KC];
    _Alignas(64) int32_t off_tile[TT][MAX_BLK];
    _Alignas(64) float sx_tile[TT][MAX_BLK];
    if (!packed && nc <= FEW_MAX &&
        TS_AVX512_NAME(ts_avx512_gemm_few)(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride))
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

#define TS_GEMM(name)                                                                                    \
    static void gemm_##name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,   \
                            size_t x_stride, float *y, size_t y_stride) {                              \
        gemm_panels(TS_TYPE_##name, 0, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);              \
    }
TS_GEMM_LEGACY(TS_GEMM)
TS_GEMM_KQUANT(TS_GEMM)
#undef TS_GEMM

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
#else
void ts_register_avx512_gemm(ts_kernels *k) {
#endif
#define TS_SET(name) k->gemm[TS_TYPE_##name] = gemm_##name;
    TS_GEMM_LEGACY(TS_SET)
    TS_GEMM_KQUANT(TS_SET)
#undef TS_SET
    few_takes_one(k);
}
