/* An image encoder in llama.cpp's mmproj layout: a ViT (SigLIP or CLIP) followed by a projector
 * into the text model's embedding space, run whole in C as one job on the thread pool. */
#ifndef TS_VISION_H
#define TS_VISION_H

#include "ts/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TS_VPROJ_GEMMA3 = 0, /* average pooling over the patch grid, RMS norm, one projection matrix */
    TS_VPROJ_MLP = 1     /* LLaVA: mm.0, GELU, mm.2 over every patch */
} ts_vit_proj;

typedef enum { TS_VACT_GELU = 0, TS_VACT_GELU_QUICK = 1 } ts_vit_act;

typedef struct {
    int image_size, patch_size;  /* square input side and patch side, in pixels */
    int n_embd, n_ff, n_head;
    int n_layer;                 /* blocks that run: the feature layer, not necessarily all in the file */
    float eps;                   /* of every layer norm and of gemma3's soft embedding norm */
    int ffn_act;                 /* ts_vit_act */
    int has_class;               /* 1: a class token precedes the patches (CLIP) */
    int proj;                    /* ts_vit_proj */
    int pool;                    /* gemma3: side of the averaging window, in patches */
    int n_mm_ff;                 /* mlp: width of mm.0's output */
    int n_out;                   /* width of each output embedding (the text model's n_embd) */
} ts_vit_hparams;

/* Per-block weight slots. Norm weights and matrices are required, biases optional. */
typedef enum {
    TS_V_LN1_W, TS_V_LN1_B, TS_V_Q, TS_V_Q_B, TS_V_K, TS_V_K_B, TS_V_V, TS_V_V_B,
    TS_V_O, TS_V_O_B, TS_V_LN2_W, TS_V_LN2_B, TS_V_UP, TS_V_UP_B, TS_V_DOWN, TS_V_DOWN_B,
    TS_V_LAYER_COUNT
} ts_vit_layer_slot;

/* Encoder-level slots, passed with layer = -1. Shapes (rows x cols):
 * PATCH (n_embd x 3*patch*patch), the conv kernel with (channel, y, x) flattened;
 * POS (n_pos x n_embd) f32 with n_pos = patches + has_class; CLASS (1 x n_embd) f32;
 * MM_NORM_W (1 x n_embd), gemma3's soft embedding norm as stored (1 + w);
 * MM_PROJ (n_out x n_embd), gemma3's projection with rows = outputs (the file stores it transposed);
 * MM0 (n_mm_ff x n_embd), MM2 (n_out x n_mm_ff) and their biases. Vectors are f32. */
typedef enum {
    TS_V_PATCH, TS_V_PATCH_B, TS_V_POS, TS_V_CLASS, TS_V_PRE_LN_W, TS_V_PRE_LN_B,
    TS_V_POST_LN_W, TS_V_POST_LN_B, TS_V_MM_NORM_W, TS_V_MM_PROJ, TS_V_MM0, TS_V_MM0_B,
    TS_V_MM2, TS_V_MM2_B, TS_V_GLOBAL_COUNT
} ts_vit_global_slot;

typedef struct ts_vit ts_vit;

/* NULL on inconsistent hyper-parameters. */
ts_vit *ts_vit_create(const ts_vit_hparams *hp);
void ts_vit_free(ts_vit *v);
/* layer -1 sets a ts_vit_global_slot. 0, or -1 when the tensor's type or shape does not fit. */
int ts_vit_set_tensor(ts_vit *v, int layer, int slot, const ts_tensor *t);
/* Checks that every required weight is present; 0 or -1 (msg names the first missing one). */
int ts_vit_finalize(ts_vit *v, char *msg, int msg_len);
/* Embeddings per image: (side/pool)^2 for gemma3, the patch count for mlp. */
int ts_vit_n_tokens(const ts_vit *v);
/* pixels (3, image_size, image_size) f32, normalized -> out (n_tokens, n_out) f32.
 * 0, or -1 when the encoder is not finalized, -2 when scratch memory cannot be allocated. */
int ts_vit_encode(const ts_vit *v, const float *pixels, float *out, int n_threads);

#ifdef __cplusplus
}
#endif
#endif
