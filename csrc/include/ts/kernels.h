/* The kernel table (one per ISA, filled once at start-up) and the public kernel entry points. */
#ifndef TS_KERNELS_H
#define TS_KERNELS_H

#include "ts/types.h"
#include <stdatomic.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x: n elements of `type` (n a multiple of its block size) -> y: n floats. */
typedef void (*ts_dequantize_row_fn)(const void *x, float *y, int64_t n);
/* x: n floats -> y: n elements in an activation format (n a multiple of its block size). */
typedef void (*ts_quantize_row_fn)(const float *x, void *y, int64_t n);
/* *s = dot(w, x): w is one weight row of n elements of the table slot's type,
 * x the same n elements in that type's activation format (ts_type_traits.act). */
typedef void (*ts_vec_dot_fn)(int64_t n, float *s, const void *w, const void *x);
/* s[r] = dot(weight row r, x) for r < nr, rows w_stride bytes apart: the same x shared by
 * several rows (matvec). Each s[r] equals, bit for bit, what the type's vec_dot gives. */
typedef void (*ts_vec_dot_rows_fn)(int64_t n, float *s, const void *w, size_t w_stride, const void *x, int nr);

/* A matrix product: y[c*y_stride + r] = dot(w row r, x row c) for r < nr, c < nc; rows w_stride /
 * x_stride bytes apart. Unpacking each weight block once for many activation rows is what makes
 * prompt processing faster than nc separate vec_dots; the kernel orders the work itself. */
typedef void (*ts_gemm_fn)(int64_t n, int nr, int nc, const void *w, size_t w_stride, const void *x,
                           size_t x_stride, float *y, size_t y_stride);

/* Attention of one query head over cache positions [p0, p1).
 * q: (head_dim) f32; k, v: position p is at k + p*kv_stride (head_dim f16 each);
 * scale multiplies q.k; softcap > 0 applies softcap*tanh(x/softcap) to the scores;
 * sink: a logit that joins the softmax's denominator and weighs no value (GPT-OSS's attention
 * sinks; -INFINITY: none); out: (head_dim) f32. Uses an online softmax: one pass over k and v. */
typedef void (*ts_attn_head_fn)(const float *q, const ts_f16 *k, const ts_f16 *v,
                                int64_t kv_stride, int p0, int p1, int head_dim,
                                float scale, float softcap, float sink, float *out);

/* Attention of n_tok x n_head <= TS_ATTN_MAX_ROWS query rows that share one K/V head (heads of a
 * grouped-query group, for one or more tokens of a sequence). Head h of token t is
 * q + t*q_stride + h*head_dim, sees positions [p0[t], p1[t]) and writes out + t*out_stride +
 * h*head_dim; otherwise as attn_head. Converting each f16 block of k and v once for all the
 * rows is what makes it cheaper than attn_head per row. sinks (n_head) or NULL: each head's sink. */
#define TS_ATTN_MAX_ROWS 16
typedef void (*ts_attn_rows_fn)(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                                int n_head, const int32_t *p0, const int32_t *p1, const ts_f16 *k,
                                const ts_f16 *v, int64_t kv_stride, int head_dim, float scale, float softcap,
                                const float *sinks);
/* attn_rows over a cache of 32-element blocks, Q8_0 or Q4_0 (type): position p of k and v is
 * the kv_stride / 32 blocks from block p * (kv_stride / 32) (kv_stride and head_dim multiples of
 * 32, head_dim at most TS_ATTN_QUANT_MAX_DIM). Each query row is quantized to Q8_0 first, as
 * llama.cpp does against such a cache, and attends with those values: every level gives the same
 * result up to rounding (with VNNI the scores are integer sums). */
#define TS_ATTN_QUANT_MAX_DIM 256
typedef void (*ts_attn_rows_quant_fn)(const float *q, int64_t q_stride, float *out, int64_t out_stride, int n_tok,
                                      int n_head, const int32_t *p0, const int32_t *p1, int type, const void *k,
                                      const void *v, int64_t kv_stride, int head_dim, float scale, float softcap,
                                      const float *sinks);

/* y = x (n, a multiple of 32) quantized to Q8_0 and back: a query row as every level's
 * attention over a quantized cache takes it. */
void ts_q8_0_round_trip(const float *x, float *y, int64_t n);

