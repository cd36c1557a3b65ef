/* AVX-512: gemm tiles (one weight row block unpacked for several activation rows).
 * Compiled twice like quants.c: plain, and with TS_VNNI for vpdpbusd. */
#include "ts/kernels.h"

#ifdef TS_VNNI
void ts_register_avx512vnni_gemm(ts_kernels *k) { (void)k; }
#else
void ts_register_avx512_gemm(ts_kernels *k) { (void)k; }
#endif
