/* AVX2 + FMA + F16C: activation quantization, 32-element-block and float dot products. */
#include <stddef.h>

#include "quants.h"
#include "ts/prefetch.h"

/* ---- activation quantization ---------------------------------------------------------- */

static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static __m256 abs_max(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    return m;
}

/* 8 floats -> 8 int32 of round(x * id), ties to even. The clamp only matters when 1/d
 * overflows (block maxima near the bottom of the float range): those values saturate at
 * +-127 instead of turning into the conversion's 0x80000000. */
static inline __m256i quant8(const float *x, __m256 id) {
    const __m256 lim = _mm256_set1_ps(127.0f);
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), id);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
    return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* Four vectors of 8 int32 (|q| <= 127) -> 32 int8 in element order. packs works within
 * 128-bit lanes, so the dwords come out interleaved and one permute restores the order. */
static inline void store_i8x32(int8_t *dst, const __m256i q[4]) {
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i b = _mm256_packs_epi16(p01, p23);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(b, order));
}

static void quantize_q8x32(const float *x, void *vy, int64_t n) {
    ts_block_q8x32 *y = (ts_block_q8x32 *)vy;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        const float *xb = x + b * TS_QK;
        const float d = hmax_ps(abs_max(xb, TS_QK)) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = quant8(xb + 8 * k, id);
        store_i8x32(y[b].qs, q);
        const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        y[b].d = ts_f16_round(d);
        y[b].s = y[b].d * (float)hsum_epi32(sum);
    }
}

static void quantize_q8k(const float *x, void *vy, int64_t n) {
    ts_block_q8k *y = (ts_block_q8k *)vy;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        const float *xb = x + b * TS_QK_K;
        const float d = hmax_ps(abs_max(xb, TS_QK_K)) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        /* sums[p]: bsums of the four groups of 16 in elements 64p .. 64p+63. */
        __m128i sums[4];
        for (int p = 0; p < 4; p++) {
            __m256i h[2];
            for (int c = 0; c < 2; c++) {
                const int off = 64 * p + 32 * c;
                __m256i q[4];
                for (int k = 0; k < 4; k++) q[k] = quant8(xb + off + 8 * k, id);
                store_i8x32(y[b].qs + off, q);
                /* Lanes of h[c]: pair sums of group 2c's and group 2c+1's halves. */
                h[c] = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            }
            const __m256i g = _mm256_hadd_epi32(h[0], h[1]);
            sums[p] = _mm_add_epi32(_mm256_castsi256_si128(g), _mm256_extracti128_si256(g, 1));
        }
        _mm_storeu_si128((__m128i *)y[b].bsums, _mm_packs_epi32(sums[0], sums[1]));
        _mm_storeu_si128((__m128i *)(y[b].bsums + 8), _mm_packs_epi32(sums[2], sums[3]));
        y[b].d = d;
    }
}

/* ---- 32-element blocks against q8x32 ----------------------------------------------------
 * Unsigned weight quants go straight into maddubs; an offset (Q4_0: 8, Q5_0: 16) or a
 * minimum (Q4_1, Q5_1) enters once per block through the activation's s = d*sum(qs).
 * Blocks go in pairs, block a in the low 128-bit lane and block b in the high one, so that
 * one int->float conversion and one FMA serve two blocks; and in fours, so that the scales
 * of four blocks are converted and multiplied together. */

/* Nibbles of blocks a and b, whose low nibbles are elements 0..15 and high nibbles 16..31:
 * lo = elements 0..15 of a | of b, hi = elements 16..31 of a | of b. */
static inline void nibble_pair(const uint8_t *a, const uint8_t *b, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i v = ts_avx2_load_pair(a, b);
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
}

/* Fifth bits (qh bit i for element i) of blocks a and b in the nibble_pair layout, 0x10 where
 * set. The 16-byte loads from qh stay inside their blocks (qs follows qh). */
