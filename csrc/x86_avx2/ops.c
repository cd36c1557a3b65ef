/* AVX2 + FMA + F16C: norms, activations, RoPE, softmax, conversions and attention. */
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "ts/attn_rows.h"
#include "ts/fp16.h"
#include "ts/kernels.h"

#define TS_SQRT_2_OVER_PI 0.79788456080286535588f
#define TS_GELU_COEF_A 0.044715f

/* ---- helpers ---- */

/* Lanes [0, rem) set: tails are read and written with maskload/maskstore, never past n. */
static inline __m256i tail_mask(int rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 halves -> 8 floats. */
static inline __m256 load_f16x8(const ts_f16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* 2^n for integer n in [-126, 127]. */
static inline __m256 pow2i(__m256i n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* x = n*ln2 + r with n = round(x/ln2) and |r| <= ln2/2; ln2 is split in two parts so that
 * r stays exact for large n. */
static inline __m256 reduce_ln2_avx2(__m256 x, __m256 *n) {
    *n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_fnmadd_ps(*n, _mm256_set1_ps(0.693359375f), x);
    return _mm256_fnmadd_ps(*n, _mm256_set1_ps(-2.12194440e-4f), r);
}

/* e^x = 2^n * e^r with n = round(x/ln2), |r| <= ln2/2 and e^r from its degree-7 Taylor
 * polynomial (truncation < 1e-8). 2^n is applied as two halves so that n = 128 and the
 * denormal range still come out right. Clamping keeps n in int range; NaN passes through
 * because max/min return their second operand when either is NaN. */
static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    __m256 n;
    const __m256 r = reduce_ln2_avx2(x, &n);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h = _mm256_srai_epi32(ni, 1);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(h)), pow2i(_mm256_sub_epi32(ni, h)));
}

/* tanh|y| = m / (m + 2) with m = e^(2|y|) - 1. m is formed as 2^n*(e^r - 1) + (2^n - 1)
 * with e^r - 1 = r*(1 + r/2 + ...), so small arguments keep their relative accuracy.
 * Beyond 2|y| = 20 tanh is 1 in float. */
static inline __m256 tanh_avx2(__m256 y) {
    const __m256 sign = _mm256_and_ps(y, _mm256_set1_ps(-0.0f));
    __m256 z = _mm256_add_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), y),
                             _mm256_andnot_ps(_mm256_set1_ps(-0.0f), y));
    z = _mm256_min_ps(_mm256_set1_ps(20.0f), z);
    __m256 n;
    const __m256 r = reduce_ln2_avx2(z, &n);
    __m256 p = _mm256_set1_ps(1.0f / 40320.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 5040.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256 em1_r = _mm256_mul_ps(p, r);
    const __m256 s = pow2i(_mm256_cvtps_epi32(n));
    const __m256 m = _mm256_fmadd_ps(s, em1_r, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));
    const __m256 t = _mm256_div_ps(m, _mm256_add_ps(m, _mm256_set1_ps(2.0f)));
    return _mm256_or_ps(t, sign);
}

static inline __m256 silu_avx2(__m256 x) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* gelu(x) = 0.5*x*(1 + tanh(u)) = x / (1 + e^(-2u)): no cancellation for negative x. */
static inline __m256 gelu_avx2(__m256 x) {
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 inner = _mm256_fmadd_ps(_mm256_set1_ps(TS_GELU_COEF_A), x2, _mm256_set1_ps(1.0f));
    const __m256 m2u = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f * TS_SQRT_2_OVER_PI), x), inner);
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_avx2(m2u)));
}

/* ---- norms, softmax, activations ---- */

static void rmsnorm_avx2(const float *x, const float *w, float *y, int n, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 8) {
        const __m256 v = _mm256_maskload_ps(x + i, tail_mask(n - i));
        a0 = _mm256_fmadd_ps(v, v, a0);
    }
    const double ss = (double)hsum(_mm256_add_ps(a0, a1));
    const __m256 sc = _mm256_set1_ps((float)(1.0 / sqrt(ss / n + (double)eps)));
    for (i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), sc);
        if (w) v = _mm256_mul_ps(v, _mm256_maskload_ps(w + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

static void softmax_avx2(float *x, int n) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, m), _mm256_castsi256_ps(m));
        mx = _mm256_max_ps(mx, v);
    }
    const __m256 vmax = _mm256_set1_ps(hmax(mx));
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vmax));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
        sum = _mm256_add_ps(sum, e);
        _mm256_maskstore_ps(x + i, m, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum(sum));
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), inv));
    }
}

