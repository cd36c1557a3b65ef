/* Intel AMX: the packed Q8_0 gemm (ts/repack.h) for AMX_FROM or more activation rows.
 *
 * A packed Q8_0 block's quants are already what TDPBSSD reads as its B tile: row j of 64 bytes
 * holds 4 consecutive quants of each of the 16 weight rows. One tile instruction then gives the
 * exact integer block sums of up to 16 tokens x 16 rows, where the VNNI gemm
 * (x86_avx512/gemm_packed.c) spends 8 vpdpbusd per token; what is left per token is the block's
 * float scaling. Each block's sums must leave the tile unit to be scaled (every block has its own
 * scales), which costs about what a few tokens' vpdpbusd do, so few tokens stay with VNNI.
 *
 * Only Q8_0 is here: 4- and 5-bit quants would first be widened to bytes in memory for the tiles
 * to load, and measured (1 thread, 4864 x 896, 2-16 tokens) that widening made Q4_0, Q4_1 and Q5_0
 * slower than the VNNI gemm below 16 tokens. Q8_0 is the large tied output matrix of the models
 * here, the one matrix of a decode batch that grows with its rows.
 *
 * The integer sums are the ones the VNNI gemm forms (it adds 128 to each quant and takes
 * 128 * sum(xq) off again) and the float operations per (row, token, block) are its own, in its
 * order (acc += sum * (d_w * d_x); sums restart every CHUNK blocks and the chunks add up in
 * order), so a row has the same bits here, in the VNNI gemm alone, and in any batch. */
#include <immintrin.h>
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#include "../x86_avx512/packed.h"

#define MAX_TOK 16 /* tokens per tile: A and C tiles have 16 rows */
#define AMX_FROM 4 /* tokens from which tiles beat vpdpbusd (4864 x 896: 0.98x at 4, 0.77x at 8, 0.57x at 16) */
#define CHUNK 16   /* as in gemm_packed.c and gemm_panel.c */
#define PF_AHEAD 4

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Tiles: C (int32 sums, tokens x 16 rows) in 0/1, A (tokens' activation bytes) in 2/3, B (weights)
 * in 4/5; even and odd blocks alternate so one block's tile work overlaps the last one's scaling. */
static void configure(int m) {
    alignas(64) tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int p = 0; p < 2; p++) {
        cfg.rows[p] = (uint8_t)m;
        cfg.colsb[p] = 64;
        cfg.rows[2 + p] = (uint8_t)m;
        cfg.colsb[2 + p] = TS_QK;
        cfg.rows[4 + p] = TS_QK / 4;
        cfg.colsb[4 + p] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* Tile numbers must be literals. */
#define ISSUE(c_t, a_t, b_t, a, bt, c)         \
    do {                                       \
        _tile_zero(c_t);                       \
        _tile_loadd(a_t, (a), (long)x_stride); \
        _tile_loadd(b_t, (bt), 64);            \
        _tile_dpbssd(c_t, a_t, b_t);           \
        _tile_stored(c_t, (c), 64);            \
    } while (0)

/* One group of 16 rows (packed at wg) x NT tokens (activation rows x_stride apart from x) over all
 * nb blocks; y + t * ys receives token t's 16 sums. */
TS_ALWAYS_INLINE void group_tile(int NT, const uint8_t *wg, int64_t nb, const uint8_t *x, size_t x_stride, float *y,
                                 size_t ys) {
    const int bs = ts_q8x32_block_bytes(TS_TYPE_Q8_0), head = ts_packed_head_bytes(TS_TYPE_Q8_0);
    alignas(64) int32_t c[2][MAX_TOK * 16];
    __m512 acc[MAX_TOK], ysum[MAX_TOK];
    for (int t = 0; t < NT; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
    const uint8_t *xq = x + offsetof(ts_block_q8x32, qs);
    for (int64_t b = 0; b <= nb; b++) {
        if (b < nb) { /* block b's tile work, then block b - 1's scaling */
            const uint8_t *blk = wg + (size_t)b * TS_PACK_ROWS * bs;
            for (int l = 0; l < TS_PACK_ROWS * bs; l += 64)
                _mm_prefetch((const char *)blk + PF_AHEAD * TS_PACK_ROWS * bs + l, _MM_HINT_T0);
            ts_packed_prefetch_l2(blk, TS_PACK_ROWS * bs);
            const uint8_t *a = xq + (size_t)b * sizeof(ts_block_q8x32);
            if (b % 2) ISSUE(1, 3, 5, a, blk + head, c[1]);
            else ISSUE(0, 2, 4, a, blk + head, c[0]);
        }
        if (b == 0) continue;
        const int64_t pb = b - 1;
        const __m512 dw = ts_packed_d(wg + (size_t)pb * TS_PACK_ROWS * bs);
        const int32_t *sums = c[pb % 2];
        for (int t = 0; t < NT; t++) {
            const ts_block_q8x32 *xb = (const ts_block_q8x32 *)(x + (size_t)t * x_stride) + pb;
            const __m512i id = _mm512_load_si512(sums + 16 * t);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id), _mm512_mul_ps(dw, _mm512_set1_ps(xb->d)), acc[t]);
        }
        if ((pb + 1) % CHUNK == 0 || pb + 1 == nb)
            for (int t = 0; t < NT; t++) {
                ysum[t] = pb < CHUNK ? acc[t] : _mm512_add_ps(acc[t], ysum[t]);
                acc[t] = _mm512_setzero_ps();
            }
    }
    for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (size_t)t * ys, ysum[t]);
}

static ts_gemm_fn g_vnni; /* the VNNI table's packed Q8_0 gemm */

static void gemm_packed_q8_0(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                             size_t x_stride, float *y, size_t y_stride) {
    if (nc < AMX_FROM) {
        g_vnni(n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
        return;
    }
    const int64_t nb = n / TS_QK;
    int configured = 0;
    for (int t0 = 0; t0 < nc; t0 += MAX_TOK) {
        const int nt = nc - t0 < MAX_TOK ? nc - t0 : MAX_TOK;
        if (nt != configured) configure(configured = nt);
        const uint8_t *xt = (const uint8_t *)x + (size_t)t0 * x_stride;
        for (int r0 = 0; r0 + TS_PACK_ROWS <= nr; r0 += TS_PACK_ROWS) {
            const uint8_t *wg = (const uint8_t *)w + (size_t)r0 * w_stride;
            float *yt = y + (size_t)t0 * y_stride + r0;
            switch (nt) {
#define TS_CASE(k) case k: group_tile(k, wg, nb, xt, x_stride, yt, y_stride); break;
                TS_CASE(1) TS_CASE(2) TS_CASE(3) TS_CASE(4) TS_CASE(5) TS_CASE(6) TS_CASE(7) TS_CASE(8)
                TS_CASE(9) TS_CASE(10) TS_CASE(11) TS_CASE(12) TS_CASE(13) TS_CASE(14) TS_CASE(15) TS_CASE(16)
#undef TS_CASE
            }
        }
    }
    /* Tiles back in their initial state: a context switch then saves none of their 8 KB. */
    _tile_release();
}

void ts_register_amx_packed(ts_kernels *k) {
    g_vnni = k->gemm_packed[TS_TYPE_Q8_0];
    k->gemm_packed[TS_TYPE_Q8_0] = gemm_packed_q8_0;
}
