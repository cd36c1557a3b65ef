/* AVX-512 legacy formats: q8x32 activation quantization and the Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * and IQ4_NL dot products, two 32-element blocks per 512-bit register. */
#include "quants.h"

/* In a pair register the int32/float lanes 0-7 belong to the first block, 8-15 to the second. */
#define LO ((__mmask16)0x00FF)
#define HI ((__mmask16)0xFF00)

static void quantize_q8x32(const float *x, void *vy, int64_t n) {
    ts_block_q8x32 *y = (ts_block_q8x32 *)vy;
    for (int64_t i = 0; i < n / TS_QK; i++) {
        const __m512 a = _mm512_loadu_ps(x + i * TS_QK), b = _mm512_loadu_ps(x + i * TS_QK + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        const float d = amax / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        /* Rounds to nearest even (the MXCSR default); |x * id| <= 127 needs no clamp. */
        const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, id));
        const __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, id));
        _mm_storeu_si128((__m128i *)y[i].qs, _mm512_cvtepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(y[i].qs + 16), _mm512_cvtepi32_epi8(qb));
        y[i].d = d;
        y[i].s = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    }
}

static inline __m512i act_pair(const ts_block_q8x32 *a, const ts_block_q8x32 *b) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)a->qs);
    /* A masked broadcast rather than an insert: it issues on either vector port, not only port 5. */
    return _mm512_mask_broadcast_i64x4(_mm512_castsi256_si512(lo), 0xF0, _mm256_loadu_si256((const __m256i *)b->qs));
}

/* Floats [f16 word 0 x8, f16 word w1 x8] of the bytes at p: the scales of the pair starting
 * at p when blocks are w1 words long. A lone tail block (tail = 1) reads only its own word
 * and leaves the second half 0, which zeroes whatever the duplicate half computed. */
static inline __m512 f16_pair(const void *p, int w1, int tail) {
    const __mmask32 m = tail ? 1u : (1u | (1u << w1));
    const __m512i idx = _mm512_mask_blend_epi16(0xFF00u, _mm512_setzero_si512(),
                                                _mm512_set1_epi16((short)w1));
    const __m512i v = _mm512_permutexvar_epi16(idx, _mm512_maskz_loadu_epi16(m, p));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(v));
}

/* Scale and minimum patterns of a pair of blocks that open with f16 d and m, w1 words long. */
static inline void f16_dm_pair(const void *p, int w1, int tail, __m512 *d, __m512 *m) {
    const __mmask16 k = tail ? 0x3 : (__mmask16)(0x3 | (0x3 << w1));
    const __m512 f = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
    const __m512i idx = _mm512_mask_blend_epi32(HI, _mm512_setzero_si512(), _mm512_set1_epi32(w1));
    *d = _mm512_permutexvar_ps(idx, f);
    *m = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(1)), f);
}

/* f lane-wise times the activation scale of its block. */
static inline __m512 scale_act(__m512 f, const ts_block_q8x32 *a, const ts_block_q8x32 *b) {
    f = _mm512_mask_mul_ps(f, LO, f, _mm512_set1_ps(a->d));
    return _mm512_mask_mul_ps(f, HI, f, _mm512_set1_ps(b->d));
}

/* [a->s x8, b->s x8]: 8 lanes per block, so the sum over lanes counts each s 8 times. */
static inline __m512 sum_pair(const ts_block_q8x32 *a, const ts_block_q8x32 *b) {
    return _mm512_mask_mov_ps(_mm512_set1_ps(a->s), HI, _mm512_set1_ps(b->s));
}

/* Each pair function adds two blocks (one when tail) into acc[0] (scaled dot products)
 * and acc[1] (8 x minimum terms). */