static void silu_avx2_row(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, silu_avx2(_mm256_maskload_ps(x + i, m)));
    }
}

static void gelu_avx2_row(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, gelu_avx2(_mm256_maskload_ps(x + i, m)));
    }
}

static void swiglu_avx2(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 a = silu_avx2(_mm256_maskload_ps(g + i, m));
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(a, _mm256_maskload_ps(u + i, m)));
    }
}

static void geglu_avx2(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 a = gelu_avx2(_mm256_maskload_ps(g + i, m));
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(a, _mm256_maskload_ps(u + i, m)));
    }
}

/* ---- RoPE ---- */

#define ROPE_CHUNK 64 /* pair indices whose cos/sin are tabled at once */

/* cos and sin of th[0..cnt) (cnt a multiple of 4, th in double). The reduction by
 * multiples of pi/2 is done in double so large positions keep full float accuracy; the
 * remainder |r| <= pi/4 goes through degree-9 (sin) and degree-8 (cos) Taylor polynomials. */
static void rope_sincos(const double *th, float *cs, float *sn, int cnt) {
    for (int i = 0; i < cnt; i += 4) {
        const __m256d t = _mm256_loadu_pd(th + i);
        const __m256d j = _mm256_round_pd(_mm256_mul_pd(t, _mm256_set1_pd(0.63661977236758134308)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256d hi = _mm256_fnmadd_pd(j, _mm256_set1_pd(1.57079632679489655800), t);
        const __m256d rd = _mm256_fnmadd_pd(j, _mm256_set1_pd(6.12323399573676603587e-17), hi);
        /* quadrant = j mod 4, taken in double so that j need not fit an int */
        const __m256d jq = _mm256_fnmadd_pd(_mm256_floor_pd(_mm256_mul_pd(j, _mm256_set1_pd(0.25))),
                                            _mm256_set1_pd(4.0), j);
        const __m128i quad = _mm256_cvtpd_epi32(jq);
        const __m128 r = _mm256_cvtpd_ps(rd);
        const __m128 r2 = _mm_mul_ps(r, r);
        __m128 ps = _mm_set1_ps(1.0f / 362880.0f);
        ps = _mm_fmadd_ps(ps, r2, _mm_set1_ps(-1.0f / 5040.0f));
        ps = _mm_fmadd_ps(ps, r2, _mm_set1_ps(1.0f / 120.0f));
        ps = _mm_fmadd_ps(ps, r2, _mm_set1_ps(-1.0f / 6.0f));
        const __m128 s = _mm_fmadd_ps(_mm_mul_ps(ps, r2), r, r);
        __m128 pc = _mm_set1_ps(1.0f / 40320.0f);
        pc = _mm_fmadd_ps(pc, r2, _mm_set1_ps(-1.0f / 720.0f));
        pc = _mm_fmadd_ps(pc, r2, _mm_set1_ps(1.0f / 24.0f));
        pc = _mm_fmadd_ps(pc, r2, _mm_set1_ps(-0.5f));
        const __m128 c = _mm_fmadd_ps(pc, r2, _mm_set1_ps(1.0f));
        /* quadrant q: sin = (s, c, -s, -c)[q], cos = (c, -s, -c, s)[q] */
        const __m128i one = _mm_set1_epi32(1), two = _mm_set1_epi32(2);
        const __m128 swap = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(quad, one), one));
        const __m128 neg_s = _mm_castsi128_ps(_mm_slli_epi32(_mm_and_si128(quad, two), 30));
        const __m128i quad1 = _mm_add_epi32(quad, one);
        const __m128 neg_c = _mm_castsi128_ps(_mm_slli_epi32(_mm_and_si128(quad1, two), 30));
        _mm_storeu_ps(sn + i, _mm_xor_ps(_mm_blendv_ps(s, c, swap), neg_s));
        _mm_storeu_ps(cs + i, _mm_xor_ps(_mm_blendv_ps(c, s, swap), neg_c));
    }
}

/* (c0, c0, c1, c1, c2, c2, c3, c3) from c[0..4): one angle per rotated pair. */
static inline __m256 dup_pairs(const float *c) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c)),
                                    _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
}

