/* AVX-512: norms, activations, RoPE, softmax, conversions and attention. */
#include <immintrin.h>
#include <math.h>

#include "ts/fp16.h"
#include "ts/kernels.h"

#define TS_SQRT_2_OVER_PI 0.79788456080286535588f
#define TS_GELU_COEF_A 0.044715f

/* ---- helpers ---- */

/* Lanes [0, rem) of 16 (none when rem <= 0); masked loads and stores never touch memory past n. */
static inline __mmask16 tail_mask(int64_t rem) {
    return rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1u);
}

/* 16 halves (masked) -> 16 floats. */
static inline __m512 load_f16x16(__mmask16 m, const ts_f16 *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* x = n*ln2 + r with n = round(x/ln2) and |r| <= ln2/2; ln2 is split in two parts so that
 * r stays exact for large n. */
static inline __m512 reduce_ln2_512(__m512 x, __m512 *n) {
    *n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(0.693359375f), x);
    return _mm512_fnmadd_ps(*n, _mm512_set1_ps(-2.12194440e-4f), r);
}

/* e^x = 2^n * e^r with n = round(x/ln2), |r| <= ln2/2 and e^r from its degree-7 Taylor
 * polynomial (truncation < 1e-8); scalef applies 2^n with correct overflow and denormals.
 * The clamp only keeps r meaningful; NaN passes through (max/min return their second
 * operand when either is NaN). */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n;
    const __m512 r = reduce_ln2_512(x, &n);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* tanh|y| = m / (m + 2) with m = e^(2|y|) - 1, formed as 2^n*(e^r - 1) + (2^n - 1) with
 * e^r - 1 = r*(1 + r/2 + ...) so that small arguments keep their relative accuracy.
 * Beyond 2|y| = 20 tanh is 1 in float. */
static inline __m512 tanh512(__m512 y) {
    const __m512 sign = _mm512_and_ps(y, _mm512_set1_ps(-0.0f));
    const __m512 ay = _mm512_abs_ps(y);
    const __m512 z = _mm512_min_ps(_mm512_set1_ps(20.0f), _mm512_add_ps(ay, ay));
    __m512 n;
    const __m512 r = reduce_ln2_512(z, &n);
    __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 5040.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 s = _mm512_scalef_ps(_mm512_set1_ps(1.0f), n);
    const __m512 m = _mm512_fmadd_ps(s, _mm512_mul_ps(p, r), _mm512_sub_ps(s, _mm512_set1_ps(1.0f)));
    const __m512 t = _mm512_div_ps(m, _mm512_add_ps(m, _mm512_set1_ps(2.0f)));
    return _mm512_or_ps(t, sign);
}

static inline __m512 silu512(__m512 x) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* gelu(x) = 0.5*x*(1 + tanh(u)) = x / (1 + e^(-2u)): no cancellation for negative x. */
static inline __m512 gelu512(__m512 x) {
    const __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps(TS_GELU_COEF_A), _mm512_mul_ps(x, x),
                                         _mm512_set1_ps(1.0f));
    const __m512 m2u = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f * TS_SQRT_2_OVER_PI), x), inner);
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(m2u)));
}

/* ---- norms, softmax, activations ---- */

static void rmsnorm_avx512(const float *x, const float *w, float *y, int n, float eps) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    const double ss = (double)_mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    const __m512 sc = _mm512_set1_ps((float)(1.0 / sqrt(ss / n + (double)eps)));
    for (i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sc);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

