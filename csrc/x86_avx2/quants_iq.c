/* AVX2 + FMA + F16C: dot products and gemm of the codebook i-quants (IQ2_XXS .. IQ1_M) against q8k. */
#include "quants.h"
#include "ts/iq_grids.h"
#include "ts/prefetch.h"

/* One 256-bit register per sub-block of 32 elements, unpacked by the type's sub() into the
 * magnitudes of its values, a mask of the negative ones and the odd scale 2s + 1 as int16 (per
 * 128-bit lane where sub-blocks are 16 long). The grid entries are gathered with scalar loads
 * (vpgather is slower than loads on the cores we run on); the signs move onto the activations,
 * maddubs forms int16 pair sums and madd weighs them with the scale. A super-block ends in one
 * float multiply-add; the type's power-of-two factor applies once at the end. Pair sums stay
 * below 2 * 62 * 127 < 2^15. */

#define TS_IQ_INLINE static inline __attribute__((always_inline))

typedef struct {
    __m256i g;   /* |value| per byte */
    __m256i neg; /* 0xFF where the value is negative */
    __m256i sc;  /* int16 scale of each lane's sub-block */
} iq_sub;

/* 0xFF in the bytes whose sign bit is set: byte j of s4 holds the signs of elements 8j..8j+7. */
TS_IQ_INLINE __m256i sign_mask(uint32_t s4) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                            3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)s4), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
}

/* The sign bytes of four groups from the 7-bit ksigns indices in bits 0..27 of aux. */
TS_IQ_INLINE uint32_t ksigns4(uint32_t aux) {
    return (uint32_t)ts_iq2_ksigns[aux & 127] | (uint32_t)ts_iq2_ksigns[(aux >> 7) & 127] << 8 |
           (uint32_t)ts_iq2_ksigns[(aux >> 14) & 127] << 16 | (uint32_t)ts_iq2_ksigns[(aux >> 21) & 127] << 24;
}

/* 2s + 1 as int16: one scale for 32 elements, or lo for the first 16 and hi for the next. */
TS_IQ_INLINE __m256i odd1(int s) { return _mm256_set1_epi16((short)(2 * s + 1)); }
TS_IQ_INLINE __m256i odd2(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(2 * hi + 1)), _mm_set1_epi16((short)(2 * lo + 1)));
}

TS_IQ_INLINE __m256i grid4(const uint64_t *grid, int i0, int i1, int i2, int i3) {
    return _mm256_set_epi64x((long long)grid[i3], (long long)grid[i2], (long long)grid[i1], (long long)grid[i0]);
}

/* int32 lanes of sum(value * y) * scale over the sub-block's 32 elements. */
TS_IQ_INLINE __m256i sub_isum(const iq_sub *u, const int8_t *y) {
    const __m256i ys = _mm256_sub_epi8(_mm256_xor_si256(ts_avx2_load(y), u->neg), u->neg);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u->g, ys), u->sc);
}

TS_IQ_INLINE iq_sub sub_iq2_xxs(const uint8_t *blk, int ib) {
    const uint8_t *qs = blk + offsetof(ts_block_iq2_xxs, qs);
    const uint32_t idx = ts_avx2_load_u32(qs + 8 * ib), aux = ts_avx2_load_u32(qs + 8 * ib + 4);
    return (iq_sub){grid4(ts_iq2xxs_grid, idx & 255, (idx >> 8) & 255, (idx >> 16) & 255, idx >> 24),
                    sign_mask(ksigns4(aux)), odd1((int)(aux >> 28))};
}

