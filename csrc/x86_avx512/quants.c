/* AVX-512 (F/BW/VL/DQ) quantized kernels: fills the table from the per-family files.
 * Every quants*.c file is compiled twice: once plain, once with TS_VNNI and -mavx512vnni. */
#include "quants.h"

#ifdef TS_VNNI
#define TS_REGISTER ts_register_avx512vnni
#else
#define TS_REGISTER ts_register_avx512
#endif

void TS_REGISTER(ts_kernels *k) {
    TS_AVX512_NAME(ts_avx512_register_legacy)(k);
    TS_AVX512_NAME(ts_avx512_register_kquants)(k);
    TS_AVX512_NAME(ts_avx512_register_iquants)(k);
    TS_AVX512_NAME(ts_avx512_register_float)(k);
    TS_AVX512_NAME(ts_avx512_register_attention)(k);
}
