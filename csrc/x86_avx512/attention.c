/* AVX-512 attention over the KV cache: one head at a time, and the rows that share a K/V head
 * (GQA groups, tokens of one sequence) block by block. Compiled plain and with TS_VNNI (quants.h):
 * with VNNI, scores over a Q8_0 cache are integer sums. */
#include <math.h>

#include "quants.h"
#include "simd.h"
#include "ts/attn_rows.h"

/* One block of 16 positions of the online softmax: the block's dot products (lane j: position j)
 * scaled, soft-capped and -inf outside `valid`, the running max *m and sum *l updated, the
 * block's weights stored in wt; returns what the accumulated output must be multiplied by (1
 * unless the max grew). */
static inline __attribute__((always_inline)) __m512 online_softmax(__m512 dots, float scale, float softcap,
                                                                   __mmask16 valid, float *m, float *l,
                                                                   float wt[16]) {
    __m512 s = _mm512_mul_ps(dots, _mm512_set1_ps(scale));
    if (softcap > 0.0f) {
        const __m512 cap = _mm512_set1_ps(softcap);
        s = _mm512_mul_ps(cap, tanh512(_mm512_div_ps(s, cap)));
    }
    s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, s);
    const float bm = _mm512_reduce_max_ps(s);
    float c = 1.0f;
    if (bm > *m) {
        c = expf(*m - bm);
        *l *= c;
        *m = bm;
    }
    const __m512 e = _mm512_maskz_mov_ps(valid, exp512(_mm512_sub_ps(s, _mm512_set1_ps(*m))));
    *l += _mm512_reduce_add_ps(e);
    _mm512_storeu_ps(wt, e);
    return _mm512_set1_ps(c);
}

/* Value row j of a block, chunk at d: f16 rows through vr, or (vr NULL) f32 rows of head_dim at vf. */
static inline __attribute__((always_inline)) __m512 v_chunk(const ts_f16 *const *vr, const float *vf, int j, int d,
                                                           int head_dim, __mmask16 md) {
    if (vr) return load_f16x16(md, vr[j] + d);
    return mask_full(md) ? _mm512_loadu_ps(vf + (int64_t)j * head_dim + d) : _mm512_maskz_loadu_ps(md, vf + (int64_t)j * head_dim + d);
}

/* out[d0 .. d0 + 16*nc) = out * rescale + sum_j wt[j] * v_j over the sixteen rows of a block.
 * The output chunks stay in registers across the rows, so the multiply-adds form nc (or, for
 * nc <= 4, 2*nc: even and odd rows apart) independent chains instead of one chain per chunk
 * whose latency would bound the loop. Called with a constant nc so the chunks unroll. */
