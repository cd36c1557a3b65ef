/* AVX-512 VNNI: the gemm over repacked Q4_K and Q6_K weights (ts/repack.h) for few activation rows.
 *
 * A packed super-block of 16 rows loads as registers whose lane r holds row r's 4-byte pieces:
 * an AND (and a shift for high nibbles; Q6_K an OR of its top two bits) leaves four quants of
 * each row per lane, and the rows' scales decode with lane-wise shifts, once per super-block for
 * all tokens. Each token then meets a run of 32 quants with eight vpdpbusd whose sums land in
 * their row's lane: no transpose, gather or horizontal sum per call (gemm_few.c's unpacked few-token
 * path transposes the 16 rows' scales and every 64 of their quants per super-block).
 *
 * The float operations are gemm_panel.c's for k-quants, so a packed model computes the bits the
 * unpacked one did and a (row, token) the same bits in any batch: per super-block part +=
 * id * sc over the sub-blocks in order (id the exact integer sum; Q6_K's starts at -32 *
 * sum(xq)), acc += part * (d * d_x); Q4_K then part' += m * sum(xq) likewise, acc += part' *
 * (-dmin * d_x); acc restarts every CHUNK super-blocks and the chunks add up in order. */
#include <immintrin.h>
#include <stdlib.h>

#include "gemm.h"
#include "packed.h"

#define TILE 8   /* tokens per pass over a row group's weights */
#define CHUNK (KC / TS_QK_K) /* super-blocks per chunk: gemm_panel.c's */
#define PF_AHEAD 1 /* super-blocks prefetched ahead */

TS_ALWAYS_INLINE int block_bytes(int type) {
    return type == TS_TYPE_Q6_K ? (int)sizeof(ts_block_q6_K) : (int)sizeof(ts_block_q4_K);
}

/* Rows of one group (16, packed at wg) x NT tokens (xt[t], their q8k_sums in sums[t]) over ns
 * super-blocks; y + t * ys receives token t's 16 sums. */
TS_ALWAYS_INLINE void group_tile(int type, int NT, const uint8_t *wg, int64_t ns, const uint8_t *const *xt,
                                 const void *const *sums, float *y, size_t ys) {
    const int sb_bytes = TS_PACK_ROWS * block_bytes(type), lines = (sb_bytes + 63) / 64;
    const int per_sb = TS_QK_K / block_elems(type); /* sums per super-block */
    __m512 acc[TILE], ysum[TILE];
    for (int t = 0; t < NT; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *blk = wg + (size_t)s * sb_bytes;
        __m512 sc[16], d, dm;
        ts_packed_k_scales(type, blk, sc);
        __m512 part[TILE];
        for (int t = 0; t < NT; t++) part[t] = _mm512_setzero_ps();
        for (int run = 0; run < 8; run++) {
            __m512i q[8];
            ts_packed_k_quants(type, blk, run, q);
            /* The group is one stream, but the prefetcher stops at each page's end: each run asks
             * for its eighth of the next super-block's lines (spread so, 8 tokens took ~10% less
             * time from memory than with all lines asked for at the super-block's start). */
            const int l0 = run * lines / 8, l1 = (run + 1) * lines / 8;
            for (int l = l0; l < l1; l++) _mm_prefetch((const char *)blk + PF_AHEAD * sb_bytes + 64 * l, _MM_HINT_T0);
            ts_packed_prefetch_l2(blk + 64 * l0, 64 * (l1 - l0));
            for (int t = 0; t < NT; t++) {
                const int8_t *xq = ((const ts_block_q8k *)xt[t] + s)->qs + 32 * run;
                if (type == TS_TYPE_Q4_K) {
                    /* A lone token runs two chains of vpdpbusd, halving the latency it waits on. */
                    __m512i id = ts_avx512_fresh_zero(), id1 = ts_avx512_fresh_zero();
                    for (int j = 0; j < 8; j++) {
                        int32_t a;
                        memcpy(&a, xq + 4 * j, 4);
                        if (NT == 1 && j % 2) id1 = _mm512_dpbusd_epi32(id1, q[j], _mm512_set1_epi32(a));
                        else id = _mm512_dpbusd_epi32(id, q[j], _mm512_set1_epi32(a));
                    }
                    if (NT == 1) id = _mm512_add_epi32(id, id1);
                    part[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id), sc[run], part[t]);
                } else {
                    /* Two sub-blocks of 16: quants 0..3 and 4..7 of the run. */
                    const int32_t *off = (const int32_t *)sums[t] + per_sb * s + 2 * run;
                    __m512i id0 = _mm512_set1_epi32(off[0]), id1 = _mm512_set1_epi32(off[1]);
                    for (int j = 0; j < 4; j++) {
                        int32_t a0, a1;
                        memcpy(&a0, xq + 4 * j, 4);
                        memcpy(&a1, xq + 16 + 4 * j, 4);
                        id0 = _mm512_dpbusd_epi32(id0, q[j], _mm512_set1_epi32(a0));
                        id1 = _mm512_dpbusd_epi32(id1, q[4 + j], _mm512_set1_epi32(a1));
                    }
                    part[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id0), sc[2 * run], part[t]);
                    part[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id1), sc[2 * run + 1], part[t]);
                }
            }
        }
        ts_packed_k_d(type, blk, &d, &dm);
        for (int t = 0; t < NT; t++) {
            const __m512 dx = _mm512_set1_ps(((const ts_block_q8k *)xt[t] + s)->d);
            acc[t] = _mm512_fmadd_ps(part[t], _mm512_mul_ps(d, dx), acc[t]);
            if (type != TS_TYPE_Q4_K) continue;
            const float *sx = (const float *)sums[t] + per_sb * s;
            __m512 pm = _mm512_setzero_ps();
            for (int b = 0; b < 8; b++) pm = _mm512_fmadd_ps(sc[8 + b], _mm512_set1_ps(sx[b]), pm);
            acc[t] = _mm512_fmadd_ps(pm, _mm512_mul_ps(dm, dx), acc[t]);
        }
        if ((s + 1) % CHUNK == 0 || s + 1 == ns)
            for (int t = 0; t < NT; t++) {
                ysum[t] = s < CHUNK ? acc[t] : _mm512_add_ps(acc[t], ysum[t]);
                acc[t] = _mm512_setzero_ps();
            }
    }
    for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (size_t)t * ys, ysum[t]);
}