static inline void q4_0_pair(__m512 acc[2], const ts_block_q4_0 *w, const ts_block_q8x32 *x, int tail) {
    const ts_block_q4_0 *w1 = w + !tail;
    const ts_block_q8x32 *x1 = x + !tail;
    const __m512i dot = ts_avx512_dot_u8s8(_mm512_setzero_si512(), ts_avx512_nibble_pair(w->qs, w1->qs), act_pair(x, x1));
    __m512 f = _mm512_cvtepi32_ps(dot);
    /* The nibbles are offset by 8: subtracting s in each of a block's 8 lanes removes 8*sum(x). */
    f = _mm512_mask_fmsub_ps(f, LO, _mm512_set1_ps(x->d), _mm512_set1_ps(x->s));
    f = _mm512_mask_fmsub_ps(f, HI, _mm512_set1_ps(x1->d), _mm512_set1_ps(x1->s));
    acc[0] = _mm512_fmadd_ps(f, f16_pair(w, sizeof(*w) / 2, tail), acc[0]);
}

static inline void q4_1_pair(__m512 acc[2], const ts_block_q4_1 *w, const ts_block_q8x32 *x, int tail) {
    const ts_block_q4_1 *w1 = w + !tail;
    const ts_block_q8x32 *x1 = x + !tail;
    const __m512i dot = ts_avx512_dot_u8s8(_mm512_setzero_si512(), ts_avx512_nibble_pair(w->qs, w1->qs), act_pair(x, x1));
    __m512 d, m;
    f16_dm_pair(w, sizeof(*w) / 2, tail, &d, &m);
    acc[0] = _mm512_fmadd_ps(scale_act(_mm512_cvtepi32_ps(dot), x, x1), d, acc[0]);
    acc[1] = _mm512_fmadd_ps(m, sum_pair(x, x1), acc[1]);
}

/* Fifth bits of a pair: bit j of qh is element j, and element j of the pair's second block
 * is byte 32 + j of the register. */
static inline __m512i add_high_bits(__m512i q, const uint8_t *qh0, const uint8_t *qh1) {
    const uint64_t bits = ts_avx512_load_u32(qh0) | (uint64_t)ts_avx512_load_u32(qh1) << 32;
    return _mm512_mask_add_epi8(q, _cvtu64_mask64(bits), q, _mm512_set1_epi8(16));
}

static inline void q5_0_pair(__m512 acc[2], const ts_block_q5_0 *w, const ts_block_q8x32 *x, int tail) {
    const ts_block_q5_0 *w1 = w + !tail;
    const ts_block_q8x32 *x1 = x + !tail;
    const __m512i q = add_high_bits(ts_avx512_nibble_pair(w->qs, w1->qs), w->qh, w1->qh);
    const __m512i dot = ts_avx512_dot_u8s8(_mm512_setzero_si512(), q, act_pair(x, x1));
    __m512 f = _mm512_cvtepi32_ps(dot);
    /* Offset 16: s twice in each of the block's 8 lanes. */
    const __m512 s0 = _mm512_set1_ps(x->s), s1 = _mm512_set1_ps(x1->s);
    f = _mm512_mask_fmsub_ps(f, LO, _mm512_set1_ps(x->d), s0);
    f = _mm512_mask_fmsub_ps(f, HI, _mm512_set1_ps(x1->d), s1);
    f = _mm512_sub_ps(f, _mm512_mask_mov_ps(s0, HI, s1));
    acc[0] = _mm512_fmadd_ps(f, f16_pair(w, sizeof(*w) / 2, tail), acc[0]);
}

static inline void q5_1_pair(__m512 acc[2], const ts_block_q5_1 *w, const ts_block_q8x32 *x, int tail) {
    const ts_block_q5_1 *w1 = w + !tail;
    const ts_block_q8x32 *x1 = x + !tail;
    const __m512i q = add_high_bits(ts_avx512_nibble_pair(w->qs, w1->qs), w->qh, w1->qh);
    const __m512i dot = ts_avx512_dot_u8s8(_mm512_setzero_si512(), q, act_pair(x, x1));
    __m512 d, m;
    f16_dm_pair(w, sizeof(*w) / 2, tail, &d, &m);
    acc[0] = _mm512_fmadd_ps(scale_act(_mm512_cvtepi32_ps(dot), x, x1), d, acc[0]);
    acc[1] = _mm512_fmadd_ps(m, sum_pair(x, x1), acc[1]);
}

