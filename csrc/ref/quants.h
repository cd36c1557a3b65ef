/* Shared pieces of the scalar quantization kernels split over csrc/ref/quants*.c. */
#ifndef TS_REF_QUANTS_H
#define TS_REF_QUANTS_H

#include "ts/kernels.h"

/* The 16 non-linear levels of IQ4_NL and IQ4_XS (GGML's kvalues_iq4nl). */
extern const int8_t ts_iq4nl_values[16];
/* MXFP4's e2m1 codes, doubled to integers (GGML's kvalues_mxfp4; the scale is halved to match). */
extern const int8_t ts_mxfp4_values[16];

/* Fill the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4). */
void ts_register_scalar_legacy(ts_kernels *k);
/* Fill the 256-element super-block formats (Q2_K .. Q6_K, IQ4_XS). */
void ts_register_scalar_kquants(ts_kernels *k);
/* Fill the codebook i-quants (IQ2_XXS .. IQ1_M). */
void ts_register_scalar_iquants(ts_kernels *k);

#endif
