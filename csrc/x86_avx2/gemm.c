/* AVX2: gemm tiles (one weight row block unpacked for several activation rows). */
#include <immintrin.h>
#include <string.h>

#include "quants.h"
#include "ts/kernels.h"
#include "ts/prefetch.h"

#define TS_INLINE static inline __attribute__((always_inline))

#define COLS 4       /* activation rows per tile */
#define ROW_GROUP 16 /* weight rows whose blocks stay in cache while every tile passes over them */

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

TS_INLINE __m256i load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16 bytes from a in the low 128-bit lane, 16 bytes from b in the high one. */
TS_INLINE __m256i load_pair(const void *a, const void *b) {
    return _mm256_set_m128i(_mm_loadu_si128((const __m128i *)b), _mm_loadu_si128((const __m128i *)a));
}

TS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Up to four accumulators reduced and stored (first: stored, else added) to y[c*ys]. */
TS_INLINE void store_cols(const __m256 *acc, int nc, float *y, size_t ys, int first) {
    for (int c = 0; c < nc; c++) {
        const float v = hsum(acc[c]);
        y[c * ys] = first ? v : y[c * ys] + v;
    }
}

/* Asks for the bytes [p, p + bytes) of the weight row TS_PREFETCH_AHEAD bytes ahead of this one's
 * (at least the next). The 32-element gemm reads a tile's rows one after another, each in a chunk
 * of blocks too short for the hardware prefetcher to follow, and the rows ahead are what it reads
 * next (past the tile's last row, the next tile's: the same chunk of the rows that follow). The
 * k-quant gemm reads whole rows back to back, and asks ahead of each super-block as the matvec does. */
TS_INLINE void prefetch_rows_ahead(const uint8_t *p, size_t bytes, size_t w_stride) {
    const size_t rows = 1 + TS_PREFETCH_AHEAD / (bytes ? bytes : 1);
    ts_prefetch_ahead(p, bytes, rows * w_stride);
}

/* The whole product in tiles of up to ROW_GROUP weight rows x COLS activation rows. */
#define TS_GEMM_GROUPS(name)                                                                             \
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,           \
                     size_t x_stride, float *y, size_t y_stride) {                                       \
        for (int r0 = 0; r0 < nr; r0 += ROW_GROUP)                                                       \
            for (int c0 = 0; c0 < nc; c0 += COLS)                                                        \
                name##_tile(n, nr - r0 < ROW_GROUP ? nr - r0 : ROW_GROUP, nc - c0 < COLS ? nc - c0 : COLS, \
                            (const char *)w + (size_t)r0 * w_stride, w_stride,                           \
                            (const char *)x + (size_t)c0 * x_stride, x_stride, y + (size_t)c0 * y_stride + r0, \
                            y_stride);                                                                   \
    }

/* ---- 32-element blocks against q8x32 ------------------------------------------------------
 * Blocks go in pairs, one per 128-bit lane: one register holds elements 0..15 of both blocks,
 * another elements 16..31, so that a block's integer dot lands in one lane's four int32 and a
 * single conversion and FMA serve two blocks. The activations of a chunk of blocks are
 * rearranged that way once per call (shared by all weight rows of the tile); each weight pair
 * is then unpacked once and meets up to four activation rows. */

#define CHUNK 64 /* blocks per chunk: the rearranged activations of four rows stay in L1 */

typedef struct {
    __m256i lo[CHUNK / 2];  /* elements 0..15 of each block */
    __m256i hi[CHUNK / 2];  /* elements 16..31 */
    __m256 d[CHUNK / 2];    /* x.d over each block's four lanes; 0 for a missing block */
    __m256i off[CHUNK / 2]; /* Q4_0 / Q5_0: -offset * (sums of 4 quants) */
    __m256 s[CHUNK / 2];    /* Q4_1 / Q5_1: x.s / 4 over each block's lanes, the minimum's partner */
} act_chunk;