static inline __attribute__((always_inline)) void pv_chunks(float *out, const ts_f16 *const *vr, const float *vf,
                                                            const float wt[16], int d0, int head_dim,
                                                            __m512 rescale, const int nc) {
    __m512 o[8], o2[8];
    __mmask16 md[8];
    for (int c = 0; c < nc; c++) {
        md[c] = tail_mask(head_dim - d0 - 16 * c);
        o[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(md[c], out + d0 + 16 * c), rescale);
        o2[c] = _mm512_setzero_ps();
    }
    if (nc <= 4) {
        for (int j = 0; j < 16; j += 2) {
            const __m512 w0 = _mm512_set1_ps(wt[j]), w1 = _mm512_set1_ps(wt[j + 1]);
            for (int c = 0; c < nc; c++) {
                o[c] = _mm512_fmadd_ps(w0, v_chunk(vr, vf, j, d0 + 16 * c, head_dim, md[c]), o[c]);
                o2[c] = _mm512_fmadd_ps(w1, v_chunk(vr, vf, j + 1, d0 + 16 * c, head_dim, md[c]), o2[c]);
            }
        }
        for (int c = 0; c < nc; c++) o[c] = _mm512_add_ps(o[c], o2[c]);
    } else {
        for (int j = 0; j < 16; j++) {
            const __m512 w = _mm512_set1_ps(wt[j]);
            for (int c = 0; c < nc; c++)
                o[c] = _mm512_fmadd_ps(w, v_chunk(vr, vf, j, d0 + 16 * c, head_dim, md[c]), o[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(out + d0 + 16 * c, md[c], o[c]);
}

/* The value pass of one block over the whole head: eight-chunk runs, then at most four. */
static inline __attribute__((always_inline)) void pv_block(float *out, const ts_f16 *const *vr, const float *vf,
                                                           const float wt[16], int head_dim, __m512 rescale) {
    int d0 = 0;
    for (; head_dim - d0 > 64; d0 += 128) pv_chunks(out, vr, vf, wt, d0, head_dim, rescale, 8);
    if (d0 < head_dim) pv_chunks(out, vr, vf, wt, d0, head_dim, rescale, 4);
}

/* out /= l, the softmax's denominator (0 when no position was seen), to which a sink adds its
 * term (m: the running maximum l is relative to). */
static inline void normalize_out(float *out, int head_dim, float l, float m, float sink) {
    if (sink > -INFINITY) l += expf(sink - m);
    const __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 md = tail_mask(head_dim - d);
        _mm512_mask_storeu_ps(out + d, md, _mm512_mul_ps(_mm512_maskz_loadu_ps(md, out + d), inv));
    }
}

/* Positions go in blocks of 16: sixteen dot products reduced together, one vectorized
 * exp, the accumulator (out) rescaled only when the running maximum grows, then the weighted
 * rows of v. A short last block repeats its last row in the unused slots (their weight is 0),
 * so the inner loops keep a fixed count and the accumulators stay in registers. */
static void attn_head_avx512(const float *q, const ts_f16 *k, const ts_f16 *v, int64_t kv_stride,
                             int p0, int p1, int head_dim, float scale, float softcap, float sink, float *out) {
    float m = -INFINITY, l = 0.0f;
    float wt[16];
    const ts_f16 *kr[16], *vr[16];
    for (int d = 0; d < head_dim; d += 16)
        _mm512_mask_storeu_ps(out + d, tail_mask(head_dim - d), _mm512_setzero_ps());
    for (int pb = p0; pb < p1; pb += 16) {
        const int nb = p1 - pb < 16 ? p1 - pb : 16;
        for (int j = 0; j < 16; j++) {
            const int64_t off = (int64_t)(pb + (j < nb ? j : nb - 1)) * kv_stride;
            kr[j] = k + off;
            vr[j] = v + off;
        }
        __m512 acc[16];
        for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
        for (int d = 0; d < head_dim; d += 16) {
            const __mmask16 md = tail_mask(head_dim - d);
            const __m512 qv = _mm512_maskz_loadu_ps(md, q + d);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                acc[j] = _mm512_fmadd_ps(qv, load_f16x16(md, kr[j] + d), acc[j]);
        }
        const __m512 rescale = online_softmax(hsum16x16(acc), scale, softcap, tail_mask(nb), &m, &l, wt);
        pv_block(out, vr, NULL, wt, head_dim, rescale);
    }
    normalize_out(out, head_dim, l, m, sink);
}

/* Block b of row p of a quantized cache head (rows of row_blocks blocks). */
static inline const void *cache_block(const void *x, int type, int64_t row_blocks, int64_t p, int b) {
    return (const char *)x + (p * row_blocks + b) * ts_q8x32_block_bytes(type);
}

/* Row p of a cache head widened to f32 in dst: f16 rows kv_stride elements apart, or Q8_0 / Q4_0
 * rows of kv_stride / 32 blocks (head_dim a multiple of 32). */
static inline __attribute__((always_inline)) void widen_row(float *dst, const void *x, int type, int64_t kv_stride,
                                                            int64_t p, int head_dim) {
    if (type == TS_TYPE_Q4_0) {
        for (int b = 0; b < head_dim / TS_QK; b++) {
            const ts_block_q4_0 *r = cache_block(x, type, kv_stride / TS_QK, p, b);
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(r->d));
            const __m128i qs = _mm_loadu_si128((const __m128i *)r->qs), m = _mm_set1_epi8(15);
            const __m128i half[2] = {_mm_and_si128(qs, m), _mm_and_si128(_mm_srli_epi16(qs, 4), m)};
            for (int i = 0; i < 2; i++) {
                const __m512 qf = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(half[i]), _mm512_set1_epi32(8)));
                _mm512_storeu_ps(dst + b * TS_QK + 16 * i, _mm512_mul_ps(qf, d));
            }
        }
        return;
    }
    if (type == TS_TYPE_Q8_0) {
        const ts_block_q8_0 *r = (const ts_block_q8_0 *)x + p * (kv_stride / TS_QK);
        for (int b = 0; b < head_dim / TS_QK; b++) {
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(r[b].d));
            for (int i = 0; i < TS_QK; i += 16) {
                const __m512i qi = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(r[b].qs + i)));
                _mm512_storeu_ps(dst + b * TS_QK + i, _mm512_mul_ps(_mm512_cvtepi32_ps(qi), d));
            }
        }
        return;
    }
    const ts_f16 *r = (const ts_f16 *)x + p * kv_stride;
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 md = tail_mask(head_dim - d);
        if (mask_full(md)) _mm512_storeu_ps(dst + d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + d))));
        else _mm512_mask_storeu_ps(dst + d, md, load_f16x16(md, r + d));
    }
}

