/* AVX2 + FMA + F16C: dot products of the codebook i-quants (IQ2_XXS .. IQ1_M) against q8k. */
#include "quants.h"
#include "ts/iq_grids.h"
#include "ts/prefetch.h"

/* One 256-bit register per sub-block of 32 elements: the grid entries of its groups are
 * gathered with scalar loads (vpgather is slower than loads on the cores we run on), the
 * element signs move onto the activations, maddubs forms int16 pair sums of the unsigned grid
 * bytes and madd weighs them with the odd scale 2s + 1 (per 128-bit lane where sub-blocks are
 * 16 long). A super-block ends in one float multiply-add; the type's power-of-two factor
 * applies once at the end. Pair sums stay below 2 * 62 * 127 < 2^15. */

/* 0xFF in the bytes whose sign bit is set: byte j of s4 holds the signs of elements 8j..8j+7. */
static inline __m256i sign_mask(uint32_t s4) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                            3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)s4), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
}

/* The sign bytes of four groups from the 7-bit ksigns indices in bits 0..27 of aux. */
static inline uint32_t ksigns4(uint32_t aux) {
    return (uint32_t)ts_iq2_ksigns[aux & 127] | (uint32_t)ts_iq2_ksigns[(aux >> 7) & 127] << 8 |
           (uint32_t)ts_iq2_ksigns[(aux >> 14) & 127] << 16 | (uint32_t)ts_iq2_ksigns[(aux >> 21) & 127] << 24;
}

/* int32 lanes of sum(g * y * sign) * sc over 32 elements: g unsigned grid bytes, neg a sign_mask. */
static inline __m256i sub_dot(__m256i g, __m256i neg, const int8_t *y, __m256i sc) {
    const __m256i ys = _mm256_sub_epi8(_mm256_xor_si256(ts_avx2_load(y), neg), neg);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(g, ys), sc);
}

/* 2s + 1 as int16: one scale for 32 elements, or lo for the first 16 and hi for the next. */
static inline __m256i odd1(int s) { return _mm256_set1_epi16((short)(2 * s + 1)); }
static inline __m256i odd2(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(2 * hi + 1)), _mm_set1_epi16((short)(2 * lo + 1)));
}

static inline __m256 block_fma(__m256i sum, float d, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d), acc);
}

static inline __m256i grid4(const uint64_t *grid, int i0, int i1, int i2, int i3) {
    return _mm256_set_epi64x((long long)grid[i3], (long long)grid[i2], (long long)grid[i1], (long long)grid[i0]);
}

static void dot_iq2_xxs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq2_xxs *w = (const ts_block_iq2_xxs *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        const uint8_t *qs = (const uint8_t *)w[b].qs;
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = ts_avx2_load_u32(qs + 8 * ib), aux = ts_avx2_load_u32(qs + 8 * ib + 4);
            const __m256i g = grid4(ts_iq2xxs_grid, idx & 255, (idx >> 8) & 255, (idx >> 16) & 255, idx >> 24);
            sum = _mm256_add_epi32(sum, sub_dot(g, sign_mask(ksigns4(aux)), x[b].qs + 32 * ib, odd1((int)(aux >> 28))));
        }
        acc = block_fma(sum, _cvtsh_ss(w[b].d) * x[b].d, acc);
    }
    *s = 0.125f * ts_avx2_hsum_ps(acc);
}

static void dot_iq2_xs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq2_xs *w = (const ts_block_iq2_xs *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t *q = w[b].qs + 4 * ib;
            const __m256i g = grid4(ts_iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
            const uint32_t s4 = (uint32_t)ts_iq2_ksigns[q[0] >> 9] | (uint32_t)ts_iq2_ksigns[q[1] >> 9] << 8 |
                                (uint32_t)ts_iq2_ksigns[q[2] >> 9] << 16 | (uint32_t)ts_iq2_ksigns[q[3] >> 9] << 24;
            const int sc = w[b].scales[ib];
            sum = _mm256_add_epi32(sum, sub_dot(g, sign_mask(s4), x[b].qs + 32 * ib, odd2(sc & 15, sc >> 4)));
        }
        acc = block_fma(sum, _cvtsh_ss(w[b].d) * x[b].d, acc);
    }
    *s = 0.125f * ts_avx2_hsum_ps(acc);
}

static void dot_iq2_s(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq2_s *w = (const ts_block_iq2_s *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w[b].qs + 4 * ib;
            const int h = w[b].qh[ib];
            const __m256i g = grid4(ts_iq2s_grid, q[0] | (h & 3) << 8, q[1] | (h & 12) << 6, q[2] | (h & 48) << 4,
                                    q[3] | (h & 192) << 2);
            const int sc = w[b].scales[ib];
            sum = _mm256_add_epi32(sum, sub_dot(g, sign_mask(ts_avx2_load_u32(w[b].signs + 4 * ib)),
                                                x[b].qs + 32 * ib, odd2(sc & 15, sc >> 4)));
        }
        acc = block_fma(sum, _cvtsh_ss(w[b].d) * x[b].d, acc);
    }
    *s = 0.125f * ts_avx2_hsum_ps(acc);
}

static void dot_iq3_xxs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq3_xxs *w = (const ts_block_iq3_xxs *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const uint32_t *grid = ts_iq3xxs_grid;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w[b].qs + 8 * ib;
            const uint32_t aux = ts_avx2_load_u32(w[b].sas + 4 * ib);
            const __m256i g = _mm256_setr_epi32((int)grid[q[0]], (int)grid[q[1]], (int)grid[q[2]], (int)grid[q[3]],
                                                (int)grid[q[4]], (int)grid[q[5]], (int)grid[q[6]], (int)grid[q[7]]);
            sum = _mm256_add_epi32(sum, sub_dot(g, sign_mask(ksigns4(aux)), x[b].qs + 32 * ib, odd1((int)(aux >> 28))));
        }
        acc = block_fma(sum, _cvtsh_ss(w[b].d) * x[b].d, acc);
    }
    *s = 0.25f * ts_avx2_hsum_ps(acc);
}

