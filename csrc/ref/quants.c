/* Scalar reference: float weight types, activation quantization and the scalar table's quant slots. */
#include <math.h>
#include <string.h>

#include "ts/fp16.h"
#include "quants.h"

static void dequantize_f32(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void dequantize_f16(const void *vx, float *y, int64_t n) {
    const ts_f16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = ts_f16_to_f32(x[i]);
}

static void dequantize_bf16(const void *vx, float *y, int64_t n) {
    const ts_bf16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = ts_bf16_to_f32(x[i]);
}

/* Float rows are summed in double: as the oracle, the scalar path should sit as close to
 * the exact product as the inputs allow, whatever the row length. */
static void vec_dot_f32(int64_t n, float *s, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)w[i] * (double)x[i];
    *s = (float)sum;
}

static void vec_dot_f16(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_f16 *w = vw;
    const float *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)ts_f16_to_f32(w[i]) * (double)x[i];
    *s = (float)sum;
}

static void vec_dot_bf16(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_bf16 *w = vw;
    const float *x = vx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)ts_bf16_to_f32(w[i]) * (double)x[i];
    *s = (float)sum;
}

/* Symmetric 8-bit scale of a block: d = max|x| / 127 and its inverse (0 for a zero block). */
static float q8_scale(const float *x, int len, float *id) {
    float amax = 0.0f;
    for (int i = 0; i < len; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    *id = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

/* v rounded to the nearest integer, ties to even (rintf in the default rounding mode), as the
 * SIMD conversions and ggml's x86 quantizers round, as int8. |x * id| <= 127 whenever 1/d is
 * finite; the clamp and the NaN test only keep degenerate blocks (a subnormal max whose inverse
 * overflows, inf or NaN inputs) from an out-of-range conversion: a NaN from 0 * inf is the zero
 * it came from. */
static int8_t q8_round(float v) {
    const float r = rintf(v);
    if (r >= 127.0f) return 127;
    if (r <= -127.0f) return -127;
    return r == r ? (int8_t)r : 0;
}

static void quantize_q8x32(const float *x, void *vy, int64_t n) {
    ts_block_q8x32 *y = vy;
    for (int64_t b = 0; b < n / TS_QK; b++, x += TS_QK) {
        float id;
        const float d = q8_scale(x, TS_QK, &id);
        int32_t sum = 0;
        for (int i = 0; i < TS_QK; i++) {
            y[b].qs[i] = q8_round(x[i] * id);
            sum += y[b].qs[i];
        }
        y[b].d = ts_f16_round(d);
        y[b].s = y[b].d * (float)sum;
    }
}

static void quantize_q8_0(const float *x, void *vy, int64_t n) {
    ts_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / TS_QK; b++, x += TS_QK) {
        float id;
        y[b].d = ts_f32_to_f16(q8_scale(x, TS_QK, &id));
        for (int i = 0; i < TS_QK; i++) y[b].qs[i] = q8_round(x[i] * id);
    }
}

void ts_q8_0_round_trip(const float *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / TS_QK; b++) {
        ts_block_q8_0 blk;
        quantize_q8_0(x + b * TS_QK, &blk, TS_QK);
        for (int i = 0; i < TS_QK; i++) y[b * TS_QK + i] = ts_f16_to_f32(blk.d) * (float)blk.qs[i];
    }
}

/* ggml's reference Q4_0: the value of largest magnitude maps to -8, d = it / -8, and each
 * quant is x / d + 8.5 truncated, at most 15; the first 16 elements in the low nibbles. */
static void quantize_q4_0(const float *x, void *vy, int64_t n) {
    ts_block_q4_0 *y = vy;
    for (int64_t b = 0; b < n / TS_QK; b++, x += TS_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < TS_QK; i++)
            if (fabsf(x[i]) > amax) {
                amax = fabsf(x[i]);
                max = x[i];
            }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = ts_f32_to_f16(d);
        for (int i = 0; i < TS_QK / 2; i++) {
            const float v0 = x[i] * id + 8.5f, v1 = x[i + TS_QK / 2] * id + 8.5f;
            /* NaN and out-of-range inputs (an inf in the block) clamp instead of converting undefined */
            const int q0 = v0 >= 15.0f ? 15 : v0 >= 0.0f ? (int)v0 : 0, q1 = v1 >= 15.0f ? 15 : v1 >= 0.0f ? (int)v1 : 0;
            y[b].qs[i] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void ts_quantize_cache_row(int type, const float *x, void *y, int64_t n) {
    if (type == TS_TYPE_Q4_0) quantize_q4_0(x, y, n);
    else quantize_q8_0(x, y, n);
}

static void quantize_q8k(const float *x, void *vy, int64_t n) {
    ts_block_q8k *y = vy;
    for (int64_t b = 0; b < n / TS_QK_K; b++, x += TS_QK_K) {
        float id;
        y[b].d = q8_scale(x, TS_QK_K, &id);
        for (int j = 0; j < TS_QK_K / 16; j++) {
            int sum = 0;
            for (int i = 16 * j; i < 16 * j + 16; i++) {
                y[b].qs[i] = q8_round(x[i] * id);
                sum += y[b].qs[i];
            }
            y[b].bsums[j] = (int16_t)sum;
        }
    }
}

void ts_register_scalar(ts_kernels *k) {
    k->dequantize[TS_TYPE_F32] = dequantize_f32;
    k->dequantize[TS_TYPE_F16] = dequantize_f16;
    k->dequantize[TS_TYPE_BF16] = dequantize_bf16;
    k->vec_dot[TS_TYPE_F32] = vec_dot_f32;
    k->vec_dot[TS_TYPE_F16] = vec_dot_f16;
    k->vec_dot[TS_TYPE_BF16] = vec_dot_bf16;
    k->quantize_q8x32 = quantize_q8x32;
    k->quantize_q8k = quantize_q8k;
    ts_register_scalar_legacy(k);
    ts_register_scalar_kquants(k);
    ts_register_scalar_iquants(k);
}