/* x (n floats, a multiple of 32) -> n / 32 GGML blocks of type (TS_TYPE_Q8_0 or TS_TYPE_Q4_0), as
 * ggml's x86 quantizers make them: the KV cache's rows. Scalar, so a row has the same bits on
 * every level. */
void ts_quantize_cache_row(int type, const float *x, void *y, int64_t n);

/* Bytes of n consecutive values of a KV cache of type (TS_TYPE_F16, or TS_TYPE_Q8_0 / TS_TYPE_Q4_0
 * with n a multiple of 32): a row's size, or the byte offset of an element offset. */
static inline size_t ts_cache_bytes(int type, int64_t n) {
    return type == TS_TYPE_F16 ? (size_t)n * sizeof(ts_f16) : (size_t)(n / TS_QK) * (size_t)ts_q8x32_block_bytes(type);
}

/* Bytes of a position's head_dim values in a KV cache of type (TS_TYPE_F16, TS_TYPE_Q8_0,
 * TS_TYPE_Q4_0), or 0 where that type cannot hold such heads. */
static inline int64_t ts_cache_row_bytes(int type, int head_dim) {
    if (head_dim <= 0) return 0;
    if (type != TS_TYPE_F16 &&
        ((type != TS_TYPE_Q8_0 && type != TS_TYPE_Q4_0) || head_dim % TS_QK || head_dim > TS_ATTN_QUANT_MAX_DIM))
        return 0;
    return (int64_t)ts_cache_bytes(type, head_dim);
}
/* Full (non-causal) attention of nq query rows over positions [0, n_kv), everything f32.
 * q: row i at q + i*q_stride; k, v: position p at k + p*kv_stride (head_dim floats each);
 * scale multiplies q.k; scores: nq*n_kv floats of scratch; out: row i at out + i*out_stride. */
typedef void (*ts_attn_f32_fn)(const float *q, int64_t q_stride, int nq, const float *k,
                               const float *v, int64_t kv_stride, int n_kv, int head_dim,
                               float scale, float *scores, float *out, int64_t out_stride);

