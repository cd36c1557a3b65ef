/* GGUF tensor types and their quantized block layouts, declared once with size checks. */
#ifndef TS_TYPES_H
#define TS_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values are the GGML type ids stored in GGUF tensor infos. */
typedef enum {
    TS_TYPE_F32 = 0,
    TS_TYPE_F16 = 1,
    TS_TYPE_Q4_0 = 2,
    TS_TYPE_Q4_1 = 3,
    TS_TYPE_Q5_0 = 6,
    TS_TYPE_Q5_1 = 7,
    TS_TYPE_Q8_0 = 8,
    TS_TYPE_Q8_1 = 9,
    TS_TYPE_Q2_K = 10,
    TS_TYPE_Q3_K = 11,
    TS_TYPE_Q4_K = 12,
    TS_TYPE_Q5_K = 13,
    TS_TYPE_Q6_K = 14,
    TS_TYPE_Q8_K = 15,
    TS_TYPE_IQ2_XXS = 16,
    TS_TYPE_IQ2_XS = 17,
    TS_TYPE_IQ3_XXS = 18,
    TS_TYPE_IQ1_S = 19,
    TS_TYPE_IQ4_NL = 20,
    TS_TYPE_IQ3_S = 21,
    TS_TYPE_IQ2_S = 22,
    TS_TYPE_IQ4_XS = 23,
    TS_TYPE_IQ1_M = 29,
    TS_TYPE_BF16 = 30,
    TS_TYPE_MXFP4 = 39,
    TS_TYPE_COUNT = 40
} ts_type;

typedef uint16_t ts_f16;  /* IEEE half, bit pattern */
typedef uint16_t ts_bf16; /* bfloat16, bit pattern */

#define TS_QK 32   /* elements per block of the legacy formats */
#define TS_QK_K 256 /* elements per super-block of the k-quants */
#define TS_K_SCALE_SIZE 12

typedef struct { ts_f16 d; uint8_t qs[TS_QK / 2]; } ts_block_q4_0;
typedef struct { ts_f16 d; ts_f16 m; uint8_t qs[TS_QK / 2]; } ts_block_q4_1;
typedef struct { ts_f16 d; uint8_t qh[4]; uint8_t qs[TS_QK / 2]; } ts_block_q5_0;
typedef struct { ts_f16 d; ts_f16 m; uint8_t qh[4]; uint8_t qs[TS_QK / 2]; } ts_block_q5_1;
typedef struct { ts_f16 d; int8_t qs[TS_QK]; } ts_block_q8_0;
typedef struct { ts_f16 d; uint8_t qs[TS_QK / 2]; } ts_block_iq4_nl;
/* OCP microscaling FP4: e is a power-of-two scale (E8M0), qs e2m1 codes in IQ4_NL's nibble order. */
typedef struct { uint8_t e; uint8_t qs[TS_QK / 2]; } ts_block_mxfp4;

typedef struct {
    uint8_t scales[TS_QK_K / 16]; /* 4-bit scale and 4-bit min per 16 values */
    uint8_t qs[TS_QK_K / 4];
    ts_f16 d;
    ts_f16 dmin;
} ts_block_q2_K;
typedef struct {
    uint8_t hmask[TS_QK_K / 8];
    uint8_t qs[TS_QK_K / 4];
    uint8_t scales[12];  /* 6-bit scales, packed */
    ts_f16 d;
} ts_block_q3_K;
typedef struct {
    ts_f16 d;
    ts_f16 dmin;
    uint8_t scales[TS_K_SCALE_SIZE]; /* 6-bit scales and mins, packed */
    uint8_t qs[TS_QK_K / 2];
} ts_block_q4_K;
typedef struct {
    ts_f16 d;
    ts_f16 dmin;
    uint8_t scales[TS_K_SCALE_SIZE];
    uint8_t qh[TS_QK_K / 8];
    uint8_t qs[TS_QK_K / 2];
} ts_block_q5_K;
typedef struct {
    uint8_t ql[TS_QK_K / 2];
    uint8_t qh[TS_QK_K / 4];
    int8_t scales[TS_QK_K / 16];
    ts_f16 d;
} ts_block_q6_K;
typedef struct {
    ts_f16 d;
    uint16_t scales_h;
    uint8_t scales_l[TS_QK_K / 64];
    uint8_t qs[TS_QK_K / 2];
} ts_block_iq4_xs;