/* A query row quantized to Q8_0 as llama.cpp quantizes it against a Q8_0 or Q4_0 cache: its
 * products with a key row are then integer sums, scaled per block. qs: the quants; d: each
 * block's scale; sum: each block's sum of quants, which takes off again the offset that makes key
 * quants the unsigned side of vpdpbusd (128 added to Q8_0's, Q4_0's stored 8 too many). */
typedef struct {
    int8_t qs[TS_ATTN_QUANT_MAX_DIM] __attribute__((aligned(64)));
    float d[TS_ATTN_QUANT_MAX_DIM / TS_QK];
    int32_t sum[TS_ATTN_QUANT_MAX_DIM / TS_QK];
} q8_row;

#ifdef TS_VNNI
static void quantize_query(const float *q, int head_dim, q8_row *r) {
    ts_block_q8_0 b[TS_ATTN_QUANT_MAX_DIM / TS_QK];
    ts_quantize_cache_row(TS_TYPE_Q8_0, q, b, head_dim);
    for (int i = 0; i < head_dim / TS_QK; i++) {
        int32_t sum = 0;
        for (int j = 0; j < TS_QK; j++) sum += r->qs[i * TS_QK + j] = b[i].qs[j];
        r->d[i] = ts_f16_to_f32(b[i].d);
        r->sum[i] = sum;
    }
}
#endif

/* The scale (a block's leading f16) of block b of rows pb .. pb + 15 (rows past nb repeat row
 * nb - 1) as 16 floats. */
static inline __m512 block_scales(const void *x, int type, int64_t row_blocks, int64_t pb, int nb, int b) {
    const __m512i rows = _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(nb - 1));
    const __m512i off = _mm512_mullo_epi32(rows, _mm512_set1_epi32((int)(row_blocks * ts_q8x32_block_bytes(type))));
    const __m512i dw = _mm512_i32gather_epi32(off, cache_block(x, type, row_blocks, pb, b), 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dw));
}

#ifdef TS_VNNI
/* Block b's quants of rows pb .. pb + 15 (the last repeated past nb) as unsigned bytes (Q8_0's
 * with 128 added, Q4_0's as stored: 8 more than their value), turned so that kt[i] holds in lane
 * j the four bytes 4i .. 4i + 3 of row j: then one vpdpbusd against four broadcast query bytes
 * gives sixteen positions' partial sums. Two rows per register (row j and j + 8 in its halves)
 * and an 8 x 8 transpose of 32-bit words inside each half. */
static inline __attribute__((always_inline)) void transpose_keys(const void *x, int type, int64_t row_blocks,
                                                                  int64_t pb, int nb, int b, __m512i kt[8]) {
    __m512i z[8], u[8];
    for (int j = 0; j < 8; j++) {
        const int lo = j < nb ? j : nb - 1, hi = j + 8 < nb ? j + 8 : nb - 1;
        if (type == TS_TYPE_Q4_0) {
            const ts_block_q4_0 *a = cache_block(x, type, row_blocks, pb + lo, b), *c = cache_block(x, type, row_blocks, pb + hi, b);
            z[j] = ts_avx512_nibble_pair(a->qs, c->qs);
        } else {
            const ts_block_q8_0 *a = cache_block(x, type, row_blocks, pb + lo, b), *c = cache_block(x, type, row_blocks, pb + hi, b);
            const __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs), qc = _mm256_loadu_si256((const __m256i *)c->qs);
            z[j] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qa), qc, 1), _mm512_set1_epi8((char)0x80));
        }
    }
    for (int j = 0; j < 8; j += 2) {
        u[j] = _mm512_unpacklo_epi32(z[j], z[j + 1]);
        u[j + 1] = _mm512_unpackhi_epi32(z[j], z[j + 1]);
    }
    for (int j = 0; j < 8; j += 4)
        for (int i = 0; i < 2; i++) {
            z[j + i] = _mm512_unpacklo_epi64(u[j + i], u[j + i + 2]);
            z[j + i + 2] = _mm512_unpackhi_epi64(u[j + i], u[j + i + 2]);
        }
    /* z[0..3]: words (0, 4), (2, 6), (1, 5), (3, 7) of rows 0-3 in 128-bit lanes 0 and 1, of rows
     * 8-11 in lanes 2 and 3; z[4..7] the same of rows 4-7 and 12-15. */
    const __m512i lo_idx = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi_idx = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    static const int word[4] = {0, 2, 1, 3};
    for (int i = 0; i < 4; i++) {
        kt[word[i]] = _mm512_permutex2var_epi64(z[i], lo_idx, z[i + 4]);
        kt[word[i] + 4] = _mm512_permutex2var_epi64(z[i], hi_idx, z[i + 4]);
    }
}
#endif