TS_IQ_INLINE iq_sub sub_iq2_xs(const uint8_t *blk, int ib) {
    const ts_block_iq2_xs *w = (const ts_block_iq2_xs *)blk;
    uint16_t q[4];
    memcpy(q, w->qs + 4 * ib, sizeof(q));
    const uint32_t s4 = (uint32_t)ts_iq2_ksigns[q[0] >> 9] | (uint32_t)ts_iq2_ksigns[q[1] >> 9] << 8 |
                        (uint32_t)ts_iq2_ksigns[q[2] >> 9] << 16 | (uint32_t)ts_iq2_ksigns[q[3] >> 9] << 24;
    const int sc = w->scales[ib];
    return (iq_sub){grid4(ts_iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511), sign_mask(s4),
                    odd2(sc & 15, sc >> 4)};
}

TS_IQ_INLINE iq_sub sub_iq2_s(const uint8_t *blk, int ib) {
    const ts_block_iq2_s *w = (const ts_block_iq2_s *)blk;
    const uint8_t *q = w->qs + 4 * ib;
    const int h = w->qh[ib], sc = w->scales[ib];
    return (iq_sub){grid4(ts_iq2s_grid, q[0] | (h & 3) << 8, q[1] | (h & 12) << 6, q[2] | (h & 48) << 4,
                          q[3] | (h & 192) << 2),
                    sign_mask(ts_avx2_load_u32(w->signs + 4 * ib)), odd2(sc & 15, sc >> 4)};
}

TS_IQ_INLINE iq_sub sub_iq3_xxs(const uint8_t *blk, int ib) {
    const ts_block_iq3_xxs *w = (const ts_block_iq3_xxs *)blk;
    const uint32_t *grid = ts_iq3xxs_grid;
    const uint8_t *q = w->qs + 8 * ib;
    const uint32_t aux = ts_avx2_load_u32(w->sas + 4 * ib);
    return (iq_sub){_mm256_setr_epi32((int)grid[q[0]], (int)grid[q[1]], (int)grid[q[2]], (int)grid[q[3]],
                                      (int)grid[q[4]], (int)grid[q[5]], (int)grid[q[6]], (int)grid[q[7]]),
                    sign_mask(ksigns4(aux)), odd1((int)(aux >> 28))};
}

TS_IQ_INLINE iq_sub sub_iq3_s(const uint8_t *blk, int ib) {
    const ts_block_iq3_s *w = (const ts_block_iq3_s *)blk;
    const uint32_t *grid = ts_iq3s_grid;
    const uint8_t *q = w->qs + 8 * ib;
    const int h = w->qh[ib];
    return (iq_sub){_mm256_setr_epi32((int)grid[q[0] | (h << 8 & 256)], (int)grid[q[1] | (h << 7 & 256)],
                                      (int)grid[q[2] | (h << 6 & 256)], (int)grid[q[3] | (h << 5 & 256)],
                                      (int)grid[q[4] | (h << 4 & 256)], (int)grid[q[5] | (h << 3 & 256)],
                                      (int)grid[q[6] | (h << 2 & 256)], (int)grid[q[7] | (h << 1 & 256)]),
                    sign_mask(ts_avx2_load_u32(w->signs + 4 * ib)), odd1((w->scales[ib / 2] >> (4 * (ib % 2))) & 15)};
}

/* IQ1: grid bytes u = g + 1 become 8 * (g +- 1/8) = 8u - 7 or 8u - 9 (off: -7 or -9 per byte);
 * |v| <= 9 is the magnitude, v's sign the mask. 1/8 leaves at the end. */
TS_IQ_INLINE iq_sub iq1_sub(__m256i u, __m256i off, __m256i sc) {
    const __m256i v = _mm256_add_epi8(_mm256_slli_epi16(u, 3), off);
    return (iq_sub){_mm256_abs_epi8(v), _mm256_cmpgt_epi8(_mm256_setzero_si256(), v), sc};
}

TS_IQ_INLINE iq_sub sub_iq1_s(const uint8_t *blk, int ib) {
    const ts_block_iq1_s *w = (const ts_block_iq1_s *)blk;
    const uint8_t *q = w->qs + 4 * ib;
    const int h = w->qh[ib];
    return iq1_sub(grid4(ts_iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h >> 3 & 7) << 8, q[2] | (h >> 6 & 7) << 8,
                         q[3] | (h >> 9 & 7) << 8),
                   _mm256_set1_epi8((char)(h & 0x8000 ? -9 : -7)), odd1((h >> 12) & 7));
}

