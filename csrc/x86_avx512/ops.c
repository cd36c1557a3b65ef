/* AVX-512: norms, activations, RoPE, softmax, conversions, and the image encoder's attention
 * (the cache's attention: attention.c). */
#include <immintrin.h>
#include <math.h>

#include "ts/fp16.h"
#include "ts/kernels.h"
#include "simd.h"

#define TS_SQRT_2_OVER_PI 0.79788456080286535588f
#define TS_GELU_COEF_A 0.044715f

/* ---- helpers ---- */

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
    k->layernorm = layernorm_avx512;
    k->attn_f32 = attn_f32_avx512;
    k->gemm_f16_tile = gemm_f16_tile_avx512;
    k->exp_sum = exp_sum_avx512;
    k->logits_prepare = logits_prepare_avx512;
}