static void rope_avx2(float *x, int n_head, int head_dim, int n_rot, float pos, float freq_base,
                      float freq_scale, const float *freq_factors, float mscale, int neox) {
    const int half = n_rot / 2;
    const double ratio = pow((double)freq_base, -2.0 / (double)n_rot);
    double th[ROPE_CHUNK];
    float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
    for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
        const int cnt = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
        /* freq_base^(-2i/n_rot) by repeated products: ~i ulps of double, far below float's */
        double f = (double)pos * (double)freq_scale * pow((double)freq_base, -2.0 * i0 / (double)n_rot);
        const int cnt4 = (cnt + 3) & ~3;
        for (int i = 0; i < cnt4; i++, f *= ratio) th[i] = f;
        if (freq_factors)
            for (int i = 0; i < cnt; i++) th[i] /= (double)freq_factors[i0 + i];
        rope_sincos(th, cs, sn, cnt4);
        if (mscale != 1.0f)
            for (int i = 0; i < cnt; i++) { cs[i] *= mscale; sn[i] *= mscale; }
        for (int hd = 0; hd < n_head; hd++) {
            float *xh = x + (size_t)hd * head_dim;
            int i = 0;
            if (neox) {
                float *a = xh + i0, *b = xh + i0 + half;
                for (; i + 8 <= cnt; i += 8) {
                    const __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
                    const __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
                    _mm256_storeu_ps(a + i, _mm256_fmsub_ps(va, c, _mm256_mul_ps(vb, s)));
                    _mm256_storeu_ps(b + i, _mm256_fmadd_ps(va, s, _mm256_mul_ps(vb, c)));
                }
                for (; i < cnt; i++) {
                    const float va = a[i], vb = b[i];
                    a[i] = va * cs[i] - vb * sn[i];
                    b[i] = va * sn[i] + vb * cs[i];
                }
            } else {
                float *a = xh + 2 * i0;
                for (; i + 4 <= cnt; i += 4) {
                    const __m256 c = dup_pairs(cs + i), s = dup_pairs(sn + i);
                    const __m256 v = _mm256_loadu_ps(a + 2 * i);
                    const __m256 sw = _mm256_permute_ps(v, 0xB1); /* (x1, x0, x3, x2, ...) */
                    /* even lanes x0*c - x1*s, odd lanes x1*c + x0*s */
                    _mm256_storeu_ps(a + 2 * i, _mm256_fmaddsub_ps(v, c, _mm256_mul_ps(sw, s)));
                }
                for (; i < cnt; i++) {
                    const float va = a[2 * i], vb = a[2 * i + 1];
                    a[2 * i] = va * cs[i] - vb * sn[i];
                    a[2 * i + 1] = va * sn[i] + vb * cs[i];
                }
            }
        }
    }
}

/* ---- f16 conversions ---- */

static void f16_to_f32_avx2(const ts_f16 *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16x8(x + i));
    for (; i < n; i++) y[i] = ts_f16_to_f32(x[i]);
}

/* F16C keeps NaN payload bits where ts_f32_to_f16 returns the canonical quiet NaN; NaNs
 * are canonicalized first so both paths give the same bits. */
static void f32_to_f16_avx2(const float *x, ts_f16 *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        v = _mm256_blendv_ps(v, _mm256_or_ps(_mm256_and_ps(v, sign), qnan), nan);
        const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) y[i] = ts_f32_to_f16(x[i]);
}

/* ---- attention ---- */

/* Eight dot products (one per accumulator) summed into the lanes of one vector. */
static inline __m256 hsum8x8(const __m256 a[8]) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Up to 7 trailing f16 values of a row, zero padded (no 16-bit masked loads in AVX2). */
static inline __m256 load_f16_tail(const ts_f16 *p, int rem) {
    ts_f16 tmp[8] = {0};
    memcpy(tmp, p, (size_t)rem * sizeof(ts_f16));
    return load_f16x8(tmp);
}

/* Eight values of a cache row from element d (a multiple of 8): f16, or Q8_0 / Q4_0 blocks (the
 * quantized caches, whose heads 32 divides). */
static inline __attribute__((always_inline)) __m256 load_row8(const void *row, int type, int d) {
    if (type == TS_TYPE_F16) return load_f16x8((const ts_f16 *)row + d);
    const int i = d % TS_QK;
    if (type == TS_TYPE_Q8_0) {
        const ts_block_q8_0 *b = (const ts_block_q8_0 *)row + d / TS_QK;
        const __m256i qi = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + i)));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(qi), _mm256_set1_ps(_cvtsh_ss(b->d)));
    }
    const ts_block_q4_0 *b = (const ts_block_q4_0 *)row + d / TS_QK;
    __m128i q = _mm_loadl_epi64((const __m128i *)(b->qs + i % (TS_QK / 2)));
    if (i >= TS_QK / 2) q = _mm_srli_epi16(q, 4);
    q = _mm_and_si128(q, _mm_set1_epi8(15));
    const __m256i qi = _mm256_sub_epi32(_mm256_cvtepu8_epi32(q), _mm256_set1_epi32(8));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(qi), _mm256_set1_ps(_cvtsh_ss(b->d)));
}

