/* AVX-512: the gemm's register paths for few tokens (up to FEW_MAX), where gemm_panel.c's panels
 * would cost more to fill than the tokens use: 16 weight rows unpacked and transposed in
 * registers, straight from the weights, for the 32-element formats and Q4_K, Q5_K, Q6_K. */
#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "gemm_unpack.h"
#include "ts/prefetch.h"

/* A group of 16 weight rows from r0 for the few-token paths: rows of them exist (lanes past the
 * last repeat it and are not stored: keep), at byte offsets rix from wg; the next group's rows
 * (next of them at wn) are prefetched while these are computed. */
typedef struct {
    const uint8_t *wg, *wn;
    __m512i rix;
    __mmask16 keep;
    int rows, next;
} row_group;

TS_ALWAYS_INLINE row_group row_group_at(const void *w, size_t w_stride, int nr, int r0) {
    row_group g;
    g.rows = nr - r0 < 16 ? nr - r0 : 16;
    g.wg = (const uint8_t *)w + (size_t)r0 * w_stride;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    g.rix = _mm512_mullo_epi32(_mm512_min_epi32(lane, _mm512_set1_epi32(g.rows - 1)), _mm512_set1_epi32((int)w_stride));
    g.keep = (__mmask16)((1u << g.rows) - 1);
    g.wn = (const uint8_t *)w + (size_t)(r0 + 16) * w_stride;
    g.next = nr - r0 - 16 < 16 ? nr - r0 - 16 : 16;
    return g;
}

/* ---- the 32-element formats ----------------------------------------------------------------- */

/* d (and for Q4_1 / Q5_1 the minimum m after it) of block b of 16 rows (byte offsets rix from
 * w) as floats: one gather of the blocks' first dwords. */
TS_ALWAYS_INLINE void rows_dm(int type, const uint8_t *w, __m512i rix, int64_t b, int bs, __m512 *d, __m512 *m) {
    const __m512i g = _mm512_i32gather_epi32(rix, w + (size_t)b * bs, 1);
    *d = head_d(type, g);
    if (has_min(type)) *m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
}

