/* A decoder-only transformer described by its hyper-parameters and weight views, its KV cache,
 * and the batched forward pass that runs a whole step in C on the thread pool. */
#ifndef TS_MODEL_H
#define TS_MODEL_H

#include "ts/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A weight: rows x cols elements of `type`, rows row_bytes apart (vectors: rows = 1).
 * The memory belongs to the caller (an mmap of the GGUF file, or a repacked copy) and must
 * outlive the model. packed (ts_model's matrices only): the rows are in ts_repack_rows' layout. */
typedef struct {
    const void *data;
    int type;
    int64_t rows, cols, row_bytes;
    int packed;
} ts_tensor;

/* Activation formats the given weights consume, as a bit mask over ts_act (absent weights, NULL or
 * with data NULL, add nothing). */
unsigned ts_act_mask(const ts_tensor *a, const ts_tensor *b, const ts_tensor *c);
/* Quantizes src (cols floats) into row r of act[format] for each format in mask; act[format]
 * holds rows of ts_act_row_size(format, cols) bytes. */
void ts_quantize_act_row(const ts_kernels *k, void *const act[3], const float *src, int r, int cols, unsigned mask);

/* Per-layer weight slots; absent ones keep data == NULL. Without an attention or FFN norm the
 * block reads the residual stream as it is (OLMo 2 norms only the block outputs). ROPE_FREQS:
 * (n_rot/2) frequency divisors of the layer's RoPE (Llama 3, LongRoPE). A layer with a router
 * (FFN_GATE_INP: n_expert rows) runs the routed FFN instead of GATE/UP/DOWN: its experts are
 * stacked row-wise, GATE_EXPS and UP_EXPS (n_expert * n_ff_exp, n_embd), DOWN_EXPS
 * (n_expert * n_embd, n_ff_exp), as the 3-D GGUF tensors lie in the file. Such a layer's
 * GATE/UP/DOWN, when present, are a shared expert every token passes through, its output scaled
 * by sigmoid(GATE_INP_SHEXP . x) when that gate (n_embd) is present (Qwen2-MoE).
 * GPT-OSS adds: ATTN_SINKS (n_head) a logit per head joining its softmax's denominator; O_BIAS
 * (n_embd); and biases of the router (n_expert) and of each expert's gate and up (n_expert,
 * n_ff_exp) and down (n_expert, n_embd) projections. */
typedef enum {
    TS_W_ATTN_NORM, TS_W_Q, TS_W_K, TS_W_V, TS_W_Q_BIAS, TS_W_K_BIAS, TS_W_V_BIAS,
    TS_W_Q_NORM, TS_W_K_NORM, TS_W_O, TS_W_POST_ATTN_NORM,
    TS_W_FFN_NORM, TS_W_GATE, TS_W_UP, TS_W_DOWN, TS_W_POST_FFN_NORM, TS_W_ROPE_FREQS,
    TS_W_FFN_GATE_INP, TS_W_GATE_EXPS, TS_W_UP_EXPS, TS_W_DOWN_EXPS, TS_W_FFN_GATE_INP_SHEXP,
    TS_W_ATTN_SINKS, TS_W_O_BIAS, TS_W_FFN_GATE_INP_BIAS, TS_W_GATE_EXPS_BIAS, TS_W_UP_EXPS_BIAS,
    TS_W_DOWN_EXPS_BIAS,
    TS_W_LAYER_COUNT
} ts_weight_slot;

/* Model-level slots, passed with layer = -1. */
typedef enum { TS_W_TOKEN_EMBD, TS_W_OUTPUT_NORM, TS_W_OUTPUT, TS_W_GLOBAL_COUNT } ts_global_slot;

/* SWIGLU_CLAMP (GPT-OSS): g' = min(g, limit), u' = clamp(u, -limit, limit),
 * y = g' * sigmoid(alpha * g') * (u' + 1). */
typedef enum { TS_FFN_SILU = 0, TS_FFN_GELU = 1, TS_FFN_SWIGLU_CLAMP = 2 } ts_ffn_act;

typedef struct {
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    int n_rot;          /* rotated dims per head */
    int rope_neox;      /* 1: pairs (i, i + n_rot/2); 0: pairs (2i, 2i+1) */
    float norm_eps;
    int ffn_act;        /* ts_ffn_act */
    float embd_scale;   /* multiplies the token embedding (1: none) */
    float attn_scale;   /* multiplies q.k */
    float attn_softcap; /* 0: none */
    float final_softcap;/* on the logits; 0: none */
    float residual_scale; /* multiplies each block's output before it joins the residual (1: none) */
    float logit_scale;  /* divides the logits (1: none) */
    int qk_norm_whole;  /* 1: the Q/K norms span all heads' rows (n_head*head_dim), 0: one head */
    int n_expert;       /* experts per routed layer; 0: dense model */
    int n_expert_used;  /* experts each token takes (top-k of the router's softmax) */
    int n_ff_exp;       /* hidden width of one expert */
    int expert_norm;    /* 1: the top-k weights are renormalised to sum to one */
    float glu_alpha, glu_limit; /* TS_FFN_SWIGLU_CLAMP's constants */
} ts_hparams;

typedef struct {
    float rope_base, rope_scale; /* theta = pos * rope_scale * rope_base^(-2i/n_rot) / freq factor */
    float rope_mscale;           /* multiplies RoPE's cos and sin (1: none) */
    int use_rope;                /* 0: this layer's q and k are not rotated (SmolLM3) */
    int window;                  /* sliding window in positions; 0: full attention */
} ts_layer_params;

typedef struct ts_model ts_model;

/* Returns NULL on inconsistent hyper-parameters. */
ts_model *ts_model_create(const ts_hparams *hp);
void ts_model_free(ts_model *m);
/* layer -1 sets a ts_global_slot. Returns 0, or -1 when the tensor's shape does not fit the
 * slot (checked against the hyper-parameters), or is packed where the slot, the kernel table or
 * the row count cannot take that. */
int ts_model_set_tensor(ts_model *m, int layer, int slot, const ts_tensor *t);
/* 1 for the slots that may take a packed tensor: the matrices the matmul reads, and the token
 * embedding (its rows looked up through ts_repack_dequantize_row), which is worth packing only
 * where the output is tied to it; not the stacked experts. */
int ts_model_slot_packable(int layer, int slot);
int ts_model_set_layer_params(ts_model *m, int layer, const ts_layer_params *lp);
/* Checks that every required weight is present; 0 or -1 (msg names the first missing one). */
int ts_model_finalize(ts_model *m, char *msg, int msg_len);

/* KV cache of n_seq independent sequences of up to n_ctx positions each.
 * k, v: (n_seq, n_layer, n_head_kv, n_ctx, head_dim) elements of type (TS_TYPE_F16, or TS_TYPE_Q8_0
 * or TS_TYPE_Q4_0: head_dim / 32 blocks per position; ts_cache_row_bytes), owned by the caller. */
typedef struct {
    void *k, *v;
    int n_seq, n_ctx, type;
} ts_kv_cache;

/* A forward context: scratch buffers for batches of up to n_batch tokens. */
typedef struct ts_context ts_context;
ts_context *ts_context_create(const ts_model *m, int n_batch);
void ts_context_free(ts_context *c);

/* One step over n_tok tokens (n_tok <= n_batch): token ids, positions and sequence ids.
 * Writes each token's K/V to its sequence's cache at its position, attends to positions
 * [.., attn_end) of the same sequence, and writes logits (n_out, n_vocab) for the batch rows
 * listed in out_rows. Returns 0, or -1 on bad input (token id, position, sequence or attention
 * end out of range).
 * embd (n_tok, n_embd) f32, may be NULL: a row whose token id is -1 takes row t of embd as its
 * input instead of a token embedding (an image embedding; not scaled by embd_scale).
 * attn_end (n_tok), may be NULL (then pos + 1, causal): the exclusive end position of each row's
 * attention. Cache entries below it must be filled before or by this step; an end beyond pos + 1
 * lets the rows of one image see each other (gemma3 attends bidirectionally within an image), so
 * every position up to it must be a row of this same step. */
int ts_forward(ts_context *c, ts_kv_cache *kv, const int32_t *tokens, const int32_t *pos,
               const int32_t *seq, const float *embd, const int32_t *attn_end, int n_tok,
               const int32_t *out_rows, int n_out, float *logits, int n_threads);
/* ts_forward that also writes hidden (n_hid, n_embd): the final hidden state (after the output
 * norm, the input of the logits) of the batch rows listed in hid_rows, which embeddings pool.
 * A row may be in both lists; a row only in hid_rows costs no logits. */
int ts_forward_hidden(ts_context *c, ts_kv_cache *kv, const int32_t *tokens, const int32_t *pos,
                      const int32_t *seq, const float *embd, const int32_t *attn_end, int n_tok,
                      const int32_t *out_rows, int n_out, float *logits,
                      const int32_t *hid_rows, int n_hid, float *hidden, int n_threads);

#ifdef __cplusplus
}
#endif
#endif