/* Eight values of row j of a block from element d: cache rows through r (of type), or (r NULL)
 * the block's rows widened to f32, stride apart. */
static inline __attribute__((always_inline)) __m256 row_chunk(const char *const *r, const float *f, int64_t stride,
                                                              int type, int j, int d) {
    return r ? load_row8(r[j], type, d) : _mm256_loadu_ps(f + j * stride + d);
}

/* The rem < 8 trailing values of an f16 row from element nd, zero padded (widened rows hold them so). */
static inline __attribute__((always_inline)) __m256 row_tail(const char *const *r, const float *f, int64_t stride,
                                                             int j, int nd, int rem) {
    return r ? load_f16_tail((const ts_f16 *)r[j] + nd, rem) : _mm256_loadu_ps(f + j * stride + nd);
}

/* One block of 8 positions of a query row: eight dot products reduced together, one vectorized
 * exp, at most one rescale of the accumulator (out) per block, then the weighted rows of v.
 * Keys and values come from cache rows (kr, vr) or from the block widened once for several rows
 * (kf, vf; kr and vr NULL): the same values, so the same bits. valid: the lanes the row sees; the
 * others hold a repeated row under a zero weight, so the inner loops keep a fixed count. */
static inline __attribute__((always_inline)) void attn_block(const float *q, const char *const *kr, const char *const *vr,
                                                             const float *kf, const float *vf, int64_t stride, int type,
                                                             __m256 valid, int head_dim, float scale, float softcap,
                                                             float *m, float *l, float *out) {
    const int nd = head_dim & ~7, rem = head_dim - nd;
    __m256 acc[8];
    float wt[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (int d = 0; d < nd; d += 8) {
        const __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qv, row_chunk(kr, kf, stride, type, j, d), acc[j]);
    }
    if (type == TS_TYPE_F16 && rem) {
        const __m256 qtail = _mm256_maskload_ps(q + nd, tail_mask(rem));
        for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qtail, row_tail(kr, kf, stride, j, nd, rem), acc[j]);
    }
    __m256 s = _mm256_mul_ps(hsum8x8(acc), _mm256_set1_ps(scale));
    if (softcap > 0.0f) {
        const __m256 cap = _mm256_set1_ps(softcap);
        s = _mm256_mul_ps(cap, tanh_avx2(_mm256_div_ps(s, cap)));
    }
    s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, valid);
    const float bm = hmax(s);
    if (bm > *m) {
        const float c = expf(*m - bm);
        *l *= c;
        const __m256 vc = _mm256_set1_ps(c);
        for (int d = 0; d < head_dim; d += 8) {
            const __m256i mm = tail_mask(head_dim - d);
            _mm256_maskstore_ps(out + d, mm, _mm256_mul_ps(_mm256_maskload_ps(out + d, mm), vc));
        }
        *m = bm;
    }
    const __m256 e = _mm256_and_ps(exp_avx2(_mm256_sub_ps(s, _mm256_set1_ps(*m))), valid);
    *l += hsum(e);
    _mm256_storeu_ps(wt, e);
    for (int d = 0; d < nd; d += 8) {
        __m256 o = _mm256_loadu_ps(out + d);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) o = _mm256_fmadd_ps(_mm256_broadcast_ss(wt + j), row_chunk(vr, vf, stride, type, j, d), o);
        _mm256_storeu_ps(out + d, o);
    }
    if (type == TS_TYPE_F16 && rem) {
        const __m256i mrem = tail_mask(rem);
        __m256 o = _mm256_maskload_ps(out + nd, mrem);
        for (int j = 0; j < 8; j++) o = _mm256_fmadd_ps(_mm256_broadcast_ss(wt + j), row_tail(vr, vf, stride, j, nd, rem), o);
        _mm256_maskstore_ps(out + nd, mrem, o);
    }
}

/* out /= l, the softmax's denominator (0 when no position was seen), to which a sink adds its
 * term (m: the running maximum l is relative to). */
static void normalize_out(float *out, int head_dim, float l, float m, float sink) {
    if (sink > -INFINITY) l += expf(sink - m);
    const __m256 inv = _mm256_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
    for (int d = 0; d < head_dim; d += 8) {
        const __m256i mm = tail_mask(head_dim - d);
        _mm256_maskstore_ps(out + d, mm, _mm256_mul_ps(_mm256_maskload_ps(out + d, mm), inv));
    }
}

