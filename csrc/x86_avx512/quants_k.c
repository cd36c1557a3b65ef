/* AVX-512 k-quants: q8k activation quantization and the Q2_K..Q6_K and IQ4_XS dot products,
 * one 256-element super-block per step in 512-bit registers. */
#include "quants.h"
#include "ts/prefetch.h"

/* How a super-block is computed: weights are unpacked so that each 512-bit register holds 64
 * consecutive elements (the activations then load straight from memory), maddubs forms int16
 * pair sums, and dot_s16 multiplies them by the sub-block scales spread over the matching
 * lanes. The scales are unpacked once into int32 lanes holding the scale in both int16 halves,
 * so one vpermd spreads them per register. Offsets and minimums leave through the activation
 * block sums (bsums), and each super-block ends in one or two float multiply-adds. */

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

TS_ALWAYS_INLINE __m512i load512(const void *p) { return _mm512_loadu_si512(p); }
TS_ALWAYS_INLINE __m512i bcast256(const void *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* Per-half shift counts: lo for the first 256 bits, hi for the second, in 64-bit lanes
 * (halves64) or 16-bit lanes (halves16). */
TS_ALWAYS_INLINE __m512i halves64(int lo, int hi) { return _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo); }
TS_ALWAYS_INLINE __m512i halves16(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

/* Byte bits lo (first half) and hi (second half) of v moved to bit `to` of the same byte:
 * 16-bit shifts, which only spill other bits into positions the caller masks away. */
TS_ALWAYS_INLINE __m512i bit_to(__m512i v, int lo, int hi, int to) {
    if (lo <= to && hi <= to) return _mm512_sllv_epi16(v, halves16(to - lo, to - hi));
    return _mm512_srlv_epi16(v, halves16(lo - to, hi - to));
}

/* Super-block scale f16 at p times the activation scale, in every lane. */
TS_ALWAYS_INLINE __m512 scale1(const void *p, float yd) {
    const ts_f16 h = *(const ts_f16 *)p;
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)h)), _mm512_set1_ps(yd));
}
/* f16 pair (d, dmin) at p times the activation scale: *d and *m in every lane. */
TS_ALWAYS_INLINE void scale2(const void *p, float yd, __m512 *d, __m512 *m) {
    const __m512 dm = _mm512_cvtph_ps(_mm256_set1_epi32((int)ts_avx512_load_u32(p)));
    const __m512 f = _mm512_mul_ps(dm, _mm512_set1_ps(yd));
    *d = _mm512_permute_ps(f, 0x00);
    *m = _mm512_permute_ps(f, 0x55);
}

/* Activation block sums as int16 in int32 lanes with a zero high half, for madd against
 * dup16 scales: b * s + 0 * s. */
TS_ALWAYS_INLINE __m512i bsums32(const int16_t *b) {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)b));
}

/* Q4_K/Q5_K: 6-bit scales and mins (12 bytes at s, read as 16 inside the block) unpacked
 * to dup16 lanes [sc0..sc7, m0..m7]. Bytes 0-3: scales 0-3 and bits 4-5 of scales 4-7;
 * bytes 4-7 the same for the mins; bytes 8-11: low nibbles of scales 4-7, high of mins 4-7. */
TS_ALWAYS_INLINE __m512i k4_scales(const uint8_t *s) {
    const __m128i v = _mm_loadu_si128((const __m128i *)s);
    const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)); /* u0 u2 u1 u2 */
    const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                     _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(b, _mm_setr_epi32(0, 2, 0, 2)),
                                     _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return ts_avx512_dup16(_mm512_cvtepu8_epi32(_mm_or_si128(lo, hi)));
}

/* Q4_K and Q5_K: register k holds elements 64k..64k+63, sub-blocks 2k (low nibbles of
 * qs[32k..32k+31]) and 2k+1 (high nibbles); for Q5_K bits 2k and 2k+1 of qh[0..31] are
 * their fifth bits. */
