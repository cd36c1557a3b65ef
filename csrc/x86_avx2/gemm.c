/* AVX2: gemm tiles (one weight row block unpacked for several activation rows). */
#include <immintrin.h>
#include <string.h>

#include "ts/kernels.h"

#define TS_INLINE static inline __attribute__((always_inline))

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
    __m256 s[CHUNK / 2];    /* Q4_1: x.s / 4 over each block's lanes, the minimum's partner */
} act_chunk;

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
        if (type == TS_TYPE_Q4_1) a->s[p] = spread2(ds, 2, 3);
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
    const int bs = type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
    const int qs = type == TS_TYPE_Q4_0 || type == TS_TYPE_Q8_0 ? 2 : type == TS_TYPE_Q4_1 ? 4 : 6;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        __m256 acc[TS_GEMM_MAX_COLS];
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
            if (type == TS_TYPE_Q5_0) {
                __m256i hlo, hhi;
                q5_high_pair(load_u32(a + 2), load_u32(b + 2), &hlo, &hhi);
                lo = _mm256_or_si256(lo, hlo);
                hi = _mm256_or_si256(hi, hhi);
            }
            /* maddubs wants the unsigned side left: Q8_0 moves its weights' signs onto x. */
            const __m256i alo = type == TS_TYPE_Q8_0 ? _mm256_sign_epi8(lo, lo) : lo;
            const __m256i ahi = type == TS_TYPE_Q8_0 ? _mm256_sign_epi8(hi, hi) : hi;
            /* [d_a, m_a, d_b, m_b] for Q4_1; else d_a, d_b in lanes 0 and 2. */
            const __m128 dm = _mm_cvtph_ps(_mm_setr_epi32((int)load_u32(a), (int)load_u32(b), 0, 0));
            const __m256 dw = spread2(dm, 0, 2), mw = spread2(dm, 1, 3);
            for (int c = 0; c < nc; c++) {
                const act_chunk *x = &act[c];
                __m256i dot;
                if (type == TS_TYPE_Q8_0) {
                    /* |w| * |x| <= 127 * 127: the two halves add only after madd. */
                    const __m256i plo = _mm256_maddubs_epi16(alo, _mm256_sign_epi8(x->lo[p], lo));
                    const __m256i phi = _mm256_maddubs_epi16(ahi, _mm256_sign_epi8(x->hi[p], hi));
                    dot = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
                } else {
                    /* Quants below 32 keep the int16 sums of both halves below saturation. */
                    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(alo, x->lo[p]),
                                                         _mm256_maddubs_epi16(ahi, x->hi[p]));
                    dot = _mm256_madd_epi16(p16, ones);
                    if (type != TS_TYPE_Q4_1) dot = _mm256_add_epi32(dot, x->off[p]);
                }
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, x->d[p]), acc[c]);
                if (type == TS_TYPE_Q4_1) acc[c] = _mm256_fmadd_ps(mw, x->s[p], acc[c]);
            }
        }
        store_cols(acc, nc, y + r, ys, first);
    }
}

TS_INLINE void gemm_q8x32(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    const int bs = type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
    const int64_t nb = n / TS_QK;
    act_chunk act[TS_GEMM_MAX_COLS];
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
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,           \
                     size_t x_stride, float *y, size_t y_stride) {                                       \
        gemm_q8x32(type, n, nr, nc, w, w_stride, x, x_stride, y, y_stride);                              \
    }

TS_GEMM_Q8X32(gemm_q4_0, TS_TYPE_Q4_0)
TS_GEMM_Q8X32(gemm_q4_1, TS_TYPE_Q4_1)
TS_GEMM_Q8X32(gemm_q5_0, TS_TYPE_Q5_0)
TS_GEMM_Q8X32(gemm_q8_0, TS_TYPE_Q8_0)

void ts_register_avx2_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q8_0] = gemm_q8_0;
}