/* One query row over [p0, p1), blocks of 8 positions read straight from the cache (a short last
 * block repeats its last row). type: a constant at each call; tails only for f16. */
static inline __attribute__((always_inline)) void attn_head_typed(const float *q, const void *k, const void *v,
                                                                  int type, int64_t kv_stride, int p0, int p1,
                                                                  int head_dim, float scale, float softcap,
                                                                  float sink, float *out) {
    const size_t row_bytes = ts_cache_bytes(type, kv_stride);
    float m = -INFINITY, l = 0.0f;
    const char *kr[8], *vr[8];
    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    for (int pb = p0; pb < p1; pb += 8) {
        const int nb = p1 - pb < 8 ? p1 - pb : 8;
        for (int j = 0; j < 8; j++) {
            const size_t off = (size_t)(pb + (j < nb ? j : nb - 1)) * row_bytes;
            kr[j] = (const char *)k + off;
            vr[j] = (const char *)v + off;
        }
        attn_block(q, kr, vr, NULL, NULL, 0, type, _mm256_castsi256_ps(tail_mask(nb)), head_dim, scale, softcap, &m,
                   &l, out);
    }
    normalize_out(out, head_dim, l, m, sink);
}

static void attn_head_avx2(const float *q, const ts_f16 *k, const ts_f16 *v, int64_t kv_stride,
                           int p0, int p1, int head_dim, float scale, float softcap, float sink, float *out) {
    attn_head_typed(q, k, v, TS_TYPE_F16, kv_stride, p0, p1, head_dim, scale, softcap, sink, out);
}

/* attn_head_typed's blocks for the rows that share a K/V head: each block of 8 cache rows is
 * widened to f32 once (a quantized one dequantized) for every row whose range meets it, which
 * per row cost as much as the products themselves. Rows over a quantized cache are q8-rounded
 * queries (qq, rows head_dim apart); blocks start at the rows' lowest position. */
static inline __attribute__((always_inline)) void attn_rows_grouped(
    const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok, int n_head, const int32_t *p0,
    const int32_t *p1, const void *k, const void *v, int type, int64_t kv_stride, int head_dim, float scale,
    float softcap, const float *sinks, const float *qq) {
    float kf[8 * TS_ATTN_ROWS_MAX_DIM] __attribute__((aligned(32)));
    float vf[8 * TS_ATTN_ROWS_MAX_DIM] __attribute__((aligned(32)));
    float m[TS_ATTN_MAX_ROWS], l[TS_ATTN_MAX_ROWS];
    const size_t row_bytes = ts_cache_bytes(type, kv_stride);
    const int64_t stride = (head_dim + 7) & ~7;
    const int nd = head_dim & ~7;
    int lo, hi;
    ts_attn_rows_begin(n_tok, n_head, p0, p1, head_dim, out, out_stride, m, l, &lo, &hi);
    for (int pb = lo; pb < hi; pb += 8) {
        const int nb = hi - pb < 8 ? hi - pb : 8;
        for (int j = 0; j < 8; j++) {
            const size_t off = (size_t)(pb + (j < nb ? j : nb - 1)) * row_bytes;
            const char *kr = (const char *)k + off, *vr = (const char *)v + off;
            for (int d = 0; d < nd; d += 8) {
                _mm256_store_ps(kf + j * stride + d, load_row8(kr, type, d));
                _mm256_store_ps(vf + j * stride + d, load_row8(vr, type, d));
            }
            if (nd < head_dim) {
                _mm256_store_ps(kf + j * stride + nd, load_f16_tail((const ts_f16 *)kr + nd, head_dim - nd));
                _mm256_store_ps(vf + j * stride + nd, load_f16_tail((const ts_f16 *)vr + nd, head_dim - nd));
            }
        }
        for (int t = 0; t < n_tok; t++) {
            const int a = p0[t] > pb ? p0[t] - pb : 0, b = p1[t] - pb < nb ? p1[t] - pb : nb;
            if (a >= b) continue;
            const __m256 valid = _mm256_castsi256_ps(_mm256_andnot_si256(tail_mask(a), tail_mask(b)));
            for (int h = 0; h < n_head; h++) {
                const int r = t * n_head + h;
                const float *qr = qq ? qq + (int64_t)r * head_dim : q + t * q_stride + (int64_t)h * head_dim;
                attn_block(qr, NULL, NULL, kf, vf, stride, type, valid, head_dim, scale, softcap, &m[r], &l[r],
                           out + t * out_stride + (int64_t)h * head_dim);
            }
        }
    }
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++)
            normalize_out(out + t * out_stride + (int64_t)h * head_dim, head_dim, l[t * n_head + h], m[t * n_head + h],
                          sinks ? sinks[h] : -INFINITY);
}