static void softmax_avx512(float *x, int n) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    for (int i = 0; i < n; i += 16)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax);
        const __m512 e = _mm512_maskz_mov_ps(m, exp512(v));
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(x + i, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

static void silu_avx512(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, silu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void gelu_avx512(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void swiglu_avx512(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 a = silu512(_mm512_maskz_loadu_ps(m, g + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

static void geglu_avx512(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 a = gelu512(_mm512_maskz_loadu_ps(m, g + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

/* ---- RoPE ---- */

#define ROPE_CHUNK 64 /* pair indices whose cos/sin are tabled at once */

/* cos and sin of th[0..cnt) (cnt a multiple of 8, th in double). The reduction by
 * multiples of pi/2 is done in double so large positions keep full float accuracy; the
 * remainder |r| <= pi/4 goes through degree-9 (sin) and degree-8 (cos) Taylor polynomials. */
static void rope_sincos(const double *th, float *cs, float *sn, int cnt) {
    for (int i = 0; i < cnt; i += 8) {
        const __m512d t = _mm512_loadu_pd(th + i);
        const __m512d j = _mm512_roundscale_pd(_mm512_mul_pd(t, _mm512_set1_pd(0.63661977236758134308)),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512d hi = _mm512_fnmadd_pd(j, _mm512_set1_pd(1.57079632679489655800), t);
        const __m512d rd = _mm512_fnmadd_pd(j, _mm512_set1_pd(6.12323399573676603587e-17), hi);
        /* quadrant = j mod 4, taken in double so that j need not fit an int */
        const __m512d jfl = _mm512_roundscale_pd(_mm512_mul_pd(j, _mm512_set1_pd(0.25)),
                                                 _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m256i quad = _mm512_cvtpd_epi32(_mm512_fnmadd_pd(jfl, _mm512_set1_pd(4.0), j));
        const __m256 r = _mm512_cvtpd_ps(rd);
        const __m256 r2 = _mm256_mul_ps(r, r);
        __m256 ps = _mm256_set1_ps(1.0f / 362880.0f);
        ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.0f / 5040.0f));
        ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(1.0f / 120.0f));
        ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.0f / 6.0f));
        const __m256 s = _mm256_fmadd_ps(_mm256_mul_ps(ps, r2), r, r);
        __m256 pc = _mm256_set1_ps(1.0f / 40320.0f);
        pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-1.0f / 720.0f));
        pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(1.0f / 24.0f));
        pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-0.5f));
        const __m256 c = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(1.0f));
        /* quadrant q: sin = (s, c, -s, -c)[q], cos = (c, -s, -c, s)[q] */
        const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
        const __mmask8 swap = _mm256_test_epi32_mask(quad, one);
        const __m256 neg_s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(quad, two), 30));
        const __m256i quad1 = _mm256_add_epi32(quad, one);
        const __m256 neg_c = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(quad1, two), 30));
        _mm256_storeu_ps(sn + i, _mm256_xor_ps(_mm256_mask_blend_ps(swap, s, c), neg_s));
        _mm256_storeu_ps(cs + i, _mm256_xor_ps(_mm256_mask_blend_ps(swap, c, s), neg_c));
    }
}

/* (c0, c0, c1, c1, ..., c7, c7) from c[0..8): one angle per rotated pair. */
static inline __m512 dup_pairs(const float *c) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                 _mm512_castps256_ps512(_mm256_loadu_ps(c)));
}

static void rope_avx512(float *x, int n_head, int head_dim, int n_rot, float pos, float freq_base,
                        float freq_scale, const float *freq_factors, float mscale, int neox) {
    const int half = n_rot / 2;
    const double ratio = pow((double)freq_base, -2.0 / (double)n_rot);
    double th[ROPE_CHUNK];
    float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
    for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
        const int cnt = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
        const int cnt8 = (cnt + 7) & ~7;
        /* freq_base^(-2i/n_rot) by repeated products: ~i ulps of double, far below float's */
        double f = (double)pos * (double)freq_scale * pow((double)freq_base, -2.0 * i0 / (double)n_rot);
        for (int i = 0; i < cnt8; i++, f *= ratio) th[i] = f;
        if (freq_factors)
            for (int i = 0; i < cnt; i++) th[i] /= (double)freq_factors[i0 + i];
        rope_sincos(th, cs, sn, cnt8);
        if (mscale != 1.0f)
            for (int i = 0; i < cnt; i++) { cs[i] *= mscale; sn[i] *= mscale; }
        for (int hd = 0; hd < n_head; hd++) {
            float *xh = x + (size_t)hd * head_dim;
            if (neox) {
                float *a = xh + i0, *b = xh + i0 + half;
                for (int i = 0; i < cnt; i += 16) {
                    const __mmask16 m = tail_mask(cnt - i);
                    const __m512 c = _mm512_maskz_loadu_ps(m, cs + i);
                    const __m512 s = _mm512_maskz_loadu_ps(m, sn + i);
                    const __m512 va = _mm512_maskz_loadu_ps(m, a + i);
                    const __m512 vb = _mm512_maskz_loadu_ps(m, b + i);
                    _mm512_mask_storeu_ps(a + i, m, _mm512_fmsub_ps(va, c, _mm512_mul_ps(vb, s)));
                    _mm512_mask_storeu_ps(b + i, m, _mm512_fmadd_ps(va, s, _mm512_mul_ps(vb, c)));
                }
            } else {
                float *a = xh + 2 * i0;
                for (int i = 0; i < cnt; i += 8) {
                    const __mmask16 m = tail_mask(2 * (cnt - i));
                    const __m512 c = dup_pairs(cs + i), s = dup_pairs(sn + i);
                    const __m512 v = _mm512_maskz_loadu_ps(m, a + 2 * i);
                    const __m512 sw = _mm512_permute_ps(v, 0xB1); /* (x1, x0, x3, x2, ...) */
                    /* even lanes x0*c - x1*s, odd lanes x1*c + x0*s */
                    _mm512_mask_storeu_ps(a + 2 * i, m, _mm512_fmaddsub_ps(v, c, _mm512_mul_ps(sw, s)));
                }
            }
        }
    }
}

