/* AVX-512 codebook i-quants: IQ2_XXS .. IQ1_M dot products against q8k, 64 elements per register. */
#include "quants.h"
#include "ts/iq_grids.h"
#include "ts/prefetch.h"

/* How a super-block is computed: register k holds elements 64k..64k+63. Their grid entries
 * arrive by one gather (8 entries of 8 bytes, or 16 of 4 for IQ3) from indices unpacked in
 * vector registers; the element signs, one bit each, are a 64-bit mask that negates the
 * activations; maddubs forms int16 pair sums of the unsigned grid bytes, and dot_s16 weighs
 * them with the odd sub-block scales 2s + 1 (dup16 lanes spread by vpermd, as the k-quants
 * do). A super-block ends in one float multiply-add, the type's power-of-two factor once at
 * the end. Pair sums stay below 2 * 62 * 127 < 2^15. */

/* Sign bytes of four groups from the 7-bit ksigns indices in bits 0..27 of aux. */
TS_ALWAYS_INLINE uint64_t ksigns4(uint32_t aux) {
    return (uint64_t)ts_iq2_ksigns[aux & 127] | (uint64_t)ts_iq2_ksigns[(aux >> 7) & 127] << 8 |
           (uint64_t)ts_iq2_ksigns[(aux >> 14) & 127] << 16 | (uint64_t)ts_iq2_ksigns[(aux >> 21) & 127] << 24;
}

/* acc + int16 pair sums of unsigned g times the activations at y (negated where neg), weighed by sc. */
TS_ALWAYS_INLINE __m512i dot64(__m512i acc, __m512i g, __mmask64 neg, const int8_t *y, __m512i sc) {
    const __m512i yq = _mm512_loadu_si512(y);
    const __m512i ys = _mm512_mask_sub_epi8(yq, neg, _mm512_setzero_si512(), yq);
    return ts_avx512_dot_s16(acc, _mm512_maddubs_epi16(g, ys), sc);
}

/* Eight 8-byte grid entries, one per int32 index. */
TS_ALWAYS_INLINE __m512i gather8(const uint64_t *grid, __m256i idx) {
    return _mm512_i32gather_epi64(idx, (const void *)grid, 8);
}

/* Scale bytes s (8 or 16 in the low bytes of v) as dup16 lanes of 2s + 1. */
TS_ALWAYS_INLINE __m512i odd_scales(__m128i v) {
    const __m512i s = _mm512_cvtepu8_epi32(v);
    return ts_avx512_dup16(_mm512_add_epi32(_mm512_add_epi32(s, s), _mm512_set1_epi32(1)));
}

/* The 4-bit scales in the low 8 bytes of v as bytes, a byte's low nibble first. */
TS_ALWAYS_INLINE __m128i nibbles(__m128i v) {
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm_unpacklo_epi8(_mm_and_si128(v, m), _mm_and_si128(_mm_srli_epi16(v, 4), m));
}

TS_ALWAYS_INLINE __m512 block_fma(__m512i s0, __m512i s1, float d, __m512 acc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(d), acc);
}

