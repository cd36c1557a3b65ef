/* The batched decoder forward pass: one pool job per step, phases separated by barriers. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts/fp16.h"
#include "ts/model.h"
#include "ts/repack.h"
#include "ts/threadpool.h"

typedef struct {
    ts_tensor w[TS_W_LAYER_COUNT];
    ts_layer_params p;
} ts_layer;

struct ts_model {
    ts_hparams hp;
    ts_tensor g[TS_W_GLOBAL_COUNT];
    ts_layer *layers; /* (n_layer) */
    const ts_kernels *k;
};

struct ts_context {
    const ts_model *m;
    int n_batch;
    int q_dim, kv_dim, max_in; /* widths: n_head*head_dim, n_head_kv*head_dim, widest matmul input */
    float *x;    /* (n_batch, n_embd) residual stream */
    float *t;    /* (n_batch, max_in) normed input / attention output */
    float *q;    /* (n_batch, q_dim) */
    float *kb;   /* (n_batch, kv_dim) */
    float *vb;   /* (n_batch, kv_dim) */
    float *o;    /* (n_batch, n_embd) matmul output added to the residual */
    float *gate; /* (n_batch, n_ff) */
    float *up;   /* (n_batch, n_ff) */
    void *act[3]; /* per ts_act: (n_batch, activation row of the current input) */
    /* Routed FFN (NULL in dense models). A "pick" is one (token, chosen expert) pair; picks are
     * laid out grouped by expert so each expert's tokens are consecutive rows of one gemm. */
    float *router;    /* (n_batch, n_expert) router logits, then probabilities */
    int32_t *pick_e;  /* (n_batch, n_expert_used) expert of each token's pick */
    float *pick_w;    /* (n_batch, n_expert_used) its weight */
    int32_t *slot;    /* (n_batch, n_expert_used) grouped row of each token's pick */
    int32_t *row_tok; /* (n_batch * n_expert_used) token of each grouped row */
    int32_t *row_ex;  /* (n_batch * n_expert_used) expert of each grouped row */
    int32_t *ex_start;/* (n_expert + 1) first grouped row of each expert */
    float *gx;        /* (n_batch * n_expert_used, n_embd) grouped FFN inputs, later expert outputs */
    float *gg, *gu;   /* (n_batch * n_expert_used, n_ff_exp) grouped gate and up */
    void *gact[3];    /* per ts_act: (n_batch * n_expert_used, activation row) grouped rows */
    /* Work handed out as threads claim it (ts_matmul_claim): one counter, a cache line apart,
     * per claimed phase of a step; all zero between steps (a step zeroes those it used). */
    atomic_int *claims;
    int n_claims;
};

/* Claimed phases are numbered in the order a step reaches them, which is the same on every
 * thread (all take the same branches), so the k-th phase of each thread shares counter k. */
#define TS_CLAIM_STRIDE 16 /* ints: a cache line */
static _Thread_local int tl_phase;

/* The counter of this thread's next claimed phase, or NULL past the context's count (a static
 * split then serves). */
static atomic_int *next_claim(ts_context *c) {
    const int ph = tl_phase++;
    return ph < c->n_claims ? c->claims + (size_t)ph * TS_CLAIM_STRIDE : NULL;
}

static int is_vector_slot(int layer, int slot) {
    if (layer < 0) return slot == TS_W_OUTPUT_NORM;
    switch (slot) {
    case TS_W_ATTN_NORM: case TS_W_Q_BIAS: case TS_W_K_BIAS: case TS_W_V_BIAS:
    case TS_W_Q_NORM: case TS_W_K_NORM: case TS_W_POST_ATTN_NORM: case TS_W_FFN_NORM:
    case TS_W_POST_FFN_NORM: case TS_W_ROPE_FREQS: case TS_W_FFN_GATE_INP_SHEXP:
    case TS_W_ATTN_SINKS: case TS_W_O_BIAS: case TS_W_FFN_GATE_INP_BIAS: case TS_W_GATE_EXPS_BIAS:
    case TS_W_UP_EXPS_BIAS: case TS_W_DOWN_EXPS_BIAS:
        return 1;
    default:
        return 0;
    }
}

/* The (rows, cols) a slot must have under the hyper-parameters. */
static void slot_shape(const ts_hparams *hp, int layer, int slot, int64_t *rows, int64_t *cols) {
    const int64_t qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
    *rows = 1;
    if (layer < 0) {
        if (slot == TS_W_OUTPUT_NORM) *cols = hp->n_embd;
        else { *rows = hp->n_vocab; *cols = hp->n_embd; }
        return;
    }
    switch (slot) {
    case TS_W_ATTN_NORM: case TS_W_POST_ATTN_NORM: case TS_W_FFN_NORM: case TS_W_POST_FFN_NORM:
    case TS_W_FFN_GATE_INP_SHEXP:
        *cols = hp->n_embd; break;
    case TS_W_Q: *rows = qd; *cols = hp->n_embd; break;
    case TS_W_K: case TS_W_V: *rows = kvd; *cols = hp->n_embd; break;
    case TS_W_Q_BIAS: *cols = qd; break;
    case TS_W_K_BIAS: case TS_W_V_BIAS: *cols = kvd; break;
    case TS_W_Q_NORM: *cols = hp->qk_norm_whole ? qd : hp->head_dim; break;
    case TS_W_K_NORM: *cols = hp->qk_norm_whole ? kvd : hp->head_dim; break;
    case TS_W_ROPE_FREQS: *cols = hp->n_rot / 2; break;
    case TS_W_O: *rows = hp->n_embd; *cols = qd; break;
    case TS_W_GATE: case TS_W_UP: *rows = hp->n_ff; *cols = hp->n_embd; break;
    case TS_W_DOWN: *rows = hp->n_embd; *cols = hp->n_ff; break;
    /* rows 0 (no experts) fits no tensor: a dense model refuses expert weights */
    case TS_W_FFN_GATE_INP: *rows = hp->n_expert; *cols = hp->n_embd; break;
    case TS_W_GATE_EXPS: case TS_W_UP_EXPS: *rows = (int64_t)hp->n_expert * hp->n_ff_exp; *cols = hp->n_embd; break;
    case TS_W_DOWN_EXPS: *rows = (int64_t)hp->n_expert * hp->n_embd; *cols = hp->n_ff_exp; break;
    case TS_W_ATTN_SINKS: *cols = hp->n_head; break;
    case TS_W_O_BIAS: *cols = hp->n_embd; break;
    case TS_W_FFN_GATE_INP_BIAS: *cols = hp->n_expert; break;
    case TS_W_GATE_EXPS_BIAS: case TS_W_UP_EXPS_BIAS: *rows = hp->n_expert; *cols = hp->n_ff_exp; break;
    case TS_W_DOWN_EXPS_BIAS: *rows = hp->n_expert; *cols = hp->n_embd; break;
    default: *cols = -1;
    }
}