static void dot_iq3_s(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq3_s *w = (const ts_block_iq3_s *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const uint32_t *grid = ts_iq3s_grid;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w[b].qs + 8 * ib;
            const int h = w[b].qh[ib];
            const __m256i g = _mm256_setr_epi32(
                (int)grid[q[0] | (h << 8 & 256)], (int)grid[q[1] | (h << 7 & 256)], (int)grid[q[2] | (h << 6 & 256)],
                (int)grid[q[3] | (h << 5 & 256)], (int)grid[q[4] | (h << 4 & 256)], (int)grid[q[5] | (h << 3 & 256)],
                (int)grid[q[6] | (h << 2 & 256)], (int)grid[q[7] | (h << 1 & 256)]);
            const int sc = (w[b].scales[ib / 2] >> (4 * (ib % 2))) & 15;
            sum = _mm256_add_epi32(sum, sub_dot(g, sign_mask(ts_avx2_load_u32(w[b].signs + 4 * ib)),
                                                x[b].qs + 32 * ib, odd1(sc)));
        }
        acc = block_fma(sum, _cvtsh_ss(w[b].d) * x[b].d, acc);
    }
    *s = ts_avx2_hsum_ps(acc);
}

/* IQ1: grid bytes u = g + 1 become 8 * (g +- 1/8) = 8u - 7 or 8u - 9 (off: -7 or -9 per byte),
 * small signed weights (|v| <= 9) for the signed dot; 1/8 leaves at the end. */
static inline __m256i iq1_dot(__m256i u, __m256i off, const int8_t *y, __m256i sc) {
    const __m256i v = _mm256_add_epi8(_mm256_slli_epi16(u, 3), off);
    return _mm256_madd_epi16(ts_avx2_dot_i8(v, ts_avx2_load(y)), sc);
}

static void dot_iq1_s(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq1_s *w = (const ts_block_iq1_s *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w[b].qs + 4 * ib;
            const int h = w[b].qh[ib];
            const __m256i u = grid4(ts_iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h >> 3 & 7) << 8,
                                    q[2] | (h >> 6 & 7) << 8, q[3] | (h >> 9 & 7) << 8);
            const __m256i off = _mm256_set1_epi8((char)(h & 0x8000 ? -9 : -7));
            sum = _mm256_add_epi32(sum, iq1_dot(u, off, x[b].qs + 32 * ib, odd1((h >> 12) & 7)));
        }
        acc = block_fma(sum, _cvtsh_ss(w[b].d) * x[b].d, acc);
    }
    *s = 0.125f * ts_avx2_hsum_ps(acc);
}

static void dot_iq1_m(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq1_m *w = (const ts_block_iq1_m *)vw;
    const ts_block_q8k *x = (const ts_block_q8k *)vx;
    const long long minus7 = (long long)0xF9F9F9F9F9F9F9F9ULL, minus9 = (long long)0xF7F7F7F7F7F7F7F7ULL;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        ts_prefetch_ahead(&w[b], sizeof(w[b]), TS_PREFETCH_AHEAD);
        uint64_t sc;
        memcpy(&sc, w[b].scales, 8);
        /* The top nibble of each of the four uint16 words, lowest word first, is d's bits. */
        const ts_f16 d = (ts_f16)((sc >> 12 & 0x000F) | (sc >> 24 & 0x00F0) | (sc >> 36 & 0x0F00) | (sc >> 48 & 0xF000));
        __m256i sum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w[b].qs + 4 * ib;
            const int h0 = w[b].qh[2 * ib], h1 = w[b].qh[2 * ib + 1];
            const __m256i u = grid4(ts_iq1s_grid, q[0] | (h0 & 7) << 8, q[1] | (h0 >> 4 & 7) << 8,
                                    q[2] | (h1 & 7) << 8, q[3] | (h1 >> 4 & 7) << 8);
            const __m256i off = _mm256_set_epi64x(h1 & 0x80 ? minus9 : minus7, h1 & 0x08 ? minus9 : minus7,
                                                  h0 & 0x80 ? minus9 : minus7, h0 & 0x08 ? minus9 : minus7);
            /* 3-bit scales per 16 elements: scale t at bit 3(t % 4) of word t / 4. */
            const int t = 2 * ib, lo = (int)(sc >> (16 * (t / 4) + 3 * (t % 4))) & 7;
            const int hi = (int)(sc >> (16 * (t / 4) + 3 * (t % 4) + 3)) & 7;
            sum = _mm256_add_epi32(sum, iq1_dot(u, off, x[b].qs + 32 * ib, odd2(lo, hi)));
        }
        acc = block_fma(sum, _cvtsh_ss(d) * x[b].d, acc);
    }
    *s = 0.125f * ts_avx2_hsum_ps(acc);
}

void ts_register_avx2_iquants(ts_kernels *k) {
    k->vec_dot[TS_TYPE_IQ2_XXS] = dot_iq2_xxs;
    k->vec_dot[TS_TYPE_IQ2_XS] = dot_iq2_xs;
    k->vec_dot[TS_TYPE_IQ2_S] = dot_iq2_s;
    k->vec_dot[TS_TYPE_IQ3_XXS] = dot_iq3_xxs;
    k->vec_dot[TS_TYPE_IQ3_S] = dot_iq3_s;
    k->vec_dot[TS_TYPE_IQ1_S] = dot_iq1_s;
    k->vec_dot[TS_TYPE_IQ1_M] = dot_iq1_m;
}
