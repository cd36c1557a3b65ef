/* Scalar reference: norms, activations, RoPE, softmax, conversions and attention; sampling's passes
 * over a row of logits (token mask, block maxima, exp sums). */
#include <float.h>
#include <math.h>

#include "ts/fp16.h"
#include "ts/kernels.h"

#define TS_SQRT_2_OVER_PI 0.79788456080286535588f
#define TS_GELU_COEF_A 0.044715f

/* The sum of squares is kept in double: this path is the oracle the SIMD paths are held to. */
static void rmsnorm_scalar(const float *x, const float *w, float *y, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
}

static void softmax_scalar(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static inline float silu1(float x) { return x / (1.0f + expf(-x)); }

/* 0.5*x*(1 + tanh(u)) equals x * sigmoid(2u); that form does not cancel for negative x. */
static inline float gelu1(float x) {
    const float u = TS_SQRT_2_OVER_PI * x * (1.0f + TS_GELU_COEF_A * x * x);
    return x / (1.0f + expf(-2.0f * u));
}

static void silu_scalar(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = silu1(x[i]);
}

static void gelu_scalar(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = gelu1(x[i]);
}

static void swiglu_scalar(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = silu1(g[i]) * u[i];
}

static void geglu_scalar(const float *g, const float *u, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = gelu1(g[i]) * u[i];
}

/* Angles are formed in double: at position 8000 a float angle would already be off by ~5e-4 rad. */
static void rope_scalar(float *x, int n_head, int head_dim, int n_rot, float pos, float freq_base,
                        float freq_scale, const float *freq_factors, float mscale, int neox) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * (double)freq_scale * pow((double)freq_base, -2.0 * i / (double)n_rot);
        if (freq_factors) theta /= (double)freq_factors[i];
        const float c = (float)cos(theta) * mscale, s = (float)sin(theta) * mscale;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        for (int h = 0; h < n_head; h++) {
            float *xh = x + (size_t)h * head_dim;
            const float a = xh[i0], b = xh[i1];
            xh[i0] = a * c - b * s;
            xh[i1] = a * s + b * c;
        }
    }
}

static void f16_to_f32_scalar(const ts_f16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ts_f16_to_f32(x[i]);
}

static void f32_to_f16_scalar(const float *x, ts_f16 *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ts_f32_to_f16(x[i]);
}

/* Element d of position p of a cache head: f16, or Q8_0 / Q4_0 (stride / 32 blocks per position). */
static inline float cache_value(const void *x, int type, int64_t stride, int p, int d) {
    const int64_t blk = (int64_t)p * (stride / TS_QK) + d / TS_QK;
    const int i = d % TS_QK;
    if (type == TS_TYPE_Q8_0) {
        const ts_block_q8_0 *b = (const ts_block_q8_0 *)x + blk;
        return ts_f16_to_f32(b->d) * (float)b->qs[i];
    }
    if (type == TS_TYPE_Q4_0) {
        const ts_block_q4_0 *b = (const ts_block_q4_0 *)x + blk;
        const int q = i < TS_QK / 2 ? b->qs[i] & 15 : b->qs[i - TS_QK / 2] >> 4;
        return ts_f16_to_f32(b->d) * (float)(q - 8);
    }
    return ts_f16_to_f32(((const ts_f16 *)x)[(int64_t)p * stride + d]);
}

/* out doubles as the running accumulator; it is rescaled whenever the running max grows. */
static void attn_head_ref(const float *q, const void *k, const void *v, int type, int64_t kv_stride, int p0, int p1,
                          int head_dim, float scale, float softcap, float sink, float *out) {
    float m = -INFINITY, l = 0.0f;
    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    for (int p = p0; p < p1; p++) {
        float s = 0.0f;
        for (int d = 0; d < head_dim; d++) s += q[d] * cache_value(k, type, kv_stride, p, d);
        s *= scale;
        if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
        if (s > m) {
            const float c = expf(m - s);
            l *= c;
            for (int d = 0; d < head_dim; d++) out[d] *= c;
            m = s;
        }
        const float e = expf(s - m);
        l += e;
        for (int d = 0; d < head_dim; d++) out[d] += e * cache_value(v, type, kv_stride, p, d);
    }
    if (sink > -INFINITY) l += expf(sink - m);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int d = 0; d < head_dim; d++) out[d] *= inv;
}

static void attn_head_scalar(const float *q, const ts_f16 *k, const ts_f16 *v, int64_t kv_stride,
                             int p0, int p1, int head_dim, float scale, float softcap, float sink,
                             float *out) {
    attn_head_ref(q, k, v, TS_TYPE_F16, kv_stride, p0, p1, head_dim, scale, softcap, sink, out);
}

