/* Scalar reference kernels of the 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4. */
#include "ts/fp16.h"
#include "quants.h"

/* Element i of a block sits in the low nibble of qs[i] for i < 16, in the high nibble of
 * qs[i - 16] otherwise; the 5-bit formats keep bit 4 of element i in bit i of qh. */

const int8_t ts_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

const int8_t ts_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* qh is stored little-endian whatever the host order. */
static uint32_t qh_load(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* The dequantizers round exactly as gguf.quants: one float multiply (and one add for the
 * formats with a minimum) per element, on the f16 scale widened to float. */

static void dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const ts_block_q4_0 *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_f16_to_f32(x[b].d);
        for (int j = 0; j < TS_QK / 2; j++) {
            y[j] = d * (float)((x[b].qs[j] & 0x0F) - 8);
            y[j + TS_QK / 2] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}

static void dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const ts_block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_f16_to_f32(x[b].d), m = ts_f16_to_f32(x[b].m);
        for (int j = 0; j < TS_QK / 2; j++) {
            y[j] = d * (float)(x[b].qs[j] & 0x0F) + m;
            y[j + TS_QK / 2] = d * (float)(x[b].qs[j] >> 4) + m;
        }
    }
}

static void dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const ts_block_q5_0 *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_f16_to_f32(x[b].d);
        const uint32_t qh = qh_load(x[b].qh);
        for (int j = 0; j < TS_QK / 2; j++) {
            const int lo = (x[b].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + TS_QK / 2] = d * (float)(hi - 16);
        }
    }
}

static void dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const ts_block_q5_1 *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_f16_to_f32(x[b].d), m = ts_f16_to_f32(x[b].m);
        const uint32_t qh = qh_load(x[b].qh);
        for (int j = 0; j < TS_QK / 2; j++) {
            const int lo = (x[b].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)lo + m;
            y[j + TS_QK / 2] = d * (float)hi + m;
        }
    }
}

static void dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const ts_block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_f16_to_f32(x[b].d);
        for (int j = 0; j < TS_QK; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

static void dequantize_iq4_nl(const void *vx, float *y, int64_t n) {
    const ts_block_iq4_nl *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_f16_to_f32(x[b].d);
        for (int j = 0; j < TS_QK / 2; j++) {
            y[j] = d * (float)ts_iq4nl_values[x[b].qs[j] & 0x0F];
            y[j + TS_QK / 2] = d * (float)ts_iq4nl_values[x[b].qs[j] >> 4];
        }
    }
}

static void dequantize_mxfp4(const void *vx, float *y, int64_t n) {
    const ts_block_mxfp4 *x = vx;
    for (int64_t b = 0; b < n / TS_QK; b++, y += TS_QK) {
        const float d = ts_e8m0_half_to_f32(x[b].e);
        for (int j = 0; j < TS_QK / 2; j++) {
            y[j] = d * (float)ts_mxfp4_values[x[b].qs[j] & 0x0F];
            y[j + TS_QK / 2] = d * (float)ts_mxfp4_values[x[b].qs[j] >> 4];
        }
    }
}

/* Dot products against q8x32 activations: exact integer sums per block, then one float
 * multiply by both scales. The minimum m of Q4_1/Q5_1 meets every activation of the block
 * equally, so its term is m * (d_x * sum(q_x)) = m * s. */

static void vec_dot_q4_0(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q4_0 *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < TS_QK / 2; j++) {
            isum += ((w[b].qs[j] & 0x0F) - 8) * x[b].qs[j];
            isum += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + TS_QK / 2];
        }
        sum += (float)isum * (ts_f16_to_f32(w[b].d) * x[b].d);
    }
    *s = sum;
}