/* attn_head's blocks of 16 positions, with each block of k and v read once for every row whose
 * range meets it. type: the cache's (a constant at each call). Over a quantized cache each query row
 * is quantized first (qq); with VNNI the scores are then integer sums of the quants and each
 * block's keys are turned once for all the rows, and without it, k is widened to f32 and met by
 * the quantized rows' values: the same scores up to rounding. v is widened to f32 either way. */
static inline __attribute__((always_inline)) void attn_rows_grouped(
    const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok, int n_head, const int32_t *p0,
    const int32_t *p1, const void *k, const void *v, int type, int64_t kv_stride, int head_dim, float scale,
    float softcap, const float *sinks, const q8_row *qq) {
    float kf[16 * TS_ATTN_ROWS_MAX_DIM] __attribute__((aligned(64)));
    float vf[16 * TS_ATTN_ROWS_MAX_DIM] __attribute__((aligned(64)));
    float m[TS_ATTN_MAX_ROWS], l[TS_ATTN_MAX_ROWS], wt[16];
#ifdef TS_VNNI
    const int int8_scores = type != TS_TYPE_F16;
    const int32_t offset = type == TS_TYPE_Q4_0 ? 8 : 128;
    const int64_t row_blocks = kv_stride / TS_QK;
#else
    const int int8_scores = 0;
#endif
    int lo, hi;
    ts_attn_rows_begin(n_tok, n_head, p0, p1, head_dim, out, out_stride, m, l, &lo, &hi);
    for (int pb = lo; pb < hi; pb += 16) {
        const int nb = hi - pb < 16 ? hi - pb : 16;
        /* Unused slots repeat the last row: finite values under a zero weight. */
        for (int j = 0; j < 16; j++) {
            const int64_t p = pb + (j < nb ? j : nb - 1);
            if (!int8_scores) widen_row(kf + j * head_dim, k, type, kv_stride, p, head_dim);
            widen_row(vf + j * head_dim, v, type, kv_stride, p, head_dim);
        }
#ifdef TS_VNNI
        __m512i kt[TS_ATTN_QUANT_MAX_DIM / TS_QK][8];
        __m512 kd[TS_ATTN_QUANT_MAX_DIM / TS_QK];
        if (int8_scores)
            for (int b = 0; b < head_dim / TS_QK; b++) {
                transpose_keys(k, type, row_blocks, pb, nb, b, kt[b]);
                kd[b] = block_scales(k, type, row_blocks, pb, nb, b);
            }
#endif
        for (int t = 0; t < n_tok; t++) {
            const int a = p0[t] > pb ? p0[t] - pb : 0, b = p1[t] - pb < nb ? p1[t] - pb : nb;
            if (a >= b) continue;
            const __mmask16 valid = (__mmask16)(tail_mask(b) & ~tail_mask(a));
            for (int h = 0; h < n_head; h++) {
                const float *qr = q + t * q_stride + (int64_t)h * head_dim;
                float *o = out + t * out_stride + (int64_t)h * head_dim;
                const int r = t * n_head + h;
                __m512 dots;
#ifdef TS_VNNI
                if (int8_scores) {
                    /* Two sums per block and two per head, so that no chain of dependent
                     * vpdpbusd or multiply-adds bounds the loop. */
                    const q8_row *qr8 = qq + r;
                    __m512 part[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
                    for (int bk = 0; bk < head_dim / TS_QK; bk++) {
                        __m512i acc[2] = {_mm512_set1_epi32(-offset * qr8->sum[bk]), _mm512_setzero_si512()};
                        const int32_t *qw = (const int32_t *)(qr8->qs + bk * TS_QK);
                        for (int i = 0; i < 8; i++)
                            acc[i & 1] = _mm512_dpbusd_epi32(acc[i & 1], kt[bk][i], _mm512_set1_epi32(qw[i]));
                        part[bk & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc[0], acc[1])),
                                                       _mm512_mul_ps(kd[bk], _mm512_set1_ps(qr8->d[bk])), part[bk & 1]);
                    }
                    dots = _mm512_add_ps(part[0], part[1]);
                } else
#endif
                {
                    const float *kr[16];
                    for (int j = 0; j < 16; j++) kr[j] = kf + j * head_dim;
                    dots = dot16_f32(qr, kr, head_dim);
                }
                const __m512 rescale = online_softmax(dots, scale, softcap, valid, &m[r], &l[r], wt);
                pv_block(o, NULL, vf, wt, head_dim, rescale);
            }
        }
    }
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++)
            normalize_out(out + t * out_stride + (int64_t)h * head_dim, head_dim, l[t * n_head + h], m[t * n_head + h],
                          sinks ? sinks[h] : -INFINITY);
}