/* Formats with a minimum per block (Q4_1, Q5_1), and those with fifth bits (Q5_0, Q5_1). */
TS_INLINE int has_min(int type) { return type == TS_TYPE_Q4_1 || type == TS_TYPE_Q5_1; }
TS_INLINE int has_qh(int type) { return type == TS_TYPE_Q5_0 || type == TS_TYPE_Q5_1; }
/* Signed quants (Q8_0, the codebook values of IQ4_NL and MXFP4): their signs move onto x for maddubs. */
TS_INLINE int is_signed(int type) { return type == TS_TYPE_Q8_0 || type == TS_TYPE_IQ4_NL || type == TS_TYPE_MXFP4; }

/* Where the quants start: d (and m) first, then Q5's qh; MXFP4's scale is one byte. */
TS_INLINE int quants_at(int type) {
    return type == TS_TYPE_Q4_1 ? 4 : type == TS_TYPE_Q5_0 ? 6 : type == TS_TYPE_Q5_1 ? 8 : type == TS_TYPE_MXFP4 ? 1 : 2;
}

/* Float lanes 0..3 = lane lo of f, 4..7 = lane hi. */
TS_INLINE __m256 spread2(__m128 f, int lo, int hi) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f), _mm256_setr_epi32(lo, lo, lo, lo, hi, hi, hi, hi));
}

TS_INLINE void act_prepare(int type, const ts_block_q8x32 *x, int nbc, act_chunk *a) {
    static const int8_t zero[TS_QK] = {0};
    for (int p = 0; 2 * p < nbc; p++) {
        const int has_b = 2 * p + 1 < nbc;
        const int8_t *qa = x[2 * p].qs, *qb = has_b ? x[2 * p + 1].qs : zero;
        const __m256i lo = load_pair(qa, qb), hi = load_pair(qa + 16, qb + 16);
        const __m128 ds = _mm_setr_ps(x[2 * p].d, has_b ? x[2 * p + 1].d : 0.0f, x[2 * p].s * 0.25f,
                                      has_b ? x[2 * p + 1].s * 0.25f : 0.0f);
        a->d[p] = spread2(ds, 0, 1);
        if (has_min(type)) a->s[p] = spread2(ds, 2, 3);
        if (type == TS_TYPE_Q4_0 || type == TS_TYPE_Q5_0) {
            const __m256i off = _mm256_set1_epi8(type == TS_TYPE_Q4_0 ? 8 : 16);
            const __m256i sum = _mm256_add_epi16(_mm256_maddubs_epi16(off, lo), _mm256_maddubs_epi16(off, hi));
            a->off[p] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(sum, _mm256_set1_epi16(1)));
        }
        a->lo[p] = lo;
        a->hi[p] = hi;
    }
}

/* Fifth bits (qh bit i for element i) of blocks a and b in the lo/hi layout, 16 where set. */
TS_INLINE void q5_high_pair(uint32_t qa, uint32_t qb, __m256i *lo, __m256i *hi) {
    const __m256i v = _mm256_set_m128i(_mm_set1_epi32((int)qb), _mm_set1_epi32((int)qa));
    /* Each byte takes the qh byte holding its bit, then tests that bit. */
    const __m256i spread_lo = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                               0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m256i spread_hi = _mm256_add_epi8(spread_lo, _mm256_set1_epi8(2));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ULL);
    const __m256i sixteen = _mm256_set1_epi8(16);
    *lo = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, spread_lo), bit), bit), sixteen);
    *hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, spread_hi), bit), bit), sixteen);
}

