/* Scalar reference kernels of the 256-element super-block formats: Q2_K .. Q6_K and IQ4_XS. */
#include "ts/fp16.h"
#include "quants.h"

/* Each format is first unpacked to one int8 quant per element (in element order) plus its
 * integer sub-block scales; dequantize and vec_dot then share that unpacking, so the bit
 * layouts live in one place per format. */

/* Q2_K, Q3_K and Q6_K keep their low bits in 32-byte groups: byte l of group g holds, at
 * bit shift 2j, element 128g + 32j + l. */
static void q2k_unpack(const ts_block_q2_K *x, int8_t q[TS_QK_K]) {
    for (int g = 0; g < 2; g++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) q[128 * g + 32 * j + l] = (x->qs[32 * g + l] >> (2 * j)) & 3;
}

/* Q3_K: a clear bit in hmask subtracts 4; bit b of hmask[l] belongs to element 32b + l. */
static void q3k_unpack(const ts_block_q3_K *x, int8_t q[TS_QK_K]) {
    for (int g = 0; g < 2; g++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int lo = (x->qs[32 * g + l] >> (2 * j)) & 3;
                const int high = (x->hmask[l] >> (4 * g + j)) & 1;
                q[128 * g + 32 * j + l] = (int8_t)(lo - (high ? 0 : 4));
            }
}

/* Sixteen 6-bit scales, offset by 32: low nibbles in bytes 0..7 (scales 0..7 low halves,
 * 8..15 high halves), the top two bits of scale i at bit 2*(i/4) of byte 8 + i%4. */
static void q3k_scales(const ts_block_q3_K *x, int sc[16]) {
    for (int i = 0; i < 16; i++) {
        const int lo = i < 8 ? x->scales[i] & 0x0F : x->scales[i - 8] >> 4;
        const int hi = (x->scales[8 + i % 4] >> (2 * (i / 4))) & 3;
        sc[i] = (lo | hi << 4) - 32;
    }
}

/* Q4_K / Q5_K: eight 6-bit scales and mins. j < 4: low 6 bits of bytes j and j+4; j >= 4:
 * a nibble of byte j+4 plus the top two bits of bytes j-4 (scale) and j (min). */
static void q4k_scales(const uint8_t s[TS_K_SCALE_SIZE], int sc[8], int m[8]) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
            m[j] = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
        }
    }
}

/* Q4_K (and the low bits of Q5_K): byte l of group g holds element 64g + l in its low
 * nibble and element 64g + 32 + l in its high nibble. */
static void q4k_unpack(const uint8_t qs[TS_QK_K / 2], int8_t q[TS_QK_K]) {
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            q[64 * g + l] = (int8_t)(qs[32 * g + l] & 0x0F);
            q[64 * g + 32 + l] = (int8_t)(qs[32 * g + l] >> 4);
        }
}

/* Q5_K: bit b of qh[l] is bit 4 of element 32b + l. */
static void q5k_unpack(const ts_block_q5_K *x, int8_t q[TS_QK_K]) {
    q4k_unpack(x->qs, q);
    for (int b = 0; b < 8; b++)
        for (int l = 0; l < 32; l++) q[32 * b + l] |= ((x->qh[l] >> b) & 1) << 4;
}

/* Q6_K, per half of 128 elements: byte l of ql holds elements l and 64 + l (low, high
 * nibble), l < 64; byte l of qh holds the top two bits of elements l, 32 + l, 64 + l and
 * 96 + l (l < 32), lowest pair first. Offset by 32. */
static void q6k_unpack(const ts_block_q6_K *x, int8_t q[TS_QK_K]) {
    for (int g = 0; g < 2; g++) {
        const uint8_t *ql = x->ql + 64 * g, *qh = x->qh + 32 * g;
        int8_t *o = q + 128 * g;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
        }
    }
}

/* IQ4_XS: sub-block b of 32 takes bytes 16b..16b+15, low nibbles first; its 6-bit scale
 * (offset 32) is a nibble of scales_l[b/2] plus two bits of scales_h. */
static void iq4xs_unpack(const ts_block_iq4_xs *x, int8_t q[TS_QK_K], int sc[8]) {
    for (int b = 0; b < 8; b++) {
        const int lo = (x->scales_l[b / 2] >> (4 * (b % 2))) & 0x0F;
        const int hi = (x->scales_h >> (2 * b)) & 3;
        sc[b] = (lo | hi << 4) - 32;
        for (int l = 0; l < 16; l++) {
            q[32 * b + l] = ts_iq4nl_values[x->qs[16 * b + l] & 0x0F];
            q[32 * b + 16 + l] = ts_iq4nl_values[x->qs[16 * b + l] >> 4];
        }
    }
}