static void attn_rows_avx512(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                             int n_head, const int32_t *p0, const int32_t *p1, const ts_f16 *k, const ts_f16 *v,
                             int64_t kv_stride, int head_dim, float scale, float softcap, const float *sinks) {
    if (head_dim > TS_ATTN_ROWS_MAX_DIM || n_tok * n_head == 1) {
        for (int t = 0; t < n_tok; t++)
            for (int h = 0; h < n_head; h++)
                attn_head_avx512(q + t * q_stride + (int64_t)h * head_dim, k, v, kv_stride, p0[t], p1[t], head_dim,
                                 scale, softcap, sinks ? sinks[h] : -INFINITY, out + t * out_stride + (int64_t)h * head_dim);
        return;
    }
    attn_rows_grouped(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, TS_TYPE_F16, kv_stride, head_dim,
                      scale, softcap, sinks, NULL);
}

/* Over a quantized cache the type becomes a constant of the grouped kernel. */
static inline __attribute__((always_inline)) void attn_rows_quant_typed(
    const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok, int n_head, const int32_t *p0,
    const int32_t *p1, int type, const void *k, const void *v, int64_t kv_stride, int head_dim, float scale,
    float softcap, const float *sinks) {
#ifdef TS_VNNI
    q8_row qq[TS_ATTN_MAX_ROWS];
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++)
            quantize_query(q + t * q_stride + (int64_t)h * head_dim, head_dim, &qq[t * n_head + h]);
    attn_rows_grouped(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, type, kv_stride, head_dim,
                      scale, softcap, sinks, qq);
#else
    float qf[TS_ATTN_MAX_ROWS * TS_ATTN_QUANT_MAX_DIM];
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++)
            ts_q8_0_round_trip(q + t * q_stride + (int64_t)h * head_dim, qf + (t * n_head + h) * head_dim, head_dim);
    attn_rows_grouped(qf, (int64_t)n_head * head_dim, out, out_stride, n_tok, n_head, p0, p1, k, v, type,
                      kv_stride, head_dim, scale, softcap, sinks, NULL);
#endif
}

static void attn_rows_quant_avx512(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                                   int n_head, const int32_t *p0, const int32_t *p1, int type, const void *k,
                                   const void *v, int64_t kv_stride, int head_dim, float scale, float softcap,
                                   const float *sinks) {
    if (type == TS_TYPE_Q4_0)
        attn_rows_quant_typed(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, TS_TYPE_Q4_0, k, v, kv_stride,
                              head_dim, scale, softcap, sinks);
    else
        attn_rows_quant_typed(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, TS_TYPE_Q8_0, k, v, kv_stride,
                              head_dim, scale, softcap, sinks);
}

void TS_AVX512_NAME(ts_avx512_register_attention)(ts_kernels *k) {
    k->attn_head = attn_head_avx512;
    k->attn_rows = attn_rows_avx512;
    k->attn_rows_quant = attn_rows_quant_avx512;
}
