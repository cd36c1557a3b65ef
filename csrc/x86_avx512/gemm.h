/* AVX-512: what the gemm's files share (gemm_panel.c, gemm_few.c, gemm_unpack.h, and for its
 * chunk and q8k sums gemm_packed_k.c): the chunk geometry, the types and their predicates, the
 * activations' block sums and the 16x16 transpose. gemm_panel.c and gemm_few.c are compiled
 * like quants.c, once plain and once with TS_VNNI. */
#ifndef TS_X86_AVX512_GEMM_H
#define TS_X86_AVX512_GEMM_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quants.h"
#include "ts/kernels.h"

/* acc + sums of four u8*s8 products per int32 lane. Without VNNI they pass through int16
 * (maddubs saturates): only for unsigned quants below 64. */
#ifdef TS_VNNI
TS_ALWAYS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }
#else
TS_ALWAYS_INLINE __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
#endif

TS_ALWAYS_INLINE float f16_at(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

#define PANEL 32          /* weight rows unpacked together: two registers of 16 */
#define KC 512            /* elements per chunk: the unpacked panel (16 KB) stays in L1 */
#define MAX_BLK (KC / 16) /* blocks per chunk at the smallest block (16: Q2_K, Q3_K, Q6_K) */
#define FEW_MAX 16        /* tokens the register paths take in one pass over the weights */

/* The types each build's gemm takes, by family, as X(name) for TS_TYPE_##name. Q8_0's and
 * IQ4_NL's unsigned quants reach 255: beyond maddubs' int16 range, so VNNI only. */
#ifdef TS_VNNI
#define TS_GEMM_LEGACY(X) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(MXFP4) X(Q8_0) X(IQ4_NL)
#else
#define TS_GEMM_LEGACY(X) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(MXFP4)
#endif
#define TS_GEMM_KQUANT(X) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K)
/* Those with a register path for few tokens (gemm_few.c). */
#define TS_GEMM_FEW(X) TS_GEMM_LEGACY(X) X(Q4_K) X(Q5_K) X(Q6_K)

/* Q4_K and Q5_K: eight 6-bit scales and mins per super-block. */
TS_ALWAYS_INLINE int is_k45(int type) { return type == TS_TYPE_Q4_K || type == TS_TYPE_Q5_K; }

/* Formats with a minimum per block (mw). */
TS_ALWAYS_INLINE int has_min(int type) {
    return type == TS_TYPE_Q4_1 || type == TS_TYPE_Q5_1 || type == TS_TYPE_Q2_K || is_k45(type);
}

/* Quant offset folded into the integer sums; 0 where a minimum or none applies. */
TS_ALWAYS_INLINE int quant_offset(int type) {
    return type == TS_TYPE_Q4_0 ? 8 : type == TS_TYPE_Q5_0 ? 16 : type == TS_TYPE_Q8_0 || type == TS_TYPE_IQ4_NL ? 128
         : type == TS_TYPE_MXFP4 ? 12 : type == TS_TYPE_Q3_K ? 4 : type == TS_TYPE_Q6_K ? 32 : 0;
}

/* Elements per scale block and the activation format of each weight type. */
TS_ALWAYS_INLINE int block_elems(int type) {
    return type == TS_TYPE_Q2_K || type == TS_TYPE_Q3_K || type == TS_TYPE_Q6_K ? 16 : 32;
}
TS_ALWAYS_INLINE int act_is_q8k(int type) { return is_k45(type) || block_elems(type) == 16; }

/* 16 rows of 16 int32 -> 16 columns: c[j] lane i = r[i] lane j. */
TS_ALWAYS_INLINE void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    /* r[4k + e], 128-bit lane L: column 4L + e of rows 4k .. 4k + 3. */
    for (int k = 0; k < 4; k++) {
        r[4 * k + 0] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        r[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        r[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        r[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    /* A 4x4 transpose of 128-bit lanes for each e. */
    for (int e = 0; e < 4; e++) {
        const __m512i v0 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0x44), v1 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0xEE);
        t[e] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        t[4 + e] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        t[8 + e] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        t[12 + e] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
    for (int j = 0; j < 16; j++) r[j] = t[j];
}

/* ---- activations: a token row's blocks and their sums --------------------------------------- */

/* Activation block b (global index) of a token row: its int8 quants, and its scale (q8x32:
 * followed by d * sum(xq); q8k: the super-block's). */
TS_ALWAYS_INLINE const uint8_t *act_qs(int type, const uint8_t *x, int64_t b) {
    if (!act_is_q8k(type)) return x + (size_t)b * sizeof(ts_block_q8x32) + offsetof(ts_block_q8x32, qs);
    const int64_t e = b * block_elems(type);
    return x + (size_t)(e / TS_QK_K) * sizeof(ts_block_q8k) + offsetof(ts_block_q8k, qs) + (size_t)(e % TS_QK_K);
}

TS_ALWAYS_INLINE const float *act_d(int type, const uint8_t *x, int64_t b) {
    if (!act_is_q8k(type)) return (const float *)(x + (size_t)b * sizeof(ts_block_q8x32));
    return (const float *)(x + (size_t)(b * block_elems(type) / TS_QK_K) * sizeof(ts_block_q8k));
}

/* What the k-quant gemms read of one q8k super-block besides its quants, from its bsums: Q4_K /
 * Q5_K's eight sub-block sum(xq) as floats, Q2_K's sixteen as floats, or Q3_K / Q6_K's sixteen
 * -offset * sum(xq) as int32. */
TS_ALWAYS_INLINE void q8k_sums(int type, const ts_block_q8k *xb, void *out) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
    if (is_k45(type))
        _mm256_storeu_ps((float *)out, _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, _mm256_set1_epi16(1))));
    else if (has_min(type))
        _mm512_storeu_ps((float *)out, _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(bs)));
    else
        _mm512_storeu_si512(out, _mm512_mullo_epi32(_mm512_cvtepi16_epi32(bs), _mm512_set1_epi32(-quant_offset(type))));
}

