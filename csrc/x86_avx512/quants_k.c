/* AVX-512 k-quants: q8k activation quantization and the Q2_K..Q6_K and IQ4_XS dot products,
 * one 256-element super-block per step in 512-bit registers. */
#include "quants.h"

/* Sub-block scales are applied in int16 before the int32 sums (dot_s16 against a scale
 * pattern), so each super-block needs a single float multiply-add. */

static void quantize_q8k(const float *x, void *vy, int64_t n) {
    ts_block_q8k *y = (ts_block_q8k *)vy;
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        const float *xb = x + i * TS_QK_K;
        __m512 amax = _mm512_setzero_ps();
        for (int j = 0; j < TS_QK_K; j += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(xb + j)));
        const float d = _mm512_reduce_max_ps(amax) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int j = 0; j < TS_QK_K; j += 16) {
            /* Rounds to nearest even (the MXCSR default); |x * id| <= 127 needs no clamp. */
            const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + j), id));
            _mm_storeu_si128((__m128i *)(y[i].qs + j), _mm512_cvtepi32_epi8(q));
            y[i].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = d;
    }
}

/* vpermw indices that spread 16 int16 scales over a product register. idx32: int16 lanes
 * 0-15 (the first 32 elements) take scale a, lanes 16-31 scale b. idx16: 128-bit lane k
 * (16 elements) takes scale first + k. */
static inline __m512i idx32(int a, int b) {
    return _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)a), _mm512_set1_epi16((short)b));
}
static inline __m512i idx16(int first) {
    const __m512i lane = _mm512_set_epi64(3 * 0x0001000100010001LL, 3 * 0x0001000100010001LL,
                                          2 * 0x0001000100010001LL, 2 * 0x0001000100010001LL,
                                          0x0001000100010001LL, 0x0001000100010001LL, 0, 0);
    return _mm512_add_epi16(lane, _mm512_set1_epi16((short)first));
}

static inline __m512i spread(__m512i idx, __m256i scales) {
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(scales));
}

static inline __m512i load512(const void *p) { return _mm512_loadu_si512(p); }
static inline __m512i bcast256(const void *p) { return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p)); }

/* Two 32-byte activation runs a and b in one register. */
static inline __m512i act_halves(const int8_t *a, const int8_t *b) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)a);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)b), 1);
}

/* Per-half shift counts of the 16-bit lanes: lo for bytes 0-31, hi for bytes 32-63. */
static inline __m512i counts(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

/* Bytes with bit lo set in the first half and bit hi in the second: test masks of high bits. */
static inline __m512i bits(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << lo)), _mm256_set1_epi8((char)(1 << hi)), 1);
}

static inline float f16(ts_f16 h) { return _cvtsh_ss(h); }

/* Q4_K/Q5_K: 6-bit scales and mins unpacked to int16 [sc0..sc7, m0..m7]. */
static inline __m256i k4_scales(const uint8_t *s) {
    const uint32_t a = ts_avx512_load_u32(s), b = ts_avx512_load_u32(s + 4), c = ts_avx512_load_u32(s + 8);
    const uint32_t sc_lo = a & 0x3f3f3f3fu, m_lo = b & 0x3f3f3f3fu;
    const uint32_t sc_hi = (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u);
    const uint32_t m_hi = ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u);
    return _mm256_cvtepu8_epi16(_mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi));
}

/* sum over sub-blocks of 32 of mins[i] * (bsums[2i] + bsums[2i+1]), as 8 int32. */
static inline __m256i k4_min_terms(__m256i sm, const int16_t *bsums) {
    const __m256i pairs = _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), _mm256_permutexvar_epi16(pairs, sm));
}

/* Q4_K and Q5_K share everything but the fifth bit. Registers hold sub-blocks (0,2), (1,3),
 * (4,6), (5,7): low nibbles of qs[0..63] are sub-blocks 0 and 2, high nibbles 1 and 3. */
