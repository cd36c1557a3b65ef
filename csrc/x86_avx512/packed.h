/* AVX-512: reading one block of 16 repacked rows (ts/repack.h) into registers, shared by the
 * packed gemm's register path (gemm_packed.c) and its panel path (gemm.c). */
#ifndef TS_X86_AVX512_PACKED_H
#define TS_X86_AVX512_PACKED_H

#include <immintrin.h>
#include <string.h>

#include "quants.h"
#include "ts/repack.h"

/* Bytes of a packed block before its quant registers: d[16], then Q4_1's m[16] or Q5_0's qh5[8]. */
TS_ALWAYS_INLINE int ts_packed_head_bytes(int type) {
    return type == TS_TYPE_Q4_1 ? 64 : type == TS_TYPE_Q5_0 ? 96 : 32;
}

/* q[j] lane r: unsigned quants 4j .. 4j + 3 of row r in the packed block at blk (Q8_0 + 128). */
TS_ALWAYS_INLINE void ts_packed_quants(int type, const uint8_t *blk, __m512i q[8]) {
    const uint8_t *qs = blk + ts_packed_head_bytes(type);
    if (type == TS_TYPE_Q8_0) {
        for (int j = 0; j < 8; j++) q[j] = _mm512_xor_si512(_mm512_loadu_si512(qs + 64 * j), _mm512_set1_epi8((char)0x80));
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int j = 0; j < 4; j++) {
        const __m512i v = _mm512_loadu_si512(qs + 64 * j);
        q[j] = _mm512_and_si512(v, m4);
        q[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    if (type == TS_TYPE_Q5_0) {
        uint64_t qh5[8];
        memcpy(qh5, blk + 32, sizeof qh5);
        for (int j = 0; j < 8; j++) q[j] = _mm512_mask_add_epi8(q[j], _cvtu64_mask64(qh5[j]), q[j], _mm512_set1_epi8(16));
    }
}

/* The 16 rows' d, and Q4_1's m (else zero), of the packed block at blk. */
TS_ALWAYS_INLINE __m512 ts_packed_d(const uint8_t *blk) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk)); }
TS_ALWAYS_INLINE __m512 ts_packed_m(int type, const uint8_t *blk) {
    return type == TS_TYPE_Q4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32))) : _mm512_setzero_ps();
}

/* gemm.c's panel path over packed weights (nr a multiple of 16), for calls with many tokens. */
void ts_avx512vnni_gemm_panels_packed(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                      const void *x, size_t x_stride, float *y, size_t y_stride);

#endif
