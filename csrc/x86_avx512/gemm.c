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

/* Up to four accumulators reduced and stored (first: stored, else added) to y[c*ys + r]. */
TS_INLINE void store_cols(const __m512 *acc, int nc, float *y, size_t ys, int first) {
    for (int c = 0; c < nc; c++) {
        const float v = _mm512_reduce_add_ps(acc[c]);
        y[c * ys] = first ? v : y[c * ys] + v;
    }
}

/* ---- 32-element blocks against q8x32 ------------------------------------------------------
 * Blocks go in fours, one per 128-bit lane: one register holds elements 0..15 of four blocks,
 * another elements 16..31, so that the integer dot of a block lands in one lane's four int32
 * and a single conversion and FMA serve four blocks. The activations of a chunk of blocks are
 * rearranged that way once per call (shared by all weight rows of the tile), with their scales
 * spread over their lanes and the per-block offset term; each weight quad is then unpacked
 * once and meets up to four activation rows. */

#define CHUNK 64 /* blocks per chunk: the rearranged activations of four rows stay in L1 */

typedef struct {
    __m512i lo[CHUNK / 4];  /* elements 0..15 of each block (Q8_0: plus 128, the unsigned side) */
    __m512i hi[CHUNK / 4];  /* elements 16..31 */
    __m512 d[CHUNK / 4];    /* x.d over each block's four lanes; 0 for a missing block */
    __m512i off[CHUNK / 4]; /* Q4_0 / Q5_0: -offset * (sums of 4 quants), the integer start */
    __m512 s[CHUNK / 4];    /* Q4_1: x.s / 4 over each block's lanes, the minimum's partner */
} act_chunk;

/* Four 16-byte pieces p[0..3] as the four 128-bit lanes of one register. */
TS_INLINE __m512i load_quad(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p1), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* Float lanes 4k..4k+3 = lane 2k + odd of the eight in f. */
TS_INLINE __m512 spread4(__m256 f, int odd) {
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(odd),
                                         _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6));
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(f));
}

TS_INLINE void act_prepare(int type, const ts_block_q8x32 *x, int nbc, act_chunk *a) {
    static const int8_t zero[TS_QK] = {0};
    for (int g = 0; 4 * g < nbc; g++) {
        const int8_t *q[4];
        float ds[8];
        for (int k = 0; k < 4; k++) {
            const int i = 4 * g + k;
            q[k] = i < nbc ? x[i].qs : zero;
            ds[2 * k] = i < nbc ? x[i].d : 0.0f;
            ds[2 * k + 1] = i < nbc ? x[i].s * 0.25f : 0.0f;
        }
        __m512i lo = load_quad((const uint8_t *)q[0], (const uint8_t *)q[1], (const uint8_t *)q[2],
                               (const uint8_t *)q[3]);
        __m512i hi = load_quad((const uint8_t *)q[0] + 16, (const uint8_t *)q[1] + 16,
                               (const uint8_t *)q[2] + 16, (const uint8_t *)q[3] + 16);
        const __m256 dsv = _mm256_loadu_ps(ds);
        a->d[g] = spread4(dsv, 0);
        if (type == TS_TYPE_Q4_1) a->s[g] = spread4(dsv, 1);
        if (type == TS_TYPE_Q4_0 || type == TS_TYPE_Q5_0) {
            const __m512i off = _mm512_set1_epi8(type == TS_TYPE_Q4_0 ? 8 : 16);
            const __m512i sum = dot_u8s8(dot_u8s8(_mm512_setzero_si512(), off, lo), off, hi);
            a->off[g] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
        }
        if (type == TS_TYPE_Q8_0) {
            lo = _mm512_xor_si512(lo, _mm512_set1_epi8((char)0x80));
            hi = _mm512_xor_si512(hi, _mm512_set1_epi8((char)0x80));
        }
        a->lo[g] = lo;
        a->hi[g] = hi;
    }
}

/* Bits 16h .. 16h+15 of each of the four qh words, as one 64-bit byte mask. */
TS_INLINE __mmask64 q5_mask(const uint32_t qh[4], int h) {
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) m |= (uint64_t)((qh[k] >> (16 * h)) & 0xFFFF) << (16 * k);
    return (__mmask64)m;
}