static inline void q5_high_pair(const uint8_t *qha, const uint8_t *qhb, __m256i *lo, __m256i *hi) {
    const __m256i v = ts_avx2_load_pair(qha, qhb);
    /* Each byte takes the qh byte holding its bit and keeps that bit: bit i%8 of byte i. */
    const __m256i spread_lo = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                               0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m256i spread_hi = _mm256_add_epi8(spread_lo, _mm256_set1_epi8(2));
    const __m256i select = _mm256_set1_epi64x((int64_t)0x8040201008040201ULL);
    /* sign(x, t) is x where the kept bit is set and 0 where not; only bit 7 makes t negative,
     * so those bytes take -16 to come out as +16. */
    const __m256i sixteen = _mm256_set1_epi64x((int64_t)0xF010101010101010ULL);
    *lo = _mm256_sign_epi8(sixteen, _mm256_and_si256(_mm256_shuffle_epi8(v, spread_lo), select));
    *hi = _mm256_sign_epi8(sixteen, _mm256_and_si256(_mm256_shuffle_epi8(v, spread_hi), select));
}

/* int32 lanes 0..3 of the result sum to block a's integer dot product, lanes 4..7 to b's.
 * Quants below 32 keep a maddubs lane under 31*127*2, so lo and hi add in int16. */
static inline __m256i dot_pair_u(__m256i qlo, __m256i qhi, const ts_block_q8x32 *xa,
                                 const ts_block_q8x32 *xb) {
    const __m256i ylo = ts_avx2_load_pair(xa->qs, xb->qs), yhi = ts_avx2_load_pair(xa->qs + 16, xb->qs + 16);
    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(qlo, ylo), _mm256_maddubs_epi16(qhi, yhi));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline __m256i q4_pair(const uint8_t *qa, const uint8_t *qb, const ts_block_q8x32 *xa,
                              const ts_block_q8x32 *xb) {
    __m256i lo, hi;
    nibble_pair(qa, qb, &lo, &hi);
    return dot_pair_u(lo, hi, xa, xb);
}

static inline __m256i q4_0_pair(const ts_block_q4_0 *a, const ts_block_q4_0 *b, const ts_block_q8x32 *xa,
                                const ts_block_q8x32 *xb) {
    return q4_pair(a->qs, b->qs, xa, xb);
}

static inline __m256i q4_1_pair(const ts_block_q4_1 *a, const ts_block_q4_1 *b, const ts_block_q8x32 *xa,
                                const ts_block_q8x32 *xb) {
    return q4_pair(a->qs, b->qs, xa, xb);
}

static inline __m256i q5_pair(const uint8_t *qa, const uint8_t *qb, const uint8_t *qha, const uint8_t *qhb,
                              const ts_block_q8x32 *xa, const ts_block_q8x32 *xb) {
    __m256i lo, hi, hlo, hhi;
    nibble_pair(qa, qb, &lo, &hi);
    q5_high_pair(qha, qhb, &hlo, &hhi);
    return dot_pair_u(_mm256_or_si256(lo, hlo), _mm256_or_si256(hi, hhi), xa, xb);
}

static inline __m256i q5_0_pair(const ts_block_q5_0 *a, const ts_block_q5_0 *b, const ts_block_q8x32 *xa,
                                const ts_block_q8x32 *xb) {
    return q5_pair(a->qs, b->qs, a->qh, b->qh, xa, xb);
}

static inline __m256i q5_1_pair(const ts_block_q5_1 *a, const ts_block_q5_1 *b, const ts_block_q8x32 *xa,
                                const ts_block_q8x32 *xb) {
    return q5_pair(a->qs, b->qs, a->qh, b->qh, xa, xb);
}

/* Signed quants: each block in natural order, the two halves regrouped per lane after madd. */
static inline __m256i q8_0_pair(const ts_block_q8_0 *a, const ts_block_q8_0 *b, const ts_block_q8x32 *xa,
                                const ts_block_q8x32 *xb) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i pa = _mm256_madd_epi16(ts_avx2_dot_i8(ts_avx2_load(a->qs), ts_avx2_load(xa->qs)), ones);
    const __m256i pb = _mm256_madd_epi16(ts_avx2_dot_i8(ts_avx2_load(b->qs), ts_avx2_load(xb->qs)), ones);
    return _mm256_add_epi32(_mm256_permute2x128_si256(pa, pb, 0x20), _mm256_permute2x128_si256(pa, pb, 0x31));
}