/* ---- f16 conversions ---- */

static void f16_to_f32_avx512(const ts_f16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, load_f16x16(m, x + i));
    }
}

/* F16C keeps NaN payload bits where ts_f32_to_f16 returns the canonical quiet NaN; NaNs
 * are canonicalized first so both paths give the same bits. */
static void f32_to_f16_avx512(const float *x, ts_f16 *y, int64_t n) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 qnan = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FC00000));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        v = _mm512_mask_mov_ps(v, nan, _mm512_or_ps(_mm512_and_ps(v, sign), qnan));
        const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

/* ---- attention ---- */

/* Sixteen dot-product accumulators -> one vector whose lane i is the sum of a[i]. Folds
 * whole 128-bit lanes first (a[k], a[k+4], a[k+8], a[k+12] land in lanes 0..3 of y[k]),
 * then a 4x4 transpose-add inside each lane. */
static inline __m512 hsum16x16(const __m512 a[16]) {
    __m512 y[4];
    for (int k = 0; k < 4; k++) {
        const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(a[k], a[k + 4], 0x44),
                                        _mm512_shuffle_f32x4(a[k], a[k + 4], 0xEE));
        const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(a[k + 8], a[k + 12], 0x44),
                                        _mm512_shuffle_f32x4(a[k + 8], a[k + 12], 0xEE));
        y[k] = _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xDD));
    }
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xEE));
}

/* One block of 16 positions of the online softmax: scores from the sixteen dot-product
 * accumulators (scaled, soft-capped, -inf outside `valid`), the running max *m and sum *l
 * updated, the block's weights stored in wt; returns what the accumulated output must be
 * multiplied by (1 unless the max grew). */
static inline __attribute__((always_inline)) __m512 online_softmax(const __m512 acc[16], float scale, float softcap,
                                                                   __mmask16 valid, float *m, float *l,
                                                                   float wt[16]) {
    __m512 s = _mm512_mul_ps(hsum16x16(acc), _mm512_set1_ps(scale));
    if (softcap > 0.0f) {
        const __m512 cap = _mm512_set1_ps(softcap);
        s = _mm512_mul_ps(cap, tanh512(_mm512_div_ps(s, cap)));
    }
    s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, s);
    const float bm = _mm512_reduce_max_ps(s);
    float c = 1.0f;
    if (bm > *m) {
        c = expf(*m - bm);
        *l *= c;
        *m = bm;
    }
    const __m512 e = _mm512_maskz_mov_ps(valid, exp512(_mm512_sub_ps(s, _mm512_set1_ps(*m))));
    *l += _mm512_reduce_add_ps(e);
    _mm512_storeu_ps(wt, e);
    return _mm512_set1_ps(c);
}

/* Value row j of a block, chunk at d: f16 rows through vr, or (vr NULL) f32 rows of head_dim at vf. */
static inline __attribute__((always_inline)) __m512 v_chunk(const ts_f16 *const *vr, const float *vf, int j, int d,
                                                           int head_dim, __mmask16 md) {
    return vr ? load_f16x16(md, vr[j] + d) : _mm512_maskz_loadu_ps(md, vf + (int64_t)j * head_dim + d);
}