/* y = dl[s] * q - ml[s] over sub-blocks s of `len` elements (ml NULL: no minimum): the
 * float operations of gguf.quants, whose per-sub-block scales are rounded products too. */
static void dequantize_subblocks(const int8_t *q, const float *dl, const float *ml, int len,
                                 float *y) {
    for (int i = 0; i < TS_QK_K; i++) {
        const float v = dl[i / len] * (float)q[i];
        y[i] = ml ? v - ml[i / len] : v;
    }
}

/* sum_s sc[s] * dot(q, a) over sub-blocks of `len`: exact in int32 for every format here
 * (the largest, IQ4_XS, stays below 8 * 32 * 32 * 127 * 127). */
static int32_t dot_subblocks(const int8_t *q, const int8_t *a, const int *sc, int len) {
    int32_t total = 0;
    for (int s = 0; s < TS_QK_K / len; s++) {
        int32_t part = 0;
        for (int l = 0; l < len; l++) part += q[s * len + l] * a[s * len + l];
        total += sc[s] * part;
    }
    return total;
}

/* sum_s m[s] * (sum of the activations of sub-block s), from q8k's sums over 16. */
static int32_t mins_dot_bsums(const int *m, const int16_t *bsums, int len) {
    const int per = len / 16;
    int32_t total = 0;
    for (int s = 0; s < TS_QK_K / len; s++)
        for (int j = 0; j < per; j++) total += m[s] * bsums[s * per + j];
    return total;
}

static void dequantize_q2_k(const void *vx, float *y, int64_t n) {
    const ts_block_q2_K *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        const float d = ts_f16_to_f32(x[b].d), dmin = ts_f16_to_f32(x[b].dmin);
        float dl[16], ml[16];
        int8_t q[TS_QK_K];
        for (int s = 0; s < 16; s++) {
            dl[s] = d * (float)(x[b].scales[s] & 0x0F);
            ml[s] = dmin * (float)(x[b].scales[s] >> 4);
        }
        q2k_unpack(&x[b], q);
        dequantize_subblocks(q, dl, ml, 16, y);
    }
}

static void vec_dot_q2_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q2_K *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        int sc[16], m[16];
        int8_t q[TS_QK_K];
        for (int i = 0; i < 16; i++) {
            sc[i] = w[b].scales[i] & 0x0F;
            m[i] = w[b].scales[i] >> 4;
        }
        q2k_unpack(&w[b], q);
        const int32_t isum = dot_subblocks(q, x[b].qs, sc, 16);
        const int32_t msum = mins_dot_bsums(m, x[b].bsums, 16);
        sum += (x[b].d * ts_f16_to_f32(w[b].d)) * (float)isum -
               (x[b].d * ts_f16_to_f32(w[b].dmin)) * (float)msum;
    }
    *s = sum;
}

static void dequantize_q3_k(const void *vx, float *y, int64_t n) {
    const ts_block_q3_K *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        const float d = ts_f16_to_f32(x[b].d);
        int sc[16];
        float dl[16];
        int8_t q[TS_QK_K];
        q3k_scales(&x[b], sc);
        for (int s = 0; s < 16; s++) dl[s] = d * (float)sc[s];
        q3k_unpack(&x[b], q);
        dequantize_subblocks(q, dl, NULL, 16, y);
    }
}

static void vec_dot_q3_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q3_K *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        int sc[16];
        int8_t q[TS_QK_K];
        q3k_scales(&w[b], sc);
        q3k_unpack(&w[b], q);
        sum += (x[b].d * ts_f16_to_f32(w[b].d)) * (float)dot_subblocks(q, x[b].qs, sc, 16);
    }
    *s = sum;
}

/* Q4_K and Q5_K share scales, mins and float operations; only the unpacking differs. */
static void dequantize_q45_k(const int8_t *q, ts_f16 d16, ts_f16 dmin16,
                             const uint8_t scales[TS_K_SCALE_SIZE], float *y) {
    const float d = ts_f16_to_f32(d16), dmin = ts_f16_to_f32(dmin16);
    int sc[8], m[8];
    float dl[8], ml[8];
    q4k_scales(scales, sc, m);
    for (int s = 0; s < 8; s++) {
        dl[s] = d * (float)sc[s];
        ml[s] = dmin * (float)m[s];
    }
    dequantize_subblocks(q, dl, ml, 32, y);
}

