/* AVX-512: gemm tiles (one weight row block unpacked for several activation rows).
 * Compiled twice like quants.c: plain, and with TS_VNNI for vpdpbusd. */
#include <immintrin.h>
#include <string.h>

#include "ts/kernels.h"

#define TS_INLINE static inline __attribute__((always_inline))

/* acc + sums of four u8*s8 products per int32 lane, and of two s16*s16 products. Without VNNI
 * the u8*s8 pairs pass through int16 (maddubs saturates), so the plain build uses it only
 * where the unsigned side stays below 32. */
#ifdef TS_VNNI
TS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }
TS_INLINE __m512i dot_s16(__m512i acc, __m512i a, __m512i b) { return _mm512_dpwssd_epi32(acc, a, b); }
#else
TS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
TS_INLINE __m512i dot_s16(__m512i acc, __m512i a, __m512i b) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
}
#endif

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

/* Float lanes 0..7 = lane lo of f, lanes 8..15 = lane hi of f. */
TS_INLINE __m512 spread2(__m128 f, int lo, int hi) {
    const __m512i idx = _mm512_set_epi32(hi, hi, hi, hi, hi, hi, hi, hi, lo, lo, lo, lo, lo, lo, lo, lo);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* Up to four accumulators reduced and stored (first: stored, else added) to y[c*ys + r]. */
TS_INLINE void store_cols(const __m512 *acc, int nc, float *y, size_t ys, int first) {
    for (int c = 0; c < nc; c++) {
        const float v = _mm512_reduce_add_ps(acc[c]);
        y[c * ys] = first ? v : y[c * ys] + v;
    }
}

/* ---- 32-element blocks against q8x32 ------------------------------------------------------
 * Blocks go in pairs, block a in the low 256 bits of a register and block b in the high ones,
 * each in element order. The activations of a chunk of blocks are rearranged once per call
 * (shared by all weight rows of the tile): quants of a pair in one register, the activation
 * scales spread over their block's lanes, and the per-block offset term. Each weight pair is
 * then unpacked once and meets up to four activation rows. */

#define CHUNK 64 /* blocks per chunk: the rearranged activations of four rows stay in L1 */

typedef struct {
    __m512i q[CHUNK / 2];  /* quants of the pair (Q8_0: plus 128, to be the unsigned side) */
    __m512 d[CHUNK / 2];   /* [x_a.d x8, x_b.d x8]; 0 for a missing block b */
    __m512i off[CHUNK / 2]; /* Q4_0 / Q5_0: -offset * (sums of 4 quants), the integer start */
    __m512 s[CHUNK / 2];   /* Q4_1: [x_a.s / 8 x8, x_b.s / 8 x8], the minimum's partner */
} act_chunk;

TS_INLINE void act_prepare(int type, const ts_block_q8x32 *x, int nbc, act_chunk *a) {
    for (int p = 0; 2 * p < nbc; p++) {
        const ts_block_q8x32 *xa = &x[2 * p];
        const int has_b = 2 * p + 1 < nbc;
        const __m256i qa = _mm256_loadu_si256((const __m256i *)xa->qs);
        const __m256i qb = has_b ? _mm256_loadu_si256((const __m256i *)xa[1].qs) : _mm256_setzero_si256();
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1);
        const __m128 ds = _mm_setr_ps(xa->d, has_b ? xa[1].d : 0.0f, xa->s * 0.125f, has_b ? xa[1].s * 0.125f : 0.0f);
        a->d[p] = spread2(ds, 0, 1);
        if (type == TS_TYPE_Q4_1) a->s[p] = spread2(ds, 2, 3);
        if (type == TS_TYPE_Q4_0 || type == TS_TYPE_Q5_0) {
            const __m512i off = _mm512_set1_epi8(type == TS_TYPE_Q4_0 ? 8 : 16);
            a->off[p] = _mm512_sub_epi32(_mm512_setzero_si512(), dot_u8s8(_mm512_setzero_si512(), off, q));
        }
        if (type == TS_TYPE_Q8_0) q = _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
        a->q[p] = q;
    }
}

/* The quants of weight blocks a and b as bytes in element order; Q4_x / Q5_0 unsigned. */
TS_INLINE __m512i weight_pair(int type, const uint8_t *a, const uint8_t *b) {
    if (type == TS_TYPE_Q8_0)
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                  _mm256_loadu_si256((const __m256i *)(b + 2)), 1);
    const int qs = type == TS_TYPE_Q4_0 ? 2 : type == TS_TYPE_Q4_1 ? 4 : 6;
    /* [qs_a, qs_a, qs_b, qs_b]: low nibbles are elements 0..15, high nibbles 16..31. */
    const __m256i va = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + qs)));
    const __m256i vb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + qs)));
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1);
    __m512i u = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)),
                                 _mm512_set1_epi8(0x0F));
    if (type == TS_TYPE_Q5_0) {
        /* qh bit i is the fifth bit of element i: one mask bit per byte of the pair. */
        const __mmask64 k = (__mmask64)load_u32(a + 2) | (__mmask64)load_u32(b + 2) << 32;
        u = _mm512_mask_add_epi8(u, k, u, _mm512_set1_epi8(16));
    }
    return u;
}

TS_INLINE void gemm_q8x32_rows(int type, int nc, int nbc, int nr, const uint8_t *w, size_t w_stride,
                               const act_chunk *act, float *y, size_t ys, int first) {
    const int bs = type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        __m512 acc[TS_GEMM_MAX_COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
        for (int p = 0; 2 * p < nbc; p++) {
            const uint8_t *a = wr + (size_t)(2 * p) * bs;
            /* A missing block b repeats a; its activation scale is 0. */
            const uint8_t *b = 2 * p + 1 < nbc ? a + bs : a;
            const __m512i q = weight_pair(type, a, b);
            /* [d_a, m_a, d_b, m_b] for Q4_1, else [d_a, d_b, ...]. */
            const __m128 dm = _mm_cvtph_ps(type == TS_TYPE_Q4_1
                ? _mm_setr_epi32((int)load_u32(a), (int)load_u32(b), 0, 0)
                : _mm_cvtsi32_si128((int)((load_u32(a) & 0xFFFF) | load_u32(b) << 16)));
            const __m512 dw = type == TS_TYPE_Q4_1 ? spread2(dm, 0, 2) : spread2(dm, 0, 1);
            const __m512 mw = spread2(dm, 1, 3);
            /* Q8_0: the activations carry +128; take 128 * (sums of 4 weight quants) back out. */
            const __m512i corr = type == TS_TYPE_Q8_0
                ? _mm512_sub_epi32(_mm512_setzero_si512(),
                                   dot_u8s8(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), q))
                : _mm512_setzero_si512();
            for (int c = 0; c < nc; c++) {
                const act_chunk *x = &act[c];
                __m512i dot;
                if (type == TS_TYPE_Q8_0) dot = dot_u8s8(corr, x->q[p], q);
                else if (type == TS_TYPE_Q4_1) dot = dot_u8s8(_mm512_setzero_si512(), q, x->q[p]);
                else dot = dot_u8s8(x->off[p], q, x->q[p]);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, x->d[p]), acc[c]);
                if (type == TS_TYPE_Q4_1) acc[c] = _mm512_fmadd_ps(mw, x->s[p], acc[c]);
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
#ifdef TS_VNNI
TS_GEMM_Q8X32(gemm_q8_0, TS_TYPE_Q8_0)
#endif

#ifdef TS_VNNI
void ts_register_avx512vnni_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q8_0] = gemm_q8_0;
}
#else
void ts_register_avx512_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
}
#endif