/* out[d0 .. d0 + 16*nc) = out * rescale + sum_j wt[j] * v_j over the sixteen rows of a block.
 * The output chunks stay in registers across the rows, so the multiply-adds form nc (or, for
 * nc <= 4, 2*nc: even and odd rows apart) independent chains instead of one chain per chunk
 * whose latency would bound the loop. Called with a constant nc so the chunks unroll. */
static inline __attribute__((always_inline)) void pv_chunks(float *out, const ts_f16 *const *vr, const float *vf,
                                                            const float wt[16], int d0, int head_dim,
                                                            __m512 rescale, const int nc) {
    __m512 o[8], o2[8];
    __mmask16 md[8];
    for (int c = 0; c < nc; c++) {
        md[c] = tail_mask(head_dim - d0 - 16 * c);
        o[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(md[c], out + d0 + 16 * c), rescale);
        o2[c] = _mm512_setzero_ps();
    }
    if (nc <= 4) {
        for (int j = 0; j < 16; j += 2) {
            const __m512 w0 = _mm512_set1_ps(wt[j]), w1 = _mm512_set1_ps(wt[j + 1]);
            for (int c = 0; c < nc; c++) {
                o[c] = _mm512_fmadd_ps(w0, v_chunk(vr, vf, j, d0 + 16 * c, head_dim, md[c]), o[c]);
                o2[c] = _mm512_fmadd_ps(w1, v_chunk(vr, vf, j + 1, d0 + 16 * c, head_dim, md[c]), o2[c]);
            }
        }
        for (int c = 0; c < nc; c++) o[c] = _mm512_add_ps(o[c], o2[c]);
    } else {
        for (int j = 0; j < 16; j++) {
            const __m512 w = _mm512_set1_ps(wt[j]);
            for (int c = 0; c < nc; c++)
                o[c] = _mm512_fmadd_ps(w, v_chunk(vr, vf, j, d0 + 16 * c, head_dim, md[c]), o[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(out + d0 + 16 * c, md[c], o[c]);
}

/* The value pass of one block over the whole head: eight-chunk runs, then at most four. */
static inline __attribute__((always_inline)) void pv_block(float *out, const ts_f16 *const *vr, const float *vf,
                                                           const float wt[16], int head_dim, __m512 rescale) {
    int d0 = 0;
    for (; head_dim - d0 > 64; d0 += 128) pv_chunks(out, vr, vf, wt, d0, head_dim, rescale, 8);
    if (d0 < head_dim) pv_chunks(out, vr, vf, wt, d0, head_dim, rescale, 4);
}

/* out /= l, the softmax's denominator (0 when no position was seen), to which a sink adds its
 * term (m: the running maximum l is relative to). */
static inline void normalize_out(float *out, int head_dim, float l, float m, float sink) {
    if (sink > -INFINITY) l += expf(sink - m);
    const __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 md = tail_mask(head_dim - d);
        _mm512_mask_storeu_ps(out + d, md, _mm512_mul_ps(_mm512_maskz_loadu_ps(md, out + d), inv));
    }
}

/* Positions go in blocks of 16: sixteen dot products reduced together, one vectorized
 * exp, the accumulator (out) rescaled only when the running maximum grows, then the weighted
 * rows of v. A short last block repeats its last row in the unused slots (their weight is 0),
 * so the inner loops keep a fixed count and the accumulators stay in registers. */
static void attn_head_avx512(const float *q, const ts_f16 *k, const ts_f16 *v, int64_t kv_stride,
                             int p0, int p1, int head_dim, float scale, float softcap, float sink, float *out) {
    float m = -INFINITY, l = 0.0f;
    float wt[16];
    const ts_f16 *kr[16], *vr[16];
    for (int d = 0; d < head_dim; d += 16)
        _mm512_mask_storeu_ps(out + d, tail_mask(head_dim - d), _mm512_setzero_ps());
    for (int pb = p0; pb < p1; pb += 16) {
        const int nb = p1 - pb < 16 ? p1 - pb : 16;
        for (int j = 0; j < 16; j++) {
            const int64_t off = (int64_t)(pb + (j < nb ? j : nb - 1)) * kv_stride;
            kr[j] = k + off;
            vr[j] = v + off;
        }
        __m512 acc[16];
        for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
        for (int d = 0; d < head_dim; d += 16) {
            const __mmask16 md = tail_mask(head_dim - d);
            const __m512 qv = _mm512_maskz_loadu_ps(md, q + d);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                acc[j] = _mm512_fmadd_ps(qv, load_f16x16(md, kr[j] + d), acc[j]);
        }
        const __m512 rescale = online_softmax(acc, scale, softcap, tail_mask(nb), &m, &l, wt);
        pv_block(out, vr, NULL, wt, head_dim, rescale);
    }
    normalize_out(out, head_dim, l, m, sink);
}

#define TS_ATTN_ROWS_MAX_DIM 256
_Static_assert(TS_ATTN_Q8_MAX_DIM <= TS_ATTN_ROWS_MAX_DIM, "q8_0 rows go through the grouped kernel");

/* Row p of a cache head widened to f32 in dst: f16 rows kv_stride elements apart, or Q8_0 rows of
 * kv_stride / 32 blocks (head_dim a multiple of 32). */
static inline __attribute__((always_inline)) void widen_row(float *dst, const void *x, int type, int64_t kv_stride,
                                                            int64_t p, int head_dim) {
    if (type == TS_TYPE_Q8_0) {
        const ts_block_q8_0 *r = (const ts_block_q8_0 *)x + p * (kv_stride / TS_QK);
        for (int b = 0; b < head_dim / TS_QK; b++) {
            const __m512 d = _mm512_set1_ps(ts_f16_to_f32(r[b].d));
            for (int i = 0; i < TS_QK; i += 16) {
                const __m512i qi = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(r[b].qs + i)));
                _mm512_storeu_ps(dst + b * TS_QK + i, _mm512_mul_ps(_mm512_cvtepi32_ps(qi), d));
            }
        }
        return;
    }
    const ts_f16 *r = (const ts_f16 *)x + p * kv_stride;
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 md = tail_mask(head_dim - d);
        _mm512_mask_storeu_ps(dst + d, md, load_f16x16(md, r + d));
    }
}