static void attn_rows_avx2(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok, int n_head,
                           const int32_t *p0, const int32_t *p1, const ts_f16 *k, const ts_f16 *v, int64_t kv_stride,
                           int head_dim, float scale, float softcap, const float *sinks) {
    if (head_dim > TS_ATTN_ROWS_MAX_DIM || n_tok * n_head == 1) {
        for (int t = 0; t < n_tok; t++)
            for (int h = 0; h < n_head; h++)
                attn_head_typed(q + t * q_stride + (int64_t)h * head_dim, k, v, TS_TYPE_F16, kv_stride, p0[t], p1[t],
                                head_dim, scale, softcap, sinks ? sinks[h] : -INFINITY,
                                out + t * out_stride + (int64_t)h * head_dim);
        return;
    }
    attn_rows_grouped(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, TS_TYPE_F16, kv_stride, head_dim,
                      scale, softcap, sinks, NULL);
}

/* Over a quantized cache each query row is quantized to Q8_0 first (as llama.cpp does), and
 * its values attend. */
static void attn_rows_quant_avx2(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                                 int n_head, const int32_t *p0, const int32_t *p1, int type, const void *k,
                                 const void *v, int64_t kv_stride, int head_dim, float scale, float softcap,
                                 const float *sinks) {
    float qq[TS_ATTN_MAX_ROWS * TS_ATTN_QUANT_MAX_DIM];
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++)
            ts_q8_0_round_trip(q + t * q_stride + (int64_t)h * head_dim, qq + (int64_t)(t * n_head + h) * head_dim, head_dim);
    if (n_tok * n_head == 1) {
        const float sink = sinks ? sinks[0] : -INFINITY;
        if (type == TS_TYPE_Q4_0)
            attn_head_typed(qq, k, v, TS_TYPE_Q4_0, kv_stride, p0[0], p1[0], head_dim, scale, softcap, sink, out);
        else
            attn_head_typed(qq, k, v, TS_TYPE_Q8_0, kv_stride, p0[0], p1[0], head_dim, scale, softcap, sink, out);
        return;
    }
    if (type == TS_TYPE_Q4_0)
        attn_rows_grouped(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, TS_TYPE_Q4_0, kv_stride, head_dim,
                          scale, softcap, sinks, qq);
    else
        attn_rows_grouped(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, TS_TYPE_Q8_0, kv_stride, head_dim,
                          scale, softcap, sinks, qq);
}

/* ---- vision: layer norm and non-causal f32 attention ---- */

static void layernorm_avx2(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    __m256 a = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) a = _mm256_add_ps(a, _mm256_maskload_ps(x + i, tail_mask(n - i)));
    const float mean = hsum(a) / (float)n;
    const __m256 vm = _mm256_set1_ps(mean);
    __m256 ss = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm), _mm256_castsi256_ps(m));
        ss = _mm256_fmadd_ps(d, d, ss);
    }
    const __m256 sc = _mm256_set1_ps((float)(1.0 / sqrt((double)hsum(ss) / n + (double)eps)));
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm), sc);
        if (w) v = _mm256_mul_ps(v, _mm256_maskload_ps(w + i, m));
        if (b) v = _mm256_add_ps(v, _mm256_maskload_ps(b + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

/* Scores of one query against 8 keys (rows kr[j]), as one vector. */
static inline __m256 dot8_f32(const float *q, const float *const kr[8], int head_dim) {
    __m256 acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (int d = 0; d < head_dim; d += 8) {
        const __m256i md = tail_mask(head_dim - d);
        const __m256 qv = _mm256_maskload_ps(q + d, md);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kr[j] + d, md), acc[j]);
    }
    return hsum8x8(acc);
}

