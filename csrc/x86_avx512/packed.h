/* AVX-512: reading one block of 16 repacked rows (ts/repack.h) into registers, shared by the
 * packed gemm's register paths (gemm_packed.c, gemm_packed_k.c) and its panel path (gemm_panel.c). */
#ifndef TS_X86_AVX512_PACKED_H
#define TS_X86_AVX512_PACKED_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quants.h"
#include "ts/repack.h"

/* The packed gemms ask for the lines a few blocks ahead into L1, as they have, and for the lines
 * this many bytes ahead into L2: with several tokens a block takes long enough that the L1 requests
 * alone leave the stream idle between blocks. One thread, 896 x 4864 from memory, 4 tokens: Q4_1
 * 0.29 -> 0.25 ms, Q5_0 0.33 -> 0.25; a decode step of 2 sequences 14-27% less time (SmolLM2,
 * Gemma 3, Qwen2.5), of 4 and 8 8-23% (16 KB ahead did no better). */
#define TS_PACKED_L2_AHEAD 8192

/* Tokens from which a packed gemm goes to gemm_panel.c's panels instead of passes of 8 tokens over
 * each group of 16 rows (gemm_packed.c, gemm_packed_k.c). A panel decodes 32 rows of a chunk once for all
 * tokens, but it reads them in one burst and then computes with no load in flight, while the passes
 * stream the weights under their products. In cache the two are even from 13 to 64 tokens (AMD EPYC
 * Zen 4, 1 thread, 896 x 4864); from memory the passes take 0.4-0.7x the panels' time at 13-16 tokens
 * (Gemma 3's 640 x 262144 Q8_0 head, 13 tokens: 13.8 against 34.2 ms) and 0.7-0.9x at 32. In the
 * models, 2 threads, a step of 16 rows: Gemma 3 31-37 -> 23-24 ms, Qwen2.5 55-64 -> 38-42 ms; 48 rows
 * even or better. An Intel Xeon had measured panels ahead from 13 tokens, in cache only. */
#define TS_PACKED_PANEL_FROM 49

/* Asks the L2 for [p + TS_PACKED_L2_AHEAD, + bytes): prefetches never fault, so past a matrix's end
 * is harmless. */
TS_ALWAYS_INLINE void ts_packed_prefetch_l2(const uint8_t *p, int bytes) {
    for (int l = 0; l < bytes; l += 64) _mm_prefetch((const char *)p + TS_PACKED_L2_AHEAD + l, _MM_HINT_T2);
}

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

/* ---- Q4_K and Q6_K: a packed super-block is its 4-byte pieces, piece p of row r in lane r of
 * one register (Q4_K: the p-th; Q6_K: ts_repack_q6_K_slot's) ------------------------------- */

TS_ALWAYS_INLINE __m512i ts_packed_piece(int type, const uint8_t *blk, int p) {
    return _mm512_loadu_si512(blk + 64 * (type == TS_TYPE_Q6_K ? ts_repack_q6_K_slot(p) : p));
}

/* q[j] lane r: unsigned quants 32 * run + 4j .. 32 * run + 4j + 3 (run < 8) of row r (Q6_K: q + 32). */
TS_ALWAYS_INLINE void ts_packed_k_quants(int type, const uint8_t *blk, int run, __m512i q[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == TS_TYPE_Q4_K) {
        /* Run 2i in the low nibbles of pieces 4 + 8i .. 4 + 8i + 7, run 2i + 1 in their high ones. */
        for (int j = 0; j < 8; j++) {
            const __m512i v = ts_packed_piece(type, blk, 4 + 8 * (run / 2) + j);
            q[j] = _mm512_and_si512(run % 2 ? _mm512_srli_epi16(v, 4) : v, m4);
        }
        return;
    }
    /* Q6_K run 4h + k: the low bits in ql piece 16h + 8(k & 1) + j (high nibbles when k >= 2), the
     * top two at bits 2k of qh piece 32 + 8h + j. */
    const int h = run / 4, k = run % 4;
    for (int j = 0; j < 8; j++) {
        const __m512i l = ts_packed_piece(type, blk, 16 * h + 8 * (k & 1) + j), qh = ts_packed_piece(type, blk, 32 + 8 * h + j);
        const __m512i lo = _mm512_and_si512(k >= 2 ? _mm512_srli_epi16(l, 4) : l, m4);
        const __m512i top = k == 0 ? _mm512_slli_epi16(qh, 4) : k == 1 ? _mm512_slli_epi16(qh, 2)
                          : k == 2 ? qh : _mm512_srli_epi16(qh, 2);
        q[j] = ts_avx512_and_or(top, _mm512_set1_epi8(0x30), lo);
    }
}