TS_INLINE void gemm_q8x32_rows(int type, int nc, int nbc, int nr, const uint8_t *w, size_t w_stride,
                               const act_chunk *act, float *y, size_t ys, int first) {
    const int bs = ts_q8x32_block_bytes(type), qs = quants_at(type);
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i codebook = type == TS_TYPE_MXFP4 ? ts_avx2_mxfp4_values() : ts_avx2_iq4_values();
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        prefetch_rows_ahead(wr, (size_t)nbc * bs, w_stride);
        __m256 acc[COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
        for (int p = 0; 2 * p < nbc; p++) {
            const uint8_t *a = wr + (size_t)(2 * p) * bs;
            /* A missing block b repeats a; its activation scale is 0. */
            const uint8_t *b = 2 * p + 1 < nbc ? a + bs : a;
            __m256i lo, hi;
            if (type == TS_TYPE_Q8_0) {
                lo = load_pair(a + qs, b + qs);
                hi = load_pair(a + qs + 16, b + qs + 16);
            } else {
                /* Low nibbles are elements 0..15, high nibbles 16..31. */
                const __m256i v = load_pair(a + qs, b + qs);
                lo = _mm256_and_si256(v, m4);
                hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            }
            if (has_qh(type)) {
                __m256i hlo, hhi;
                q5_high_pair(load_u32(a + qs - 4), load_u32(b + qs - 4), &hlo, &hhi);
                lo = _mm256_or_si256(lo, hlo);
                hi = _mm256_or_si256(hi, hhi);
            }
            if (type == TS_TYPE_IQ4_NL || type == TS_TYPE_MXFP4) {
                lo = _mm256_shuffle_epi8(codebook, lo);
                hi = _mm256_shuffle_epi8(codebook, hi);
            }
            /* maddubs wants the unsigned side left: signed quants move their signs onto x. */
            const __m256i alo = is_signed(type) ? _mm256_sign_epi8(lo, lo) : lo;
            const __m256i ahi = is_signed(type) ? _mm256_sign_epi8(hi, hi) : hi;
            /* [d_a, m_a, d_b, m_b] with a minimum; else d_a, d_b in lanes 0 and 2. */
            const __m128 dm = type == TS_TYPE_MXFP4
                                  ? _mm_setr_ps(ts_e8m0_half_to_f32(a[0]), 0.0f, ts_e8m0_half_to_f32(b[0]), 0.0f)
                                  : _mm_cvtph_ps(_mm_setr_epi32((int)load_u32(a), (int)load_u32(b), 0, 0));
            const __m256 dw = spread2(dm, 0, 2), mw = spread2(dm, 1, 3);
            for (int c = 0; c < nc; c++) {
                const act_chunk *x = &act[c];
                __m256i dot;
                if (is_signed(type)) {
                    /* |w| * |x| <= 127 * 127: the two halves add only after madd. */
                    const __m256i plo = _mm256_maddubs_epi16(alo, _mm256_sign_epi8(x->lo[p], lo));
                    const __m256i phi = _mm256_maddubs_epi16(ahi, _mm256_sign_epi8(x->hi[p], hi));
                    dot = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
                } else {
                    /* Quants below 32 keep the int16 sums of both halves below saturation. */
                    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(alo, x->lo[p]),
                                                         _mm256_maddubs_epi16(ahi, x->hi[p]));
                    dot = _mm256_madd_epi16(p16, ones);
                    if (!has_min(type)) dot = _mm256_add_epi32(dot, x->off[p]);
                }
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, x->d[p]), acc[c]);
                if (has_min(type)) acc[c] = _mm256_fmadd_ps(mw, x->s[p], acc[c]);
            }
        }
        store_cols(acc, nc, y + r, ys, first);
    }
}

TS_INLINE void gemm_q8x32(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    const int bs = ts_q8x32_block_bytes(type);
    const int64_t nb = n / TS_QK;
    act_chunk act[COLS];
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

#define TS_GEMM_Q8X32(name, type)                                                                        \
    static void name##_tile(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,     \
                            size_t x_stride, float *y, size_t y_stride) {                                \
        gemm_q8x32(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);                              \
    }                                                                                                    \
    TS_GEMM_GROUPS(name)