static inline void k45_dot(int64_t n, float *s, const void *vw, const void *vx, int five) {
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    const __m512i ix0 = idx32(0, 2), ix1 = idx32(1, 3), ix2 = idx32(4, 6), ix3 = idx32(5, 7);
    const __m512i hb0 = bits(0, 2), hb1 = bits(1, 3), hb2 = bits(4, 6), hb3 = bits(5, 7);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        const uint8_t *qs, *qh = NULL, *sc;
        float d, dmin;
        if (five) {
            const ts_block_q5_K *w = (const ts_block_q5_K *)vw + i;
            qs = w->qs, qh = w->qh, sc = w->scales, d = f16(w->d), dmin = f16(w->dmin);
        } else {
            const ts_block_q4_K *w = (const ts_block_q4_K *)vw + i;
            qs = w->qs, sc = w->scales, d = f16(w->d), dmin = f16(w->dmin);
        }
        const int8_t *yq = y[i].qs;
        const __m256i sm = k4_scales(sc);
        const __m512i a = load512(qs), b = load512(qs + 64);
        __m512i w0 = _mm512_and_si512(a, m4), w1 = _mm512_and_si512(_mm512_srli_epi16(a, 4), m4);
        __m512i w2 = _mm512_and_si512(b, m4), w3 = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
        if (five) {
            /* Bit 2j of qh[l] is the fifth bit of element 64j + l, bit 2j+1 of 64j + 32 + l. */
            const __m512i h = bcast256(qh);
            w0 = _mm512_mask_add_epi8(w0, _mm512_test_epi8_mask(h, hb0), w0, sixteen);
            w1 = _mm512_mask_add_epi8(w1, _mm512_test_epi8_mask(h, hb1), w1, sixteen);
            w2 = _mm512_mask_add_epi8(w2, _mm512_test_epi8_mask(h, hb2), w2, sixteen);
            w3 = _mm512_mask_add_epi8(w3, _mm512_test_epi8_mask(h, hb3), w3, sixteen);
        }
        __m512i s0 = ts_avx512_dot_s16(_mm512_setzero_si512(), _mm512_maddubs_epi16(w0, act_halves(yq, yq + 64)), spread(ix0, sm));
        __m512i s1 = ts_avx512_dot_s16(_mm512_setzero_si512(), _mm512_maddubs_epi16(w1, act_halves(yq + 32, yq + 96)), spread(ix1, sm));
        s0 = ts_avx512_dot_s16(s0, _mm512_maddubs_epi16(w2, act_halves(yq + 128, yq + 192)), spread(ix2, sm));
        s1 = ts_avx512_dot_s16(s1, _mm512_maddubs_epi16(w3, act_halves(yq + 160, yq + 224)), spread(ix3, sm));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(d * y[i].d), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k4_min_terms(sm, y[i].bsums)), _mm256_set1_ps(dmin * y[i].d), accm);
    }
    *s = _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(_mm512_zextps256_ps512(accm));
}

static void vec_dot_q4_k(int64_t n, float *s, const void *w, const void *x) { k45_dot(n, s, w, x, 0); }
static void vec_dot_q5_k(int64_t n, float *s, const void *w, const void *x) { k45_dot(n, s, w, x, 1); }

/* sum over sub-blocks of 16 of scales[i] * bsums[i] (int16 scales), as 8 int32. */
static inline __m256i k16_bsum_terms(__m256i sc, const int16_t *bsums) {
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), sc);
}

/* Q2_K, Q3_K and Q6_K hold 16 sub-blocks of 16: a product register of 64 elements spans four
 * sub-blocks, one per 128-bit lane. */