ts_model *ts_model_create(const ts_hparams *hp) {
    if (hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
        hp->head_dim <= 0 || hp->n_ff <= 0 || hp->n_vocab <= 0 || hp->n_head % hp->n_head_kv != 0 ||
        hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0 || hp->n_layer > 4096 ||
        (hp->ffn_act != TS_FFN_SILU && hp->ffn_act != TS_FFN_GELU && hp->ffn_act != TS_FFN_SWIGLU_CLAMP) ||
        (hp->ffn_act == TS_FFN_SWIGLU_CLAMP && !(isfinite(hp->glu_alpha) && hp->glu_limit > 0)) ||
        !(hp->logit_scale > 0) ||
        !isfinite(hp->residual_scale) || hp->n_expert < 0 || hp->n_expert > 4096 ||
        (hp->n_expert > 0 && (hp->n_expert_used <= 0 || hp->n_expert_used > hp->n_expert || hp->n_ff_exp <= 0)))
        return NULL;
    ts_model *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->hp = *hp;
    m->layers = calloc((size_t)hp->n_layer, sizeof(ts_layer));
    if (!m->layers) { free(m); return NULL; }
    for (int l = 0; l < hp->n_layer; l++) m->layers[l].p = (ts_layer_params){10000.0f, 1.0f, 1.0f, 1, 0};
    m->k = ts_kernels_get();
    return m;
}

void ts_model_free(ts_model *m) {
    if (!m) return;
    free(m->layers);
    free(m);
}

int ts_model_slot_packable(int layer, int slot) {
    if (layer < 0) return slot == TS_W_OUTPUT || slot == TS_W_TOKEN_EMBD;
    return slot == TS_W_Q || slot == TS_W_K || slot == TS_W_V || slot == TS_W_O || slot == TS_W_GATE ||
           slot == TS_W_UP || slot == TS_W_DOWN;
}

int ts_model_set_tensor(ts_model *m, int layer, int slot, const ts_tensor *t) {
    if (layer < -1 || layer >= m->hp.n_layer) return -1;
    if (layer < 0 ? (slot < 0 || slot >= TS_W_GLOBAL_COUNT) : (slot < 0 || slot >= TS_W_LAYER_COUNT)) return -1;
    int64_t rows, cols;
    slot_shape(&m->hp, layer, slot, &rows, &cols);
    if (t->data == NULL || t->rows != rows || t->cols != cols) return -1;
    if (is_vector_slot(layer, slot) ? t->type != TS_TYPE_F32 : m->k->vec_dot[t->type] == NULL) return -1;
    const size_t need = ts_row_size(t->type, cols);
    if (need == 0 || t->row_bytes < (int64_t)need) return -1;
    if (t->packed && !(ts_model_slot_packable(layer, slot) && m->k->gemm_packed[t->type] && t->rows % TS_PACK_ROWS == 0 &&
                       t->row_bytes == (int64_t)need))
        return -1;
    if (layer < 0) m->g[slot] = *t;
    else m->layers[layer].w[slot] = *t;
    return 0;
}

int ts_model_set_layer_params(ts_model *m, int layer, const ts_layer_params *lp) {
    if (layer < 0 || layer >= m->hp.n_layer || !(lp->rope_base > 0) || !(lp->rope_mscale > 0) || lp->window < 0)
        return -1;
    m->layers[layer].p = *lp;
    return 0;
}

int ts_model_finalize(ts_model *m, char *msg, int msg_len) {
    static const int dense[] = {TS_W_Q, TS_W_K, TS_W_V, TS_W_O, TS_W_GATE, TS_W_UP, TS_W_DOWN};
    static const int routed[] = {TS_W_Q, TS_W_K, TS_W_V, TS_W_O, TS_W_GATE_EXPS, TS_W_UP_EXPS, TS_W_DOWN_EXPS};
    if (!m->g[TS_W_TOKEN_EMBD].data || !m->g[TS_W_OUTPUT_NORM].data) {
        snprintf(msg, (size_t)msg_len, "missing token embedding or output norm");
        return -1;
    }
    if (!m->k->dequantize[m->g[TS_W_TOKEN_EMBD].type]) {
        snprintf(msg, (size_t)msg_len, "token embedding type cannot be dequantized");
        return -1;
    }
    if (!m->g[TS_W_OUTPUT].data) m->g[TS_W_OUTPUT] = m->g[TS_W_TOKEN_EMBD]; /* tied */
    for (int l = 0; l < m->hp.n_layer; l++) {
        const int *required = m->layers[l].w[TS_W_FFN_GATE_INP].data ? routed : dense;
        for (size_t i = 0; i < sizeof(dense) / sizeof(dense[0]); i++)
            if (!m->layers[l].w[required[i]].data) {
                snprintf(msg, (size_t)msg_len, "layer %d lacks weight slot %d", l, required[i]);
                return -1;
            }
        const ts_tensor *w = m->layers[l].w;
        const int has_gate = w[TS_W_GATE].data != NULL, has_router = w[TS_W_FFN_GATE_INP].data != NULL;
        if (has_gate != (w[TS_W_UP].data != NULL) || has_gate != (w[TS_W_DOWN].data != NULL) ||
            (!has_router && (w[TS_W_GATE_EXPS].data || w[TS_W_UP_EXPS].data || w[TS_W_DOWN_EXPS].data ||
                             w[TS_W_FFN_GATE_INP_SHEXP].data || w[TS_W_FFN_GATE_INP_BIAS].data ||
                             w[TS_W_GATE_EXPS_BIAS].data || w[TS_W_UP_EXPS_BIAS].data || w[TS_W_DOWN_EXPS_BIAS].data))) {
            snprintf(msg, (size_t)msg_len, "layer %d has part of an FFN (gate, up and down; experts without a router)", l);
            return -1;
        }
    }
    return 0;
}

