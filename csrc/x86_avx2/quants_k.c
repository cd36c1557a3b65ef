/* AVX2 + FMA + F16C: dot products of the k-quants and IQ4_XS against q8k activations. */
#include <string.h>

#include "quants.h"
#include "ts/prefetch.h"

/* Each weight type's quants become unsigned bytes for maddubs. Where the type subtracts a
 * constant (Q3_K: 4, Q6_K: 32) that term is taken out once per block as
 * constant * sum(scale * bsums) instead of per element. */

/* pshufb control that repeats int16 lane `lo` of each 128-bit half across the low half and
 * lane `hi` across the high half. */
static inline __m256i pick16(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)((2 * hi + 1) << 8 | 2 * hi)),
                            _mm_set1_epi16((short)((2 * lo + 1) << 8 | 2 * lo)));
}

/* pshufb control that zero-extends byte `lo` of a 128-bit lane into every int16 lane of the
 * low half and byte `hi` into those of the high half. */
static inline __m256i widen8(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(hi - 0x8000)), _mm_set1_epi16((short)(lo - 0x8000)));
}

/* Bit `bit` of every byte of h, moved to bit `pos` and isolated. A 16-bit shift carries
 * bits across the byte boundary only into positions the mask drops. */
static inline __m256i bit_to(__m256i h, int bit, int pos) {
    if (bit < pos) h = _mm256_slli_epi16(h, pos - bit);
    else if (bit > pos) h = _mm256_srli_epi16(h, bit - pos);
    return _mm256_and_si256(h, _mm256_set1_epi8((char)(1 << pos)));
}

/* The 16 int16 scales of one super-block: `half` 0 or 1 selects scales 8*half .. 8*half+7
 * and repeats them in both 128-bit lanes, ready for pick16. */
static inline __m256i scales_half(__m256i sc16, int half) {
    return half ? _mm256_permute2x128_si256(sc16, sc16, 0x11)
                : _mm256_permute2x128_si256(sc16, sc16, 0x00);
}

static inline __m256 fmadd_i32(float d, __m256i v, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(v), acc);
}

/* The f16 pair [d, dmin] at p times the activation scale xd: even lanes d * xd, odd lanes
 * dmin * xd. */
static inline __m256 scale_pair(const void *p, float xd) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi32((int)ts_avx2_load_u32(p))), _mm256_set1_ps(xd));
}

/* acc + dd[even] * sums - dd[odd] * mins */
static inline __m256 fmadd_scale_pair(__m256 dd, __m256i sums, __m256i mins, __m256 acc) {
    acc = _mm256_fmadd_ps(_mm256_permute_ps(dd, 0x00), _mm256_cvtepi32_ps(sums), acc);
    return _mm256_fnmadd_ps(_mm256_permute_ps(dd, 0x55), _mm256_cvtepi32_ps(mins), acc);
}