/* The codebook i-quants (grids in ts/iq_grids.h). Elements come in groups of 8 (IQ3: 4) that
 * one grid index names; signs are per element, scales per sub-block of 32 (IQ1_M, IQ2_XS,
 * IQ2_S: 16) elements. */
typedef struct {
    ts_f16 d;
    /* per 32 elements two uint32: four 8-bit grid indices; four 7-bit ksigns indices, then a
     * 4-bit scale s (d * (0.5 + s) / 4) in bits 28-31 */
    uint16_t qs[TS_QK_K / 8];
} ts_block_iq2_xxs;
typedef struct {
    ts_f16 d;
    uint16_t qs[TS_QK_K / 8];       /* per 8 elements: 9-bit grid index, 7-bit ksigns index above it */
    uint8_t scales[TS_QK_K / 32];   /* a nibble per 16 elements, low first: d * (0.5 + s) / 4 */
} ts_block_iq2_xs;
typedef struct {
    ts_f16 d;
    uint8_t qs[TS_QK_K / 8];        /* low 8 bits of the grid index of each 8 elements */
    uint8_t signs[TS_QK_K / 8];     /* a sign bit per element */
    uint8_t qh[TS_QK_K / 32];       /* bits 8-9 of the indices of 32 elements, 2 bits per group */
    uint8_t scales[TS_QK_K / 32];   /* a nibble per 16 elements, low first: d * (0.5 + s) / 4 */
} ts_block_iq2_s;
typedef struct {
    ts_f16 d;
    uint8_t qs[TS_QK_K / 4];        /* 8-bit grid index of each 4 elements */
    /* per 32 elements a uint32: four 7-bit ksigns indices, then the scale s (d * (0.5 + s) / 2) */
    uint8_t sas[TS_QK_K / 8];
} ts_block_iq3_xxs;
typedef struct {
    ts_f16 d;
    uint8_t qs[TS_QK_K / 4];        /* low 8 bits of the grid index of each 4 elements */
    uint8_t qh[TS_QK_K / 32];       /* bit 8 of the indices, one byte per 32 elements */
    uint8_t signs[TS_QK_K / 8];     /* a sign bit per element */
    uint8_t scales[TS_QK_K / 64];   /* a nibble per 32 elements, low first: d * (1 + 2s) */
} ts_block_iq3_s;
typedef struct {
    ts_f16 d;
    uint8_t qs[TS_QK_K / 8];        /* low 8 bits of the grid index of each 8 elements */
    /* per 32 elements: bits 8-10 of the four indices (3 bits each), the scale s (d * (2s + 1))
     * in bits 12-14, and in bit 15 the sign of the offset 1/8 added to every value */
    uint16_t qh[TS_QK_K / 32];
} ts_block_iq1_s;
typedef struct {
    uint8_t qs[TS_QK_K / 8];        /* low 8 bits of the grid index of each 8 elements */
    uint8_t qh[TS_QK_K / 16];       /* a nibble per 8 elements: index bits 8-10, the offset's sign */
    /* four uint16: 3-bit scales per 16 elements (d * (2s + 1)) in bits 0-11; their top nibbles
     * together are the f16 d */
    uint8_t scales[TS_QK_K / 32];
} ts_block_iq1_m;

/* Activation formats: the right-hand side of every quantized dot product.
 * q8x32 pairs with Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL/MXFP4; s = d * sum(qs) serves the
 * formats with a minimum (Q4_1/Q5_1) without a second pass over qs. d is rounded to half
 * precision, as ggml's Q8_0/Q8_1 blocks store it, and qs are x / d rounded half to even, as
 * ggml's x86 and ARM quantizers round them, so that results track llama.cpp's (the product of
 * that d and an integer sum of 32 quants is exact in float). */