/* Codebook values reach 127 in magnitude, so lo and hi add only after madd. */
static inline __m256i iq4_nl_pair(const ts_block_iq4_nl *a, const ts_block_iq4_nl *b, const ts_block_q8x32 *xa,
                                  const ts_block_q8x32 *xb) {
    const __m256i values = ts_avx2_iq4_values(), ones = _mm256_set1_epi16(1);
    __m256i lo, hi;
    nibble_pair(a->qs, b->qs, &lo, &hi);
    const __m256i ylo = ts_avx2_load_pair(xa->qs, xb->qs), yhi = ts_avx2_load_pair(xa->qs + 16, xb->qs + 16);
    const __m256i plo = ts_avx2_dot_i8(_mm256_shuffle_epi8(values, lo), ylo);
    const __m256i phi = ts_avx2_dot_i8(_mm256_shuffle_epi8(values, hi), yhi);
    return _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
}

static inline float f16_at(const void *block, int offset) {
    uint16_t h;
    memcpy(&h, (const uint8_t *)block + offset, 2);
    return _cvtsh_ss(h);
}

/* Four weight blocks from w, stride bytes apart, each opening with f16 d (and f16 m when
 * has_min), against four activation blocks. Blocks 0 and 2 go to the low 128-bit lane,
 * 1 and 3 to the high one, so that an in-lane broadcast yields the scales of a pair:
 * lanes [2k, 2k+1] of a half = [d * x.d, (has_min ? m : d) * x.s] of one block. */
static inline __m256 scales4(const uint8_t *w, size_t stride, int has_min, const ts_block_q8x32 *x) {
    __m128i h = _mm_cvtsi32_si128((int)ts_avx2_load_u32(w));
    h = _mm_insert_epi32(h, (int)ts_avx2_load_u32(w + 2 * stride), 1);
    h = _mm_insert_epi32(h, (int)ts_avx2_load_u32(w + stride), 2);
    h = _mm_insert_epi32(h, (int)ts_avx2_load_u32(w + 3 * stride), 3);
    if (!has_min) h = _mm_shuffle_epi8(h, _mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13));
    /* x[k].d and x[k].s are adjacent: one 8-byte load per block. */
    _Static_assert(offsetof(ts_block_q8x32, s) == offsetof(ts_block_q8x32, d) + 4, "q8x32 d, s adjacent");
    const __m128d ds02 = _mm_loadh_pd(_mm_load_sd((const double *)&x[0]), (const double *)&x[2]);
    const __m128d ds13 = _mm_loadh_pd(_mm_load_sd((const double *)&x[1]), (const double *)&x[3]);
    return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_castpd_ps(_mm256_set_m128d(ds13, ds02)));
}

/* One dot product per block type: `pair` gives the integer dots of two blocks, which the
 * scales turn into floats; the offset or minimum terms add up separately and enter once,
 * as off_scale * sum(offset-or-min scale * x.s). */
#define TS_DOT_Q8X32(name, block_t, pair, has_min, off_scale)                                            \
    static void name(int64_t n, float *s, const void *vw, const void *vx) {                              \
        const block_t *w = (const block_t *)vw;                                                          \
        const ts_block_q8x32 *x = (const ts_block_q8x32 *)vx;                                            \
        const int64_t nb = n / TS_QK;                                                                    \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), off = _mm256_setzero_ps();        \
        int64_t i = 0;                                                                                   \
        for (; i + 4 <= nb; i += 4) {                                                                    \
            ts_prefetch_ahead(&w[i], 4 * sizeof(block_t), TS_PREFETCH_AHEAD);                            \
            const __m256 sc = scales4((const uint8_t *)&w[i], sizeof(block_t), has_min, &x[i]);          \
            if ((off_scale) != 0.0f) off = _mm256_add_ps(off, sc);                                       \
            const __m256 p01 = _mm256_cvtepi32_ps(pair(&w[i], &w[i + 1], &x[i], &x[i + 1]));             \
            const __m256 p23 = _mm256_cvtepi32_ps(pair(&w[i + 2], &w[i + 3], &x[i + 2], &x[i + 3]));     \
            acc0 = _mm256_fmadd_ps(_mm256_permute_ps(sc, 0x00), p01, acc0);                              \
            acc1 = _mm256_fmadd_ps(_mm256_permute_ps(sc, 0xAA), p23, acc1);                              \
        }                                                                                                \
        float off_sum = ts_avx2_hsum_ps(_mm256_blend_ps(_mm256_setzero_ps(), off, 0xAA));                \
        /* The last one to three blocks; an odd one pairs with itself at scale 0. */                     \
        for (; i < nb; i += 2) {                                                                         \
            const int64_t j = i + 1 < nb ? i + 1 : i;                                                    \
            const float da = f16_at(&w[i], 0) * x[i].d;                                                  \
            const float db = j > i ? f16_at(&w[j], 0) * x[j].d : 0.0f;                                   \
            off_sum += f16_at(&w[i], 2 * (has_min)) * x[i].s;                                            \
            if (j > i) off_sum += f16_at(&w[j], 2 * (has_min)) * x[j].s;                                 \
            const __m256 d = _mm256_set_m128(_mm_set1_ps(db), _mm_set1_ps(da));                          \
            acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(pair(&w[i], &w[j], &x[i], &x[j])), acc0);       \
        }                                                                                                \
        *s = ts_avx2_hsum_ps(_mm256_add_ps(acc0, acc1)) + (off_scale) * off_sum;                         \
    }