/* attn_head's blocks of 16 positions, with each block of k and v widened to f32 once and then
 * used by every row whose range meets it. type: the cache's (a constant at each call). */
static inline __attribute__((always_inline)) void attn_rows_widened(
    const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok, int n_head, const int32_t *p0,
    const int32_t *p1, const void *k, const void *v, int type, int64_t kv_stride, int head_dim, float scale,
    float softcap, const float *sinks) {
    float kf[16 * TS_ATTN_ROWS_MAX_DIM] __attribute__((aligned(64)));
    float vf[16 * TS_ATTN_ROWS_MAX_DIM] __attribute__((aligned(64)));
    float m[TS_ATTN_MAX_ROWS], l[TS_ATTN_MAX_ROWS], wt[16];
    int lo = p1[0], hi = p0[0];
    for (int t = 0; t < n_tok; t++) {
        if (p0[t] < p1[t] && p0[t] < lo) lo = p0[t];
        if (p1[t] > hi) hi = p1[t];
        for (int h = 0; h < n_head; h++) {
            m[t * n_head + h] = -INFINITY;
            l[t * n_head + h] = 0.0f;
            float *o = out + t * out_stride + (int64_t)h * head_dim;
            for (int d = 0; d < head_dim; d += 16) _mm512_mask_storeu_ps(o + d, tail_mask(head_dim - d), _mm512_setzero_ps());
        }
    }
    for (int pb = lo; pb < hi; pb += 16) {
        const int nb = hi - pb < 16 ? hi - pb : 16;
        /* Unused slots repeat the last row: finite values under a zero weight. */
        for (int j = 0; j < 16; j++) {
            const int64_t p = pb + (j < nb ? j : nb - 1);
            widen_row(kf + j * head_dim, k, type, kv_stride, p, head_dim);
            widen_row(vf + j * head_dim, v, type, kv_stride, p, head_dim);
        }
        for (int t = 0; t < n_tok; t++) {
            const int a = p0[t] > pb ? p0[t] - pb : 0, b = p1[t] - pb < nb ? p1[t] - pb : nb;
            if (a >= b) continue;
            const __mmask16 valid = (__mmask16)(tail_mask(b) & ~tail_mask(a));
            for (int h = 0; h < n_head; h++) {
                const float *qr = q + t * q_stride + (int64_t)h * head_dim;
                float *o = out + t * out_stride + (int64_t)h * head_dim;
                const int r = t * n_head + h;
                __m512 acc[16];
                for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
                for (int d = 0; d < head_dim; d += 16) {
                    const __mmask16 md = tail_mask(head_dim - d);
                    const __m512 qv = _mm512_maskz_loadu_ps(md, qr + d);
#pragma GCC unroll 16
                    for (int j = 0; j < 16; j++)
                        acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(md, kf + j * head_dim + d), acc[j]);
                }
                const __m512 rescale = online_softmax(acc, scale, softcap, valid, &m[r], &l[r], wt);
                pv_block(o, NULL, vf, wt, head_dim, rescale);
            }
        }
    }
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++)
            normalize_out(out + t * out_stride + (int64_t)h * head_dim, head_dim, l[t * n_head + h], m[t * n_head + h],
                          sinks ? sinks[h] : -INFINITY);
}

