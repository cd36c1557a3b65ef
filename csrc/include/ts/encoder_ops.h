/* What the two bidirectional encoders (vision.c's image encoder, encoder.c's text encoder) share:
 * matmuls over many activation rows at once, biases, and keys and values laid out head-major. */
#ifndef TS_ENCODER_OPS_H
#define TS_ENCODER_OPS_H

#include "ts/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* This thread's share of y (n, w.rows; rows y_stride apart) = input @ W^T. Input rows are f32 in
 * src (src_stride apart) for float weights, else the activation rows prepared in act (per ts_act,
 * as ts_quantize_act_row writes them). */
void ts_enc_matmul(const ts_kernels *k, const ts_tensor *w, const float *src, int64_t src_stride,
                   void *const act[3], int n, float *y, int64_t y_stride, int ith, int nth);

/* y (n) += b, where the optional bias b is present. */
void ts_enc_add_bias(float *y, const ts_tensor *b, int n);

/* Token t's key and value rows (n_head x head_dim) into kh and vh (n_head, n, head_dim), so that
 * each head's rows are one contiguous run for attention. */
void ts_enc_split_heads(float *kh, float *vh, const float *k_row, const float *v_row, int t, int n, int n_head,
                        int head_dim);

#ifdef __cplusplus
}
#endif
#endif