TS_GEMM_Q8X32(gemm_q4_0, TS_TYPE_Q4_0)
TS_GEMM_Q8X32(gemm_q4_1, TS_TYPE_Q4_1)
TS_GEMM_Q8X32(gemm_q5_0, TS_TYPE_Q5_0)
TS_GEMM_Q8X32(gemm_q5_1, TS_TYPE_Q5_1)
TS_GEMM_Q8X32(gemm_q8_0, TS_TYPE_Q8_0)
TS_GEMM_Q8X32(gemm_iq4_nl, TS_TYPE_IQ4_NL)
TS_GEMM_Q8X32(gemm_mxfp4, TS_TYPE_MXFP4)

/* ---- k-quants against q8k --------------------------------------------------------------------
 * A super-block's quants are unpacked once per weight row into unsigned bytes in element
 * order, 32 to a register, with an int16 scale vector per register; each activation row then
 * takes maddubs (u <= 63, |x| <= 127: below int16 saturation) and madd with those scales. The
 * unpacked super-block lives on the stack: sixteen registers do not hold it and the
 * accumulators, and reloading it from L1 is cheaper than unpacking it again per row. */

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

/* int16 lane i of v (i < 8) repeated over the low 128-bit lane, lane j over the high one. */
TS_INLINE __m256i pick16(__m256i v, int i, int j) {
    const __m256i both = _mm256_permute2x128_si256(v, v, i < 8 ? 0x00 : 0x11);
    const __m256i both2 = _mm256_permute2x128_si256(v, v, j < 8 ? 0x00 : 0x11);
    const __m256i s = _mm256_blend_epi32(both, both2, 0xF0);
    const int bi = 2 * (i & 7), bj = 2 * (j & 7);
    return _mm256_shuffle_epi8(s, _mm256_set_m128i(_mm_set1_epi16((short)((bj + 1) << 8 | bj)),
                                                   _mm_set1_epi16((short)((bi + 1) << 8 | bi))));
}

typedef struct {
    __m256i u[8];  /* quants of elements 32t .. 32t+31 */
    __m256i sc[8]; /* their int16 scales, one per maddubs lane */
} kblock;

/* Adds super-block b of every activation row to acc: (bias . bsums + the scaled integer dot) *
 * d * x.d, and with mins (per 16 elements) - (mins . bsums) * dmin * x.d. NULL bias: none. */
TS_INLINE void kblock_add(const kblock *kb, int nc, const void *x, size_t x_stride, int64_t b, const __m256i *bias,
                          float d, const __m256i *mins, float dmin, __m256 *acc) {
    for (int c = 0; c < nc; c++) {
        const ts_block_q8k *xb = act_k(x, x_stride, c) + b;
        __m256i isum = bias ? _mm256_madd_epi16(*bias, load(xb->bsums)) : _mm256_setzero_si256();
        for (int t = 0; t < 8; t++)
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(kb->u[t], load(xb->qs + 32 * t)),
                                                            kb->sc[t]));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * xb->d), acc[c]);
        if (mins)
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(*mins, load(xb->bsums))),
                                      _mm256_set1_ps(dmin * xb->d), acc[c]);
    }
}

/* Q4_K, and Q5_K (five): the same d, dmin and scales first; Q5_K's fifth bit of element 32b + l
 * is bit b of qh[l]. */