ts_context *ts_context_create(const ts_model *m, int n_batch) {
    const ts_hparams *hp = &m->hp;
    if (n_batch <= 0) return NULL;
    ts_context *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->m = m;
    c->n_batch = n_batch;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    c->max_in = hp->n_embd;
    if (c->q_dim > c->max_in) c->max_in = c->q_dim;
    if (hp->n_ff > c->max_in) c->max_in = hp->n_ff;
    if (hp->n_ff_exp > c->max_in) c->max_in = hp->n_ff_exp;
    const size_t nb = (size_t)n_batch;
    c->x = malloc(nb * hp->n_embd * sizeof(float));
    c->t = malloc(nb * c->max_in * sizeof(float));
    c->q = malloc(nb * c->q_dim * sizeof(float));
    c->kb = malloc(nb * c->kv_dim * sizeof(float));
    c->vb = malloc(nb * c->kv_dim * sizeof(float));
    c->o = malloc(nb * hp->n_embd * sizeof(float));
    c->gate = malloc(nb * hp->n_ff * sizeof(float));
    c->up = malloc(nb * hp->n_ff * sizeof(float));
    /* Widest row rounded up to whole blocks of either activation format. */
    const int64_t padded = ((int64_t)c->max_in + TS_QK_K - 1) / TS_QK_K * TS_QK_K;
    c->act[TS_ACT_Q8X32] = malloc(nb * ts_act_row_size(TS_ACT_Q8X32, padded));
    c->act[TS_ACT_Q8K] = malloc(nb * ts_act_row_size(TS_ACT_Q8K, padded));
    /* Per layer: q, k, v, attention, o, gate, up, down and a shared expert's three; then the output. */
    c->n_claims = hp->n_layer * 12 + 2;
    c->claims = calloc((size_t)c->n_claims * TS_CLAIM_STRIDE, sizeof(atomic_int));
    if (!c->x || !c->t || !c->q || !c->kb || !c->vb || !c->o || !c->gate || !c->up ||
        !c->act[TS_ACT_Q8X32] || !c->act[TS_ACT_Q8K] || !c->claims) {
        ts_context_free(c);
        return NULL;
    }
    if (hp->n_expert > 0) {
        const size_t picks = nb * hp->n_expert_used;
        c->router = malloc(nb * hp->n_expert * sizeof(float));
        c->pick_e = malloc(picks * sizeof(int32_t));
        c->pick_w = malloc(picks * sizeof(float));
        c->slot = malloc(picks * sizeof(int32_t));
        c->row_tok = malloc(picks * sizeof(int32_t));
        c->row_ex = malloc(picks * sizeof(int32_t));
        c->ex_start = malloc(((size_t)hp->n_expert + 1) * sizeof(int32_t));
        c->gx = malloc(picks * hp->n_embd * sizeof(float));
        c->gg = malloc(picks * hp->n_ff_exp * sizeof(float));
        c->gu = malloc(picks * hp->n_ff_exp * sizeof(float));
        c->gact[TS_ACT_Q8X32] = malloc(picks * ts_act_row_size(TS_ACT_Q8X32, padded));
        c->gact[TS_ACT_Q8K] = malloc(picks * ts_act_row_size(TS_ACT_Q8K, padded));
        if (!c->router || !c->pick_e || !c->pick_w || !c->slot || !c->row_tok || !c->row_ex || !c->ex_start || !c->gx ||
            !c->gg || !c->gu || !c->gact[TS_ACT_Q8X32] || !c->gact[TS_ACT_Q8K]) {
            ts_context_free(c);
            return NULL;
        }
    }
    return c;
}

void ts_context_free(ts_context *c) {
    if (!c) return;
    free(c->x); free(c->t); free(c->q); free(c->kb); free(c->vb); free(c->o);
    free(c->gate); free(c->up); free(c->act[TS_ACT_Q8X32]); free(c->act[TS_ACT_Q8K]);
    free(c->router); free(c->pick_e); free(c->pick_w); free(c->slot); free(c->row_tok); free(c->row_ex); free(c->ex_start);
    free(c->gx); free(c->gg); free(c->gu); free(c->gact[TS_ACT_Q8X32]); free(c->gact[TS_ACT_Q8K]);
    free(c->claims);
    free(c);
}

typedef struct {
    ts_context *c;
    ts_kv_cache *kv;
    const int32_t *tokens, *pos, *seq, *out_rows;
    const float *embd;        /* (n_tok, n_embd) input rows of tokens -1, or NULL */
    const int32_t *attn_end;  /* (n_tok) exclusive end of each row's attention, or NULL: pos + 1 */
    int n_tok, n_out;
    float *logits;
    const int32_t *hid_rows;  /* (n_hid) rows whose final hidden state goes to hidden */
    int n_hid;
    float *hidden;
    ts_threadpool *pool;
    int claimed;              /* claim counters the step used: set by thread 0 when it is done */
} step_job;