/* o[i][0 .. 8*NC) = sum_p s[i][p] * v[p][d0 ..] for 4 query rows, accumulators in registers. */
static inline __attribute__((always_inline)) void pv_tile_avx2(const float *const s[4], float *const o[4],
                                                              const float *v, int64_t kv_stride, int n_kv,
                                                              int d0, const int NC, __m256i md) {
    const __m256i all = _mm256_set1_epi32(-1);
    __m256 acc[4][2];
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < NC; c++) acc[i][c] = _mm256_setzero_ps();
    for (int p = 0; p < n_kv; p++) {
        const float *vp = v + (int64_t)p * kv_stride + d0;
        __m256 vv[2];
        for (int c = 0; c < NC; c++) vv[c] = _mm256_maskload_ps(vp + 8 * c, c == NC - 1 ? md : all);
        for (int i = 0; i < 4; i++) {
            const __m256 sp = _mm256_broadcast_ss(s[i] + p);
            for (int c = 0; c < NC; c++) acc[i][c] = _mm256_fmadd_ps(sp, vv[c], acc[i][c]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < NC; c++) _mm256_maskstore_ps(o[i] + 8 * c, c == NC - 1 ? md : all, acc[i][c]);
}

/* As attn_f32_avx512: scores block by block of keys, row softmax, values in 4-query tiles. */
static void attn_f32_avx2(const float *q, int64_t q_stride, int nq, const float *k, const float *v,
                          int64_t kv_stride, int n_kv, int head_dim, float scale, float *scores,
                          float *out, int64_t out_stride) {
    const float *kr[8];
    const __m256 vs = _mm256_set1_ps(scale);
    for (int pb = 0; pb < n_kv; pb += 8) {
        const int nb = n_kv - pb < 8 ? n_kv - pb : 8;
        for (int j = 0; j < 8; j++) kr[j] = k + (int64_t)(pb + (j < nb ? j : nb - 1)) * kv_stride;
        for (int i = 0; i < nq; i++)
            _mm256_maskstore_ps(scores + (int64_t)i * n_kv + pb, tail_mask(nb),
                                _mm256_mul_ps(dot8_f32(q + (int64_t)i * q_stride, kr, head_dim), vs));
    }
    for (int i = 0; i < nq; i++) softmax_avx2(scores + (int64_t)i * n_kv, n_kv);
    float spare[16] = {0};
    for (int i0 = 0; i0 < nq; i0 += 4) {
        const float *s[4];
        float *o[4];
        for (int i = 0; i < 4; i++) {
            const int r = i0 + i < nq ? i0 + i : nq - 1;
            s[i] = scores + (int64_t)r * n_kv;
            o[i] = out + (int64_t)r * out_stride;
        }
        for (int d0 = 0; d0 < head_dim; d0 += 16) {
            const int w = head_dim - d0 < 16 ? head_dim - d0 : 16, nc = (w + 7) / 8;
            const __m256i md = tail_mask(w - 8 * (nc - 1));
            float *oo[4];
            for (int i = 0; i < 4; i++) oo[i] = i0 + i < nq ? o[i] + d0 : spare;
            if (nc == 1) pv_tile_avx2(s, oo, v, kv_stride, n_kv, d0, 1, md);
            else pv_tile_avx2(s, oo, v, kv_stride, n_kv, d0, 2, md);
        }
    }
}

/* 4 weight rows x 2 activation rows at a time (8 accumulators fit the 16 registers with their
 * operands); each converted weight chunk serves both. */
static void gemm_f16_tile_avx2(int64_t n, const ts_f16 *w, int64_t w_stride, const float *x, int64_t x_stride,
                               float *y, int64_t y_stride, int nr, int nc) {
    const ts_f16 *wr[4];
    for (int i = 0; i < 4; i++) wr[i] = w + (i < nr ? i : nr - 1) * w_stride;
    for (int c0 = 0; c0 < nc; c0 += 2) {
        const float *xr[2] = {x + c0 * x_stride, x + (c0 + 1 < nc ? c0 + 1 : c0) * x_stride};
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        int64_t d = 0;
        for (; d + 8 <= n; d += 8) {
            const __m256 x0 = _mm256_loadu_ps(xr[0] + d), x1 = _mm256_loadu_ps(xr[1] + d);
            for (int r = 0; r < 4; r++) {
                const __m256 wv = load_f16x8(wr[r] + d);
                acc[2 * r] = _mm256_fmadd_ps(wv, x0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(wv, x1, acc[2 * r + 1]);
            }
        }
        if (d < n) {
            const __m256i m = tail_mask((int)(n - d));
            const __m256 x0 = _mm256_maskload_ps(xr[0] + d, m), x1 = _mm256_maskload_ps(xr[1] + d, m);
            for (int r = 0; r < 4; r++) {
                const __m256 wv = load_f16_tail(wr[r] + d, (int)(n - d));
                acc[2 * r] = _mm256_fmadd_ps(wv, x0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(wv, x1, acc[2 * r + 1]);
            }
        }
        float s[8];
        _mm256_storeu_ps(s, hsum8x8(acc));
        for (int c = c0; c < nc && c < c0 + 2; c++)
            for (int r = 0; r < nr; r++) y[c * y_stride + r] = s[2 * r + (c - c0)];
    }
}

/* As exp_sum_scalar; eight terms at a time, summed in two double vectors; the tail in scalar. */
static double exp_sum_avx2(const float *x, int64_t n, float sub, float scale, float lo, float *out) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    const __m256 vsub = _mm256_set1_ps(sub), vscale = _mm256_set1_ps(scale), vlo = _mm256_set1_ps(lo);
    const __m256 vmin = _mm256_set1_ps(TS_EXP_MIN);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 a = _mm256_mul_ps(_mm256_sub_ps(v, vsub), vscale);
        const __m256 in = _mm256_and_ps(_mm256_cmp_ps(v, vlo, _CMP_GE_OQ), _mm256_cmp_ps(a, vmin, _CMP_GE_OQ));
        /* Clamped first: exp_avx2 of -inf or far below would build a denormal before the mask. */
        const __m256 t = _mm256_and_ps(in, exp_avx2(_mm256_max_ps(a, vmin)));
        if (out) _mm256_storeu_ps(out + i, t);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(t)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(acc0, acc1));
    double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) {
        const float a = (x[i] - sub) * scale;
        const float t = x[i] >= lo && a >= TS_EXP_MIN ? expf(a) : 0.0f;
        if (out) out[i] = t;
        s += t;
    }
    return s;
}