TS_INLINE void gemm_k45_rows(int five, int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                             size_t x_stride, float *y, size_t ys) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const size_t bsize = five ? sizeof(ts_block_q5_K) : sizeof(ts_block_q4_K);
    kblock kb;
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * w_stride;
        __m256 acc[COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const ts_block_q4_K *blk = (const ts_block_q4_K *)(wr + (size_t)b * bsize);
            ts_prefetch_ahead(blk, bsize, TS_PREFETCH_AHEAD);
            const uint8_t *qs = five ? ((const ts_block_q5_K *)blk)->qs : blk->qs;
            const __m256i qh = five ? load(((const ts_block_q5_K *)blk)->qh) : _mm256_setzero_si256();
            const __m256i sm = q4_K_scales16(blk->scales);
            /* The min of 32 elements, once per 16 of them to meet bsums: m0 m0 m1 m1 .. m7 m7. */
            const __m256i mins = _mm256_shuffle_epi8(_mm256_permute2x128_si256(sm, sm, 0x11),
                _mm256_setr_epi8(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7,
                                 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15));
            /* Elements 64j .. 64j+31 are the low nibbles of qs[32j ..], the next 32 the high ones. */
            for (int j = 0; j < 4; j++) {
                const __m256i q = load(qs + 32 * j);
                kb.u[2 * j] = _mm256_and_si256(q, m4);
                kb.u[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (five) {
                    /* Bit 2j (then 2j + 1) of each qh byte, moved to bit 4. */
                    const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one);
                    const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one);
                    kb.u[2 * j] = _mm256_or_si256(kb.u[2 * j], _mm256_slli_epi16(h0, 4));
                    kb.u[2 * j + 1] = _mm256_or_si256(kb.u[2 * j + 1], _mm256_slli_epi16(h1, 4));
                }
                kb.sc[2 * j] = pick16(sm, 2 * j, 2 * j);
                kb.sc[2 * j + 1] = pick16(sm, 2 * j + 1, 2 * j + 1);
            }
            kblock_add(&kb, nc, x, x_stride, b, NULL, f16_at(&blk->d), &mins, f16_at(&blk->dmin), acc);
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

TS_INLINE void gemm_q6_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    kblock kb;
    for (int r = 0; r < nr; r++) {
        const ts_block_q6_K *wr = (const ts_block_q6_K *)((const char *)w + (size_t)r * w_stride);
        __m256 acc[COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            ts_prefetch_ahead(&wr[b], sizeof(wr[b]), TS_PREFETCH_AHEAD);
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wr[b].scales));
            /* Quants are stored as u - 32: the -32 * sum(scale * bsums) term starts each sum. */
            const __m256i bias = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
            /* Element 128j + 32k + i: 4 bits from ql[64j + 32(k&1) + i] (high nibble when k >= 2),
             * 2 bits from qh[32j + i] at bit 2k. */
            for (int j = 0; j < 2; j++) {
                const __m256i ql0 = load(wr[b].ql + 64 * j), ql1 = load(wr[b].ql + 64 * j + 32);
                const __m256i qh = load(wr[b].qh + 32 * j);
                __m256i *u = &kb.u[4 * j];
                u[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                u[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
                u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            }
            /* Register t covers sub-blocks 2t (low 128-bit lane) and 2t+1 (high). */
            for (int t = 0; t < 8; t++) kb.sc[t] = pick16(sc16, 2 * t, 2 * t + 1);
            kblock_add(&kb, nc, x, x_stride, b, &bias, f16_at(&wr[b].d), NULL, 0.0f, acc);
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

/* Q2_K and Q3_K keep their low two bits in 32-byte groups: register t = 4g + j (elements
 * 128g + 32j + l) is bits 2j of qs[32g + l]. */
TS_INLINE __m256i low2(const uint8_t *qs, int t) {
    return _mm256_and_si256(_mm256_srli_epi16(load(qs + 32 * (t / 4)), 2 * (t % 4)), _mm256_set1_epi8(3));
}

/* Q3_K: u = low two bits + 4 * bit t of hmask[l] (stored as u - 4, so -4 * sum(scale * bsums)
 * starts each sum); sixteen signed 6-bit scales, one per 16 elements. */
TS_INLINE void gemm_q3_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    const __m256i one = _mm256_set1_epi8(1);
    kblock kb;
    for (int r = 0; r < nr; r++) {
        const ts_block_q3_K *wr = (const ts_block_q3_K *)((const char *)w + (size_t)r * w_stride);
        __m256 acc[COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            ts_prefetch_ahead(&wr[b], sizeof(wr[b]), TS_PREFETCH_AHEAD);
            const __m256i sc16 = _mm256_cvtepi8_epi16(ts_avx2_q3_K_scales(wr[b].scales));
            const __m256i bias = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 2));
            const __m256i hm = load(wr[b].hmask);
            for (int t = 0; t < 8; t++) {
                const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hm, t), one);
                kb.u[t] = _mm256_or_si256(low2(wr[b].qs, t), _mm256_slli_epi16(high, 2));
                kb.sc[t] = pick16(sc16, 2 * t, 2 * t + 1);
            }
            kblock_add(&kb, nc, x, x_stride, b, &bias, f16_at(&wr[b].d), NULL, 0.0f, acc);
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