TS_INLINE void gemm_q8x32_rows(int type, int nc, int nbc, int nr, const uint8_t *w, size_t w_stride,
                               const act_chunk *act, float *y, size_t ys, int first) {
    const int bs = type == TS_TYPE_Q4_0 ? 18 : type == TS_TYPE_Q4_1 ? 20 : type == TS_TYPE_Q5_0 ? 22 : 34;
    const int qs = type == TS_TYPE_Q4_0 || type == TS_TYPE_Q8_0 ? 2 : type == TS_TYPE_Q4_1 ? 4 : 6;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = w + (size_t)r * w_stride;
        __m512 acc[TS_GEMM_MAX_COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
        for (int g = 0; 4 * g < nbc; g++) {
            /* A missing block repeats the last one; its activation scale is 0. */
            const uint8_t *b[4];
            for (int k = 0; k < 4; k++) b[k] = wr + (size_t)(4 * g + k < nbc ? 4 * g + k : nbc - 1) * bs;
            __m512i lo, hi;
            if (type == TS_TYPE_Q8_0) {
                lo = load_quad(b[0] + qs, b[1] + qs, b[2] + qs, b[3] + qs);
                hi = load_quad(b[0] + qs + 16, b[1] + qs + 16, b[2] + qs + 16, b[3] + qs + 16);
            } else {
                /* Low nibbles are elements 0..15, high nibbles 16..31. */
                const __m512i v = load_quad(b[0] + qs, b[1] + qs, b[2] + qs, b[3] + qs);
                lo = _mm512_and_si512(v, m4);
                hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            if (type == TS_TYPE_Q5_0) {
                /* qh bit i is the fifth bit of element i. */
                const uint32_t qh[4] = {load_u32(b[0] + 2), load_u32(b[1] + 2), load_u32(b[2] + 2),
                                        load_u32(b[3] + 2)};
                lo = _mm512_mask_add_epi8(lo, q5_mask(qh, 0), lo, _mm512_set1_epi8(16));
                hi = _mm512_mask_add_epi8(hi, q5_mask(qh, 1), hi, _mm512_set1_epi8(16));
            }
            /* [d, m] of each block (Q4_1), else d and two quant bytes. */
            const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32((int)load_u32(b[0]), (int)load_u32(b[1]),
                                                             (int)load_u32(b[2]), (int)load_u32(b[3])));
            const __m512 dw = spread4(dm, 0);
            const __m512 mw = spread4(dm, 1);
            /* Q8_0: the activations carry +128; take 128 * (sums of 4 weight quants) back out. */
            __m512i corr = _mm512_setzero_si512();
            if (type == TS_TYPE_Q8_0) {
                const __m512i k128 = _mm512_set1_epi8((char)0x80);
                corr = _mm512_sub_epi32(corr, dot_u8s8(dot_u8s8(corr, k128, lo), k128, hi));
            }
            for (int c = 0; c < nc; c++) {
                const act_chunk *x = &act[c];
                __m512i dot;
                if (type == TS_TYPE_Q8_0) dot = dot_u8s8(dot_u8s8(corr, x->lo[g], lo), x->hi[g], hi);
                else if (type == TS_TYPE_Q4_1) dot = dot_u8s8(dot_u8s8(corr, lo, x->lo[g]), hi, x->hi[g]);
                else dot = dot_u8s8(dot_u8s8(x->off[g], lo, x->lo[g]), hi, x->hi[g]);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, x->d[g]), acc[c]);
                if (type == TS_TYPE_Q4_1) acc[c] = _mm512_fmadd_ps(mw, x->s[g], acc[c]);
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

/* ---- k-quants against q8k --------------------------------------------------------------------
 * A super-block's quants become unsigned bytes in element order, 64 to a register; maddubs
 * pairs them with the activations (below int16 saturation: u <= 63, |x| <= 127) and dpwssd
 * applies each 16- or 32-element sub-block's integer scale. Weight unpacking and scales are
 * shared by all activation rows of the tile; only d * x.d is per row and super-block. */

TS_INLINE const ts_block_q8k *act_k(const void *x, size_t x_stride, int c) {
    return (const ts_block_q8k *)((const char *)x + (size_t)c * x_stride);
}

/* Q4_K's packed 6-bit scales and mins -> int16 [sc0..sc7, m0..m7]. Bytes 0..3 hold sc0..3 and
 * m0..3 are bytes 4..7 (low 6 bits each); sc4..7 and m4..7 take their low 4 bits from the
 * nibbles of bytes 8..11 and their top 2 bits from the spare top bits of bytes 0..7. */
TS_INLINE __m256i q4_K_scales16(const uint8_t *raw) {
    const uint32_t m6 = 0x3F3F3F3Fu, m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const uint32_t a = load_u32(raw), b = load_u32(raw + 4), c = load_u32(raw + 8);
    const uint32_t sc_lo = a & m6, sc_hi = (c & m4) | ((a >> 6) & m2) << 4;
    const uint32_t mn_lo = b & m6, mn_hi = ((c >> 4) & m4) | ((b >> 6) & m2) << 4;
    return _mm256_cvtepu8_epi16(_mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)mn_lo, (int)mn_hi));
}

/* int16 lanes 0..15 = lane lo of v, 16..31 = lane hi. */
TS_INLINE __m512i spread16(__m256i v, int lo, int hi) {
    const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(v));
}

