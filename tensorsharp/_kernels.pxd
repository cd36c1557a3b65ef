# C declarations of csrc/include/ts/*.h used by _kernels.pyx.
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t

cdef extern from "ts/types.h" nogil:
    ctypedef struct ts_type_traits:
        const char *name
        int block_size
        int type_size
        int act
    const ts_type_traits *ts_type_traits_get(int type)
    size_t ts_row_size(int type, int64_t n)
    size_t ts_act_row_size(int act, int64_t n)

cdef extern from "ts/kernels.h" nogil:
    ctypedef void (*ts_dequantize_row_fn)(const void *x, float *y, int64_t n) noexcept nogil
    ctypedef void (*ts_quantize_row_fn)(const float *x, void *y, int64_t n) noexcept nogil
    ctypedef struct ts_kernels:
        const char *isa
        ts_dequantize_row_fn dequantize[40]
        void *vec_dot[40]
        void *gemm[40]
        unsigned char gemm_one[40]
        void *gemm_packed[40]
        ts_quantize_row_fn quantize_q8x32
        ts_quantize_row_fn quantize_q8k
        void (*rmsnorm)(const float *x, const float *w, float *y, int n, float eps) noexcept nogil
        void (*softmax)(float *x, int n) noexcept nogil
        void (*silu)(const float *x, float *y, int n) noexcept nogil
        void (*gelu)(const float *x, float *y, int n) noexcept nogil
        void (*swiglu)(const float *g, const float *u, float *y, int n) noexcept nogil
        void (*geglu)(const float *g, const float *u, float *y, int n) noexcept nogil
        void (*rope)(float *x, int n_head, int head_dim, int n_rot, float pos, float freq_base,
                     float freq_scale, const float *freq_factors, float mscale, int neox) noexcept nogil
        void (*f16_to_f32)(const uint16_t *x, float *y, int64_t n) noexcept nogil
        void (*f32_to_f16)(const float *x, uint16_t *y, int64_t n) noexcept nogil
        void *attn_head
        void (*layernorm)(const float *x, const float *w, const float *b, float *y, int n,
                          float eps) noexcept nogil
        void (*gelu_quick)(const float *x, float *y, int n) noexcept nogil
        void (*attn_f32)(const float *q, int64_t q_stride, int nq, const float *k, const float *v,
                         int64_t kv_stride, int n_kv, int head_dim, float scale, float *scores,
                         float *out, int64_t out_stride) noexcept nogil
        void (*gemm_f16_tile)(int64_t n, const uint16_t *w, int64_t w_stride, const float *x,
                              int64_t x_stride, float *y, int64_t y_stride, int nr, int nc) noexcept nogil
        double (*exp_sum)(const float *x, int64_t n, float sub, float scale, float lo, float *out) noexcept nogil
        int64_t (*logits_prepare)(const float *src, const uint32_t *mask, int64_t n, float *dst,
                                  float *bm) noexcept nogil

    const ts_kernels *ts_kernels_get()
    const ts_kernels *ts_kernels_for(const char *isa)
    const char *ts_isa_available()
    int ts_matmul(const ts_kernels *kern, int type, const void *w, int64_t rows, int64_t cols,
                  int64_t row_bytes, int packed, const float *x, int64_t n, float *y, int n_threads)
    void ts_quantize_cache_row(int type, const float *x, void *y, int64_t n) nogil
    int64_t ts_cache_row_bytes(int type, int head_dim)
    int ts_attention(const ts_kernels *kern, const float *q, const void *k, const void *v, int kv_type,
                     const int32_t *q_pos, int n_tok, int n_head, int n_kv_head, int head_dim,
                     int n_ctx, int window, float scale, float softcap, const float *sinks, float *out,
                     int n_threads)
    uint64_t ts_read_probe(const void *buf, size_t n_bytes, int n_threads)
    int ts_matvec_stream(const ts_kernels *kern, int type, const void *const *ws, int n_w, int64_t rows,
                         int64_t cols, int64_t row_bytes, const float *x, float *y, int n_threads)

cdef extern from "ts/repack.h" nogil:
    int TS_PACK_ROWS
    int ts_repack_supported(int type)
    int ts_repack_rows(int type, const void *src, void *dst, int64_t rows, int64_t cols, int64_t row_bytes)
    int ts_repack_dequantize_row(ts_dequantize_row_fn dequantize, int type, const void *data, int64_t row, int64_t cols,
                                 int64_t row_bytes, float *out)

cdef extern from "ts/threadpool.h" nogil:
    int ts_cpu_count()