/* Q2_K: u = the two bits; per 16 elements a 4-bit scale (low nibble of scales[i]) and a 4-bit
 * minimum (high nibble), which meets the activations' bsums. */
TS_INLINE void gemm_q2_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    kblock kb;
    for (int r = 0; r < nr; r++) {
        const ts_block_q2_K *wr = (const ts_block_q2_K *)((const char *)w + (size_t)r * w_stride);
        __m256 acc[COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            ts_prefetch_ahead(&wr[b], sizeof(wr[b]), TS_PREFETCH_AHEAD);
            const __m256i raw = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)wr[b].scales));
            const __m256i sc16 = _mm256_and_si256(raw, _mm256_set1_epi16(0x0F));
            const __m256i mins = _mm256_srli_epi16(raw, 4);
            for (int t = 0; t < 8; t++) {
                kb.u[t] = low2(wr[b].qs, t);
                kb.sc[t] = pick16(sc16, 2 * t, 2 * t + 1);
            }
            kblock_add(&kb, nc, x, x_stride, b, NULL, f16_at(&wr[b].d), &mins, f16_at(&wr[b].dmin), acc);
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

/* A constant column count lets the accumulators live in registers. */
#define TS_GEMM_K(name, rows_fn)                                                                         \
    static void name##_tile(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,     \
                            size_t x_stride, float *y, size_t y_stride) {                                \
        const int64_t nb = n / TS_QK_K;                                                                  \
        switch (nc) {                                                                                    \
        case 1: rows_fn(1, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                        \
        case 2: rows_fn(2, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                        \
        case 3: rows_fn(3, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                        \
        default: rows_fn(4, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                       \
        }                                                                                                \
    }

TS_INLINE void gemm_q4_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    gemm_k45_rows(0, nc, nb, nr, w, w_stride, x, x_stride, y, ys);
}
TS_INLINE void gemm_q5_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    gemm_k45_rows(1, nc, nb, nr, w, w_stride, x, x_stride, y, ys);
}

TS_GEMM_K(gemm_q4_K, gemm_q4_K_rows)
TS_GEMM_GROUPS(gemm_q4_K)
TS_GEMM_K(gemm_q5_K, gemm_q5_K_rows)
TS_GEMM_GROUPS(gemm_q5_K)
TS_GEMM_K(gemm_q6_K, gemm_q6_K_rows)
TS_GEMM_GROUPS(gemm_q6_K)
TS_GEMM_K(gemm_q3_K, gemm_q3_K_rows)
TS_GEMM_GROUPS(gemm_q3_K)
TS_GEMM_K(gemm_q2_K, gemm_q2_K_rows)
TS_GEMM_GROUPS(gemm_q2_K)

void ts_register_avx2_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q5_1] = gemm_q5_1;
    k->gemm[TS_TYPE_Q8_0] = gemm_q8_0;
    k->gemm[TS_TYPE_IQ4_NL] = gemm_iq4_nl;
    k->gemm[TS_TYPE_MXFP4] = gemm_mxfp4;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q5_K] = gemm_q5_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
    k->gemm[TS_TYPE_Q3_K] = gemm_q3_K;
    k->gemm[TS_TYPE_Q2_K] = gemm_q2_K;
}
