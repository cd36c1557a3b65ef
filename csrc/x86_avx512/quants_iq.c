/* AVX-512 codebook i-quants: IQ2_XXS .. IQ1_M dot products and gemm against q8k, 64 elements per
 * register. */
#include "quants.h"
#include "ts/iq_grids.h"
#include "ts/prefetch.h"

/* How a super-block is computed: it is unpacked once (iq_block), then meets one or more activation
 * rows. Register k holds elements 64k..64k+63. Their grid entries
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

/* A super-block unpacked: per register k the magnitudes, the negative lanes and the int16 scale
 * of each lane's sub-block (already spread), and the block's float scale. */
typedef struct {
    __m512i g[4];
    __mmask64 neg[4];
    __m512i sc[4];
    float d;
} iq_block;

/* The block's integer sum against one activation block (two chains for the adds' latency). */
TS_ALWAYS_INLINE __m512i block_isum(const iq_block *u, const int8_t *y) {
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        if (k & 1) s1 = dot64(s1, u->g[k], u->neg[k], y + 64 * k, u->sc[k]);
        else s0 = dot64(s0, u->g[k], u->neg[k], y + 64 * k, u->sc[k]);
    }
    return _mm512_add_epi32(s0, s1);
}

/* Spread dup16 scales over the four registers: sub-blocks of 32 (idx32) or 16 (idx16). */
TS_ALWAYS_INLINE void spread32(iq_block *u, __m512i sc) {
    for (int k = 0; k < 4; k++) u->sc[k] = _mm512_permutexvar_epi32(ts_avx512_idx32(k), sc);
}
TS_ALWAYS_INLINE void spread16(iq_block *u, __m512i sc) {
    for (int k = 0; k < 4; k++) u->sc[k] = _mm512_permutexvar_epi32(ts_avx512_idx16(k), sc);
}

TS_ALWAYS_INLINE void unpack_iq2_xxs(const uint8_t *blk, iq_block *u) {
    const ts_block_iq2_xxs *w = (const ts_block_iq2_xxs *)blk;
    const uint8_t *qs = (const uint8_t *)w->qs;
    /* The index bytes of two sub-blocks: bytes 0-3 and 8-11 of their 16. */
    const __m128i pick = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1);
    /* The scale is the top nibble of the second uint32 of each sub-block's 8 bytes. */
    spread32(u, odd_scales(_mm512_cvtepi64_epi8(_mm512_srli_epi64(_mm512_loadu_si512(qs), 60))));
    for (int k = 0; k < 4; k++) {
        const __m128i q = _mm_loadu_si128((const __m128i *)(qs + 16 * k));
        u->g[k] = gather8(ts_iq2xxs_grid, _mm256_cvtepu8_epi32(_mm_shuffle_epi8(q, pick)));
        u->neg[k] = ksigns4(ts_avx512_load_u32(qs + 16 * k + 4)) | ksigns4(ts_avx512_load_u32(qs + 16 * k + 12)) << 32;
    }
    u->d = _cvtsh_ss(w->d);
}

TS_ALWAYS_INLINE void unpack_iq2_xs(const uint8_t *blk, iq_block *u) {
    const ts_block_iq2_xs *w = (const ts_block_iq2_xs *)blk;
    spread16(u, odd_scales(nibbles(_mm_loadl_epi64((const __m128i *)w->scales))));
    for (int k = 0; k < 4; k++) {
        const uint16_t *q = w->qs + 8 * k;
        const __m128i q16 = _mm_loadu_si128((const __m128i *)q);
        u->g[k] = gather8(ts_iq2xs_grid, _mm256_cvtepu16_epi32(_mm_and_si128(q16, _mm_set1_epi16(511))));
        uint64_t neg = 0;
        for (int j = 0; j < 8; j++) neg |= (uint64_t)ts_iq2_ksigns[q[j] >> 9] << (8 * j);
        u->neg[k] = neg;
    }
    u->d = _cvtsh_ss(w->d);
}

TS_ALWAYS_INLINE void unpack_iq2_s(const uint8_t *blk, iq_block *u) {
    const ts_block_iq2_s *w = (const ts_block_iq2_s *)blk;
    /* Bits 8-9 of group j's index: bits 2j..2j+1 of the two qh bytes of the register. */
    const __m256i hshift = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    spread16(u, odd_scales(nibbles(_mm_loadl_epi64((const __m128i *)w->scales))));
    for (int k = 0; k < 4; k++) {
        const int h = w->qh[2 * k] | w->qh[2 * k + 1] << 8;
        const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(h), hshift), _mm256_set1_epi32(3));
        const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * k)));
        u->g[k] = gather8(ts_iq2s_grid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8)));
        uint64_t neg;
        memcpy(&neg, w->signs + 8 * k, 8);
        u->neg[k] = neg;
    }
    u->d = _cvtsh_ss(w->d);
}

