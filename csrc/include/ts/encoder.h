/* A bidirectional text encoder (BERT, nomic-bert): embeddings, post-norm blocks, no KV cache;
 * a batch of whole sequences runs as one job on the thread pool, each attending only to itself. */
#ifndef TS_ENCODER_H
#define TS_ENCODER_H

#include "ts/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TS_EFFN_GELU = 0, TS_EFFN_SWIGLU = 1 } ts_enc_ffn;

typedef struct {
    int n_embd, n_ff, n_head, n_layer;
    int n_vocab;
    int n_pos;        /* rows of the learned position table; 0: positions rotate q and k (RoPE) */
    int n_types;      /* rows of the token-type table; 0: none (every token is of type 0) */
    int n_ctx;        /* longest sequence */
    float eps;        /* of every layer norm */
    int ffn;          /* ts_enc_ffn */
    float rope_base;  /* RoPE (neox, whole head) when n_pos == 0 */
} ts_enc_hparams;

/* Per-block slots. Matrices are (rows x cols) = (out x in); biases and norms are f32 vectors. */
typedef enum {
    TS_E_Q, TS_E_Q_B, TS_E_K, TS_E_K_B, TS_E_V, TS_E_V_B, TS_E_O, TS_E_O_B,
    TS_E_ATTN_LN_W, TS_E_ATTN_LN_B, TS_E_UP, TS_E_UP_B, TS_E_GATE, TS_E_DOWN, TS_E_DOWN_B,
    TS_E_OUT_LN_W, TS_E_OUT_LN_B, TS_E_LAYER_COUNT
} ts_enc_layer_slot;

/* Encoder-level slots (layer = -1): TOKEN (n_vocab x n_embd), POS (n_pos x n_embd), TYPE
 * (n_types x n_embd), any type with a dequantizer; the embedding norm's weight and bias. */
typedef enum { TS_E_TOKEN, TS_E_POS, TS_E_TYPE, TS_E_EMB_LN_W, TS_E_EMB_LN_B, TS_E_GLOBAL_COUNT } ts_enc_global_slot;

typedef struct ts_encoder ts_encoder;

/* NULL on inconsistent hyper-parameters. */
ts_encoder *ts_encoder_create(const ts_enc_hparams *hp);
void ts_encoder_free(ts_encoder *e);
/* 0, or -1 when the slot does not exist or the tensor's type or shape does not fit it. */
int ts_encoder_set_tensor(ts_encoder *e, int layer, int slot, const ts_tensor *t);
/* 0, or -1 with msg naming the first required weight that is missing. */
int ts_encoder_finalize(ts_encoder *e, char *msg, int msg_len);
/* tokens (n_tok) hold n_seq sequences back to back, sequence s starting at seq_start[s]
 * (seq_start[0] == 0, increasing, each shorter than n_ctx + 1, the last ending at n_tok);
 * hidden (n_tok, n_embd) receives the final hidden states. 0; -1 for a bad token id, sequence
 * layout or an unfinalized encoder; -2 when scratch memory cannot be allocated. */
int ts_encoder_encode(const ts_encoder *e, const int32_t *tokens, int n_tok, const int32_t *seq_start, int n_seq,
                      float *hidden, int n_threads);

#ifdef __cplusplus
}
#endif
#endif