TS_INLINE void gemm_q4_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    for (int r = 0; r < nr; r++) {
        const ts_block_q4_K *wr = (const ts_block_q4_K *)((const char *)w + (size_t)r * w_stride);
        __m512 acc[TS_GEMM_MAX_COLS];
        __m256 accm[TS_GEMM_MAX_COLS];
        for (int c = 0; c < nc; c++) {
            acc[c] = _mm512_setzero_ps();
            accm[c] = _mm256_setzero_ps();
        }
        for (int64_t b = 0; b < nb; b++) {
            const __m256i sm = q4_K_scales16(wr[b].scales);
            /* The min of 32 elements, once per 16 of them to meet bsums: m0 m0 m1 m1 .. m7 m7. */
            const __m256i mins = _mm256_permutexvar_epi16(
                _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), sm);
            /* Elements 64j .. 64j+31 are the low nibbles of qs[32j ..], the next 32 the high ones. */
            __m512i u[4], sc[4];
            for (int j = 0; j < 4; j++) {
                const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr[b].qs + 32 * j)));
                u[j] = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0)),
                                        _mm512_set1_epi8(0x0F));
                sc[j] = spread16(sm, 2 * j, 2 * j + 1);
            }
            const float d = f16_at(&wr[b].d), dmin = f16_at(&wr[b].dmin);
            for (int c = 0; c < nc; c++) {
                const ts_block_q8k *xb = act_k(x, x_stride, c) + b;
                __m512i isum = _mm512_setzero_si512();
                for (int j = 0; j < 4; j++)
                    isum = dot_s16(isum, _mm512_maddubs_epi16(u[j], _mm512_loadu_si512(xb->qs + 64 * j)), sc[j]);
                const __m256i imin = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)xb->bsums));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * xb->d), acc[c]);
                accm[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_set1_ps(dmin * xb->d), accm[c]);
            }
        }
        for (int c = 0; c < nc; c++) {
            const __m256 lo = _mm256_sub_ps(_mm512_castps512_ps256(acc[c]), accm[c]);
            acc[c] = _mm512_insertf32x8(acc[c], lo, 0);
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

TS_INLINE void gemm_q6_K_rows(int nc, int64_t nb, int nr, const void *w, size_t w_stride, const void *x,
                              size_t x_stride, float *y, size_t ys) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    for (int r = 0; r < nr; r++) {
        const ts_block_q6_K *wr = (const ts_block_q6_K *)((const char *)w + (size_t)r * w_stride);
        __m512 acc[TS_GEMM_MAX_COLS];
        for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wr[b].scales));
            /* Quants are stored as u - 32: the -32 * sum(scale * bsums) term starts each sum. */
            const __m256i bias = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
            /* Elements 128j + 32k + i: 4 bits from ql[64j + 32(k&1) + i] (high nibble when k >= 2),
             * 2 bits from qh[32j + i] at bit 2k. u[2j] holds k = 0, 1 and u[2j+1] k = 2, 3. */
            __m512i u[4], sc[4];
            for (int j = 0; j < 2; j++) {
                const __m512i ql = _mm512_loadu_si512(wr[b].ql + 64 * j);
                const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr[b].qh + 32 * j)));
                const __m512i h01 = _mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4));
                const __m512i h23 = _mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
                u[2 * j] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(h01, m30));
                u[2 * j + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_and_si512(h23, m30));
            }
            /* int16 lane l of chunk t covers elements 64t + 2l, 2l+1: scale 4t + l/8. */
            for (int t = 0; t < 4; t++) {
                const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * t)),
                    _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                                       17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                                       1, 0), 3));
                sc[t] = _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16));
            }
            const float d = f16_at(&wr[b].d);
            for (int c = 0; c < nc; c++) {
                const ts_block_q8k *xb = act_k(x, x_stride, c) + b;
                __m512i isum = _mm512_zextsi256_si512(
                    _mm256_madd_epi16(bias, _mm256_loadu_si256((const __m256i *)xb->bsums)));
                for (int t = 0; t < 4; t++)
                    isum = dot_s16(isum, _mm512_maddubs_epi16(u[t], _mm512_loadu_si512(xb->qs + 64 * t)), sc[t]);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * xb->d), acc[c]);
            }
        }
        store_cols(acc, nc, y + r, ys, 1);
    }
}

/* A constant column count lets the accumulators live in registers. */
#define TS_GEMM_K(name, rows_fn)                                                                         \
    static void name(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,           \
                     size_t x_stride, float *y, size_t y_stride) {                                       \
        const int64_t nb = n / TS_QK_K;                                                                  \
        switch (nc) {                                                                                    \
        case 1: rows_fn(1, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                        \
        case 2: rows_fn(2, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                        \
        case 3: rows_fn(3, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                        \
        default: rows_fn(4, nb, nr, w, w_stride, x, x_stride, y, y_stride); break;                       \
        }                                                                                                \
    }

TS_GEMM_K(gemm_q4_K, gemm_q4_K_rows)
TS_GEMM_K(gemm_q6_K, gemm_q6_K_rows)

#ifdef TS_VNNI
void ts_register_avx512vnni_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
    k->gemm[TS_TYPE_Q8_0] = gemm_q8_0;
}
#else
void ts_register_avx512_gemm(ts_kernels *k) {
    k->gemm[TS_TYPE_Q4_0] = gemm_q4_0;
    k->gemm[TS_TYPE_Q4_1] = gemm_q4_1;
    k->gemm[TS_TYPE_Q5_0] = gemm_q5_0;
    k->gemm[TS_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[TS_TYPE_Q6_K] = gemm_q6_K;
}
#endif