static float dot_q45_k(const int8_t *q, ts_f16 d, ts_f16 dmin,
                       const uint8_t scales[TS_K_SCALE_SIZE], const ts_block_q8k *x) {
    int sc[8], m[8];
    q4k_scales(scales, sc, m);
    const int32_t isum = dot_subblocks(q, x->qs, sc, 32);
    const int32_t msum = mins_dot_bsums(m, x->bsums, 32);
    return (x->d * ts_f16_to_f32(d)) * (float)isum - (x->d * ts_f16_to_f32(dmin)) * (float)msum;
}

static void dequantize_q4_k(const void *vx, float *y, int64_t n) {
    const ts_block_q4_K *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        int8_t q[TS_QK_K];
        q4k_unpack(x[b].qs, q);
        dequantize_q45_k(q, x[b].d, x[b].dmin, x[b].scales, y);
    }
}

static void vec_dot_q4_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q4_K *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        int8_t q[TS_QK_K];
        q4k_unpack(w[b].qs, q);
        sum += dot_q45_k(q, w[b].d, w[b].dmin, w[b].scales, &x[b]);
    }
    *s = sum;
}

static void dequantize_q5_k(const void *vx, float *y, int64_t n) {
    const ts_block_q5_K *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        int8_t q[TS_QK_K];
        q5k_unpack(&x[b], q);
        dequantize_q45_k(q, x[b].d, x[b].dmin, x[b].scales, y);
    }
}

static void vec_dot_q5_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q5_K *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        int8_t q[TS_QK_K];
        q5k_unpack(&w[b], q);
        sum += dot_q45_k(q, w[b].d, w[b].dmin, w[b].scales, &x[b]);
    }
    *s = sum;
}

static void dequantize_q6_k(const void *vx, float *y, int64_t n) {
    const ts_block_q6_K *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        const float d = ts_f16_to_f32(x[b].d);
        float dl[16];
        int8_t q[TS_QK_K];
        for (int s = 0; s < 16; s++) dl[s] = d * (float)x[b].scales[s];
        q6k_unpack(&x[b], q);
        dequantize_subblocks(q, dl, NULL, 16, y);
    }
}

static void vec_dot_q6_k(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_q6_K *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        int sc[16];
        int8_t q[TS_QK_K];
        for (int i = 0; i < 16; i++) sc[i] = w[b].scales[i];
        q6k_unpack(&w[b], q);
        sum += (x[b].d * ts_f16_to_f32(w[b].d)) * (float)dot_subblocks(q, x[b].qs, sc, 16);
    }
    *s = sum;
}

static void dequantize_iq4_xs(const void *vx, float *y, int64_t n) {
    const ts_block_iq4_xs *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        const float d = ts_f16_to_f32(x[b].d);
        int sc[8];
        float dl[8];
        int8_t q[TS_QK_K];
        iq4xs_unpack(&x[b], q, sc);
        for (int s = 0; s < 8; s++) dl[s] = d * (float)sc[s];
        dequantize_subblocks(q, dl, NULL, 32, y);
    }
}

static void vec_dot_iq4_xs(int64_t n, float *s, const void *vw, const void *vx) {
    const ts_block_iq4_xs *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        int sc[8];
        int8_t q[TS_QK_K];
        iq4xs_unpack(&w[b], q, sc);
        sum += (x[b].d * ts_f16_to_f32(w[b].d)) * (float)dot_subblocks(q, x[b].qs, sc, 32);
    }
    *s = sum;
}

void ts_register_scalar_kquants(ts_kernels *k) {
    k->dequantize[TS_TYPE_Q2_K] = dequantize_q2_k;
    k->dequantize[TS_TYPE_Q3_K] = dequantize_q3_k;
    k->dequantize[TS_TYPE_Q4_K] = dequantize_q4_k;
    k->dequantize[TS_TYPE_Q5_K] = dequantize_q5_k;
    k->dequantize[TS_TYPE_Q6_K] = dequantize_q6_k;
    k->dequantize[TS_TYPE_IQ4_XS] = dequantize_iq4_xs;
    k->vec_dot[TS_TYPE_Q2_K] = vec_dot_q2_k;
    k->vec_dot[TS_TYPE_Q3_K] = vec_dot_q3_k;
    k->vec_dot[TS_TYPE_Q4_K] = vec_dot_q4_k;
    k->vec_dot[TS_TYPE_Q5_K] = vec_dot_q5_k;
    k->vec_dot[TS_TYPE_Q6_K] = vec_dot_q6_k;
    k->vec_dot[TS_TYPE_IQ4_XS] = vec_dot_iq4_xs;
}