/* For one token row and blocks [b0, b0 + nblk): off, the integer -offset * sum(xq) that starts
 * each block's sum, or for Q2_K / Q4_K / Q5_K sx, the block's sum(xq). Writes whole runs of 16
 * (Q4_K, Q5_K: 8) entries. q8x32 keeps d * sum(xq), exact in float (d has half precision), so
 * s / d rounds back to the sum. */
TS_ALWAYS_INLINE void token_sums(int type, const uint8_t *x, int64_t b0, int nblk, int32_t *off, float *sx) {
    const int o = quant_offset(type);
    if (act_is_q8k(type)) {
        const int per_sb = TS_QK_K / block_elems(type);
        for (int b = 0; b < nblk; b += per_sb)
            q8k_sums(type, (const ts_block_q8k *)x + (b0 + b) / per_sb, has_min(type) ? (void *)(sx + b) : (void *)(off + b));
    } else if (o) {
        const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32((int)sizeof(ts_block_q8x32)));
        for (int b = 0; b < nblk; b += 16) {
            const __mmask16 m = nblk - b >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nblk - b)) - 1);
            const uint8_t *base = x + (size_t)(b0 + b) * sizeof(ts_block_q8x32);
            const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 1);
            const __m512 sd = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base + 4, 1);
            const __mmask16 nz = _mm512_mask_cmp_ps_mask(m, d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
            const __m512i sum = _mm512_maskz_cvtps_epi32(nz, _mm512_maskz_div_ps(nz, sd, d));
            _mm512_storeu_si512(off + b, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-o)));
        }
    }
}

/* The end of a chunk of KC elements in the few-token paths: the first chunk starts each token's
 * sum, later ones add to it in order (tile()'s order), and the accumulators restart. */
TS_ALWAYS_INLINE void few_chunk_end(__m512 *acc, __m512 *ysum, int nc, int first) {
    for (int t = 0; t < nc; t++) {
        ysum[t] = first ? acc[t] : _mm512_add_ps(acc[t], ysum[t]);
        acc[t] = _mm512_setzero_ps();
    }
}

/* The 16 rows' results from r0 (keep: those that exist) for each of nc tokens. */
TS_ALWAYS_INLINE void few_store(float *y, size_t y_stride, int r0, __mmask16 keep, const __m512 *ysum, int nc) {
    for (int t = 0; t < nc; t++) _mm512_mask_storeu_ps(y + (size_t)t * y_stride + r0, keep, ysum[t]);
}

/* gemm_few.c's register paths for nc <= FEW_MAX tokens; 0 where they do not serve (another
 * type, or no memory for the block sums): the caller then takes the panel path. */
int TS_AVX512_NAME(ts_avx512_gemm_few)(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                       const void *x, size_t x_stride, float *y, size_t y_stride);

#endif