unsigned ts_act_mask(const ts_tensor *a, const ts_tensor *b, const ts_tensor *c) {
    unsigned mask = 0;
    const ts_tensor *ws[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (ws[i] && ws[i]->data) mask |= 1u << ts_type_traits_get(ws[i]->type)->act;
    return mask;
}

void ts_quantize_act_row(const ts_kernels *k, void *const act[3], const float *src, int r, int cols, unsigned mask) {
    if (mask & (1u << TS_ACT_Q8X32))
        k->quantize_q8x32(src, (char *)act[TS_ACT_Q8X32] + (size_t)r * ts_act_row_size(TS_ACT_Q8X32, cols), cols);
    if (mask & (1u << TS_ACT_Q8K))
        k->quantize_q8k(src, (char *)act[TS_ACT_Q8K] + (size_t)r * ts_act_row_size(TS_ACT_Q8K, cols), cols);
}

static void quantize_row(ts_context *c, const float *src, int r, int cols, unsigned mask) {
    ts_quantize_act_row(c->m->k, c->act, src, r, cols, mask);
}

/* This thread's share of y (n, w.rows) = input @ W^T; input rows are f32 in `src` for
 * float weights, else the prepared activation rows. */
static void mm(ts_context *c, const ts_tensor *w, const float *src, int src_stride, int n,
               float *y, int ith, int nth) {
    const ts_type_traits *tr = ts_type_traits_get(w->type);
    const void *xq = tr->act == TS_ACT_F32 ? (const void *)src : c->act[tr->act];
    const size_t act_row = tr->act == TS_ACT_F32 ? (size_t)src_stride * sizeof(float)
                                                 : ts_act_row_size(tr->act, w->cols);
    const ts_kernels *k = c->m->k;
    ts_matmul_claim(k->vec_dot[w->type], k->vec_dot_rows[w->type], w->packed ? k->gemm_packed[w->type] : k->gemm[w->type],
                    w->packed || k->gemm_one[w->type], w->data, w->rows, w->cols, w->row_bytes, xq, act_row, n, y,
                    w->rows, ith, nth, nth > 1 ? next_claim(c) : NULL);
}

/* This thread's share of one expert's matmul: rows [e*rows, (e+1)*rows) of the stacked w
 * against the grouped rows [r0, r1), inputs f32 in src (src_stride apart) or prepared in gact. */
static void mm_expert(ts_context *c, const ts_tensor *w, int e, int64_t rows, const float *src, int src_stride,
                      int r0, int r1, float *y, int ith, int nth) {
    const ts_type_traits *tr = ts_type_traits_get(w->type);
    const size_t act_row = tr->act == TS_ACT_F32 ? (size_t)src_stride * sizeof(float)
                                                 : ts_act_row_size(tr->act, w->cols);
    const void *xq = tr->act == TS_ACT_F32 ? (const void *)src : c->gact[tr->act];
    const ts_kernels *k = c->m->k;
    ts_matmul_part(k->vec_dot[w->type], k->vec_dot_rows[w->type], k->gemm[w->type], k->gemm_one[w->type],
                   (const char *)w->data + (size_t)e * rows * w->row_bytes, rows, w->cols, w->row_bytes,
                   (const char *)xq + (size_t)r0 * act_row, act_row, r1 - r0, y + (size_t)r0 * rows, rows, ith, nth);
}

static const float *vec(const ts_tensor *t) { return (const float *)t->data; }

static size_t cache_offset(const ts_model *m, const ts_kv_cache *kv, int s, int l, int h) {
    const ts_hparams *hp = &m->hp;
    return (((size_t)s * hp->n_layer + l) * hp->n_head_kv + h) * (size_t)kv->n_ctx * hp->head_dim;
}

/* The cache element at offset off (head_dim divides it, so a quantized cache's offset is whole blocks). */
static void *cache_at(const ts_kv_cache *kv, void *base, size_t off) {
    return (char *)base + ts_cache_bytes(kv->type, (int64_t)off);
}

/* One head of q or k rotated for its position as the layer wants it (SmolLM3: some layers not at all). */
static void rope_head(const ts_model *m, const ts_layer *L, float *x, float pos) {
    const ts_hparams *hp = &m->hp;
    if (!L->p.use_rope) return;
    m->k->rope(x, 1, hp->head_dim, hp->n_rot, pos, L->p.rope_base, L->p.rope_scale, vec(&L->w[TS_W_ROPE_FREQS]),
               L->p.rope_mscale, hp->rope_neox);
}

/* A quantized cache holds K and V turned by an orthonormal Walsh-Hadamard matrix H (H = H^T,
 * H H = I), as llama.cpp's does: H spreads a head's outlying values over all its elements, so
 * that 32-element blocks quantize with a smaller step. Queries turn with K's H, which leaves
 * every score as it was; the attention output, a sum of turned V rows, turns back with V's. The
 * sizes are llama.cpp's: K's the largest power of two from 64 up that divides the head, V's 64;
 * none for heads that 64 does not divide. */
static int rotation_k(const ts_hparams *hp, const ts_kv_cache *kv) {
    if (kv->type == TS_TYPE_F16 || hp->head_dim % 64) return 0;
    int n = 64;
    while (hp->head_dim % (2 * n) == 0) n *= 2;
    return n;
}

static int rotation_v(const ts_hparams *hp, const ts_kv_cache *kv) {
    return kv->type == TS_TYPE_F16 || hp->head_dim % 64 ? 0 : 64;
}

/* x (len, a multiple of n) = H x in chunks of n (a power of two; 0: none): the butterflies of the fast
 * Walsh-Hadamard transform, which in this order give the Sylvester matrix llama.cpp builds. */
static void hadamard(float *x, int len, int n) {
    if (!n) return;
    const float f = 1.0f / sqrtf((float)n);
    for (int c = 0; c < len; c += n) {
        float *y = x + c;
        for (int s = 1; s < n; s *= 2)
            for (int i = 0; i < n; i += 2 * s)
                for (int k = i; k < i + s; k++) {
                    const float a = y[k], b = y[k + s];
                    y[k] = a + b;
                    y[k + s] = a - b;
                }
        for (int k = 0; k < n; k++) y[k] *= f;
    }
}

/* Bias, per-head norm and RoPE of q and k (turned for a quantized cache); k and v then go into
 * the cache. */
static void qk_prepare(step_job *j, const ts_layer *L, int l, int ith, int nth) {
    ts_context *c = j->c;
    const ts_model *m = c->m;
    const ts_hparams *hp = &m->hp;
    const ts_kernels *k = m->k;
    const int hd = hp->head_dim, heads = hp->n_head + hp->n_head_kv;
    /* per-head norms only; whole-row ones ran in qk_norm_whole */
    const float *q_norm = hp->qk_norm_whole ? NULL : vec(&L->w[TS_W_Q_NORM]);
    const float *k_norm = hp->qk_norm_whole ? NULL : vec(&L->w[TS_W_K_NORM]);
    const int rot_k = rotation_k(hp, j->kv);
    for (int item = ith; item < j->n_tok * heads; item += nth) {
        const int t = item / heads, h = item % heads;
        const float pos = (float)j->pos[t];
        if (h < hp->n_head) {
            float *q = c->q + (size_t)t * c->q_dim + (size_t)h * hd;
            if (L->w[TS_W_Q_BIAS].data)
                for (int i = 0; i < hd; i++) q[i] += vec(&L->w[TS_W_Q_BIAS])[h * hd + i];
            if (q_norm) k->rmsnorm(q, q_norm, q, hd, hp->norm_eps);
            rope_head(m, L, q, pos);
            if (rot_k) hadamard(q, hd, rot_k);
        } else {
            const int kh = h - hp->n_head;
            float *kr = c->kb + (size_t)t * c->kv_dim + (size_t)kh * hd;
            float *vr = c->vb + (size_t)t * c->kv_dim + (size_t)kh * hd;
            if (L->w[TS_W_K_BIAS].data)
                for (int i = 0; i < hd; i++) kr[i] += vec(&L->w[TS_W_K_BIAS])[kh * hd + i];
            if (L->w[TS_W_V_BIAS].data)
                for (int i = 0; i < hd; i++) vr[i] += vec(&L->w[TS_W_V_BIAS])[kh * hd + i];
            if (k_norm) k->rmsnorm(kr, k_norm, kr, hd, hp->norm_eps);
            rope_head(m, L, kr, pos);
            const size_t off = cache_offset(m, j->kv, j->seq[t], l, kh) + (size_t)j->pos[t] * hd;
            if (j->kv->type != TS_TYPE_F16) {
                hadamard(kr, hd, rot_k);
                hadamard(vr, hd, rotation_v(hp, j->kv));
                ts_quantize_cache_row(j->kv->type, kr, cache_at(j->kv, j->kv->k, off), hd);
                ts_quantize_cache_row(j->kv->type, vr, cache_at(j->kv, j->kv->v, off), hd);
            } else {
                k->f32_to_f16(kr, cache_at(j->kv, j->kv->k, off), hd);
                k->f32_to_f16(vr, cache_at(j->kv, j->kv->v, off), hd);
            }
        }
    }
}

/* OLMo 2's Q/K norms over each token's whole q and k rows (all heads at once): this thread's tokens. */
static void qk_norm_whole(step_job *j, const ts_layer *L, int t0, int t1) {
    ts_context *c = j->c;
    const ts_hparams *hp = &c->m->hp;
    for (int t = t0; t < t1; t++) {
        float *q = c->q + (size_t)t * c->q_dim, *kr = c->kb + (size_t)t * c->kv_dim;
        if (L->w[TS_W_Q_NORM].data) c->m->k->rmsnorm(q, vec(&L->w[TS_W_Q_NORM]), q, c->q_dim, hp->norm_eps);
        if (L->w[TS_W_K_NORM].data) c->m->k->rmsnorm(kr, vec(&L->w[TS_W_K_NORM]), kr, c->kv_dim, hp->norm_eps);
    }
}

/* The input of a block: the residual row normed, or as it is when the layer has no such norm. */
static void block_input(const ts_context *c, const ts_tensor *norm, const float *x, float *y) {
    const ts_hparams *hp = &c->m->hp;
    if (norm->data) c->m->k->rmsnorm(x, vec(norm), y, hp->n_embd, hp->norm_eps);
    else memcpy(y, x, (size_t)hp->n_embd * sizeof(float));
}

static void attend(step_job *j, const ts_layer *L, int l, int ith, int nth) {
    ts_context *c = j->c;
    const ts_model *m = c->m;
    const ts_hparams *hp = &m->hp;
    const size_t head = (size_t)j->kv->n_ctx * hp->head_dim, first = cache_offset(m, j->kv, 0, l, 0);
    const ts_attn_batch b = {m->k, c->q, c->q_dim, c->t, c->max_in, cache_at(j->kv, j->kv->k, first),
                             cache_at(j->kv, j->kv->v, first), j->kv->type,
                             (int64_t)(hp->n_layer * hp->n_head_kv * head), (int64_t)head, j->pos, j->seq, j->attn_end,
                             j->n_tok, hp->n_head, hp->n_head_kv, hp->head_dim, L->p.window, hp->attn_scale,
                             hp->attn_softcap, vec(&L->w[TS_W_ATTN_SINKS])};
    const int items = ts_attn_batch_items(&b, nth);
    /* Claimed: items differ in length (each sequence attends over its own context). */
    atomic_int *next = nth > 1 ? next_claim(c) : NULL;
    if (!next) {
        for (int item = ith; item < items; item += nth) ts_attn_batch_run(&b, item, nth);
        return;
    }
    for (int item; (item = atomic_fetch_add_explicit(next, 1, memory_order_relaxed)) < items;)
        ts_attn_batch_run(&b, item, nth);
}

static void glu(const ts_context *c, float *g, const float *u, int n) {
    const ts_hparams *hp = &c->m->hp;
    if (hp->ffn_act == TS_FFN_GELU) {
        c->m->k->geglu(g, u, g, n);
    } else if (hp->ffn_act == TS_FFN_SWIGLU_CLAMP) {
        const float lim = hp->glu_limit, a = hp->glu_alpha;
        for (int i = 0; i < n; i++) {
            const float x = g[i] < lim ? g[i] : lim, y = u[i] < -lim ? -lim : u[i] > lim ? lim : u[i];
            g[i] = x / (1.0f + expf(-a * x)) * (y + 1.0f);
        }
    } else {
        c->m->k->swiglu(g, u, g, n);
    }
}

/* The dense FFN of the normed inputs in c->t into c->o. Token-split phases use [t0, t1). */
static void ffn_dense(step_job *j, const ts_layer *L, int t0, int t1, int ith, int nth) {
    ts_context *c = j->c;
    const ts_tensor *W = L->w;
    const int n = j->n_tok, F = c->m->hp.n_ff;
    unsigned mask = ts_act_mask(&W[TS_W_GATE], &W[TS_W_UP], NULL);
    for (int t = t0; t < t1; t++) quantize_row(c, c->t + (size_t)t * c->max_in, t, c->m->hp.n_embd, mask);
    ts_threadpool_barrier(j->pool, nth);
    mm(c, &W[TS_W_GATE], c->t, c->max_in, n, c->gate, ith, nth);
    mm(c, &W[TS_W_UP], c->t, c->max_in, n, c->up, ith, nth);
    ts_threadpool_barrier(j->pool, nth);
    mask = ts_act_mask(&W[TS_W_DOWN], NULL, NULL);
    for (int t = t0; t < t1; t++) {
        float *g = c->gate + (size_t)t * F;
        glu(c, g, c->up + (size_t)t * F, F);
        quantize_row(c, g, t, F, mask);
    }
    ts_threadpool_barrier(j->pool, nth);
    mm(c, &W[TS_W_DOWN], c->gate, F, n, c->o, ith, nth);
}

/* Token t's picks: the top n_expert_used of the router's softmax (bias: (n_expert) added to the
 * logits first, or NULL), their weights renormalised when the model says so (llama.cpp's floor on
 * the sum keeps a vanishing one finite). Renormalised, they equal a softmax over the picked
 * logits alone (GPT-OSS's order). */
static void route_token(ts_context *c, int t, const float *bias) {
    const ts_hparams *hp = &c->m->hp;
    const int ne = hp->n_expert, kk = hp->n_expert_used;
    float *p = c->router + (size_t)t * ne, *w = c->pick_w + (size_t)t * kk;
    int32_t *e = c->pick_e + (size_t)t * kk;
    if (bias)
        for (int i = 0; i < ne; i++) p[i] += bias[i];
    float max = p[0], sum = 0.0f;
    for (int i = 1; i < ne; i++) max = p[i] > max ? p[i] : max;
    for (int i = 0; i < ne; i++) {
        p[i] = expf(p[i] - max);
        sum += p[i];
    }
    for (int i = 0; i < ne; i++) p[i] /= sum;
    /* Probabilities are >= 0, so -1 marks an expert already taken. */
    sum = 0.0f;
    for (int s = 0; s < kk; s++) {
        int best = 0;
        for (int i = 1; i < ne; i++) best = p[i] > p[best] ? i : best;
        e[s] = best;
        w[s] = p[best] < 0 ? 0.0f : p[best];
        sum += w[s];
        p[best] = -1.0f;
    }
    if (hp->expert_norm) {
        sum = sum < 6.103515625e-5f ? 6.103515625e-5f : sum;
        for (int s = 0; s < kk; s++) w[s] /= sum;
    }
}

/* Counting sort of the batch's picks by expert: ex_start, each pick's grouped row and each
 * grouped row's token. */
static void group_picks(ts_context *c, int n) {
    const int ne = c->m->hp.n_expert, kk = c->m->hp.n_expert_used;
    int32_t *start = c->ex_start;
    memset(start, 0, ((size_t)ne + 1) * sizeof(int32_t));
    for (int i = 0; i < n * kk; i++) start[c->pick_e[i] + 1]++;
    for (int e = 0; e < ne; e++) start[e + 1] += start[e];
    /* Filling advances each start to the next expert's; shifting back restores them. */
    for (int i = 0; i < n * kk; i++) {
        const int r = start[c->pick_e[i]]++;
        c->slot[i] = r;
        c->row_tok[r] = i / kk;
        c->row_ex[r] = c->pick_e[i];
    }
    for (int e = ne; e > 0; e--) start[e] = start[e - 1];
    start[0] = 0;
}

/* The routed FFN of the normed inputs in c->t into c->o, added to the shared expert's output
 * already there when the layer has one. Only the experts some token picked are read, each once
 * for the whole batch: its tokens' rows are grouped and go through one gemm, whose rows the
 * threads share. */
static void ffn_routed(step_job *j, const ts_layer *L, int t0, int t1, int ith, int nth) {
    ts_context *c = j->c;
    const ts_hparams *hp = &c->m->hp;
    const ts_tensor *W = L->w;
    const int n = j->n_tok, E = hp->n_embd, F = hp->n_ff_exp, kk = hp->n_expert_used, picks = n * kk;
    /* A token's row is prepared once for the router and its experts; grouping copies it to each
     * of its picks (the same bytes as preparing each pick's copy). */
    const unsigned ex_mask = ts_act_mask(&W[TS_W_GATE_EXPS], &W[TS_W_UP_EXPS], NULL);
    unsigned mask = ts_act_mask(&W[TS_W_FFN_GATE_INP], NULL, NULL) | ex_mask;
    for (int t = t0; t < t1; t++) quantize_row(c, c->t + (size_t)t * c->max_in, t, E, mask);
    ts_threadpool_barrier(j->pool, nth);
    mm(c, &W[TS_W_FFN_GATE_INP], c->t, c->max_in, n, c->router, ith, nth);
    ts_threadpool_barrier(j->pool, nth);
    /* One thread routes and groups: a phase and its barrier cost more than routing a batch. */
    if (ith == 0) {
        for (int t = 0; t < n; t++) route_token(c, t, vec(&W[TS_W_FFN_GATE_INP_BIAS]));
        group_picks(c, n);
    }
    ts_threadpool_barrier(j->pool, nth);
    for (int r = ith; r < picks; r += nth) {
        const int t = c->row_tok[r];
        if (ex_mask & (1u << TS_ACT_F32))
            memcpy(c->gx + (size_t)r * E, c->t + (size_t)t * c->max_in, (size_t)E * sizeof(float));
        for (int a = TS_ACT_Q8X32; a <= TS_ACT_Q8K; a++) {
            if (!(ex_mask & (1u << a))) continue;
            const size_t row = ts_act_row_size(a, E);
            memcpy((char *)c->gact[a] + (size_t)r * row, (const char *)c->act[a] + (size_t)t * row, row);
        }
    }
    ts_threadpool_barrier(j->pool, nth);
    for (int e = 0; e < hp->n_expert; e++) {
        const int r0 = c->ex_start[e], r1 = c->ex_start[e + 1];
        if (r0 == r1) continue;
        mm_expert(c, &W[TS_W_GATE_EXPS], e, F, c->gx, E, r0, r1, c->gg, ith, nth);
        mm_expert(c, &W[TS_W_UP_EXPS], e, F, c->gx, E, r0, r1, c->gu, ith, nth);
    }
    ts_threadpool_barrier(j->pool, nth);
    mask = ts_act_mask(&W[TS_W_DOWN_EXPS], NULL, NULL);
    const float *bg = vec(&W[TS_W_GATE_EXPS_BIAS]), *bu = vec(&W[TS_W_UP_EXPS_BIAS]);
    for (int r = ith; r < picks; r += nth) {
        float *g = c->gg + (size_t)r * F, *u = c->gu + (size_t)r * F;
        const size_t eo = (size_t)c->row_ex[r] * F;
        if (bg)
            for (int i = 0; i < F; i++) g[i] += bg[eo + i];
        if (bu)
            for (int i = 0; i < F; i++) u[i] += bu[eo + i];
        glu(c, g, u, F);
        ts_quantize_act_row(c->m->k, c->gact, g, r, F, mask);
    }
    ts_threadpool_barrier(j->pool, nth);
    /* The grouped inputs are spent: gx takes the experts' outputs. */
    for (int e = 0; e < hp->n_expert; e++) {
        const int r0 = c->ex_start[e], r1 = c->ex_start[e + 1];
        if (r0 == r1) continue;
        mm_expert(c, &W[TS_W_DOWN_EXPS], e, E, c->gg, F, r0, r1, c->gx, ith, nth);
    }
    ts_threadpool_barrier(j->pool, nth);
    const int shared = W[TS_W_GATE].data != NULL;
    for (int t = t0; t < t1; t++) {
        float *o = c->o + (size_t)t * E;
        if (shared && W[TS_W_FFN_GATE_INP_SHEXP].data) {
            const float *x = c->t + (size_t)t * c->max_in, *gw = vec(&W[TS_W_FFN_GATE_INP_SHEXP]);
            float d = 0.0f;
            for (int i = 0; i < E; i++) d += gw[i] * x[i];
            const float keep = 1.0f / (1.0f + expf(-d));
            for (int i = 0; i < E; i++) o[i] *= keep;
        } else if (!shared) {
            memset(o, 0, (size_t)E * sizeof(float));
        }
        const float *bd = vec(&W[TS_W_DOWN_EXPS_BIAS]);
        for (int s = 0; s < kk; s++) {
            const float w = c->pick_w[(size_t)t * kk + s], *y = c->gx + (size_t)c->slot[(size_t)t * kk + s] * E;
            if (bd) {
                const float *b = bd + (size_t)c->pick_e[(size_t)t * kk + s] * E;
                for (int i = 0; i < E; i++) o[i] += w * (y[i] + b[i]);
            } else {
                for (int i = 0; i < E; i++) o[i] += w * y[i];
            }
        }
    }
}

static void step_run(step_job *j, int ith, int nth) {
    ts_context *c = j->c;
    const ts_model *m = c->m;
    const ts_hparams *hp = &m->hp;
    const ts_kernels *k = m->k;
    const int n = j->n_tok, E = hp->n_embd;
    const float rs = hp->residual_scale;
    ts_threadpool *pool = j->pool;

    /* Token-partitioned phases use this same split, so consecutive ones need no barrier. */
    const int t0 = n * ith / nth, t1 = n * (ith + 1) / nth;
    const int rot_v = rotation_v(hp, j->kv);
    const ts_tensor *emb = &m->g[TS_W_TOKEN_EMBD];
    for (int t = t0; t < t1; t++) {
        float *x = c->x + (size_t)t * E;
        if (j->tokens[t] < 0) {
            /* An image row: the projector's output is already in the model's space, so it is
             * not scaled (llama.cpp and HF scale only looked-up token embeddings). */
            memcpy(x, j->embd + (size_t)t * E, (size_t)E * sizeof(float));
            continue;
        }
        if (emb->packed)
            ts_repack_dequantize_row(k->dequantize[emb->type], emb->type, emb->data, j->tokens[t], E, emb->row_bytes, x);
        else k->dequantize[emb->type]((const char *)emb->data + (size_t)j->tokens[t] * emb->row_bytes, x, E);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < E; i++) x[i] *= hp->embd_scale;
    }

    for (int l = 0; l < hp->n_layer; l++) {
        const ts_layer *L = &m->layers[l];
        const ts_tensor *W = L->w;
        /* attention block */
        unsigned mask = ts_act_mask(&W[TS_W_Q], &W[TS_W_K], &W[TS_W_V]);
        for (int t = t0; t < t1; t++) {
            float *tr = c->t + (size_t)t * c->max_in;
            block_input(c, &W[TS_W_ATTN_NORM], c->x + (size_t)t * E, tr);
            quantize_row(c, tr, t, E, mask);
        }
        ts_threadpool_barrier(pool, nth);
        mm(c, &W[TS_W_Q], c->t, c->max_in, n, c->q, ith, nth);
        mm(c, &W[TS_W_K], c->t, c->max_in, n, c->kb, ith, nth);
        mm(c, &W[TS_W_V], c->t, c->max_in, n, c->vb, ith, nth);
        ts_threadpool_barrier(pool, nth);
        if (hp->qk_norm_whole) {
            qk_norm_whole(j, L, t0, t1);
            ts_threadpool_barrier(pool, nth);
        }
        qk_prepare(j, L, l, ith, nth);
        ts_threadpool_barrier(pool, nth);
        attend(j, L, l, ith, nth);
        ts_threadpool_barrier(pool, nth);
        mask = ts_act_mask(&W[TS_W_O], NULL, NULL);
        for (int t = t0; t < t1; t++) {
            if (rot_v) hadamard(c->t + (size_t)t * c->max_in, c->q_dim, rot_v);   /* the output turned back */
            quantize_row(c, c->t + (size_t)t * c->max_in, t, c->q_dim, mask);
        }
        ts_threadpool_barrier(pool, nth);
        mm(c, &W[TS_W_O], c->t, c->max_in, n, c->o, ith, nth);
        ts_threadpool_barrier(pool, nth);

        /* feed-forward block */
        for (int t = t0; t < t1; t++) {
            float *x = c->x + (size_t)t * E, *o = c->o + (size_t)t * E;
            if (W[TS_W_O_BIAS].data)
                for (int i = 0; i < E; i++) o[i] += vec(&W[TS_W_O_BIAS])[i];
            if (W[TS_W_POST_ATTN_NORM].data) k->rmsnorm(o, vec(&W[TS_W_POST_ATTN_NORM]), o, E, hp->norm_eps);
            for (int i = 0; i < E; i++) x[i] += rs * o[i];
            block_input(c, &W[TS_W_FFN_NORM], x, c->t + (size_t)t * c->max_in);
        }
        if (W[TS_W_GATE].data) ffn_dense(j, L, t0, t1, ith, nth);
        if (W[TS_W_FFN_GATE_INP].data) {
            /* a shared expert's down matmul still reads the activations the router's overwrite */
            if (W[TS_W_GATE].data) ts_threadpool_barrier(pool, nth);
            ffn_routed(j, L, t0, t1, ith, nth);
        }
        ts_threadpool_barrier(pool, nth);
        for (int t = t0; t < t1; t++) {
            float *x = c->x + (size_t)t * E, *o = c->o + (size_t)t * E;
            if (W[TS_W_POST_FFN_NORM].data) k->rmsnorm(o, vec(&W[TS_W_POST_FFN_NORM]), o, E, hp->norm_eps);
            for (int i = 0; i < E; i++) x[i] += rs * o[i];
        }
    }
    if (j->n_out == 0 && j->n_hid == 0) return;
    ts_threadpool_barrier(pool, nth);
    for (int r = ith; r < j->n_hid; r += nth)
        k->rmsnorm(c->x + (size_t)j->hid_rows[r] * E, vec(&m->g[TS_W_OUTPUT_NORM]), j->hidden + (size_t)r * E, E,
                   hp->norm_eps);
    if (j->n_out == 0) return;

    /* Logits only for the rows somebody reads. */
    const ts_tensor *out = &m->g[TS_W_OUTPUT];
    const unsigned mask = ts_act_mask(out, NULL, NULL);
    for (int r = ith; r < j->n_out; r += nth) {
        float *tr = c->t + (size_t)r * c->max_in;
        k->rmsnorm(c->x + (size_t)j->out_rows[r] * E, vec(&m->g[TS_W_OUTPUT_NORM]), tr, E, hp->norm_eps);
        quantize_row(c, tr, r, E, mask);
    }
    ts_threadpool_barrier(pool, nth);
    mm(c, out, c->t, c->max_in, j->n_out, j->logits, ith, nth);
    if (hp->final_softcap > 0 || hp->logit_scale != 1.0f) {
        ts_threadpool_barrier(pool, nth);
        const size_t total = (size_t)j->n_out * hp->n_vocab;
        const size_t a = total * ith / nth, b = total * (ith + 1) / nth;
        const float cap = hp->final_softcap, inv = 1.0f / hp->logit_scale;
        if (hp->logit_scale != 1.0f)
            for (size_t i = a; i < b; i++) j->logits[i] *= inv;
        if (cap > 0)
            for (size_t i = a; i < b; i++) j->logits[i] = cap * tanhf(j->logits[i] / cap);
    }
}