typedef struct {
    const char *isa; /* "scalar", "avx2", "avx512", "avx512vnni", "neon" */

    ts_dequantize_row_fn dequantize[TS_TYPE_COUNT];
    ts_vec_dot_fn vec_dot[TS_TYPE_COUNT];
    ts_vec_dot_rows_fn vec_dot_rows[TS_TYPE_COUNT]; /* optional: NULL falls back to vec_dot per row */
    ts_gemm_fn gemm[TS_TYPE_COUNT]; /* optional: NULL falls back to vec_dot per row and column */
    /* 1: gemm also takes a single row, at the matvec's speed. A row then gets the same bits alone
     * as in any batch, which speculative decoding needs: a position verified among drafted rows
     * must score as it would decoded alone. */
    unsigned char gemm_one[TS_TYPE_COUNT];
    /* optional: the gemm over weights in ts_repack_rows' layout, for any number of activation rows
     * (one included, so a row gets the same bits alone as in any batch); nr a multiple of 16. A
     * model repacks a weight at load only where its table has this slot. */
    ts_gemm_fn gemm_packed[TS_TYPE_COUNT];
    ts_quantize_row_fn quantize_q8x32;
    ts_quantize_row_fn quantize_q8k;

    /* y = x / sqrt(mean(x^2) + eps) * w   (w may be NULL: no weight). y may alias x. */
    void (*rmsnorm)(const float *x, const float *w, float *y, int n, float eps);
    /* In place, numerically stable. */
    void (*softmax)(float *x, int n);
    /* y = x * sigmoid(x). y may alias x. */
    void (*silu)(const float *x, float *y, int n);
    /* Tanh approximation (gelu_pytorch_tanh, as llama.cpp's GELU). y may alias x. */
    void (*gelu)(const float *x, float *y, int n);
    /* y = silu(g) * u and y = gelu(g) * u. y may alias g. */
    void (*swiglu)(const float *g, const float *u, float *y, int n);
    void (*geglu)(const float *g, const float *u, float *y, int n);
    /* In place rotation of n_head heads of head_dim floats (head h at x + h*head_dim) for one
     * position; the first n_rot dims of each head rotate. neox: pairs (i, i+n_rot/2), else (2i, 2i+1).
     * theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i] (freq_factors (n_rot/2)
     * may be NULL: all 1, Llama 3 and LongRoPE frequency factors as in ggml's rope); cos and sin
     * are multiplied by mscale (LongRoPE's attention factor; 1: none). */
    void (*rope)(float *x, int n_head, int head_dim, int n_rot, float pos, float freq_base,
                 float freq_scale, const float *freq_factors, float mscale, int neox);
    void (*f16_to_f32)(const ts_f16 *x, float *y, int64_t n);
    void (*f32_to_f16)(const float *x, ts_f16 *y, int64_t n);
    ts_attn_head_fn attn_head;
    ts_attn_rows_fn attn_rows; /* optional: NULL runs attn_head per row */
    ts_attn_rows_quant_fn attn_rows_quant;
    /* y = (x - mean(x)) / sqrt(var(x) + eps) * w + b; w, b may be NULL. y may alias x. */
    void (*layernorm)(const float *x, const float *w, const float *b, float *y, int n, float eps);
    /* y = x * sigmoid(1.702 x) (CLIP's quick GELU). y may alias x. */
    void (*gelu_quick)(const float *x, float *y, int n);
    ts_attn_f32_fn attn_f32;
    /* A tile of y = x @ W^T with F16 weights and f32 activations, the image encoder's product over
     * thousands of patches: y[c*y_stride + r] = dot(w row r, x row c) for r < nr, c < nc (both in
     * 1..4); rows w_stride and x_stride elements apart. Each weight chunk serves four rows of x. */
    void (*gemm_f16_tile)(int64_t n, const ts_f16 *w, int64_t w_stride, const float *x, int64_t x_stride,
                          float *y, int64_t y_stride, int nr, int nc);
    /* The sum over x[i] >= lo of e^((x[i] - sub) * scale), accumulated in double; out (may be NULL)
     * receives each term as a float (0 where x[i] < lo, which includes -inf, and where the exponent
     * is below TS_EXP_MIN: denormal results would cost a microcode assist each). Sampling's passes
     * over a vocabulary of logits. */
    double (*exp_sum)(const float *x, int64_t n, float sub, float scale, float lo, float *out);
    /* dst[i] = src[i] where token i is allowed (mask NULL: all; else bit i % 32 of mask[i / 32]) and
     * src[i] is finite, otherwise -inf; bm[b] = the maximum of dst over block b of TS_BLOCK_MAX
     * entries (the last may be shorter). Returns how many entries of dst are finite. Sampling's one
     * pass over a row of logits. */
    int64_t (*logits_prepare)(const float *src, const uint32_t *mask, int64_t n, float *dst, float *bm);
} ts_kernels;
#define TS_BLOCK_MAX 64
#define TS_EXP_MIN -87.0f

/* Each ISA file overrides the slots it implements; slots left NULL keep the previous level's. */
void ts_register_scalar(ts_kernels *k);
void ts_register_scalar_ops(ts_kernels *k);
void ts_register_avx2(ts_kernels *k);
void ts_register_avx2_ops(ts_kernels *k);
void ts_register_avx512(ts_kernels *k);
void ts_register_avx512_ops(ts_kernels *k);
void ts_register_avx512vnni(ts_kernels *k);
void ts_register_avx2_gemm(ts_kernels *k);
void ts_register_avx512_gemm(ts_kernels *k);
void ts_register_avx512vnni_gemm(ts_kernels *k);
void ts_register_avx512vnni_packed(ts_kernels *k);
void ts_register_amx_packed(ts_kernels *k);

/* The table in use: detected once (TENSORSHARP_ISA forces a level), never changes after. */
const ts_kernels *ts_kernels_get(void);
/* A named level's table ("scalar", "avx2", ...) or NULL if this CPU or build lacks it. */
const ts_kernels *ts_kernels_for(const char *isa);
/* Comma-separated list of levels this CPU and build can run, best last. */
const char *ts_isa_available(void);

/* y (n, rows) = x (n, cols) @ W^T, W (rows, cols) stored in GGUF blocks of `type`, rows
 * row_bytes apart (packed: in ts_repack_rows' layout, read by the table's gemm_packed).
 * Activations are quantized once per call. Returns 0, or -1 on bad sizes or a packed weight the
 * table has no kernel for. kernels NULL means the table in use. Work is split over the pool's
 * threads (n_threads <= 0: all). */
int ts_matmul(const ts_kernels *kern, int type, const void *w, int64_t rows, int64_t cols,
              int64_t row_bytes, int packed, const float *x, int64_t n, float *y, int n_threads);

