/* AVX-512 dot products of F32, F16 and BF16 weight rows with f32 activations. */
#include "quants.h"
#include "ts/prefetch.h"

/* Four independent accumulators of 16 lanes; the tail uses masked loads, which read nothing
 * beyond n. load(p, k) returns 16 weights as floats (masked lanes 0). */
#define TS_FLOAT_DOT(name, elem_t, load)                                                     \
    static void name(int64_t n, float *s, const void *vw, const void *vx) {                  \
        const elem_t *w = (const elem_t *)vw;                                                \
        const float *x = (const float *)vx;                                                  \
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                           \
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();                           \
        int64_t i = 0;                                                                       \
        for (; i + 64 <= n; i += 64) {                                                       \
            ts_prefetch_ahead(w + i, 64 * sizeof(elem_t), TS_PREFETCH_AHEAD);                 \
            a0 = _mm512_fmadd_ps(load(w + i, 0xFFFF), _mm512_loadu_ps(x + i), a0);           \
            a1 = _mm512_fmadd_ps(load(w + i + 16, 0xFFFF), _mm512_loadu_ps(x + i + 16), a1); \
            a2 = _mm512_fmadd_ps(load(w + i + 32, 0xFFFF), _mm512_loadu_ps(x + i + 32), a2); \
            a3 = _mm512_fmadd_ps(load(w + i + 48, 0xFFFF), _mm512_loadu_ps(x + i + 48), a3); \
        }                                                                                    \
        for (; i < n; i += 16) {                                                             \
            const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1); \
            a0 = _mm512_fmadd_ps(load(w + i, k), _mm512_maskz_loadu_ps(k, x + i), a0);        \
        }                                                                                    \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }

static inline __m512 load_f32(const float *p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }

static inline __m512 load_f16(const ts_f16 *p, __mmask16 k) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}

/* bfloat16 is the top half of a float. */
static inline __m512 load_bf16(const ts_bf16 *p, __mmask16 k) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

TS_FLOAT_DOT(vec_dot_f32, float, load_f32)
TS_FLOAT_DOT(vec_dot_f16, ts_f16, load_f16)
TS_FLOAT_DOT(vec_dot_bf16, ts_bf16, load_bf16)

void TS_AVX512_NAME(ts_avx512_register_float)(ts_kernels *k) {
    k->vec_dot[TS_TYPE_F32] = vec_dot_f32;
    k->vec_dot[TS_TYPE_F16] = vec_dot_f16;
    k->vec_dot[TS_TYPE_BF16] = vec_dot_bf16;
}