TS_ALWAYS_INLINE void unpack_iq3_xxs(const uint8_t *blk, iq_block *u) {
    const ts_block_iq3_xxs *w = (const ts_block_iq3_xxs *)blk;
    const __m256i aux = _mm256_loadu_si256((const __m256i *)w->sas);
    spread32(u, odd_scales(_mm256_cvtepi32_epi8(_mm256_srli_epi32(aux, 28))));
    for (int k = 0; k < 4; k++) {
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w->qs + 16 * k)));
        u->g[k] = _mm512_i32gather_epi32(idx, (const void *)ts_iq3xxs_grid, 4);
        u->neg[k] = ksigns4(ts_avx512_load_u32(w->sas + 8 * k)) | ksigns4(ts_avx512_load_u32(w->sas + 8 * k + 4)) << 32;
    }
    u->d = _cvtsh_ss(w->d);
}

TS_ALWAYS_INLINE void unpack_iq3_s(const uint8_t *blk, iq_block *u) {
    const ts_block_iq3_s *w = (const ts_block_iq3_s *)blk;
    const __m512i hshift = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    spread32(u, odd_scales(nibbles(_mm_cvtsi32_si128((int)ts_avx512_load_u32(w->scales)))));
    for (int k = 0; k < 4; k++) {
        /* Bit 8 of index j: bit j of the register's two qh bytes. */
        const int h = w->qh[2 * k] | w->qh[2 * k + 1] << 8;
        const __m512i hi = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(h), hshift), _mm512_set1_epi32(1));
        const __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w->qs + 16 * k)));
        u->g[k] = _mm512_i32gather_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 8)), (const void *)ts_iq3s_grid, 4);
        uint64_t neg;
        memcpy(&neg, w->signs + 8 * k, 8);
        u->neg[k] = neg;
    }
    u->d = _cvtsh_ss(w->d);
}

/* IQ1: grid bytes u = g + 1 become 8 * (g +- 1/8) = 8u - 7, or 8u - 9 in the groups (64-bit
 * lanes) of minus9; |v| <= 9 is the magnitude, v's sign the negative lanes. */
TS_ALWAYS_INLINE void iq1_values(iq_block *u, int k, __m512i grid, __mmask8 minus9) {
    const __m512i off = _mm512_mask_blend_epi64(minus9, _mm512_set1_epi8(-7), _mm512_set1_epi8(-9));
    const __m512i v = _mm512_add_epi8(_mm512_slli_epi16(grid, 3), off);
    u->g[k] = _mm512_abs_epi8(v);
    u->neg[k] = _mm512_movepi8_mask(v);
}

TS_ALWAYS_INLINE void unpack_iq1_s(const uint8_t *blk, iq_block *u) {
    const ts_block_iq1_s *w = (const ts_block_iq1_s *)blk;
    /* Index bits 8-10 of group j: 3 bits at 3(j % 4) of the qh word of its sub-block (j / 4). */
    const __m256i hshift = _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25);
    const __m512i sign_bits = _mm512_setr_epi64(1 << 15, 1 << 15, 1 << 15, 1 << 15, 1u << 31, 1u << 31, 1u << 31,
                                                1u << 31);
    const __m128i qh = _mm_loadu_si128((const __m128i *)w->qh);
    spread32(u, odd_scales(_mm_cvtepi16_epi8(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7)))));
    for (int k = 0; k < 4; k++) {
        const uint32_t h = ts_avx512_load_u32(w->qh + 2 * k);
        const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)h), hshift), _mm256_set1_epi32(7));
        const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * k)));
        iq1_values(u, k, gather8(ts_iq1s_grid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8))),
                   _mm512_test_epi64_mask(_mm512_set1_epi64(h), sign_bits));
    }
    u->d = _cvtsh_ss(w->d);
}

TS_ALWAYS_INLINE void unpack_iq1_m(const uint8_t *blk, iq_block *u) {
    const ts_block_iq1_m *w = (const ts_block_iq1_m *)blk;
    /* Group j of a register: the nibble at 4j of its four qh bytes, index bits 8-10 then the sign. */
    const __m256i hshift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i sign_bits = _mm512_setr_epi64(1 << 3, 1 << 7, 1 << 11, 1 << 15, 1 << 19, 1 << 23, 1 << 27, 1u << 31);
    /* Scale t: 3 bits at 3(t % 4) of uint16 word t / 4. */
    const __m512i word = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i sshift = _mm512_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
    uint64_t raw;
    memcpy(&raw, w->scales, 8);
    const __m512i words = _mm512_castsi256_si512(_mm256_cvtepu16_epi32(_mm_cvtsi64_si128((long long)raw)));
    const __m512i s3 = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(word, words), sshift),
                                        _mm512_set1_epi32(7));
    spread16(u, ts_avx512_dup16(_mm512_add_epi32(_mm512_add_epi32(s3, s3), _mm512_set1_epi32(1))));
    for (int k = 0; k < 4; k++) {
        const uint32_t h = ts_avx512_load_u32(w->qh + 4 * k);
        const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)h), hshift), _mm256_set1_epi32(7));
        const __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->qs + 8 * k)));
        iq1_values(u, k, gather8(ts_iq1s_grid, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 8))),
                   _mm512_test_epi64_mask(_mm512_set1_epi64(h), sign_bits));
    }
    /* The top nibble of each of the four words, lowest word first, is d's bits. */
    u->d = _cvtsh_ss(
        (ts_f16)((raw >> 12 & 0x000F) | (raw >> 24 & 0x00F0) | (raw >> 36 & 0x0F00) | (raw >> 48 & 0xF000)));
}