TS_ALWAYS_INLINE void k45_dot(int64_t n, float *s, const void *vw, const void *vx, int five) {
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m16 = _mm512_set1_epi8(0x10), nib = halves64(0, 4);
    const __m512i ix[4] = {ts_avx512_idx32(0), ts_avx512_idx32(1), ts_avx512_idx32(2), ts_avx512_idx32(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        /* Both layouts open with d, dmin, scales; Q5_K then has qh before qs. */
        const uint8_t *head = five ? (const uint8_t *)((const ts_block_q5_K *)vw + i)
                                   : (const uint8_t *)((const ts_block_q4_K *)vw + i);
        ts_prefetch_ahead(head, five ? sizeof(ts_block_q5_K) : sizeof(ts_block_q4_K), TS_PREFETCH_AHEAD);
        const uint8_t *qs = head + (five ? offsetof(ts_block_q5_K, qs) : offsetof(ts_block_q4_K, qs));
        __m512 d, dmin;
        scale2(head, y[i].d, &d, &dmin);
        const __m512i sc = k4_scales(head + 4);
        const __m512i h = five ? bcast256(head + offsetof(ts_block_q5_K, qh)) : _mm512_setzero_si512();
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const __m512i raw = _mm512_srlv_epi64(bcast256(qs + 32 * k), nib);
            const __m512i q = five ? ts_avx512_and_or(raw, m4, _mm512_and_si512(bit_to(h, 2 * k, 2 * k + 1, 4), m16))
                                   : _mm512_and_si512(raw, m4);
            const __m512i p = _mm512_maddubs_epi16(q, load512(y[i].qs + 64 * k));
            if (k & 1) s1 = ts_avx512_dot_s16(s1, p, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = ts_avx512_dot_s16(s0, p, _mm512_permutexvar_epi32(ix[k], sc));
        }
        /* Mins: lanes 8-15 of sc are m_i twice, against the sums of sub-blocks 2i and 2i+1. */
        const __m512i bs = _mm512_maskz_broadcast_i64x4(0xF0, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), d, acc);
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(bs, sc)), dmin, acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

static void vec_dot_q4_k(int64_t n, float *s, const void *w, const void *x) { k45_dot(n, s, w, x, 0); }
static void vec_dot_q5_k(int64_t n, float *s, const void *w, const void *x) { k45_dot(n, s, w, x, 1); }

/* Q2_K, Q3_K and Q6_K hold 16 sub-blocks of 16: a register of 64 elements spans four, one per
 * 128-bit lane. */

static void vec_dot_q6_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q6_K *w = (const ts_block_q6_K *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i up = halves16(4, 2), down = halves16(0, 2);
    const __m512i ix[4] = {ts_avx512_idx16(0), ts_avx512_idx16(1), ts_avx512_idx16(2), ts_avx512_idx16(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m512i sc = ts_avx512_dup16(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w[i].scales)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            /* Elements 128h + [0, 64): low nibbles of ql[64h..64h+63] with bit pairs 0-1 (first
             * 32) and 2-3 (next 32) of qh[32h..32h+31]; 128h + [64, 128): the high nibbles
             * with bit pairs 4-5 and 6-7. The 16-bit shifts move each pair to bits 4-5. */
            const __m512i l = load512(w[i].ql + 64 * h), q = bcast256(w[i].qh + 32 * h);
            const __m512i w0 = ts_avx512_and_or(l, m4, _mm512_and_si512(_mm512_sllv_epi16(q, up), m30));
            const __m512i h1 = _mm512_and_si512(_mm512_srlv_epi16(q, down), m30);
            const __m512i w1 = ts_avx512_and_or(_mm512_srli_epi16(l, 4), m4, h1);
            s0 = ts_avx512_dot_s16(s0, _mm512_maddubs_epi16(w0, load512(y[i].qs + 128 * h)),
                                   _mm512_permutexvar_epi32(ix[2 * h], sc));
            s1 = ts_avx512_dot_s16(s1, _mm512_maddubs_epi16(w1, load512(y[i].qs + 128 * h + 64)),
                                   _mm512_permutexvar_epi32(ix[2 * h + 1], sc));
        }
        /* The quants are stored offset by 32. */
        const __m512i off = _mm512_slli_epi32(_mm512_madd_epi16(bsums32(y[i].bsums), sc), 5);
        const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), off);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale1(&w[i].d, y[i].d), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* Q3_K: the 16 scales as dup16. */
TS_ALWAYS_INLINE __m512i k3_scales(const uint8_t *s) {
    return ts_avx512_dup16(_mm512_cvtepi8_epi32(ts_avx512_q3_K_scales(s)));
}

static void vec_dot_q3_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q3_K *w = (const ts_block_q3_K *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
    const __m512i pairs[2] = {halves64(0, 2), halves64(4, 6)};
    const __m512i ix[4] = {ts_avx512_idx16(0), ts_avx512_idx16(1), ts_avx512_idx16(2), ts_avx512_idx16(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m512i sc = k3_scales(w[i].scales);
        const __m512i hm = bcast256(w[i].hmask);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            /* Register k: elements 64k..64k+63, bit pairs 4(k%2) and 4(k%2)+2 of qs[32(k/2)..],
             * third bits from bits 2k and 2k+1 of hmask[0..31]. */
            const __m512i raw = _mm512_srlv_epi64(bcast256(w[i].qs + 32 * (k / 2)), pairs[k % 2]);
            const __m512i q = ts_avx512_and_or(raw, m3, _mm512_and_si512(bit_to(hm, 2 * k, 2 * k + 1, 2), m4));
            const __m512i p = _mm512_maddubs_epi16(q, load512(y[i].qs + 64 * k));
            if (k & 1) s1 = ts_avx512_dot_s16(s1, p, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = ts_avx512_dot_s16(s0, p, _mm512_permutexvar_epi32(ix[k], sc));
        }
        /* The quants are stored offset by 4. */
        const __m512i off = _mm512_slli_epi32(_mm512_madd_epi16(bsums32(y[i].bsums), sc), 2);
        const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), off);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale1(&w[i].d, y[i].d), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

static void vec_dot_q2_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q2_K *w = (const ts_block_q2_K *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i pairs[2] = {halves64(0, 2), halves64(4, 6)};
    const __m512i ix[4] = {ts_avx512_idx16(0), ts_avx512_idx16(1), ts_avx512_idx16(2), ts_avx512_idx16(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        /* Each scale byte: low nibble the scale, high nibble the min of 16 elements. */
        const __m128i raw = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m512i sc = ts_avx512_dup16(_mm512_cvtepu8_epi32(_mm_and_si128(raw, _mm_set1_epi8(0x0F))));
        const __m512i mins =
            ts_avx512_dup16(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F))));
        __m512 d, dmin;
        scale2(&w[i].d, y[i].d, &d, &dmin);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            /* Register k: elements 64k..64k+63, bit pairs 4(k%2) and 4(k%2)+2 of qs[32(k/2)..]. */
            const __m512i q = _mm512_and_si512(_mm512_srlv_epi64(bcast256(w[i].qs + 32 * (k / 2)), pairs[k % 2]), m3);
            const __m512i p = _mm512_maddubs_epi16(q, load512(y[i].qs + 64 * k));
            if (k & 1) s1 = ts_avx512_dot_s16(s1, p, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = ts_avx512_dot_s16(s0, p, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), d, acc);
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(bsums32(y[i].bsums), mins)), dmin, acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* IQ4_XS: eight 6-bit scales (offset 32) as dup16. Scale j: nibble j%2 of scales_l[j/2] and
 * bits 2j..2j+1 of scales_h. */
TS_ALWAYS_INLINE __m512i iq4xs_scales(const ts_block_iq4_xs *w) {
    const __m256i l = _mm256_set1_epi32((int)ts_avx512_load_u32(w->scales_l));
    const __m256i h = _mm256_set1_epi32(w->scales_h);
    const __m256i lo = _mm256_srlv_epi32(l, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    /* Rotating by 4 - 2j brings bits 2j..2j+1 to bits 4-5. */
    const __m256i hi = _mm256_and_si256(_mm256_rolv_epi32(h, _mm256_setr_epi32(4, 2, 0, 30, 28, 26, 24, 22)),
                                        _mm256_set1_epi32(0x30));
    const __m256i ls = _mm256_ternarylogic_epi32(lo, hi, _mm256_set1_epi32(0x0F), 0xEC) /* (lo & 15) | hi */;
    return ts_avx512_dup16(_mm512_castsi256_si512(_mm256_sub_epi32(ls, _mm256_set1_epi32(32))));
}

static void vec_dot_iq4_xs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq4_xs *w = (const ts_block_iq4_xs *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx32(0), ts_avx512_idx32(1), ts_avx512_idx32(2), ts_avx512_idx32(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m512i sc = iq4xs_scales(&w[i]);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            /* Sub-block j: qs[16j..16j+15], low nibbles its first 16 elements, high the rest. */
            const __m512i q = ts_avx512_nibble_pair(w[i].qs + 32 * k, w[i].qs + 32 * k + 16);
            const __m512i yq = load512(y[i].qs + 64 * k);
            /* |value| * (x with the value's sign): int16 pairs stay below 2 * 127 * 127. */
            const __m512i signed_y = _mm512_mask_sub_epi8(yq, ts_avx512_iq4_neg(q), _mm512_setzero_si512(), yq);
            const __m512i p = _mm512_maddubs_epi16(ts_avx512_iq4_abs(q), signed_y);
            if (k & 1) s1 = ts_avx512_dot_s16(s1, p, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = ts_avx512_dot_s16(s0, p, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale1(&w[i].d, y[i].d), acc);
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