static void dot_q2_K(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q2_K *w = (const ts_block_q2_K *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* Zero-extends bytes 0..7 of the low lane and 8..15 of the high lane to int16. */
    const __m256i widen_all = _mm256_setr_epi8(0, -128, 1, -128, 2, -128, 3, -128, 4, -128, 5, -128,
                                               6, -128, 7, -128, 8, -128, 9, -128, 10, -128, 11, -128,
                                               12, -128, 13, -128, 14, -128, 15, -128);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        /* One byte per 16 elements: the scale in the low nibble, the min in the high one. */
        const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[b].scales));
        const __m256i sc = _mm256_and_si256(raw, m4);
        const __m256i mn16 = _mm256_shuffle_epi8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), widen_all);
        const __m256i mins = _mm256_madd_epi16(mn16, ts_avx2_load(x[b].bsums));
        __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
        for (int j = 0; j < 2; j++) {
            const __m256i q = ts_avx2_load(w[b].qs + 32 * j);
            const int8_t *y = x[b].qs + 128 * j;
            for (int k = 0; k < 4; k += 2) {
                const int g = 8 * j + 2 * k; /* the 16-element group of the low lane of u0 */
                const __m256i u0 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                const __m256i u1 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k + 2), m3);
                const __m256i p0 = _mm256_maddubs_epi16(u0, ts_avx2_load(y + 32 * k));
                const __m256i p1 = _mm256_maddubs_epi16(u1, ts_avx2_load(y + 32 * k + 32));
                const __m256i s0 = _mm256_shuffle_epi8(sc, widen8(g, g + 1));
                const __m256i s1 = _mm256_shuffle_epi8(sc, widen8(g + 2, g + 3));
                sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(p0, s0));
                sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(p1, s1));
            }
        }
        acc = fmadd_scale_pair(scale_pair(&w[b].d, x[b].d), _mm256_add_epi32(sum0, sum1), mins, acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

static void dot_q3_K(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q3_K *w = (const ts_block_q3_K *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        const __m256i sc16 = _mm256_cvtepi8_epi16(ts_avx2_q3_K_scales(w[b].scales));
        /* Quants are stored as u - 4 with u = low bits | high bit << 2. */
        const __m256i bias = _mm256_madd_epi16(sc16, ts_avx2_load(x[b].bsums));
        __m256i sum0 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bias, 2));
        __m256i sum1 = _mm256_setzero_si256();
        const __m256i hb = ts_avx2_load(w[b].hmask);
        for (int j = 0; j < 2; j++) {
            const __m256i q = ts_avx2_load(w[b].qs + 32 * j);
            const __m256i sc = scales_half(sc16, j);
            const int8_t *y = x[b].qs + 128 * j;
            for (int k = 0; k < 4; k += 2) {
                const __m256i u0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3),
                                                   bit_to(hb, 4 * j + k, 2));
                const __m256i u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k + 2), m3),
                                                   bit_to(hb, 4 * j + k + 1, 2));
                const __m256i p0 = _mm256_maddubs_epi16(u0, ts_avx2_load(y + 32 * k));
                const __m256i p1 = _mm256_maddubs_epi16(u1, ts_avx2_load(y + 32 * k + 32));
                const __m256i s0 = _mm256_shuffle_epi8(sc, pick16(2 * k, 2 * k + 1));
                const __m256i s1 = _mm256_shuffle_epi8(sc, pick16(2 * k + 2, 2 * k + 3));
                sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(p0, s0));
                sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(p1, s1));
            }
        }
        acc = fmadd_i32(x[b].d * _cvtsh_ss(w[b].d), _mm256_add_epi32(sum0, sum1), acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

/* Q4_K / Q5_K 6-bit scales and mins -> bytes sc0..sc7, m0..m7, the same in both 128-bit
 * lanes. Dwords of the packed field: D = sc0..3 with the top bits of sc4..7 above them,
 * M = m0..3 likewise for m4..7, MD = the low bits of sc4..7 (low nibbles) and m4..7 (high
 * nibbles). The 16-byte load also reads four quant bytes, unused. */
static inline __m256i q4_K_scales(const uint8_t *raw) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)raw));
    /* [D, MD, M, MD >> 4] masked to 6 / 4 bits: sc0..3, the low bits of sc4..7, m0..3, of m4..7. */
    const __m256i low_shift = _mm256_broadcastsi128_si256(_mm_setr_epi32(0, 0, 0, 4));
    const __m256i low_mask =
        _mm256_broadcastsi128_si256(_mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
    const __m256i low = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)), low_shift), low_mask);
    /* [_, D >> 2, _, M >> 2] masked to bits 4-5: the top bits of sc4..7 and m4..7. */
    const __m256i top_mask = _mm256_broadcastsi128_si256(_mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    const __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)), 2),
                                         top_mask);
    return _mm256_or_si256(low, top);
}

/* One Q4_K or Q5_K super-block (qh NULL: Q4_K) into acc. Elements 64j .. 64j+31 are the
 * low nibbles of qs[32j ..], 64j+32 .. 64j+63 the high nibbles; each 32 has one scale. */
static inline __m256 q45_K_block(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh,
                                 __m256 dd, const ts_block_q8k *x, __m256 acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i sm = q4_K_scales(scales);
    /* The min of 32 elements, once per 16 of them to meet bsums: m0 m0 m1 m1 .. m7 m7. */
    const __m256i mins16 = _mm256_shuffle_epi8(sm, _mm256_setr_epi8(
        8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128, 11, -128, 11, -128,
        12, -128, 12, -128, 13, -128, 13, -128, 14, -128, 14, -128, 15, -128, 15, -128));
    const __m256i mins = _mm256_madd_epi16(mins16, ts_avx2_load(x->bsums));
    const __m256i hb = qh ? ts_avx2_load(qh) : _mm256_setzero_si256();
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i q = ts_avx2_load(qs + 32 * j);
        __m256i lo = _mm256_and_si256(q, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, bit_to(hb, 2 * j, 4));
            hi = _mm256_or_si256(hi, bit_to(hb, 2 * j + 1, 4));
        }
        const __m256i plo = _mm256_maddubs_epi16(lo, ts_avx2_load(x->qs + 64 * j));
        const __m256i phi = _mm256_maddubs_epi16(hi, ts_avx2_load(x->qs + 64 * j + 32));
        const __m256i slo = _mm256_shuffle_epi8(sm, widen8(2 * j, 2 * j));
        const __m256i shi = _mm256_shuffle_epi8(sm, widen8(2 * j + 1, 2 * j + 1));
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(plo, slo));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(phi, shi));
    }
    return fmadd_scale_pair(dd, _mm256_add_epi32(sum0, sum1), mins, acc);
}