typedef struct { float d; float s; int8_t qs[TS_QK]; } ts_block_q8x32;
/* q8k pairs with the k-quants and the 256-element i-quants; bsums[j] = sum of qs[16j .. 16j+15]. */
typedef struct { float d; int8_t qs[TS_QK_K]; int16_t bsums[TS_QK_K / 16]; } ts_block_q8k;

_Static_assert(sizeof(ts_block_q4_0) == 18, "q4_0 size");
_Static_assert(sizeof(ts_block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(ts_block_q5_0) == 22, "q5_0 size");
_Static_assert(sizeof(ts_block_q5_1) == 24, "q5_1 size");
_Static_assert(sizeof(ts_block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(ts_block_iq4_nl) == 18, "iq4_nl size");
_Static_assert(sizeof(ts_block_mxfp4) == 17, "mxfp4 size");
_Static_assert(sizeof(ts_block_q2_K) == 84, "q2_K size");
_Static_assert(sizeof(ts_block_q3_K) == 110, "q3_K size");
_Static_assert(sizeof(ts_block_q4_K) == 144, "q4_K size");
_Static_assert(sizeof(ts_block_q5_K) == 176, "q5_K size");
_Static_assert(sizeof(ts_block_q6_K) == 210, "q6_K size");
_Static_assert(sizeof(ts_block_iq4_xs) == 136, "iq4_xs size");
_Static_assert(sizeof(ts_block_iq2_xxs) == 66, "iq2_xxs size");
_Static_assert(sizeof(ts_block_iq2_xs) == 74, "iq2_xs size");
_Static_assert(sizeof(ts_block_iq2_s) == 82, "iq2_s size");
_Static_assert(sizeof(ts_block_iq3_xxs) == 98, "iq3_xxs size");
_Static_assert(sizeof(ts_block_iq3_s) == 110, "iq3_s size");
_Static_assert(sizeof(ts_block_iq1_s) == 50, "iq1_s size");
_Static_assert(sizeof(ts_block_iq1_m) == 56, "iq1_m size");
_Static_assert(sizeof(ts_block_q8x32) == 40, "q8x32 size");
_Static_assert(sizeof(ts_block_q8k) == 292, "q8k size");

/* Bytes per block of the 32-element formats, as a constant where the type is one (the gemm
 * kernels fold it into their address arithmetic); 0 for other types. */
static inline int ts_q8x32_block_bytes(int type) {
    switch (type) {
    case TS_TYPE_Q4_0: return (int)sizeof(ts_block_q4_0);
    case TS_TYPE_Q4_1: return (int)sizeof(ts_block_q4_1);
    case TS_TYPE_Q5_0: return (int)sizeof(ts_block_q5_0);
    case TS_TYPE_Q5_1: return (int)sizeof(ts_block_q5_1);
    case TS_TYPE_Q8_0: return (int)sizeof(ts_block_q8_0);
    case TS_TYPE_IQ4_NL: return (int)sizeof(ts_block_iq4_nl);
    case TS_TYPE_MXFP4: return (int)sizeof(ts_block_mxfp4);
    default: return 0;
    }
}

/* Which activation format a weight type's dot product consumes. */
typedef enum { TS_ACT_F32 = 0, TS_ACT_Q8X32 = 1, TS_ACT_Q8K = 2 } ts_act;

typedef struct {
    const char *name;
    int block_size;    /* elements per block */
    int type_size;     /* bytes per block */
    ts_act act;        /* activation format of vec_dot */
} ts_type_traits;

/* NULL name for ids that are not supported. */
const ts_type_traits *ts_type_traits_get(int type);

/* Bytes of one row of n elements, or 0 if n is not a whole number of blocks. */
size_t ts_row_size(int type, int64_t n);
/* Bytes of one activation row of n elements in the format `act`. */
size_t ts_act_row_size(ts_act act, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