cdef extern from "ts/model.h" nogil:
    ctypedef struct ts_tensor:
        const void *data
        int type
        int64_t rows, cols, row_bytes
        int packed
    ctypedef struct ts_hparams:
        int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_rot, rope_neox
        float norm_eps
        int ffn_act
        float embd_scale, attn_scale, attn_softcap, final_softcap, residual_scale, logit_scale
        int qk_norm_whole
        int n_expert, n_expert_used, n_ff_exp, expert_norm
        float glu_alpha, glu_limit
    ctypedef struct ts_layer_params:
        float rope_base, rope_scale, rope_mscale
        int use_rope, window
    ctypedef struct ts_model:
        pass
    ctypedef struct ts_context:
        pass
    ctypedef struct ts_kv_cache:
        void *k
        void *v
        int n_seq, n_ctx, type
    ts_model *ts_model_create(const ts_hparams *hp)
    void ts_model_free(ts_model *m)
    int ts_model_set_tensor(ts_model *m, int layer, int slot, const ts_tensor *t)
    int ts_model_slot_packable(int layer, int slot)
    int ts_model_set_layer_params(ts_model *m, int layer, const ts_layer_params *lp)
    int ts_model_finalize(ts_model *m, char *msg, int msg_len)
    ts_context *ts_context_create(const ts_model *m, int n_batch)
    void ts_context_free(ts_context *c)
    int ts_forward_hidden(ts_context *c, ts_kv_cache *kv, const int32_t *tokens, const int32_t *pos,
                          const int32_t *seq, const float *embd, const int32_t *attn_end, int n_tok,
                          const int32_t *out_rows, int n_out, float *logits,
                          const int32_t *hid_rows, int n_hid, float *hidden, int n_threads)

cdef extern from "ts/vision.h" nogil:
    ctypedef struct ts_vit_hparams:
        int image_size, patch_size, n_embd, n_ff, n_head, n_layer
        float eps
        int ffn_act, has_class, proj, pool, n_mm_ff, n_out
    ctypedef struct ts_vit:
        pass
    ts_vit *ts_vit_create(const ts_vit_hparams *hp)
    void ts_vit_free(ts_vit *v)
    int ts_vit_set_tensor(ts_vit *v, int layer, int slot, const ts_tensor *t)
    int ts_vit_finalize(ts_vit *v, char *msg, int msg_len)
    int ts_vit_n_tokens(const ts_vit *v)
    int ts_vit_encode(const ts_vit *v, const float *pixels, float *out, int n_threads)

cdef extern from "ts/encoder.h" nogil:
    ctypedef struct ts_enc_hparams:
        int n_embd, n_ff, n_head, n_layer, n_vocab, n_pos, n_types, n_ctx
        float eps
        int ffn
        float rope_base
    ctypedef struct ts_encoder:
        pass
    ts_encoder *ts_encoder_create(const ts_enc_hparams *hp)
    void ts_encoder_free(ts_encoder *e)
    int ts_encoder_set_tensor(ts_encoder *e, int layer, int slot, const ts_tensor *t)
    int ts_encoder_finalize(ts_encoder *e, char *msg, int msg_len)
    int ts_encoder_encode(const ts_encoder *e, const int32_t *tokens, int n_tok, const int32_t *seq_start, int n_seq,
                          float *hidden, int n_threads)

cdef extern from "ts/sampling.h" nogil:
    ctypedef struct ts_sample_params:
        double temperature
        int32_t top_k
        double top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty
    ctypedef struct ts_sample_cand:
        pass
    ctypedef struct ts_sample_work:
        float *x
        float *e
        ts_sample_cand *cand
        int32_t *count
        float *block_max
    int32_t ts_sample(const ts_kernels *kern, const float *logits, int64_t n, const ts_sample_params *p,
                      const int32_t *bias_id, const float *bias, int n_bias, const int32_t *recent,
                      int64_t n_recent, const uint32_t *mask, double u, ts_sample_work *w)
    ctypedef struct ts_sample_row:
        const float *logits
        ts_sample_params p
        const int32_t *bias_id
        const float *bias
        int n_bias
        const int32_t *recent
        int64_t n_recent
        const uint32_t *mask
        double u
        int32_t token
    void ts_sample_rows(const ts_kernels *kern, ts_sample_row *rows, int n_rows, int64_t n, ts_sample_work *works,
                        int n_works, int n_threads)
    int ts_logprobs(const ts_kernels *kern, const float *logits, int64_t n, int32_t token, int n_top,
                    int32_t *top_id, double *top_lp, double *lp_token, ts_sample_work *w)