static inline void q8_0_pair(__m512 acc[2], const ts_block_q8_0 *w, const ts_block_q8x32 *x, int tail) {
    const ts_block_q8_0 *w1 = w + !tail;
    const ts_block_q8x32 *x1 = x + !tail;
    const __m256i lo = _mm256_loadu_si256((const __m256i *)w->qs);
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)w1->qs), 1);
    /* |-128| = 128 still fits the unsigned side, and 2*128*127 stays below 2^15. */
    const __m512i dot = ts_avx512_dot_signed(_mm512_abs_epi8(q), _mm512_movepi8_mask(q), act_pair(x, x1));
    acc[0] = _mm512_fmadd_ps(scale_act(_mm512_cvtepi32_ps(dot), x, x1), f16_pair(w, sizeof(*w) / 2, tail), acc[0]);
}

static inline void iq4_nl_pair(__m512 acc[2], const ts_block_iq4_nl *w, const ts_block_q8x32 *x, int tail) {
    const ts_block_iq4_nl *w1 = w + !tail;
    const ts_block_q8x32 *x1 = x + !tail;
    const __m512i q = ts_avx512_nibble_pair(w->qs, w1->qs);
    const __m512i dot = ts_avx512_dot_signed(ts_avx512_iq4_abs(q), ts_avx512_iq4_neg(q),
                                   act_pair(x, x1));
    acc[0] = _mm512_fmadd_ps(scale_act(_mm512_cvtepi32_ps(dot), x, x1), f16_pair(w, sizeof(*w) / 2, tail), acc[0]);
}

/* Two pairs per step into independent accumulators, then a last pair and a lone block. */
#define TS_LEGACY_DOT(name, block_t, pair)                                                   \
    static void name(int64_t n, float *s, const void *vw, const void *vx) {                  \
        const block_t *w = (const block_t *)vw;                                              \
        const ts_block_q8x32 *x = (const ts_block_q8x32 *)vx;                                \
        const int64_t nb = n / TS_QK;                                                        \
        __m512 a[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};                            \
        __m512 b[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};                            \
        int64_t i = 0;                                                                       \
        for (; i + 4 <= nb; i += 4) {                                                        \
            pair(a, w + i, x + i, 0);                                                        \
            pair(b, w + i + 2, x + i + 2, 0);                                                \
        }                                                                                    \
        if (i + 2 <= nb) {                                                                   \
            pair(a, w + i, x + i, 0);                                                        \
            i += 2;                                                                          \
        }                                                                                    \
        if (i < nb) pair(b, w + i, x + i, 1);                                                \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(a[0], b[0])) +                               \
             0.125f * _mm512_reduce_add_ps(_mm512_add_ps(a[1], b[1]));                       \
    }

TS_LEGACY_DOT(vec_dot_q4_0, ts_block_q4_0, q4_0_pair)
TS_LEGACY_DOT(vec_dot_q4_1, ts_block_q4_1, q4_1_pair)
TS_LEGACY_DOT(vec_dot_q5_0, ts_block_q5_0, q5_0_pair)
TS_LEGACY_DOT(vec_dot_q5_1, ts_block_q5_1, q5_1_pair)
TS_LEGACY_DOT(vec_dot_q8_0, ts_block_q8_0, q8_0_pair)
TS_LEGACY_DOT(vec_dot_iq4_nl, ts_block_iq4_nl, iq4_nl_pair)

void TS_AVX512_NAME(ts_avx512_register_legacy)(ts_kernels *k) {
    k->quantize_q8x32 = quantize_q8x32;
    k->vec_dot[TS_TYPE_Q4_0] = vec_dot_q4_0;
    k->vec_dot[TS_TYPE_Q4_1] = vec_dot_q4_1;
    k->vec_dot[TS_TYPE_Q5_0] = vec_dot_q5_0;
    k->vec_dot[TS_TYPE_Q5_1] = vec_dot_q5_1;
    k->vec_dot[TS_TYPE_Q8_0] = vec_dot_q8_0;
    k->vec_dot[TS_TYPE_IQ4_NL] = vec_dot_iq4_nl;
}