/* The share of thread ith (of nth) of y (n, rows; rows y_stride apart) = xq @ W^T, with the
 * activations already in the dot's format (act_row bytes apart). For use inside pool tasks.
 * dot_rows (may be NULL) takes a single activation row's weight rows in runs; gemm (may be NULL)
 * takes two or more rows, and one row too when gemm_one. */
void ts_matmul_part(ts_vec_dot_fn dot, ts_vec_dot_rows_fn dot_rows, ts_gemm_fn gemm, int gemm_one, const void *w,
                    int64_t rows,
                    int64_t cols, int64_t row_bytes,
                    const void *xq, size_t act_row, int64_t n, float *y, int64_t y_stride,
                    int ith, int nth);
/* The same product with rows handed out in pieces as threads claim them (each claim takes the
 * next piece from *next, which starts at 0 and serves one product): a thread another process
 * holds up leaves its pieces to the others instead of keeping them all waiting at the next
 * barrier. A row's result is the same whichever thread computes it. next NULL: ts_matmul_part's
 * fixed share of thread ith. */
void ts_matmul_claim(ts_vec_dot_fn dot, ts_vec_dot_rows_fn dot_rows, ts_gemm_fn gemm, int gemm_one, const void *w,
                     int64_t rows, int64_t cols, int64_t row_bytes, const void *xq, size_t act_row, int64_t n, float *y,
                     int64_t y_stride, int ith, int nth, atomic_int *next);

/* Causal attention for one sequence with grouped-query heads.
 * q: (n_tok, n_head, head_dim) f32; k, v: (n_kv_head, n_ctx, head_dim) of kv_type (TS_TYPE_F16,
 * or TS_TYPE_Q8_0 / TS_TYPE_Q4_0: head_dim / 32 blocks per position; ts_cache_row_bytes);
 * q_pos: (n_tok) position of each query; a query at p sees cache positions
 * [max(0, p - window + 1), p] (window <= 0: all). sinks: (n_head) attention sinks, or NULL.
 * out: (n_tok, n_head, head_dim). */
int ts_attention(const ts_kernels *kern, const float *q, const void *k, const void *v, int kv_type,
                 const int32_t *q_pos, int n_tok, int n_head, int n_kv_head, int head_dim,
                 int n_ctx, int window, float scale, float softcap, const float *sinks, float *out, int n_threads);

/* The attention of a batch, split into work items for the pool. Query token t, head h is at
 * q + t*q_stride + h*head_dim (out alike); the K/V rows of sequence s, kv head g start
 * s*seq_stride + g*head_stride elements of kv_type (TS_TYPE_F16, TS_TYPE_Q8_0 or TS_TYPE_Q4_0) into kc and vc,
 * positions head_dim apart. Token t attends to
 * [max(0, pos - window + 1), end) with end = end[t], or pos + 1 when end is NULL (window <= 0:
 * from 0). seq NULL: all tokens in sequence 0. */
typedef struct {
    const ts_kernels *k;
    const float *q;
    int64_t q_stride;
    float *out;
    int64_t out_stride;
    const void *kc, *vc;
    int kv_type;
    int64_t seq_stride, head_stride;
    const int32_t *pos, *seq, *end;
    int n_tok, n_head, n_head_kv, head_dim, window;
    float scale, softcap;
    const float *sinks; /* (n_head) attention sinks, or NULL */
} ts_attn_batch;

/* Items: blocks of consecutive tokens times kv heads (times parts of a head group when there
 * are too few to keep nth threads busy); thread ith runs items ith, ith + nth, ... */
int ts_attn_batch_items(const ts_attn_batch *b, int nth);
void ts_attn_batch_run(const ts_attn_batch *b, int item, int nth);

/* Sums n_bytes (a multiple of 8) as uint64 words over the pool's threads: a read-bandwidth
 * probe for benchmarks. */
uint64_t ts_read_probe(const void *buf, size_t n_bytes, int n_threads);

/* y (rows) = W_i x for each of the n_w weight matrices ws[i] (all of `type`, rows x cols), one
 * after another inside one pool job with a barrier after each, as the forward pass runs its
 * matrices: decode's matvec rate without a return to the caller per matrix. x is quantized
 * once. Returns 0, or -1 on bad sizes. For benchmarks. */
int ts_matvec_stream(const ts_kernels *kern, int type, const void *const *ws, int n_w, int64_t rows, int64_t cols,
                     int64_t row_bytes, const float *x, float *y, int n_threads);

#ifdef __cplusplus
}
#endif
#endif
