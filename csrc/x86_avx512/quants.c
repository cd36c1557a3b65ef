/* AVX-512 (F/BW/VL/DQ): activation quantization and quantized dot products.
 * Compiled twice: once plain, once with TS_VNNI and -mavx512vnni (vpdpbusd). */
#include "ts/kernels.h"

#ifdef TS_VNNI
#define TS_REGISTER ts_register_avx512vnni
#else
#define TS_REGISTER ts_register_avx512
#endif

void TS_REGISTER(ts_kernels *k) { (void)k; }