static void vec_dot_iq2_xxs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq2_xxs *w = (const ts_block_iq2_xxs *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    /* The index bytes of two sub-blocks: bytes 0-3 and 8-11 of their 16. */
    const __m128i pick = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m512i ix[4] = {ts_avx512_idx32(0), ts_avx512_idx32(1), ts_avx512_idx32(2), ts_avx512_idx32(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const uint8_t *qs = (const uint8_t *)w[i].qs;
        /* The scale is the top nibble of the second uint32 of each sub-block's 8 bytes. */
        const __m512i sc = odd_scales(_mm512_cvtepi64_epi8(_mm512_srli_epi64(_mm512_loadu_si512(qs), 60)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const __m256i idx = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(qs + 16 * k)), pick));
            const uint64_t neg = ksigns4(ts_avx512_load_u32(qs + 16 * k + 4)) |
                                 ksigns4(ts_avx512_load_u32(qs + 16 * k + 12)) << 32;
            const __m512i g = gather8(ts_iq2xxs_grid, idx);
            if (k & 1) s1 = dot64(s1, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = dot64(s0, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(w[i].d) * y[i].d, acc);
    }
    *s = 0.125f * _mm512_reduce_add_ps(acc);
}

static void vec_dot_iq2_xs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq2_xs *w = (const ts_block_iq2_xs *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx16(0), ts_avx512_idx16(1), ts_avx512_idx16(2), ts_avx512_idx16(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m512i sc = odd_scales(nibbles(_mm_loadl_epi64((const __m128i *)w[i].scales)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const uint16_t *q = w[i].qs + 8 * k;
            const __m128i q16 = _mm_loadu_si128((const __m128i *)q);
            const __m256i idx = _mm256_cvtepu16_epi32(_mm_and_si128(q16, _mm_set1_epi16(511)));
            uint64_t neg = 0;
            for (int j = 0; j < 8; j++) neg |= (uint64_t)ts_iq2_ksigns[q[j] >> 9] << (8 * j);
            const __m512i g = gather8(ts_iq2xs_grid, idx);
            if (k & 1) s1 = dot64(s1, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = dot64(s0, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(w[i].d) * y[i].d, acc);
    }
    *s = 0.125f * _mm512_reduce_add_ps(acc);
}

static void vec_dot_iq2_s(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq2_s *w = (const ts_block_iq2_s *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx16(0), ts_avx512_idx16(1), ts_avx512_idx16(2), ts_avx512_idx16(3)};
    /* Bits 8-9 of group j's index: bits 2j..2j+1 of the two qh bytes of the register. */
    const __m256i hshift = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m512i sc = odd_scales(nibbles(_mm_loadl_epi64((const __m128i *)w[i].scales)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const int h = w[i].qh[2 * k] | w[i].qh[2 * k + 1] << 8;
            const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(h), hshift), _mm256_set1_epi32(3));
            const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w[i].qs + 8 * k)));
            const __m512i g = gather8(ts_iq2s_grid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8)));
            uint64_t neg;
            memcpy(&neg, w[i].signs + 8 * k, 8);
            if (k & 1) s1 = dot64(s1, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = dot64(s0, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(w[i].d) * y[i].d, acc);
    }
    *s = 0.125f * _mm512_reduce_add_ps(acc);
}

static void vec_dot_iq3_xxs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq3_xxs *w = (const ts_block_iq3_xxs *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx32(0), ts_avx512_idx32(1), ts_avx512_idx32(2), ts_avx512_idx32(3)};
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m256i aux = _mm256_loadu_si256((const __m256i *)w[i].sas);
        const __m512i sc = odd_scales(_mm256_cvtepi32_epi8(_mm256_srli_epi32(aux, 28)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w[i].qs + 16 * k)));
            const __m512i g = _mm512_i32gather_epi32(idx, (const void *)ts_iq3xxs_grid, 4);
            const uint64_t neg = ksigns4(ts_avx512_load_u32(w[i].sas + 8 * k)) |
                                 ksigns4(ts_avx512_load_u32(w[i].sas + 8 * k + 4)) << 32;
            if (k & 1) s1 = dot64(s1, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = dot64(s0, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(w[i].d) * y[i].d, acc);
    }
    *s = 0.25f * _mm512_reduce_add_ps(acc);
}

static void vec_dot_iq3_s(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq3_s *w = (const ts_block_iq3_s *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx32(0), ts_avx512_idx32(1), ts_avx512_idx32(2), ts_avx512_idx32(3)};
    const __m512i hshift = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m512i sc = odd_scales(nibbles(_mm_cvtsi32_si128((int)ts_avx512_load_u32(w[i].scales))));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            /* Bit 8 of index j: bit j of the register's two qh bytes. */
            const int h = w[i].qh[2 * k] | w[i].qh[2 * k + 1] << 8;
            const __m512i hi = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(h), hshift), _mm512_set1_epi32(1));
            const __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w[i].qs + 16 * k)));
            const __m512i g = _mm512_i32gather_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 8)),
                                                     (const void *)ts_iq3s_grid, 4);
            uint64_t neg;
            memcpy(&neg, w[i].signs + 8 * k, 8);
            if (k & 1) s1 = dot64(s1, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = dot64(s0, g, neg, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(w[i].d) * y[i].d, acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* IQ1: grid bytes u = g + 1 become 8 * (g +- 1/8) = 8u - 7, or 8u - 9 in the groups (64-bit
 * lanes) of minus9; |v| <= 9, so |v| times the activations with v's sign fits maddubs. */
TS_ALWAYS_INLINE __m512i iq1_dot64(__m512i acc, __m512i u, __mmask8 minus9, const int8_t *y, __m512i sc) {
    const __m512i off = _mm512_mask_blend_epi64(minus9, _mm512_set1_epi8(-7), _mm512_set1_epi8(-9));
    const __m512i v = _mm512_add_epi8(_mm512_slli_epi16(u, 3), off);
    const __m512i yq = _mm512_loadu_si512(y);
    const __m512i ys = _mm512_mask_sub_epi8(yq, _mm512_movepi8_mask(v), _mm512_setzero_si512(), yq);
    return ts_avx512_dot_s16(acc, _mm512_maddubs_epi16(_mm512_abs_epi8(v), ys), sc);
}

static void vec_dot_iq1_s(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq1_s *w = (const ts_block_iq1_s *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx32(0), ts_avx512_idx32(1), ts_avx512_idx32(2), ts_avx512_idx32(3)};
    /* Index bits 8-10 of group j: 3 bits at 3(j % 4) of the qh word of its sub-block (j / 4). */
    const __m256i hshift = _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25);
    const __m512i sign_bits = _mm512_setr_epi64(1 << 15, 1 << 15, 1 << 15, 1 << 15, 1u << 31, 1u << 31, 1u << 31,
                                                1u << 31);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        const __m128i qh = _mm_loadu_si128((const __m128i *)w[i].qh);
        const __m512i sc = odd_scales(_mm_cvtepi16_epi8(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7))));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const uint32_t h = ts_avx512_load_u32(w[i].qh + 2 * k);
            const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)h), hshift), _mm256_set1_epi32(7));
            const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w[i].qs + 8 * k)));
            const __m512i u = gather8(ts_iq1s_grid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8)));
            const __mmask8 minus9 = _mm512_test_epi64_mask(_mm512_set1_epi64(h), sign_bits);
            if (k & 1) s1 = iq1_dot64(s1, u, minus9, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = iq1_dot64(s0, u, minus9, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(w[i].d) * y[i].d, acc);
    }
    *s = 0.125f * _mm512_reduce_add_ps(acc);
}