TS_DOT_Q8X32(dot_q4_0, ts_block_q4_0, q4_0_pair, 0, -8.0f)
TS_DOT_Q8X32(dot_q4_1, ts_block_q4_1, q4_1_pair, 1, 1.0f)
TS_DOT_Q8X32(dot_q5_0, ts_block_q5_0, q5_0_pair, 0, -16.0f)
TS_DOT_Q8X32(dot_q5_1, ts_block_q5_1, q5_1_pair, 1, 1.0f)
TS_DOT_Q8X32(dot_q8_0, ts_block_q8_0, q8_0_pair, 0, 0.0f)
TS_DOT_Q8X32(dot_iq4_nl, ts_block_iq4_nl, iq4_nl_pair, 0, 0.0f)

/* MXFP4: codes reach 12 in magnitude, so both halves add in int16 before madd. */
static inline __m256i mxfp4_pair(const ts_block_mxfp4 *a, const ts_block_mxfp4 *b, const ts_block_q8x32 *xa,
                                 const ts_block_q8x32 *xb) {
    const __m256i values = ts_avx2_mxfp4_values();
    __m256i lo, hi;
    nibble_pair(a->qs, b->qs, &lo, &hi);
    const __m256i ylo = ts_avx2_load_pair(xa->qs, xb->qs), yhi = ts_avx2_load_pair(xa->qs + 16, xb->qs + 16);
    const __m256i p = _mm256_add_epi16(ts_avx2_dot_i8(_mm256_shuffle_epi8(values, lo), ylo),
                                       ts_avx2_dot_i8(_mm256_shuffle_epi8(values, hi), yhi));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* d_w * x.d of four MXFP4 blocks in scales4's lane order (blocks 0 and 2 in the low 128-bit lane,
 * 1 and 3 in the high one, each in an even lane): its one-byte scales do not fit scales4's f16
 * loads, so they are widened and turned into floats here. */
static inline __m256 mxfp4_scales4(const ts_block_mxfp4 *w, const ts_block_q8x32 *x) {
    const __m128i e = _mm_setr_epi32(w[0].e, w[1].e, w[2].e, w[3].e);
    /* ts_e8m0_half_to_f32: (e - 1) << 23, or 2^-128 << e for e < 2. */
    const __m128i normal = _mm_slli_epi32(_mm_sub_epi32(e, _mm_set1_epi32(1)), 23);
    const __m128i tiny = _mm_sllv_epi32(_mm_set1_epi32(0x00200000), e);
    const __m128i small = _mm_cmpgt_epi32(_mm_set1_epi32(2), e);
    const __m128 dw = _mm_castsi128_ps(_mm_blendv_epi8(normal, tiny, small));
    const __m128 d = _mm_mul_ps(dw, _mm_setr_ps(x[0].d, x[1].d, x[2].d, x[3].d));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3));
}