static void dot_q4_K(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q4_K *w = (const ts_block_q4_K *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        acc = q45_K_block(w[b].scales, w[b].qs, NULL, scale_pair(&w[b].d, x[b].d), &x[b], acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

static void dot_q5_K(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q5_K *w = (const ts_block_q5_K *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        acc = q45_K_block(w[b].scales, w[b].qs, w[b].qh, scale_pair(&w[b].d, x[b].d), &x[b], acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

static void dot_q6_K(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q6_K *w = (const ts_block_q6_K *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[b].scales));
        /* Quants are stored as u - 32 with u = 4 low bits | 2 high bits << 4. */
        const __m256i bias = _mm256_madd_epi16(sc16, ts_avx2_load(x[b].bsums));
        __m256i sum0 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bias, 5));
        __m256i sum1 = _mm256_setzero_si256();
        for (int j = 0; j < 2; j++) {
            /* Element 128j + 32k + i: 4 bits from ql[64j + 32(k&1) + i] (high nibble when
             * k >= 2), 2 bits from qh[32j + i] at bit 2k. */
            const __m256i ql0 = ts_avx2_load(w[b].ql + 64 * j);
            const __m256i ql1 = ts_avx2_load(w[b].ql + 64 * j + 32);
            const __m256i qh = ts_avx2_load(w[b].qh + 32 * j);
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            u[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            const __m256i sc = scales_half(sc16, j);
            const int8_t *y = x[b].qs + 128 * j;
            for (int k = 0; k < 4; k += 2) {
                const __m256i p0 = _mm256_maddubs_epi16(u[k], ts_avx2_load(y + 32 * k));
                const __m256i p1 = _mm256_maddubs_epi16(u[k + 1], ts_avx2_load(y + 32 * k + 32));
                const __m256i s0 = _mm256_shuffle_epi8(sc, pick16(2 * k, 2 * k + 1));
                const __m256i s1 = _mm256_shuffle_epi8(sc, pick16(2 * k + 2, 2 * k + 3));
                sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(p0, s0));
                sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(p1, s1));
            }
        }
        acc = fmadd_i32(x[b].d * _cvtsh_ss(w[b].d), _mm256_add_epi32(sum0, sum1), acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

/* The eight 6-bit IQ4_XS sub-block scales as int16, offset removed, in both 128-bit lanes.
 * The block opens with d, scales_h (2 bits per sub-block) and scales_l (a nibble each). */
static inline __m256i iq4_xs_scales(const ts_block_iq4_xs *w) {
    int64_t head;
    memcpy(&head, w, 8);
    const __m256i v = _mm256_set1_epi64x(head);
    /* int16 lane ib holds scales_l byte ib/2; a multiply moves its nibble to the top. */
    const __m256i l = _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(_mm_setr_epi8(
        4, -128, 4, -128, 5, -128, 5, -128, 6, -128, 6, -128, 7, -128, 7, -128)));
    const __m256i nib_shift = _mm256_broadcastsi128_si256(_mm_setr_epi16(
        1 << 12, 1 << 8, 1 << 12, 1 << 8, 1 << 12, 1 << 8, 1 << 12, 1 << 8));
    const __m256i nib = _mm256_srli_epi16(_mm256_mullo_epi16(l, nib_shift), 12);
    /* Every int16 lane holds scales_h; lane ib shifts its two bits to the top, then to bits 4-5. */
    const __m256i h = _mm256_shuffle_epi8(v, _mm256_set1_epi16(0x0302));
    const __m256i top_shift = _mm256_broadcastsi128_si256(_mm_setr_epi16(
        1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1));
    const __m256i top = _mm256_and_si256(_mm256_srli_epi16(_mm256_mullo_epi16(h, top_shift), 10),
                                         _mm256_set1_epi16(0x30));
    return _mm256_sub_epi16(_mm256_or_si256(nib, top), _mm256_set1_epi16(32));
}

/* Sub-blocks 2k and 2k+1 have adjacent quants, so one load puts them in the two 128-bit
 * lanes (the layout of the 32-element pairs in quants.c); the activations follow suit. */
static void dot_iq4_xs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq4_xs *w = (const ts_block_iq4_xs *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const __m256i values = ts_avx2_iq4_values();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        const __m256i sc = iq4_xs_scales(&w[b]);
        __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            const __m256i q = ts_avx2_load(w[b].qs + 32 * k);
            const __m256i lo = _mm256_shuffle_epi8(values, _mm256_and_si256(q, m4));
            const __m256i hi = _mm256_shuffle_epi8(values, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
            const int8_t *y = x[b].qs + 64 * k;
            const __m256i plo = ts_avx2_dot_i8(lo, ts_avx2_load_pair(y, y + 32));
            const __m256i phi = ts_avx2_dot_i8(hi, ts_avx2_load_pair(y + 16, y + 48));
            const __m256i sck = _mm256_shuffle_epi8(sc, pick16(2 * k, 2 * k + 1));
            sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(plo, sck));
            sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(phi, sck));
        }
        acc = fmadd_i32(x[b].d * _cvtsh_ss(w[b].d), _mm256_add_epi32(sum0, sum1), acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

void ts_register_avx2_kquants(ts_kernels *k) {
    k->vec_dot[TS_TYPE_Q2_K] = dot_q2_K;
    k->vec_dot[TS_TYPE_Q3_K] = dot_q3_K;
    k->vec_dot[TS_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[TS_TYPE_Q5_K] = dot_q5_K;
    k->vec_dot[TS_TYPE_Q6_K] = dot_q6_K;
    k->vec_dot[TS_TYPE_IQ4_XS] = dot_iq4_xs;
}