static void attn_rows_avx512(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                             int n_head, const int32_t *p0, const int32_t *p1, const ts_f16 *k, const ts_f16 *v,
                             int64_t kv_stride, int head_dim, float scale, float softcap, const float *sinks) {
    if (head_dim > TS_ATTN_ROWS_MAX_DIM || n_tok * n_head == 1) {
        for (int t = 0; t < n_tok; t++)
            for (int h = 0; h < n_head; h++)
                attn_head_avx512(q + t * q_stride + (int64_t)h * head_dim, k, v, kv_stride, p0[t], p1[t], head_dim,
                                 scale, softcap, sinks ? sinks[h] : -INFINITY, out + t * out_stride + (int64_t)h * head_dim);
        return;
    }
    attn_rows_widened(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, TS_TYPE_F16, kv_stride, head_dim,
                      scale, softcap, sinks);
}

static void attn_rows_q8_0_avx512(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                                  int n_head, const int32_t *p0, const int32_t *p1, const ts_block_q8_0 *k,
                                  const ts_block_q8_0 *v, int64_t kv_stride, int head_dim, float scale,
                                  float softcap, const float *sinks) {
    attn_rows_widened(q, q_stride, out, out_stride, n_tok, n_head, p0, p1, k, v, TS_TYPE_Q8_0, kv_stride, head_dim,
                      scale, softcap, sinks);
}

/* ---- vision: layer norm and non-causal f32 attention ---- */

static void layernorm_avx512(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    __m512 a = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    const float mean = _mm512_reduce_add_ps(a) / (float)n;
    const __m512 vm = _mm512_set1_ps(mean);
    __m512 ss = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
        ss = _mm512_fmadd_ps(d, d, ss);
    }
    const __m512 sc = _mm512_set1_ps((float)(1.0 / sqrt((double)_mm512_reduce_add_ps(ss) / n + (double)eps)));
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), sc);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

/* Scores of one query against 16 keys (rows kr[j]), as one vector. */
static inline __m512 dot16_f32(const float *q, const float *const kr[16], int head_dim) {
    __m512 acc[16];
    for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
    for (int d = 0; d < head_dim; d += 16) {
        const __mmask16 md = tail_mask(head_dim - d);
        const __m512 qv = _mm512_maskz_loadu_ps(md, q + d);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(md, kr[j] + d), acc[j]);
    }
    return hsum16x16(acc);
}

/* o[i][0 .. 16*NC) += sum_{p0 <= p < p1} s[i][p] * v[p][d0 ..] for 4 query rows: the 4*NC
 * accumulators stay in registers for the whole pass. md masks the last chunk. */