TS_IQ_INLINE iq_sub sub_iq1_m(const uint8_t *blk, int ib) {
    const ts_block_iq1_m *w = (const ts_block_iq1_m *)blk;
    const long long minus7 = (long long)0xF9F9F9F9F9F9F9F9ULL, minus9 = (long long)0xF7F7F7F7F7F7F7F7ULL;
    const uint8_t *q = w->qs + 4 * ib;
    const int h0 = w->qh[2 * ib], h1 = w->qh[2 * ib + 1];
    /* 3-bit scales per 16 elements: scale t at bit 3(t % 4) of uint16 word t / 4. */
    uint16_t word;
    memcpy(&word, w->scales + 2 * (ib / 2), 2);
    const int shift = 6 * (ib % 2);
    return iq1_sub(grid4(ts_iq1s_grid, q[0] | (h0 & 7) << 8, q[1] | (h0 >> 4 & 7) << 8, q[2] | (h1 & 7) << 8,
                         q[3] | (h1 >> 4 & 7) << 8),
                   _mm256_set_epi64x(h1 & 0x80 ? minus9 : minus7, h1 & 0x08 ? minus9 : minus7,
                                     h0 & 0x80 ? minus9 : minus7, h0 & 0x08 ? minus9 : minus7),
                   odd2(word >> shift & 7, word >> (shift + 3) & 7));
}

/* The f16 super-block scale. IQ1_M has none of its own: the top nibbles of its four uint16 scale
 * words, lowest word first, are d's bits. */
TS_IQ_INLINE float d_at(const uint8_t *blk) {
    ts_f16 d;
    memcpy(&d, blk, 2);
    return _cvtsh_ss(d);
}
TS_IQ_INLINE float d_iq1_m(const uint8_t *blk) {
    uint64_t sc;
    memcpy(&sc, blk + offsetof(ts_block_iq1_m, scales), 8);
    return _cvtsh_ss((ts_f16)((sc >> 12 & 0x000F) | (sc >> 24 & 0x00F0) | (sc >> 36 & 0x0F00) | (sc >> 48 & 0xF000)));
}

/* Activation rows the gemm takes together: each unpacked super-block meets them all. */
#define GEMM_COLS 8

/* vec_dot streams the sub-blocks; the gemm unpacks a super-block once per GEMM_COLS activation
 * rows, and each (row, activation row) pair takes the same integer sums and float operations as
 * vec_dot, so the two agree bit for bit. */