/* As logits_prepare_scalar: eight entries and a byte of the mask word at a time (the byte spread
 * to lanes by testing one bit per lane); a short last block goes the scalar way. */
static int64_t logits_prepare_avx2(const float *src, const uint32_t *mask, int64_t n, float *dst, float *bm) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), fmax = _mm256_set1_ps(FLT_MAX);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    int64_t finite = 0, b0 = 0;
    for (; b0 + TS_BLOCK_MAX <= n; b0 += TS_BLOCK_MAX) {
        __m256 m = ninf;
        for (int j = 0; j < TS_BLOCK_MAX; j += 8) {
            const int64_t i = b0 + j;
            const __m256 v = _mm256_loadu_ps(src + i);
            __m256 ok = _mm256_cmp_ps(_mm256_and_ps(v, absmask), fmax, _CMP_LE_OQ);
            if (mask) {
                const __m256i byte = _mm256_set1_epi32((int)((mask[i / 32] >> (i % 32)) & 0xffu));
                ok = _mm256_and_ps(ok, _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(byte, bits), bits)));
            }
            const __m256 d = _mm256_blendv_ps(ninf, v, ok);
            _mm256_storeu_ps(dst + i, d);
            m = _mm256_max_ps(m, d);
            finite += __builtin_popcount(_mm256_movemask_ps(ok));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        bm[b0 / TS_BLOCK_MAX] = _mm_cvtss_f32(h);
    }
    if (b0 < n) {
        float m = -INFINITY;
        for (int64_t i = b0; i < n; i++) {
            const int ok = fabsf(src[i]) <= FLT_MAX && (!mask || ((mask[i / 32] >> (i % 32)) & 1u));
            dst[i] = ok ? src[i] : -INFINITY;
            m = dst[i] > m ? dst[i] : m;
            finite += ok;
        }
        bm[b0 / TS_BLOCK_MAX] = m;
    }
    return finite;
}

void ts_register_avx2_ops(ts_kernels *k) {
    k->rmsnorm = rmsnorm_avx2;
    k->softmax = softmax_avx2;
    k->silu = silu_avx2_row;
    k->gelu = gelu_avx2_row;
    k->swiglu = swiglu_avx2;
    k->geglu = geglu_avx2;
    k->rope = rope_avx2;
    k->f16_to_f32 = f16_to_f32_avx2;
    k->f32_to_f16 = f32_to_f16_avx2;
    k->attn_head = attn_head_avx2;
    k->attn_rows = attn_rows_avx2;
    k->attn_rows_quant = attn_rows_quant_avx2;
    k->layernorm = layernorm_avx2;
    k->attn_f32 = attn_f32_avx2;
    k->gemm_f16_tile = gemm_f16_tile_avx2;
    k->exp_sum = exp_sum_avx2;
    k->logits_prepare = logits_prepare_avx2;
}