static inline __attribute__((always_inline)) void pv_tile(const float *const s[4], float *const o[4],
                                                         const float *v, int64_t kv_stride, int p0, int p1,
                                                         int d0, const int NC, __mmask16 md) {
    __m512 acc[4][5];
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < NC; c++) acc[i][c] = _mm512_setzero_ps();
    for (int p = p0; p < p1; p++) {
        const float *vp = v + (int64_t)p * kv_stride + d0;
        __m512 vv[5];
        for (int c = 0; c < NC; c++) vv[c] = _mm512_maskz_loadu_ps(c == NC - 1 ? md : (__mmask16)0xFFFF, vp + 16 * c);
        for (int i = 0; i < 4; i++) {
            const __m512 sp = _mm512_set1_ps(s[i][p]);
            for (int c = 0; c < NC; c++) acc[i][c] = _mm512_fmadd_ps(sp, vv[c], acc[i][c]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < NC; c++) {
            const __mmask16 m = c == NC - 1 ? md : (__mmask16)0xFFFF;
            _mm512_mask_storeu_ps(o[i] + 16 * c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, o[i] + 16 * c), acc[i][c]));
        }
}

/* Keys per pass of the value loop: their rows stay in L2 while every query tile uses them. */
#define TS_ATTN_KEY_BLOCK 256

/* Scores first (each block of 16 keys, read once from cache, serves every query), then a row
 * softmax, then the values block by block of keys, in tiles of 4 queries x up to 80 dims. A short
 * last tile repeats its last query and accumulates the repeats into a scratch row. */
static void attn_f32_avx512(const float *q, int64_t q_stride, int nq, const float *k, const float *v,
                            int64_t kv_stride, int n_kv, int head_dim, float scale, float *scores,
                            float *out, int64_t out_stride) {
    const float *kr[16];
    const __m512 vs = _mm512_set1_ps(scale);
    for (int pb = 0; pb < n_kv; pb += 16) {
        const int nb = n_kv - pb < 16 ? n_kv - pb : 16;
        for (int j = 0; j < 16; j++) kr[j] = k + (int64_t)(pb + (j < nb ? j : nb - 1)) * kv_stride;
        for (int i = 0; i < nq; i++)
            _mm512_mask_storeu_ps(scores + (int64_t)i * n_kv + pb, tail_mask(nb),
                                  _mm512_mul_ps(dot16_f32(q + (int64_t)i * q_stride, kr, head_dim), vs));
    }
    for (int i = 0; i < nq; i++) {
        softmax_avx512(scores + (int64_t)i * n_kv, n_kv);
        for (int d = 0; d < head_dim; d += 16)
            _mm512_mask_storeu_ps(out + (int64_t)i * out_stride + d, tail_mask(head_dim - d), _mm512_setzero_ps());
    }
    float spare[80] = {0};
    for (int p0 = 0; p0 < n_kv; p0 += TS_ATTN_KEY_BLOCK) {
        const int p1 = n_kv - p0 < TS_ATTN_KEY_BLOCK ? n_kv : p0 + TS_ATTN_KEY_BLOCK;
        for (int i0 = 0; i0 < nq; i0 += 4) {
            const float *s[4];
            float *o[4];
            for (int i = 0; i < 4; i++) {
                const int r = i0 + i < nq ? i0 + i : nq - 1;
                s[i] = scores + (int64_t)r * n_kv;
                o[i] = out + (int64_t)r * out_stride;
            }
            for (int d0 = 0; d0 < head_dim; d0 += 80) {
                const int w = head_dim - d0 < 80 ? head_dim - d0 : 80, nc = (w + 15) / 16;
                const __mmask16 md = tail_mask(w - 16 * (nc - 1));
                float *oo[4];
                for (int i = 0; i < 4; i++) oo[i] = i0 + i < nq ? o[i] + d0 : spare;
                switch (nc) {
                case 1: pv_tile(s, oo, v, kv_stride, p0, p1, d0, 1, md); break;
                case 2: pv_tile(s, oo, v, kv_stride, p0, p1, d0, 2, md); break;
                case 3: pv_tile(s, oo, v, kv_stride, p0, p1, d0, 3, md); break;
                case 4: pv_tile(s, oo, v, kv_stride, p0, p1, d0, 4, md); break;
                default: pv_tile(s, oo, v, kv_stride, p0, p1, d0, 5, md); break;
                }
            }
        }
    }
}