/* Every thread takes the same phases, so thread 0's count of them is the step's. */
static void step_task(void *arg, int ith, int nth) {
    step_job *j = (step_job *)arg;
    tl_phase = 0;
    step_run(j, ith, nth);
    if (ith == 0) j->claimed = tl_phase < j->c->n_claims ? tl_phase : j->c->n_claims;
}

int ts_forward(ts_context *c, ts_kv_cache *kv, const int32_t *tokens, const int32_t *pos,
               const int32_t *seq, const float *embd, const int32_t *attn_end, int n_tok,
               const int32_t *out_rows, int n_out, float *logits, int n_threads) {
    return ts_forward_hidden(c, kv, tokens, pos, seq, embd, attn_end, n_tok, out_rows, n_out, logits, NULL, 0, NULL,
                             n_threads);
}

int ts_forward_hidden(ts_context *c, ts_kv_cache *kv, const int32_t *tokens, const int32_t *pos,
                      const int32_t *seq, const float *embd, const int32_t *attn_end, int n_tok,
                      const int32_t *out_rows, int n_out, float *logits,
                      const int32_t *hid_rows, int n_hid, float *hidden, int n_threads) {
    const ts_hparams *hp = &c->m->hp;
    if (n_tok <= 0 || n_tok > c->n_batch || n_out < 0 || n_out > n_tok || n_hid < 0 || n_hid > n_tok ||
        (n_hid > 0 && (!hid_rows || !hidden)) || !kv->k || !kv->v)
        return -1;
    if (!ts_cache_row_bytes(kv->type, hp->head_dim)) return -1;
    for (int t = 0; t < n_tok; t++) {
        if (tokens[t] < (embd ? -1 : 0) || tokens[t] >= hp->n_vocab || pos[t] < 0 || pos[t] >= kv->n_ctx ||
            seq[t] < 0 || seq[t] >= kv->n_seq)
            return -1;
        if (attn_end && (attn_end[t] <= pos[t] || attn_end[t] > kv->n_ctx)) return -1;
    }
    for (int r = 0; r < n_out; r++)
        if (out_rows[r] < 0 || out_rows[r] >= n_tok) return -1;
    for (int r = 0; r < n_hid; r++)
        if (hid_rows[r] < 0 || hid_rows[r] >= n_tok) return -1;
    step_job j = {c, kv, tokens, pos, seq, out_rows, embd, attn_end, n_tok, n_out, logits, hid_rows, n_hid, hidden,
                  ts_threadpool_global()};
    ts_threadpool_run(j.pool, step_task, &j, n_threads);
    /* Back to all zero for the next step, storing only to the counters this one used: of the 12
     * a layer has room for, each on its own cache line, a dense layer takes 8, a step without
     * logits skips the output's, and one thread takes none. */
    for (int i = 0; i < j.claimed; i++) atomic_store_explicit(&c->claims[(size_t)i * TS_CLAIM_STRIDE], 0, memory_order_relaxed);
    return 0;
}