/* Activation rows taken together by the gemm: each unpacked super-block meets them all. */
#define GEMM_COLS 8

/* The gemm: each row's super-blocks are unpacked once per GEMM_COLS activation rows (vec_dot
 * unpacks them once per activation row), and each (row, activation row) pair takes the integer
 * sums and float operations of vec_dot, so the two agree bit for bit. */
TS_ALWAYS_INLINE void iq_gemm(int64_t n, int nr, int nc, const uint8_t *w, size_t w_stride, const uint8_t *x,
                              size_t x_stride, float *y, size_t y_stride, size_t block_bytes,
                              void (*unpack)(const uint8_t *, iq_block *), float factor) {
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        for (int c0 = 0; c0 < nc; c0 += GEMM_COLS) {
            const int cn = nc - c0 < GEMM_COLS ? nc - c0 : GEMM_COLS;
            __m512 acc[GEMM_COLS];
            for (int c = 0; c < cn; c++) acc[c] = _mm512_setzero_ps();
            for (int64_t b = 0; b < n / TS_QK_K; b++) {
                iq_block u;
                unpack(wr + (size_t)b * block_bytes, &u);
                for (int c = 0; c < cn; c++) {
                    const ts_block_q8k *xb = (const ts_block_q8k *)(x + (size_t)(c0 + c) * x_stride) + b;
                    acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_isum(&u, xb->qs)), _mm512_set1_ps(u.d * xb->d),
                                             acc[c]);
                }
            }
            for (int c = 0; c < cn; c++) y[(size_t)(c0 + c) * y_stride + r] = factor * _mm512_reduce_add_ps(acc[c]);
        }
    }
}

#define TS_IQ_KERNELS(name, block, factor)                                                                 \
    static void vec_dot_##name(int64_t n, float *s, const void *vw, const void *vx) {                     \
        const block *w = (const block *)vw;                                                                \
        const ts_block_q8k *x = (const ts_block_q8k *)vx;                                                  \
        __m512 acc = _mm512_setzero_ps();                                                                  \
        for (int64_t b = 0; b < n / TS_QK_K; b++) {                                                        \
            ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);                                     \
            iq_block u;                                                                                    \
            unpack_##name((const uint8_t *)&w[b], &u);                                                     \
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_isum(&u, x[b].qs)), _mm512_set1_ps(u.d * x[b].d), acc); \
        }                                                                                                  \
        *s = factor * _mm512_reduce_add_ps(acc);                                                           \
    }                                                                                                      \
    static void gemm_##name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,     \
                            size_t x_stride, float *y, size_t y_stride) {                                  \
        iq_gemm(n, nr, nc, (const uint8_t *)w, w_stride, (const uint8_t *)x, x_stride, y, y_stride,        \
                sizeof(block), unpack_##name, factor);                                                     \
    }

TS_IQ_KERNELS(iq2_xxs, ts_block_iq2_xxs, 0.125f)
TS_IQ_KERNELS(iq2_xs, ts_block_iq2_xs, 0.125f)
TS_IQ_KERNELS(iq2_s, ts_block_iq2_s, 0.125f)
TS_IQ_KERNELS(iq3_xxs, ts_block_iq3_xxs, 0.25f)
TS_IQ_KERNELS(iq3_s, ts_block_iq3_s, 1.0f)
TS_IQ_KERNELS(iq1_s, ts_block_iq1_s, 0.125f)
TS_IQ_KERNELS(iq1_m, ts_block_iq1_m, 0.125f)

void TS_AVX512_NAME(ts_avx512_register_iquants)(ts_kernels *k) {
    k->vec_dot[TS_TYPE_IQ2_XXS] = vec_dot_iq2_xxs;
    k->vec_dot[TS_TYPE_IQ2_XS] = vec_dot_iq2_xs;
    k->vec_dot[TS_TYPE_IQ2_S] = vec_dot_iq2_s;
    k->vec_dot[TS_TYPE_IQ3_XXS] = vec_dot_iq3_xxs;
    k->vec_dot[TS_TYPE_IQ3_S] = vec_dot_iq3_s;
    k->vec_dot[TS_TYPE_IQ1_S] = vec_dot_iq1_s;
    k->vec_dot[TS_TYPE_IQ1_M] = vec_dot_iq1_m;
    k->gemm[TS_TYPE_IQ2_XXS] = gemm_iq2_xxs;
    k->gemm[TS_TYPE_IQ2_XS] = gemm_iq2_xs;
    k->gemm[TS_TYPE_IQ2_S] = gemm_iq2_s;
    k->gemm[TS_TYPE_IQ3_XXS] = gemm_iq3_xxs;
    k->gemm[TS_TYPE_IQ3_S] = gemm_iq3_s;
    k->gemm[TS_TYPE_IQ1_S] = gemm_iq1_s;
    k->gemm[TS_TYPE_IQ1_M] = gemm_iq1_m;
}