/* 4 weight rows x 4 activation rows: 16 accumulators; each chunk of 16 halves is converted once
 * and used four times. Missing rows and columns repeat the last one; their sums are not stored. */
static void gemm_f16_tile_avx512(int64_t n, const ts_f16 *w, int64_t w_stride, const float *x, int64_t x_stride,
                                 float *y, int64_t y_stride, int nr, int nc) {
    const ts_f16 *wr[4];
    const float *xr[4];
    for (int i = 0; i < 4; i++) {
        wr[i] = w + (i < nr ? i : nr - 1) * w_stride;
        xr[i] = x + (i < nc ? i : nc - 1) * x_stride;
    }
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t d = 0; d < n; d += 16) {
        const __mmask16 m = tail_mask(n - d);
        __m512 wv[4], xv[4];
        for (int i = 0; i < 4; i++) {
            wv[i] = load_f16x16(m, wr[i] + d);
            xv[i] = _mm512_maskz_loadu_ps(m, xr[i] + d);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(wv[i / 4], xv[i % 4], acc[i]);
    }
    float s[16];
    _mm512_storeu_ps(s, hsum16x16(acc));
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) y[c * y_stride + r] = s[r * 4 + c];
}

/* As exp_sum_scalar; sixteen terms at a time, summed in two double vectors. */
static double exp_sum_avx512(const float *x, int64_t n, float sub, float scale, float lo, float *out) {
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    const __m512 vsub = _mm512_set1_ps(sub), vscale = _mm512_set1_ps(scale), vlo = _mm512_set1_ps(lo);
    const __m512 vmin = _mm512_set1_ps(TS_EXP_MIN);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m512 a = _mm512_mul_ps(_mm512_sub_ps(v, vsub), vscale);
        const __mmask16 in = _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(m, v, vlo, _CMP_GE_OQ), a, vmin, _CMP_GE_OQ);
        const __m512 t = _mm512_maskz_mov_ps(in, exp512(_mm512_max_ps(a, vmin)));
        if (out) _mm512_mask_storeu_ps(out + i, m, t);
        acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(t)));
        acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

/* As logits_prepare_scalar: sixteen entries and half a mask word at a time; fpclass 0x99 picks
 * NaNs and infinities. */
static int64_t logits_prepare_avx512(const float *src, const uint32_t *mask, int64_t n, float *dst, float *bm) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    int64_t finite = 0;
    for (int64_t b0 = 0; b0 < n; b0 += TS_BLOCK_MAX) {
        __m512 m = ninf;
        for (int j = 0; j < TS_BLOCK_MAX; j += 16) {
            const int64_t i = b0 + j;
            const __mmask16 in = tail_mask(n - i);
            if (!in) break;
            const __m512 v = _mm512_maskz_loadu_ps(in, src + i);
            __mmask16 ok = in & ~_mm512_fpclass_ps_mask(v, 0x99);
            if (mask) ok &= (__mmask16)(mask[i / 32] >> (i % 32));
            const __m512 d = _mm512_mask_mov_ps(ninf, ok, v);
            _mm512_mask_storeu_ps(dst + i, in, d);
            m = _mm512_max_ps(m, d);
            finite += __builtin_popcount(ok);
        }
        bm[b0 / TS_BLOCK_MAX] = _mm512_reduce_max_ps(m);
    }
    return finite;
}

void ts_register_avx512_ops(ts_kernels *k) {
    k->rmsnorm = rmsnorm_avx512;
    k->softmax = softmax_avx512;
    k->silu = silu_avx512;
    k->gelu = gelu_avx512;
    k->swiglu = swiglu_avx512;
    k->geglu = geglu_avx512;
    k->rope = rope_avx512;
    k->f16_to_f32 = f16_to_f32_avx512;
    k->f32_to_f16 = f32_to_f16_avx512;
    k->attn_head = attn_head_avx512;
    k->attn_rows = attn_rows_avx512;
    k->attn_rows_q8_0 = attn_rows_q8_0_avx512;
    k->layernorm = layernorm_avx512;
    k->attn_f32 = attn_f32_avx512;
    k->gemm_f16_tile = gemm_f16_tile_avx512;
    k->exp_sum = exp_sum_avx512;
    k->logits_prepare = logits_prepare_avx512;
}
