/* AVX-512 VNNI: the gemm over repacked weights (ts/repack.h), for one activation row and for many.
 *
 * A packed block of 16 rows loads as registers whose lane r already holds four quants of row r:
 * 4-bit formats need one AND (and a shift for the high nibbles), Q5_0 a masked add of its fifth
 * bits, Q8_0 an XOR, and the 16 rows' d (and m) are one f16 load. Each token then meets the block
 * with one vpdpbusd per four quants and sums land in their row's lane: no transpose, gather or
 * horizontal sum is paid per call, so the cost per weight byte stays near the matvec's while
 * every extra token adds only its vpdpbusd. A (row, token) takes the same integer block sums and
 * float operations whatever else is in the call (the tokens' accumulators are separate), so a
 * row's result has the same bits alone as in any batch. Sums are exact integers as in the per-row
 * dots: a quant's offset (Q4_0 8, Q5_0 16, Q8_0 128) enters as -offset * sum(xq); per block
 * acc += id * (d_w * d_x), and Q4_1 adds m_w * (d_x * sum(xq));
 * acc restarts every CHUNK blocks and the chunks' sums add up in order, as in gemm_panel.c. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "packed.h"

#define TILE 8 /* tokens per pass over a row group's weights: 8 accumulators beside 8 quant registers */
/* Blocks summed before their sum joins the row's total: the unpacked gemm's chunks of 512
 * elements (gemm_panel.c), so that a packed model computes the bits the unpacked one did. */
#define CHUNK 16
#define PF_AHEAD 4 /* blocks prefetched ahead */

/* Rows of one group (16, packed at wg) x NT tokens (xt[t], blocks' -offset * sum(xq) in off[t]
 * where the type has an offset) over all nb blocks; y + t * ys receives token t's 16 sums. */
TS_ALWAYS_INLINE void group_tile(int type, int NT, const uint8_t *wg, int64_t nb, const uint8_t *const *xt,
                                 const int32_t *const *off, float *y, size_t ys) {
    const int bs = ts_q8x32_block_bytes(type), o = quant_offset(type);
    __m512 acc[TILE], ysum[TILE];
    for (int t = 0; t < NT; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = wg + (size_t)b * TS_PACK_ROWS * bs;
        /* With many tokens the weights arrive slower than the hardware prefetcher runs ahead of
         * them (a page's end stops it): ask for blocks a few ahead (past the end: harmless). */
        for (int l = 0; l < TS_PACK_ROWS * bs; l += 64) _mm_prefetch((const char *)blk + PF_AHEAD * TS_PACK_ROWS * bs + l, _MM_HINT_T0);
        ts_packed_prefetch_l2(blk, TS_PACK_ROWS * bs);
        __m512i q[8];
        ts_packed_quants(type, blk, q);
        const __m512 dw = ts_packed_d(blk), mw = ts_packed_m(type, blk);
        for (int t = 0; t < NT; t++) {
            const ts_block_q8x32 *xb = (const ts_block_q8x32 *)xt[t] + b;
            /* A lone token runs two chains of vpdpbusd, halving the latency its block waits on;
             * several tokens' chains already overlap. Integer sums are exact: order does not show. */
            __m512i id = o ? _mm512_set1_epi32(off[t][b]) : ts_avx512_fresh_zero();
            __m512i id1 = ts_avx512_fresh_zero();
            for (int j = 0; j < 8; j++) {
                int32_t a;
                memcpy(&a, xb->qs + 4 * j, 4);
                if (NT == 1 && j % 2) id1 = _mm512_dpbusd_epi32(id1, q[j], _mm512_set1_epi32(a));
                else id = _mm512_dpbusd_epi32(id, q[j], _mm512_set1_epi32(a));
            }
            if (NT == 1) id = _mm512_add_epi32(id, id1);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id), _mm512_mul_ps(dw, _mm512_set1_ps(xb->d)), acc[t]);
            if (type == TS_TYPE_Q4_1) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xb->s), acc[t]);
        }
        if ((b + 1) % CHUNK == 0 || b + 1 == nb)
            for (int t = 0; t < NT; t++) {
                ysum[t] = b < CHUNK ? acc[t] : _mm512_add_ps(acc[t], ysum[t]);
                acc[t] = _mm512_setzero_ps();
            }
    }
    for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (size_t)t * ys, ysum[t]);
}

/* y[c * y_stride + r] = dot(w row r, x row c) for r < nr (a multiple of 16), c < nc; w packed
 * with rows w_stride bytes apart as the original was. */
TS_ALWAYS_INLINE void gemm_packed(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                                  size_t x_stride, float *y, size_t y_stride) {
    if (nc >= TS_PACKED_PANEL_FROM) {
        ts_avx512vnni_gemm_panels_packed(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
        return;
    }
    const int o = quant_offset(type);
    /* Each token's block offsets once per call rather than once per row group (token_sums
     * writes whole runs of 16); without memory for them the panels take the call. */
    const int64_t nb = n / TS_QK, stride = (nb + 15) / 16 * 16;
    int32_t *offs = o ? malloc((size_t)nc * (size_t)stride * sizeof(int32_t)) : NULL;
    if (o && !offs) {
        ts_avx512vnni_gemm_panels_packed(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
        return;
    }
    for (int t = 0; offs && t < nc; t++)
        token_sums(type, (const uint8_t *)x + (size_t)t * x_stride, 0, (int)nb, offs + (size_t)t * stride, NULL);
    for (int r0 = 0; r0 + TS_PACK_ROWS <= nr; r0 += TS_PACK_ROWS) {
        const uint8_t *wg = (const uint8_t *)w + (size_t)r0 * w_stride;
        for (int t0 = 0; t0 < nc; t0 += TILE) {
            const int nt = nc - t0 < TILE ? nc - t0 : TILE;
            const uint8_t *xt[TILE];
            const int32_t *off[TILE];
            for (int t = 0; t < nt; t++) {
                xt[t] = (const uint8_t *)x + (size_t)(t0 + t) * x_stride;
                off[t] = offs ? offs + (size_t)(t0 + t) * stride : NULL;
            }
            float *yt = y + (size_t)t0 * y_stride + r0;
            switch (nt) {
#define TS_CASE(k) case k: group_tile(type, k, wg, nb, xt, off, yt, y_stride); break;
                TS_CASE(1) TS_CASE(2) TS_CASE(3) TS_CASE(4) TS_CASE(5) TS_CASE(6) TS_CASE(7) TS_CASE(8)
#undef TS_CASE
            }
        }
    }
    free(offs);
}

#define TS_GEMM_PACKED(name, type)                                                                   \
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,       \
                     size_t x_stride, float *y, size_t y_stride) {                                   \
        gemm_packed(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);                         \
    }

TS_GEMM_PACKED(gemm_packed_q4_0, TS_TYPE_Q4_0)
TS_GEMM_PACKED(gemm_packed_q4_1, TS_TYPE_Q4_1)
TS_GEMM_PACKED(gemm_packed_q5_0, TS_TYPE_Q5_0)
TS_GEMM_PACKED(gemm_packed_q8_0, TS_TYPE_Q8_0)

void ts_register_avx512vnni_packed(ts_kernels *k) {
    k->gemm_packed[TS_TYPE_Q4_0] = gemm_packed_q4_0;
    k->gemm_packed[TS_TYPE_Q4_1] = gemm_packed_q4_1;
    k->gemm_packed[TS_TYPE_Q5_0] = gemm_packed_q5_0;
    k->gemm_packed[TS_TYPE_Q8_0] = gemm_packed_q8_0;
    ts_register_avx512vnni_packed_k(k);
}