static void vec_dot_q6_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q6_K *w = (const ts_block_q6_K *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i up0 = counts(4, 2), down1 = counts(0, 2);
    const __m512i ix[4] = {idx16(0), idx16(4), idx16(8), idx16(12)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* Elements 128h + [0, 64) take the low nibbles of ql[64h..], with qh bits 0-1
             * (first 32) and 2-3 (next 32); elements 128h + [64, 128) the high nibbles, with
             * qh bits 4-5 and 6-7. 16-bit shifts move each byte's bit pair to bits 4-5. */
            const __m512i l = load512(w[i].ql + 64 * h), q = bcast256(w[i].qh + 32 * h);
            const __m512i hi0 = _mm512_and_si512(_mm512_sllv_epi16(q, up0), m30);
            const __m512i hi1 = _mm512_and_si512(_mm512_srlv_epi16(q, down1), m30);
            const __m512i w0 = _mm512_ternarylogic_epi32(l, hi0, m4, 0xEC);  /* (l & m4) | hi0 */
            const __m512i w1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), hi1, m4, 0xEC);
            s0 = ts_avx512_dot_s16(s0, _mm512_maddubs_epi16(w0, load512(y[i].qs + 128 * h)), spread(ix[2 * h], sc));
            s1 = ts_avx512_dot_s16(s1, _mm512_maddubs_epi16(w1, load512(y[i].qs + 128 * h + 64)), spread(ix[2 * h + 1], sc));
        }
        /* The quants carry an offset of 32. */
        const __m256i off = _mm256_slli_epi32(k16_bsum_terms(sc, y[i].bsums), 5);
        const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_zextsi256_si512(off));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(f16(w[i].d) * y[i].d), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* Q3_K: 16 6-bit scales (offset 32) unpacked to int16. Low nibbles come from bytes 0-7 (scales
 * 0-7) or their high nibbles (8-15); bits 4-5 from bytes 8-11, two bits per scale group. */
static inline __m256i k3_scales(const uint8_t *s) {
    const uint32_t a = ts_avx512_load_u32(s), b = ts_avx512_load_u32(s + 4), c = ts_avx512_load_u32(s + 8);
    const uint32_t r0 = (a & 0x0f0f0f0fu) | ((c << 4) & 0x30303030u);
    const uint32_t r1 = (b & 0x0f0f0f0fu) | ((c << 2) & 0x30303030u);
    const uint32_t r2 = ((a >> 4) & 0x0f0f0f0fu) | (c & 0x30303030u);
    const uint32_t r3 = ((b >> 4) & 0x0f0f0f0fu) | ((c >> 2) & 0x30303030u);
    const __m128i v = _mm_setr_epi32((int)r0, (int)r1, (int)r2, (int)r3);
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(v, _mm_set1_epi8(32)));
}

static void vec_dot_q3_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q3_K *w = (const ts_block_q3_K *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    const __m512i sh0 = counts(0, 2), sh1 = counts(4, 6);
    const __m512i hb[4] = {bits(0, 1), bits(2, 3), bits(4, 5), bits(6, 7)};
    const __m512i ix[4] = {idx16(0), idx16(4), idx16(8), idx16(12)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        const __m256i sc = k3_scales(w[i].scales);
        const __m512i hm = bcast256(w[i].hmask);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* Element 128h + 32j + l: bits 2j..2j+1 of qs[32h + l], high bit 4h + j of hmask[l]. */
            const __m512i q = bcast256(w[i].qs + 32 * h);
            __m512i w0 = _mm512_and_si512(_mm512_srlv_epi16(q, sh0), m3);
            __m512i w1 = _mm512_and_si512(_mm512_srlv_epi16(q, sh1), m3);
            w0 = _mm512_mask_add_epi8(w0, _mm512_test_epi8_mask(hm, hb[2 * h]), w0, four);
            w1 = _mm512_mask_add_epi8(w1, _mm512_test_epi8_mask(hm, hb[2 * h + 1]), w1, four);
            s0 = ts_avx512_dot_s16(s0, _mm512_maddubs_epi16(w0, load512(y[i].qs + 128 * h)), spread(ix[2 * h], sc));
            s1 = ts_avx512_dot_s16(s1, _mm512_maddubs_epi16(w1, load512(y[i].qs + 128 * h + 64)), spread(ix[2 * h + 1], sc));
        }
        /* Quants are stored offset by 4. */
        const __m256i off = _mm256_slli_epi32(k16_bsum_terms(sc, y[i].bsums), 2);
        const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_zextsi256_si512(off));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(f16(w[i].d) * y[i].d), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