#define TS_IQ_KERNELS(name, block, d_of, factor)                                                           \
    static void dot_##name(int64_t n, float *s, const void *vw, const void *vx) {                          \
        const uint8_t *w = (const uint8_t *)vw;                                                            \
        const ts_block_q8k *x = (const ts_block_q8k *)vx;                                                  \
        __m256 acc = _mm256_setzero_ps();                                                                  \
        for (int64_t b = 0; b < n / TS_QK_K; b++) {                                                        \
            const uint8_t *blk = w + (size_t)b * sizeof(block);                                            \
            ts_prefetch_ahead(blk, sizeof(block), TS_PREFETCH_AHEAD);                                      \
            __m256i sum = _mm256_setzero_si256();                                                          \
            for (int ib = 0; ib < 8; ib++) {                                                               \
                const iq_sub u = sub_##name(blk, ib);                                                      \
                sum = _mm256_add_epi32(sum, sub_isum(&u, x[b].qs + 32 * ib));                              \
            }                                                                                              \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d_of(blk) * x[b].d), acc);       \
        }                                                                                                  \
        *s = factor * ts_avx2_hsum_ps(acc);                                                                \
    }                                                                                                      \
    static void gemm_##name(int64_t n, int nr, int nc, const void *vw, size_t w_stride, const void *vx,    \
                            size_t x_stride, float *y, size_t y_stride) {                                  \
        for (int r = 0; r < nr; r++) {                                                                     \
            const uint8_t *wr = (const uint8_t *)vw + (size_t)r * w_stride;                                \
            for (int c0 = 0; c0 < nc; c0 += GEMM_COLS) {                                                   \
                const int cn = nc - c0 < GEMM_COLS ? nc - c0 : GEMM_COLS;                                  \
                __m256 acc[GEMM_COLS];                                                                     \
                for (int c = 0; c < cn; c++) acc[c] = _mm256_setzero_ps();                                 \
                for (int64_t b = 0; b < n / TS_QK_K; b++) {                                                \
                    const uint8_t *blk = wr + (size_t)b * sizeof(block);                                   \
                    iq_sub u[8];                                                                           \
                    for (int ib = 0; ib < 8; ib++) u[ib] = sub_##name(blk, ib);                            \
                    const float d = d_of(blk);                                                             \
                    for (int c = 0; c < cn; c++) {                                                         \
                        const ts_block_q8k *xb = (const ts_block_q8k *)((const uint8_t *)vx +              \
                                                                        (size_t)(c0 + c) * x_stride) + b;  \
                        __m256i sum = _mm256_setzero_si256();                                              \
                        for (int ib = 0; ib < 8; ib++)                                                     \
                            sum = _mm256_add_epi32(sum, sub_isum(&u[ib], xb->qs + 32 * ib));               \
                        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d * xb->d), acc[c]);  \
                    }                                                                                      \
                }                                                                                          \
                for (int c = 0; c < cn; c++) y[(size_t)(c0 + c) * y_stride + r] = factor * ts_avx2_hsum_ps(acc[c]); \
            }                                                                                              \
        }                                                                                                  \
    }

TS_IQ_KERNELS(iq2_xxs, ts_block_iq2_xxs, d_at, 0.125f)
TS_IQ_KERNELS(iq2_xs, ts_block_iq2_xs, d_at, 0.125f)
TS_IQ_KERNELS(iq2_s, ts_block_iq2_s, d_at, 0.125f)
TS_IQ_KERNELS(iq3_xxs, ts_block_iq3_xxs, d_at, 0.25f)
TS_IQ_KERNELS(iq3_s, ts_block_iq3_s, d_at, 1.0f)
TS_IQ_KERNELS(iq1_s, ts_block_iq1_s, d_at, 0.125f)
TS_IQ_KERNELS(iq1_m, ts_block_iq1_m, d_iq1_m, 0.125f)

void ts_register_avx2_iquants(ts_kernels *k) {
    k->vec_dot[TS_TYPE_IQ2_XXS] = dot_iq2_xxs;
    k->vec_dot[TS_TYPE_IQ2_XS] = dot_iq2_xs;
    k->vec_dot[TS_TYPE_IQ2_S] = dot_iq2_s;
    k->vec_dot[TS_TYPE_IQ3_XXS] = dot_iq3_xxs;
    k->vec_dot[TS_TYPE_IQ3_S] = dot_iq3_s;
    k->vec_dot[TS_TYPE_IQ1_S] = dot_iq1_s;
    k->vec_dot[TS_TYPE_IQ1_M] = dot_iq1_m;
    k->gemm[TS_TYPE_IQ2_XXS] = gemm_iq2_xxs;
    k->gemm[TS_TYPE_IQ2_XS] = gemm_iq2_xs;
    k->gemm[TS_TYPE_IQ2_S] = gemm_iq2_s;
    k->gemm[TS_TYPE_IQ3_XXS] = gemm_iq3_xxs;
    k->gemm[TS_TYPE_IQ3_S] = gemm_iq3_s;
    k->gemm[TS_TYPE_IQ1_S] = gemm_iq1_s;
    k->gemm[TS_TYPE_IQ1_M] = gemm_iq1_m;
}