/* 16 bytes from each of four rows, one per 128-bit lane. */
TS_ALWAYS_INLINE __m512i load_x4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p1), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* A 4x4 transpose of dwords inside each 128-bit lane: a[j] dword i <- a[i] dword j. */
TS_ALWAYS_INLINE void transpose4_lanes(__m512i a[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    a[0] = _mm512_unpacklo_epi64(t0, t2);
    a[1] = _mm512_unpackhi_epi64(t0, t2);
    a[2] = _mm512_unpacklo_epi64(t1, t3);
    a[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The fifth bits of Q5_0 / Q5_1 for the four rows of load_x4: bit 16L + k is qh bit k (hi: 16 + k)
 * of the row in lane L, the elements the lane's low (high) nibbles hold. */
TS_ALWAYS_INLINE uint64_t qh_x4(const uint8_t *const p[4], int hi) {
    uint64_t m = 0;
    for (int l = 0; l < 4; l++) m |= (uint64_t)((ts_avx512_load_u32(p[l]) >> (hi ? 16 : 0)) & 0xFFFFu) << 16 * l;
    return m;
}

/* The quants of blocks b .. b + nblk - 1 (nblk 1 or 2) of 16 rows (row r at rp[r]) of a 4-bit
 * format, unsigned, laid out as legacy_pair's after transpose16: q[8h + j] lane r = quants
 * 4j .. 4j + 3 of block b + h of row r. Each register is first loaded with the 16 bytes of quants
 * of rows i, i + 4, i + 8, i + 12 (one per 128-bit lane), so an in-lane 4x4 transpose of dwords
 * puts the rows in lane order: half the shuffles of transpose16, which with the unpacking bound
 * the few-token path's cost per weight byte (Q5_0 ~10% less time per call, 1 and 8 tokens). */
TS_ALWAYS_INLINE void few_quants(int type, const uint8_t *const rp[16], int64_t b, int bs, int nblk, __m512i q[16]) {
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
TS_ALWAYS_INLINE int gemm_few_legacy(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                                     size_t x_stride, float *y, size_t y_stride) {
    const int bs = ts_q8x32_block_bytes(type), o = quant_offset(type);
    const int64_t nb = n / TS_QK, stride = (nb + 15) / 16 * 16;
    int32_t *off = o ? malloc((size_t)nc * (size_t)stride * 4) : NULL;
    if (o && !off) return 0;
    for (int t = 0; o && t < nc; t++)
        token_sums(type, (const uint8_t *)x + (size_t)t * x_stride, 0, (int)nb, off + (size_t)t * stride, NULL);
    const int pair_bytes = 2 * bs;
    for (int r0 = 0; r0 < nr; r0 += 16) {
        const row_group rg = row_group_at(w, w_stride, nr, r0);
        const uint8_t *rp[16];
        for (int r = 0; r < 16; r++) rp[r] = rg.wg + (size_t)(r < rg.rows ? r : rg.rows - 1) * w_stride;
        __m512 acc[FEW_MAX], ysum[FEW_MAX];
        for (int t = 0; t < nc; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b += 2) {
            const int two = b + 1 < nb;
            for (int r = 0; r < rg.next; r++)
                ts_prefetch_ahead(rg.wn + (size_t)r * w_stride + (size_t)b * bs, (size_t)pair_bytes, 0);
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
            for (int h = 0; h < 1 + two; h++) rows_dm(type, rg.wg, rg.rix, b + h, bs, &dw[h], &mw[h]);
            for (int t = 0; t < nc; t++) {
                const uint8_t *xt = (const uint8_t *)x + (size_t)t * x_stride;
                for (int h = 0; h < 1 + two; h++) {
                    const uint8_t *xq = act_qs(type, xt, b + h);
                    __m512i id = o ? _mm512_set1_epi32(off[(size_t)t * stride + b + h]) : _mm512_setzero_si512();
                    for (int j = 0; j < 8; j++) id = dot_u8s8(id, q[8 * h + j], _mm512_set1_epi32((int)ts_avx512_load_u32(xq + 4 * j)));
                    const float *ds = act_d(type, xt, b + h); /* d, then d * sum(xq) */
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(id), _mm512_mul_ps(dw[h], _mm512_set1_ps(ds[0])), acc[t]);
                    if (has_min(type)) acc[t] = _mm512_fmadd_ps(mw[h], _mm512_set1_ps(ds[1]), acc[t]);
                }
            }
            /* A chunk of KC elements ends here (pairs never straddle one). */
            if ((b + 2) % (KC / TS_QK) == 0 || b + 2 >= nb) few_chunk_end(acc, ysum, nc, b < KC / TS_QK);
        }
        few_store(y, y_stride, r0, rg.keep, ysum, nc);
    }
    free(off);
    return 1;
}

/* ---- Q4_K, Q5_K and Q6_K --------------------------------------------------------------------- */

/* gemm_panels for nc <= FEW_MAX tokens of Q4_K, Q5_K or Q6_K, as gemm_few_legacy does it: per
 * super-block, the 16 rows' sub-block scales (one transpose), then per 64 elements their quants
 * (another), each met by every token. The float operations are tile()'s: per super-block
 * part += id * sc over its sub-blocks in order, acc += part * (d * d_x), and for Q4_K / Q5_K
 * part' += m * sum(xq) likewise, acc += part' * (-dmin * d_x); acc restarts at every chunk.
 * Returns 0 without memory for the block sums. */
TS_ALWAYS_INLINE int gemm_few_kquant(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
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
        const row_group rg = row_group_at(w, w_stride, nr, r0);
        __m512 acc[FEW_MAX], ysum[FEW_MAX], part[FEW_MAX];
        for (int t = 0; t < nc; t++) acc[t] = ysum[t] = _mm512_setzero_ps();
        for (int64_t s = 0; s < ns; s++) {
            for (int r = 0; r < rg.next; r++) ts_prefetch_ahead(rg.wn + (size_t)r * w_stride + (size_t)s * bytes, bytes, 0);
            const uint8_t *blk[16];
            for (int r = 0; r < 16; r++)
                blk[r] = rg.wg + (size_t)(r < rg.rows ? r : rg.rows - 1) * w_stride + (size_t)s * bytes;
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
                const __m512i g =
                    _mm512_i32gather_epi32(rg.rix, rg.wg + (size_t)s * bytes + offsetof(ts_block_q6_K, d) - 2, 1);
                d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
            } else {
                const __m512i g = _mm512_i32gather_epi32(rg.rix, rg.wg + (size_t)s * bytes, 1); /* d, dmin */
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
                            id = dot_u8s8(id, q[dwords * c + j], _mm512_set1_epi32((int)ts_avx512_load_u32(xq + 4 * j)));
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
        few_store(y, y_stride, r0, rg.keep, ysum, nc);
    }
    free(sums);
    return 1;
}

int TS_AVX512_NAME(ts_avx512_gemm_few)(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                       const void *x, size_t x_stride, float *y, size_t y_stride) {
    /* Each type in its own instance, its layout folded into constants. */
    switch (type) {
#define TS_CASE(name)                                                                                         \
    case TS_TYPE_##name:                                                                                      \
        return act_is_q8k(TS_TYPE_##name)                                                                     \
                   ? gemm_few_kquant(TS_TYPE_##name, n, nr, nc, w, w_stride, x, x_stride, y, y_stride)        \
                   : gemm_few_legacy(TS_TYPE_##name, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);
        TS_GEMM_FEW(TS_CASE)
#undef TS_CASE
    }
    return 0;
}