/* Byte k of each lane of v as a float: unsigned, or (sign) int8. */
TS_ALWAYS_INLINE __m512 ts_packed_byte(__m512i v, int k, int sign) {
    if (sign) return _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * k), 24));
    return _mm512_cvtepi32_ps(k == 3 ? _mm512_srli_epi32(v, 24) : _mm512_and_si512(_mm512_srli_epi32(v, 8 * k), _mm512_set1_epi32(0xFF)));
}

/* The 16 rows' d and (Q4_K) -dmin. Q6_K's d ends the block: read it after the quants, in stream order. */
TS_ALWAYS_INLINE void ts_packed_k_d(int type, const uint8_t *blk, __m512 *d, __m512 *dm) {
    if (type == TS_TYPE_Q6_K) {
        *d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + TS_PACK_ROWS * offsetof(ts_block_q6_K, d))));
        *dm = _mm512_setzero_ps();
        return;
    }
    const __m512i g = ts_packed_piece(type, blk, 0); /* d, dmin */
    *d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
    *dm = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dmin), _mm512_set1_epi32(INT32_MIN)));
}

/* sc[b] lane r: sub-block b's scale of row r as a float (Q4_K: b < 8, and its min at sc[8 + b];
 * Q6_K: b < 16). */
TS_ALWAYS_INLINE void ts_packed_k_scales(int type, const uint8_t *blk, __m512 sc[16]) {
    if (type == TS_TYPE_Q6_K) {
        for (int i = 0; i < 4; i++) {
            const __m512i v = ts_packed_piece(type, blk, 48 + i);
            for (int k = 0; k < 4; k++) sc[4 * i + k] = ts_packed_byte(v, k, 1);
        }
        return;
    }
    /* Bytes 0..3 of each row's scales hold sc0..3, 4..7 m0..3 (low 6 bits); sc4..7 and m4..7
     * take their low 4 bits from the nibbles of bytes 8..11 and their top 2 from the top of 0..7. */
    const __m512i a = ts_packed_piece(type, blk, 1), b = ts_packed_piece(type, blk, 2), c = ts_packed_piece(type, blk, 3);
    const __m512i m6 = _mm512_set1_epi8(0x3F), n4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03);
    const __m512i v[4] = {_mm512_and_si512(a, m6),
                          ts_avx512_and_or(c, n4, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a, 6), m2), 4)),
                          _mm512_and_si512(b, m6),
                          ts_avx512_and_or(_mm512_srli_epi32(c, 4), n4, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b, 6), m2), 4))};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++) sc[4 * i + k] = ts_packed_byte(v[i], k, 0);
}

/* gemm_panel.c's panel path over packed weights (nr a multiple of 16), for calls with many tokens. */
void ts_avx512vnni_gemm_panels_packed(int type, int64_t n, int nr, int nc, const void *w, size_t w_stride,
                                      const void *x, size_t x_stride, float *y, size_t y_stride);

/* gemm_packed_k.c's entries of the table's gemm_packed (Q4_K, Q6_K). */
void ts_register_avx512vnni_packed_k(ts_kernels *k);

#endif