static void vec_dot_q2_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q2_K *w = (const ts_block_q2_K *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh0 = counts(0, 2), sh1 = counts(4, 6);
    const __m512i ix[4] = {idx16(0), idx16(4), idx16(8), idx16(12)};
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        /* Each scale byte: low nibble the scale, high nibble the min of 16 elements. */
        const __m128i raw = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0F)));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* Element 128h + 32j + l: bits 2j..2j+1 of qs[32h + l]. */
            const __m512i q = bcast256(w[i].qs + 32 * h);
            const __m512i w0 = _mm512_and_si512(_mm512_srlv_epi16(q, sh0), m3);
            const __m512i w1 = _mm512_and_si512(_mm512_srlv_epi16(q, sh1), m3);
            s0 = ts_avx512_dot_s16(s0, _mm512_maddubs_epi16(w0, load512(y[i].qs + 128 * h)), spread(ix[2 * h], sc));
            s1 = ts_avx512_dot_s16(s1, _mm512_maddubs_epi16(w1, load512(y[i].qs + 128 * h + 64)), spread(ix[2 * h + 1], sc));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(f16(w[i].d) * y[i].d), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k16_bsum_terms(mins, y[i].bsums)),
                               _mm256_set1_ps(f16(w[i].dmin) * y[i].d), accm);
    }
    *s = _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(_mm512_zextps256_ps512(accm));
}

/* IQ4_XS: eight 6-bit scales (offset 32) as int16. Scale j: nibble j%2 of scales_l[j/2] and
 * bits 2j..2j+1 of scales_h. */
static inline __m256i iq4xs_scales(const ts_block_iq4_xs *w) {
    const __m128i l = _mm_cvtsi32_si128((int)ts_avx512_load_u32(w->scales_l));
    /* int16 lane j = scales_l[j/2], then shifted by 4*(j%2). */
    const __m128i spread_l = _mm_shuffle_epi8(l, _mm_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1));
    const __m128i lo = _mm_and_si128(_mm_srlv_epi16(spread_l, _mm_setr_epi16(0, 4, 0, 4, 0, 4, 0, 4)), _mm_set1_epi16(0x0F));
    const __m128i h = _mm_srlv_epi16(_mm_set1_epi16((short)w->scales_h), _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14));
    const __m128i hi = _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(3)), 4);
    return _mm256_castsi128_si256(_mm_sub_epi16(_mm_or_si128(lo, hi), _mm_set1_epi16(32)));
}

static void vec_dot_iq4_xs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq4_xs *w = (const ts_block_iq4_xs *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {idx32(0, 1), idx32(2, 3), idx32(4, 5), idx32(6, 7)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        const __m256i sc = iq4xs_scales(&w[i]);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        for (int p = 0; p < 4; p += 2) {
            /* Sub-block j: qs[16j..16j+15], low nibbles its first 16 elements, high the rest. */
            const __m512i q0 = ts_avx512_nibble_pair(w[i].qs + 32 * p, w[i].qs + 32 * p + 16);
            const __m512i q1 = ts_avx512_nibble_pair(w[i].qs + 32 * p + 32, w[i].qs + 32 * p + 48);
            const __m512i y0 = load512(y[i].qs + 64 * p), y1 = load512(y[i].qs + 64 * p + 64);
            const __m512i zero = _mm512_setzero_si512();
            const __m512i p0 = _mm512_maddubs_epi16(ts_avx512_iq4_abs(q0), _mm512_mask_sub_epi8(y0, ts_avx512_iq4_neg(q0), zero, y0));
            const __m512i p1 = _mm512_maddubs_epi16(ts_avx512_iq4_abs(q1), _mm512_mask_sub_epi8(y1, ts_avx512_iq4_neg(q1), zero, y1));
            s0 = ts_avx512_dot_s16(s0, p0, spread(ix[p], sc));
            s1 = ts_avx512_dot_s16(s1, p1, spread(ix[p + 1], sc));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(f16(w[i].d) * y[i].d), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

void TS_AVX512_NAME(ts_avx512_register_kquants)(ts_kernels *k) {
    k->quantize_q8k = quantize_q8k;
    k->vec_dot[TS_TYPE_Q2_K] = vec_dot_q2_k;
    k->vec_dot[TS_TYPE_Q3_K] = vec_dot_q3_k;
    k->vec_dot[TS_TYPE_Q4_K] = vec_dot_q4_k;
    k->vec_dot[TS_TYPE_Q5_K] = vec_dot_q5_k;
    k->vec_dot[TS_TYPE_Q6_K] = vec_dot_q6_k;
    k->vec_dot[TS_TYPE_IQ4_XS] = vec_dot_iq4_xs;
}