/* As TS_DOT_Q8X32 (no offset or minimum), with mxfp4_scales4. */
static void dot_mxfp4(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_mxfp4 *w = (const ts_block_mxfp4 *)vw;
    const ts_block_q8x32 *x = (const ts_block_q8x32 *)vx;
    const int64_t nb = n / TS_QK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        ts_prefetch_ahead(&w[i], 4 * sizeof(ts_block_mxfp4), TS_PREFETCH_AHEAD);
        const __m256 sc = mxfp4_scales4(&w[i], &x[i]);
        const __m256 p01 = _mm256_cvtepi32_ps(mxfp4_pair(&w[i], &w[i + 1], &x[i], &x[i + 1]));
        const __m256 p23 = _mm256_cvtepi32_ps(mxfp4_pair(&w[i + 2], &w[i + 3], &x[i + 2], &x[i + 3]));
        acc0 = _mm256_fmadd_ps(_mm256_permute_ps(sc, 0x00), p01, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permute_ps(sc, 0xAA), p23, acc1);
    }
    /* The last one to three blocks; an odd one pairs with itself at scale 0. */
    for (; i < nb; i += 2) {
        const int64_t j = i + 1 < nb ? i + 1 : i;
        const float da = ts_e8m0_half_to_f32(w[i].e) * x[i].d;
        const float db = j > i ? ts_e8m0_half_to_f32(w[j].e) * x[j].d : 0.0f;
        const __m256 d = _mm256_set_m128(_mm_set1_ps(db), _mm_set1_ps(da));
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(mxfp4_pair(&w[i], &w[j], &x[i], &x[j])), acc0);
    }
    *s = ts_avx2_hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- float weights against f32 activations ---------------------------------------------- */

static inline __m256 load_f16(const ts_f16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static inline __m256 load_bf16(const ts_bf16 *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static inline __m256 load_f32(const float *p) { return _mm256_loadu_ps(p); }

static inline float scalar_f16(const ts_f16 *p) { return _cvtsh_ss(*p); }
static inline float scalar_bf16(const ts_bf16 *p) {
    const uint32_t bits = (uint32_t)*p << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static inline float scalar_f32(const float *p) { return *p; }

/* Four accumulators hide the FMA latency; n need not be a multiple of anything. */
#define TS_DOT_FLOAT(name, elem_t, load, scalar)                                                         \
    static void name(int64_t n, float *s, const void *vw, const void *vx) {                              \
        const elem_t *w = (const elem_t *)vw;                                                            \
        const float *x = (const float *)vx;                                                              \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),                  \
                         _mm256_setzero_ps()};                                                           \
        int64_t i = 0;                                                                                   \
        for (; i + 32 <= n; i += 32) {                                                                   \
            ts_prefetch_ahead(w + i, 32 * sizeof(elem_t), TS_PREFETCH_AHEAD);                             \
            for (int k = 0; k < 4; k++)                                                                  \
                acc[k] = _mm256_fmadd_ps(load(w + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);   \
        }                                                                                                \
        for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), acc[0]); \
        float sum = ts_avx2_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),                         \
                                                  _mm256_add_ps(acc[2], acc[3])));                       \
        for (; i < n; i++) sum += scalar(w + i) * x[i];                                                  \
        *s = sum;                                                                                        \
    }

TS_DOT_FLOAT(dot_f32, float, load_f32, scalar_f32)
TS_DOT_FLOAT(dot_f16, ts_f16, load_f16, scalar_f16)
TS_DOT_FLOAT(dot_bf16, ts_bf16, load_bf16, scalar_bf16)

void ts_register_avx2(ts_kernels *k) {
    k->quantize_q8x32 = quantize_q8x32;
    k->quantize_q8k = quantize_q8k;
    k->vec_dot[TS_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[TS_TYPE_Q4_1] = dot_q4_1;
    k->vec_dot[TS_TYPE_Q5_0] = dot_q5_0;
    k->vec_dot[TS_TYPE_Q5_1] = dot_q5_1;
    k->vec_dot[TS_TYPE_Q8_0] = dot_q8_0;
    k->vec_dot[TS_TYPE_IQ4_NL] = dot_iq4_nl;
    k->vec_dot[TS_TYPE_MXFP4] = dot_mxfp4;
    k->vec_dot[TS_TYPE_F32] = dot_f32;
    k->vec_dot[TS_TYPE_F16] = dot_f16;
    k->vec_dot[TS_TYPE_BF16] = dot_bf16;
    ts_register_avx2_kquants(k);
    ts_register_avx2_iquants(k);
}