static void vec_dot_iq1_m(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq1_m *w = (const ts_block_iq1_m *)vw;
    const ts_block_q8k *y = (const ts_block_q8k *)vx;
    const __m512i ix[4] = {ts_avx512_idx16(0), ts_avx512_idx16(1), ts_avx512_idx16(2), ts_avx512_idx16(3)};
    /* Group j of a register: the nibble at 4j of its four qh bytes, index bits 8-10 then the sign. */
    const __m256i hshift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i sign_bits = _mm512_setr_epi64(1 << 3, 1 << 7, 1 << 11, 1 << 15, 1 << 19, 1 << 23, 1 << 27, 1u << 31);
    /* Scale t: 3 bits at 3(t % 4) of uint16 word t / 4. */
    const __m512i word = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i sshift = _mm512_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / TS_QK_K; i++) {
        ts_prefetch_ahead(&w[i], sizeof(w[i]), TS_PREFETCH_AHEAD);
        uint64_t raw;
        memcpy(&raw, w[i].scales, 8);
        /* The top nibble of each of the four words, lowest word first, is d's bits. */
        const ts_f16 d = (ts_f16)((raw >> 12 & 0x000F) | (raw >> 24 & 0x00F0) | (raw >> 36 & 0x0F00) | (raw >> 48 & 0xF000));
        const __m512i words = _mm512_castsi256_si512(_mm256_cvtepu16_epi32(_mm_cvtsi64_si128((long long)raw)));
        const __m512i s3 = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(word, words), sshift),
                                            _mm512_set1_epi32(7));
        const __m512i sc = ts_avx512_dup16(_mm512_add_epi32(_mm512_add_epi32(s3, s3), _mm512_set1_epi32(1)));
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const uint32_t h = ts_avx512_load_u32(w[i].qh + 4 * k);
            const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)h), hshift), _mm256_set1_epi32(7));
            const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w[i].qs + 8 * k)));
            const __m512i u = gather8(ts_iq1s_grid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8)));
            const __mmask8 minus9 = _mm512_test_epi64_mask(_mm512_set1_epi64(h), sign_bits);
            if (k & 1) s1 = iq1_dot64(s1, u, minus9, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
            else s0 = iq1_dot64(s0, u, minus9, y[i].qs + 64 * k, _mm512_permutexvar_epi32(ix[k], sc));
        }
        acc = block_fma(s0, s1, _cvtsh_ss(d) * y[i].d, acc);
    }
    *s = 0.125f * _mm512_reduce_add_ps(acc);
}

void TS_AVX512_NAME(ts_avx512_register_iquants)(ts_kernels *k) {
    k->vec_dot[TS_TYPE_IQ2_XXS] = vec_dot_iq2_xxs;
    k->vec_dot[TS_TYPE_IQ2_XS] = vec_dot_iq2_xs;
    k->vec_dot[TS_TYPE_IQ2_S] = vec_dot_iq2_s;
    k->vec_dot[TS_TYPE_IQ3_XXS] = vec_dot_iq3_xxs;
    k->vec_dot[TS_TYPE_IQ3_S] = vec_dot_iq3_s;
    k->vec_dot[TS_TYPE_IQ1_S] = vec_dot_iq1_s;
    k->vec_dot[TS_TYPE_IQ1_M] = vec_dot_iq1_m;
}