/* Each query row is first quantized to Q8_0 as llama.cpp does against a Q8_0 or Q4_0 cache (the
 * SIMD levels then take integer products), and its values attend. */
static void attn_rows_quant_scalar(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                                   int n_head, const int32_t *p0, const int32_t *p1, int type, const void *k,
                                   const void *v, int64_t kv_stride, int head_dim, float scale, float softcap,
                                   const float *sinks) {
    float qv[TS_ATTN_QUANT_MAX_DIM];
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++) {
            ts_q8_0_round_trip(q + t * q_stride + (int64_t)h * head_dim, qv, head_dim);
            attn_head_ref(qv, k, v, type, kv_stride, p0[t], p1[t], head_dim, scale, softcap,
                          sinks ? sinks[h] : -INFINITY, out + t * out_stride + (int64_t)h * head_dim);
        }
}

/* Mean and variance in double, two passes: the oracle for the SIMD layer norms. */
static void layernorm_scalar(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += x[i];
    const double mean = sum / n;
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
    const float m = (float)mean, scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) {
        float v = (x[i] - m) * scale;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = v;
    }
}

static void gelu_quick_scalar(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

static void attn_f32_scalar(const float *q, int64_t q_stride, int nq, const float *k, const float *v,
                            int64_t kv_stride, int n_kv, int head_dim, float scale, float *scores,
                            float *out, int64_t out_stride) {
    for (int i = 0; i < nq; i++) {
        const float *qi = q + (int64_t)i * q_stride;
        float *s = scores + (int64_t)i * n_kv, *o = out + (int64_t)i * out_stride;
        for (int p = 0; p < n_kv; p++) {
            const float *kp = k + (int64_t)p * kv_stride;
            float d = 0.0f;
            for (int c = 0; c < head_dim; c++) d += qi[c] * kp[c];
            s[p] = d * scale;
        }
        softmax_scalar(s, n_kv);
        for (int c = 0; c < head_dim; c++) o[c] = 0.0f;
        for (int p = 0; p < n_kv; p++) {
            const float *vp = v + (int64_t)p * kv_stride;
            for (int c = 0; c < head_dim; c++) o[c] += s[p] * vp[c];
        }
    }
}

static void gemm_f16_tile_scalar(int64_t n, const ts_f16 *w, int64_t w_stride, const float *x, int64_t x_stride,
                                 float *y, int64_t y_stride, int nr, int nc) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) {
            const ts_f16 *wr = w + r * w_stride;
            const float *xr = x + c * x_stride;
            float s = 0.0f;
            for (int64_t i = 0; i < n; i++) s += ts_f16_to_f32(wr[i]) * xr[i];
            y[c * y_stride + r] = s;
        }
}

/* Terms in float, as the SIMD paths form them; the sum in double. */
static double exp_sum_scalar(const float *x, int64_t n, float sub, float scale, float lo, float *out) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float a = (x[i] - sub) * scale;
        const float t = x[i] >= lo && a >= TS_EXP_MIN ? expf(a) : 0.0f;
        if (out) out[i] = t;
        s += t;
    }
    return s;
}

static int64_t logits_prepare_scalar(const float *src, const uint32_t *mask, int64_t n, float *dst, float *bm) {
    int64_t finite = 0;
    for (int64_t b0 = 0; b0 < n; b0 += TS_BLOCK_MAX) {
        const int64_t end = b0 + TS_BLOCK_MAX < n ? b0 + TS_BLOCK_MAX : n;
        float m = -INFINITY;
        for (int64_t i = b0; i < end; i++) {
            const int ok = fabsf(src[i]) <= FLT_MAX && (!mask || ((mask[i / 32] >> (i % 32)) & 1u));
            dst[i] = ok ? src[i] : -INFINITY;
            m = dst[i] > m ? dst[i] : m;
            finite += ok;
        }
        bm[b0 / TS_BLOCK_MAX] = m;
    }
    return finite;
}

void ts_register_scalar_ops(ts_kernels *k) {
    k->rmsnorm = rmsnorm_scalar;
    k->softmax = softmax_scalar;
    k->silu = silu_scalar;
    k->gelu = gelu_scalar;
    k->swiglu = swiglu_scalar;
    k->geglu = geglu_scalar;
    k->rope = rope_scalar;
    k->f16_to_f32 = f16_to_f32_scalar;
    k->f32_to_f16 = f32_to_f16_scalar;
    k->attn_head = attn_head_scalar;
    k->attn_rows_quant = attn_rows_quant_scalar;
    k->layernorm = layernorm_scalar;
    k->gelu_quick = gelu_quick_scalar;
    k->attn_f32 = attn_f32_scalar;
    k->gemm_f16_tile = gemm_f16_tile_scalar;
    k->exp_sum = exp_sum_scalar;
    k->logits_prepare = logits_prepare_scalar;
}
