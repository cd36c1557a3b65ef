#include <string.h>

#include "ts/encoder_ops.h"

/* Activation rows per matmul pass, and weight rows handed out together. */
#define TS_ENC_TOKEN_BLOCK 128
#define TS_ENC_ROW_GROUP 16

/* F16 weights in 4x4 tiles over f32 rows: this thread's groups of weight rows, token block by
 * token block, so a block's rows stay in cache while the weights stream past. */
static void matmul_f16(const ts_kernels *k, const ts_tensor *w, const float *src, int64_t src_stride, int n,
                       float *y, int64_t y_stride, int ith, int nth) {
    const int64_t groups = (w->rows + TS_ENC_ROW_GROUP - 1) / TS_ENC_ROW_GROUP;
    const int64_t g0 = groups * ith / nth, g1 = groups * (ith + 1) / nth;
    const int64_t w_stride = w->row_bytes / (int64_t)sizeof(ts_f16);
    for (int t0 = 0; t0 < n; t0 += TS_ENC_TOKEN_BLOCK) {
        const int t1 = n - t0 < TS_ENC_TOKEN_BLOCK ? n : t0 + TS_ENC_TOKEN_BLOCK;
        for (int64_t g = g0; g < g1; g++) {
            const int64_t r0 = g * TS_ENC_ROW_GROUP;
            const int64_t r1 = r0 + TS_ENC_ROW_GROUP < w->rows ? r0 + TS_ENC_ROW_GROUP : w->rows;
            for (int t = t0; t < t1; t += 4)
                for (int64_t r = r0; r < r1; r += 4)
                    k->gemm_f16_tile(w->cols, (const ts_f16 *)((const char *)w->data + r * w->row_bytes), w_stride,
                                     src + (size_t)t * src_stride, src_stride, y + (size_t)t * y_stride + r, y_stride,
                                     r1 - r < 4 ? (int)(r1 - r) : 4, t1 - t < 4 ? t1 - t : 4);
        }
    }
}

void ts_enc_matmul(const ts_kernels *k, const ts_tensor *w, const float *src, int64_t src_stride,
                   void *const act[3], int n, float *y, int64_t y_stride, int ith, int nth) {
    if (w->type == TS_TYPE_F16 && k->gemm_f16_tile) {
        matmul_f16(k, w, src, src_stride, n, y, y_stride, ith, nth);
        return;
    }
    const ts_type_traits *tr = ts_type_traits_get(w->type);
    const void *xq = tr->act == TS_ACT_F32 ? (const void *)src : act[tr->act];
    const size_t act_row = tr->act == TS_ACT_F32 ? (size_t)src_stride * sizeof(float)
                                                 : ts_act_row_size(tr->act, w->cols);
    /* ts_matmul_part streams every activation row past each group of weight rows; over thousands of
     * rows that is the whole activation matrix from memory per group. Blocks of tokens that stay in
     * L2 cost one more pass over this thread's share of the weights per block instead. */
    for (int t0 = 0; t0 < n; t0 += TS_ENC_TOKEN_BLOCK) {
        const int nt = n - t0 < TS_ENC_TOKEN_BLOCK ? n - t0 : TS_ENC_TOKEN_BLOCK;
        ts_matmul_part(k->vec_dot[w->type], k->vec_dot_rows[w->type], k->gemm[w->type], k->gemm_one[w->type], w->data,
                       w->rows, w->cols, w->row_bytes, (const char *)xq + (size_t)t0 * act_row, act_row, nt,
                       y + (size_t)t0 * y_stride, y_stride, ith, nth);
    }
}

void ts_enc_add_bias(float *y, const ts_tensor *b, int n) {
    if (!b->data) return;
    const float *bv = (const float *)b->data;
    for (int i = 0; i < n; i++) y[i] += bv[i];
}

void ts_enc_split_heads(float *kh, float *vh, const float *k_row, const float *v_row, int t, int n, int n_head,
                        int head_dim) {
    for (int h = 0; h < n_head; h++) {
        memcpy(kh + ((size_t)h * n + t) * head_dim, k_row + (size_t)h * head_dim, (size_t)head_dim * sizeof(float));
        memcpy(vh + ((size_t)h * n + t) * head_dim, v_row + (size_t)h * head_dim, (size_t)head_dim * sizeof(float));
    }
}