static void vec_dot_q4_1(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q4_1 *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < TS_QK / 2; j++) {
            isum += (w[b].qs[j] & 0x0F) * x[b].qs[j];
            isum += (w[b].qs[j] >> 4) * x[b].qs[j + TS_QK / 2];
        }
        sum += (float)isum * (ts_f16_to_f32(w[b].d) * x[b].d) + ts_f16_to_f32(w[b].m) * x[b].s;
    }
    *s = sum;
}

static void vec_dot_q5_0(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q5_0 *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        const uint32_t qh = qh_load(w[b].qh);
        int32_t isum = 0;
        for (int j = 0; j < TS_QK / 2; j++) {
            const int lo = (w[b].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            const int hi = (w[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += (lo - 16) * x[b].qs[j] + (hi - 16) * x[b].qs[j + TS_QK / 2];
        }
        sum += (float)isum * (ts_f16_to_f32(w[b].d) * x[b].d);
    }
    *s = sum;
}

static void vec_dot_q5_1(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q5_1 *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        const uint32_t qh = qh_load(w[b].qh);
        int32_t isum = 0;
        for (int j = 0; j < TS_QK / 2; j++) {
            const int lo = (w[b].qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            const int hi = (w[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += lo * x[b].qs[j] + hi * x[b].qs[j + TS_QK / 2];
        }
        sum += (float)isum * (ts_f16_to_f32(w[b].d) * x[b].d) + ts_f16_to_f32(w[b].m) * x[b].s;
    }
    *s = sum;
}

static void vec_dot_q8_0(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q8_0 *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < TS_QK; j++) isum += w[b].qs[j] * x[b].qs[j];
        sum += (float)isum * (ts_f16_to_f32(w[b].d) * x[b].d);
    }
    *s = sum;
}

static void vec_dot_iq4_nl(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq4_nl *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < TS_QK / 2; j++) {
            isum += ts_iq4nl_values[w[b].qs[j] & 0x0F] * x[b].qs[j];
            isum += ts_iq4nl_values[w[b].qs[j] >> 4] * x[b].qs[j + TS_QK / 2];
        }
        sum += (float)isum * (ts_f16_to_f32(w[b].d) * x[b].d);
    }
    *s = sum;
}

static void vec_dot_mxfp4(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_mxfp4 *w = vw;
    const ts_block_q8x32 *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < TS_QK / 2; j++) {
            isum += ts_mxfp4_values[w[b].qs[j] & 0x0F] * x[b].qs[j];
            isum += ts_mxfp4_values[w[b].qs[j] >> 4] * x[b].qs[j + TS_QK / 2];
        }
        sum += (float)isum * (ts_e8m0_half_to_f32(w[b].e) * x[b].d);
    }
    *s = sum;
}

void ts_register_scalar_legacy(ts_kernels *k) {
    k->dequantize[TS_TYPE_Q4_0] = dequantize_q4_0;
    k->dequantize[TS_TYPE_Q4_1] = dequantize_q4_1;
    k->dequantize[TS_TYPE_Q5_0] = dequantize_q5_0;
    k->dequantize[TS_TYPE_Q5_1] = dequantize_q5_1;
    k->dequantize[TS_TYPE_Q8_0] = dequantize_q8_0;
    k->dequantize[TS_TYPE_IQ4_NL] = dequantize_iq4_nl;
    k->dequantize[TS_TYPE_MXFP4] = dequantize_mxfp4;
    k->vec_dot[TS_TYPE_Q4_0] = vec_dot_q4_0;
    k->vec_dot[TS_TYPE_Q4_1] = vec_dot_q4_1;
    k->vec_dot[TS_TYPE_Q5_0] = vec_dot_q5_0;
    k->vec_dot[TS_TYPE_Q5_1] = vec_dot_q5_1;
    k->vec_dot[TS_TYPE_Q8_0] = vec_dot_q8_0;
    k->vec_dot[TS_TYPE_IQ4_NL] = vec_dot_iq4_nl;
    k->vec_dot[TS_TYPE_MXFP4] = vec_dot_mxfp4;
}