/* y[c * y_stride + r] = dot(w row r, x row c) for r < nr (a multiple of 16), c < nc; w packed
 * with rows w_stride bytes apart as the original was. */
TS_ALWAYS_INLINE void gemm_packed_k(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                    const void *x, size_t x_stride, float *y, size_t y_stride) {
    const int per_sb = TS_QK_K / block_elems(type); /* sums per super-block */
    const int64_t ns = n / TS_QK_K, stride = ns * per_sb; /* per token */
    void *sums = nc < TS_PACKED_PANEL_FROM ? malloc((size_t)nc * (size_t)stride * 4) : NULL;
    if (!sums) {
        ts_avx512vnni_gemm_panels_packed(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
        return;
    }
    for (int t = 0; t < nc; t++) {
        const ts_block_q8k *xb = (const ts_block_q8k *)((const uint8_t *)x + (size_t)t * x_stride);
        for (int64_t s = 0; s < ns; s++) q8k_sums(type, xb + s, (int32_t *)sums + (size_t)t * stride + per_sb * s);
    }
    for (int r0 = 0; r0 + TS_PACK_ROWS <= nr; r0 += TS_PACK_ROWS) {
        const uint8_t *wg = (const uint8_t *)w + (size_t)r0 * w_stride;
        for (int t0 = 0; t0 < nc; t0 += TILE) {
            const int nt = nc - t0 < TILE ? nc - t0 : TILE;
            const uint8_t *xt[TILE];
            const void *st[TILE];
            for (int t = 0; t < nt; t++) {
                xt[t] = (const uint8_t *)x + (size_t)(t0 + t) * x_stride;
                st[t] = (const int32_t *)sums + (size_t)(t0 + t) * stride;
            }
            float *yt = y + (size_t)t0 * y_stride + r0;
            switch (nt) {
#define TS_CASE(k) case k: group_tile(type, k, wg, ns, xt, st, yt, y_stride); break;
                TS_CASE(1) TS_CASE(2) TS_CASE(3) TS_CASE(4) TS_CASE(5) TS_CASE(6) TS_CASE(7) TS_CASE(8)
#undef TS_CASE
            }
        }
    }
    free(sums);
}

static void gemm_packed_q4_K(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                             size_t x_stride, float *y, size_t y_stride) {
    gemm_packed_k(TS_TYPE_Q4_K, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
}

static void gemm_packed_q6_K(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                             size_t x_stride, float *y, size_t y_stride) {
    gemm_packed_k(TS_TYPE_Q6_K, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
}

void ts_register_avx512vnni_packed_k(ts_kernels *k) {
    k->gemm_packed[TS_TYPE_Q4_K] = gemm_packed_q4_K;
    k->gemm_packed[TS_TYPE_Q6_K] = gemm_packed_q6_K;
}
