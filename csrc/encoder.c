/* The text encoder's forward pass (BERT, nomic-bert): one pool job over a batch of whole
 * sequences, phases separated by barriers as in vision.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts/encoder.h"
#include "ts/encoder_ops.h"
#include "ts/threadpool.h"

/* Queries per attention work item: a block shares one pass over its sequence's keys and values. */
#define TS_ENC_QBLOCK 32

struct ts_encoder {
    ts_enc_hparams hp;
    ts_tensor g[TS_E_GLOBAL_COUNT];
    ts_tensor (*layers)[TS_E_LAYER_COUNT]; /* (n_layer) */
    int finalized;
    const ts_kernels *k;
};

ts_encoder *ts_encoder_create(const ts_enc_hparams *hp) {
    const int limit = 1 << 16;
    if (hp->n_embd <= 0 || hp->n_embd > limit || hp->n_ff <= 0 || hp->n_ff > 4 * limit || hp->n_head <= 0 ||
        hp->n_embd % hp->n_head != 0 || hp->n_layer < 0 || hp->n_layer > 4096 || hp->n_vocab <= 0 ||
        hp->n_vocab > (1 << 24) || hp->n_pos < 0 || hp->n_pos > (1 << 20) || hp->n_types < 0 ||
        hp->n_types > 1024 || hp->n_ctx <= 0 || hp->n_ctx > (1 << 20) || !(hp->eps >= 0.0f) || hp->eps > 1.0f ||
        (hp->ffn != TS_EFFN_GELU && hp->ffn != TS_EFFN_SWIGLU))
        return NULL;
    /* Learned positions bound the sequence; RoPE needs an even head and a base. */
    if (hp->n_pos > 0 ? hp->n_ctx > hp->n_pos : ((hp->n_embd / hp->n_head) % 2 != 0 || !(hp->rope_base > 0.0f)))
        return NULL;
    ts_encoder *e = calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->hp = *hp;
    e->layers = calloc(hp->n_layer > 0 ? (size_t)hp->n_layer : 1, sizeof(*e->layers));
    if (!e->layers) { free(e); return NULL; }
    e->k = ts_kernels_get();
    return e;
}

void ts_encoder_free(ts_encoder *e) {
    if (!e) return;
    free(e->layers);
    free(e);
}

/* The (rows, cols) a slot must have; *vector: an f32 vector; *table: an embedding table. */
static int slot_shape(const ts_encoder *e, int layer, int slot, int64_t *rows, int64_t *cols, int *vector, int *table) {
    const ts_enc_hparams *hp = &e->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    *rows = 1;
    *cols = E;
    *vector = 1;
    *table = 0;
    if (layer >= 0) {
        switch (slot) {
        case TS_E_Q: case TS_E_K: case TS_E_V: case TS_E_O: *rows = E; *vector = 0; break;
        case TS_E_UP: case TS_E_GATE: *rows = F; *vector = 0; break;
        case TS_E_DOWN: *rows = E; *cols = F; *vector = 0; break;
        case TS_E_UP_B: *cols = F; break;
        default: break;
        }
        return 0;
    }
    switch (slot) {
    case TS_E_TOKEN: *rows = hp->n_vocab; *vector = 0; *table = 1; break;
    case TS_E_POS: *rows = hp->n_pos; *vector = 0; *table = 1; break;
    case TS_E_TYPE: *rows = hp->n_types; *vector = 0; *table = 1; break;
    default: break;
    }
    return *rows > 0 ? 0 : -1;
}

int ts_encoder_set_tensor(ts_encoder *e, int layer, int slot, const ts_tensor *t) {
    if (layer < -1 || layer >= e->hp.n_layer || e->finalized) return -1;
    if (slot < 0 || slot >= (layer < 0 ? TS_E_GLOBAL_COUNT : TS_E_LAYER_COUNT)) return -1;
    int64_t rows, cols;
    int vector, table;
    if (slot_shape(e, layer, slot, &rows, &cols, &vector, &table) != 0) return -1;
    if (t->data == NULL || t->rows != rows || t->cols != cols) return -1;
    if (vector ? t->type != TS_TYPE_F32 : (t->type < 0 || t->type >= TS_TYPE_COUNT)) return -1;
    if (!vector && (table ? !e->k->dequantize[t->type] : !e->k->vec_dot[t->type])) return -1;
    const size_t need = ts_row_size(t->type, cols);
    if (need == 0 || t->row_bytes < (int64_t)need) return -1;
    if (layer < 0) e->g[slot] = *t;
    else e->layers[layer][slot] = *t;
    return 0;
}

int ts_encoder_finalize(ts_encoder *e, char *msg, int msg_len) {
    static const char *const global_names[] = {"token", "position", "token type", "embedding norm weight",
                                               "embedding norm bias"};
    static const char *const layer_names[] = {"q", "q bias", "k", "k bias", "v", "v bias", "output", "output bias",
                                              "attention norm weight", "attention norm bias", "up", "up bias",
                                              "gate", "down", "down bias", "output norm weight", "output norm bias"};
    const ts_enc_hparams *hp = &e->hp;
    const int need_global[] = {1, hp->n_pos > 0, hp->n_types > 0, 1, 0};
    for (int s = 0; s < TS_E_GLOBAL_COUNT; s++)
        if (need_global[s] && !e->g[s].data) {
            snprintf(msg, (size_t)msg_len, "encoder lacks its %s embeddings", global_names[s]);
            return -1;
        }
    int need[TS_E_LAYER_COUNT] = {0};
    need[TS_E_Q] = need[TS_E_K] = need[TS_E_V] = need[TS_E_O] = 1;
    need[TS_E_ATTN_LN_W] = need[TS_E_UP] = need[TS_E_DOWN] = need[TS_E_OUT_LN_W] = 1;
    need[TS_E_GATE] = hp->ffn == TS_EFFN_SWIGLU;
    for (int l = 0; l < hp->n_layer; l++) {
        for (int s = 0; s < TS_E_LAYER_COUNT; s++)
            if (need[s] && !e->layers[l][s].data) {
                snprintf(msg, (size_t)msg_len, "block %d lacks its %s weight", l, layer_names[s]);
                return -1;
            }
    }
    e->finalized = 1;
    return 0;
}

/* Scratch of one encode call. */
typedef struct {
    const ts_encoder *e;
    const int32_t *tokens;      /* (n) */
    const int32_t *seq_start;   /* (n_seq + 1): the caller's starts and n */
    int n, n_seq;
    int32_t *seq_of;            /* (n) sequence of each row */
    float *x;                   /* (n, n_embd) residual stream; the output */
    float *t;                   /* (n, max_in) matmul input: attention output / FFN hidden */
    float *q, *kb, *vb;         /* (n, n_embd) each */
    float *kh, *vh;             /* (n_head, n, head_dim): keys and values head-major */
    float *o;                   /* (n, n_embd) */
    float *ff, *gate;           /* (n, n_ff) each */
    float *emb;                 /* (nth, n_embd) a dequantized table row per thread */
    float *scores;              /* (nth, TS_ENC_QBLOCK, longest sequence) */
    int longest;
    void *act[3];               /* per ts_act: (n, activation row of the widest input) */
    ts_threadpool *pool;
} enc_job;

static const float *vec(const ts_tensor *t) { return t->data ? (const float *)t->data : NULL; }

static void add_table_row(const ts_encoder *e, const ts_tensor *t, int64_t r, float *row, float *x) {
    e->k->dequantize[t->type]((const char *)t->data + r * t->row_bytes, row, t->cols);
    for (int64_t i = 0; i < t->cols; i++) x[i] += row[i];
}

/* This thread's share of y (n, w.rows) = input @ W^T (see ts_enc_matmul). */
static void mm(enc_job *j, const ts_tensor *w, const float *src, int64_t src_stride, float *y, int64_t y_stride,
               int ith, int nth) {
    ts_enc_matmul(j->e->k, w, src, src_stride, j->act, j->n, y, y_stride, ith, nth);
}

static void embed(enc_job *j, int ith, int nth) {
    const ts_encoder *e = j->e;
    const int E = e->hp.n_embd;
    float *row = j->emb + (size_t)ith * E;
    const unsigned mask = ts_act_mask(&e->layers[0][TS_E_Q], &e->layers[0][TS_E_K], &e->layers[0][TS_E_V]);
    for (int t = j->n * ith / nth; t < j->n * (ith + 1) / nth; t++) {
        float *x = j->x + (size_t)t * E;
        memset(x, 0, (size_t)E * sizeof(float));
        add_table_row(e, &e->g[TS_E_TOKEN], j->tokens[t], row, x);
        if (e->hp.n_pos > 0) add_table_row(e, &e->g[TS_E_POS], t - j->seq_start[j->seq_of[t]], row, x);
        if (e->hp.n_types > 0) add_table_row(e, &e->g[TS_E_TYPE], 0, row, x);
        e->k->layernorm(x, vec(&e->g[TS_E_EMB_LN_W]), vec(&e->g[TS_E_EMB_LN_B]), x, E, e->hp.eps);
        if (e->hp.n_layer > 0) ts_quantize_act_row(e->k, j->act, x, t, E, mask);
    }
}

static void attend(enc_job *j, int ith, int nth) {
    const ts_encoder *e = j->e;
    const int E = e->hp.n_embd, H = e->hp.n_head, hd = E / H, n = j->n;
    const float scale = 1.0f / sqrtf((float)hd);
    float *scores = j->scores + (size_t)ith * TS_ENC_QBLOCK * j->longest;
    int64_t item = 0;
    for (int s = 0; s < j->n_seq; s++) {
        const int s0 = j->seq_start[s], len = j->seq_start[s + 1] - s0;
        for (int r0 = 0; r0 < len; r0 += TS_ENC_QBLOCK)
            for (int h = 0; h < H; h++, item++) {
                if (item % nth != ith) continue;
                const int nq = len - r0 < TS_ENC_QBLOCK ? len - r0 : TS_ENC_QBLOCK;
                e->k->attn_f32(j->q + (size_t)(s0 + r0) * E + (size_t)h * hd, E, nq,
                               j->kh + ((size_t)h * n + s0) * hd, j->vh + ((size_t)h * n + s0) * hd, hd, len, hd,
                               scale, scores, j->t + (size_t)(s0 + r0) * E + (size_t)h * hd, E);
            }
    }
}

/* Post-norm block: x = LN(x + attn(x)); x = LN(x + ffn(x)). */
static void block(enc_job *j, int l, int ith, int nth) {
    const ts_encoder *e = j->e;
    const ts_enc_hparams *hp = &e->hp;
    const ts_kernels *k = e->k;
    const ts_tensor *W = e->layers[l];
    const int n = j->n, E = hp->n_embd, F = hp->n_ff, H = hp->n_head, hd = E / H;
    const int t0 = n * ith / nth, t1 = n * (ith + 1) / nth;
    ts_threadpool *pool = j->pool;

    mm(j, &W[TS_E_Q], j->x, E, j->q, E, ith, nth);
    mm(j, &W[TS_E_K], j->x, E, j->kb, E, ith, nth);
    mm(j, &W[TS_E_V], j->x, E, j->vb, E, ith, nth);
    ts_threadpool_barrier(pool, nth);
    for (int t = t0; t < t1; t++) {
        float *qr = j->q + (size_t)t * E, *kr = j->kb + (size_t)t * E, *vr = j->vb + (size_t)t * E;
        ts_enc_add_bias(qr, &W[TS_E_Q_B], E);
        ts_enc_add_bias(kr, &W[TS_E_K_B], E);
        ts_enc_add_bias(vr, &W[TS_E_V_B], E);
        if (hp->n_pos == 0) {
            const float pos = (float)(t - j->seq_start[j->seq_of[t]]);
            k->rope(qr, H, hd, hd, pos, hp->rope_base, 1.0f, NULL, 1.0f, 1);
            k->rope(kr, H, hd, hd, pos, hp->rope_base, 1.0f, NULL, 1.0f, 1);
        }
        ts_enc_split_heads(j->kh, j->vh, kr, vr, t, n, H, hd);
    }
    ts_threadpool_barrier(pool, nth);
    attend(j, ith, nth);
    ts_threadpool_barrier(pool, nth);
    unsigned mask = ts_act_mask(&W[TS_E_O], NULL, NULL);
    for (int t = t0; t < t1; t++) ts_quantize_act_row(k, j->act, j->t + (size_t)t * E, t, E, mask);
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_E_O], j->t, E, j->o, E, ith, nth);
    ts_threadpool_barrier(pool, nth);

    mask = ts_act_mask(&W[TS_E_UP], &W[TS_E_GATE], NULL);
    for (int t = t0; t < t1; t++) {
        float *x = j->x + (size_t)t * E, *o = j->o + (size_t)t * E;
        ts_enc_add_bias(o, &W[TS_E_O_B], E);
        for (int i = 0; i < E; i++) x[i] += o[i];
        k->layernorm(x, vec(&W[TS_E_ATTN_LN_W]), vec(&W[TS_E_ATTN_LN_B]), x, E, hp->eps);
        ts_quantize_act_row(k, j->act, x, t, E, mask);
    }
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_E_UP], j->x, E, j->ff, F, ith, nth);
    if (hp->ffn == TS_EFFN_SWIGLU) mm(j, &W[TS_E_GATE], j->x, E, j->gate, F, ith, nth);
    ts_threadpool_barrier(pool, nth);
    mask = ts_act_mask(&W[TS_E_DOWN], NULL, NULL);
    /* SwiGLU writes over the gate rows (the kernel lets y alias g only). */
    float *hidden = hp->ffn == TS_EFFN_SWIGLU ? j->gate : j->ff;
    for (int t = t0; t < t1; t++) {
        float *f = j->ff + (size_t)t * F, *h = hidden + (size_t)t * F;
        ts_enc_add_bias(f, &W[TS_E_UP_B], F);
        if (hp->ffn == TS_EFFN_SWIGLU) k->swiglu(h, f, h, F);
        else k->gelu(f, f, F);
        ts_quantize_act_row(k, j->act, h, t, F, mask);
    }
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_E_DOWN], hidden, F, j->o, E, ith, nth);
    ts_threadpool_barrier(pool, nth);
    const ts_tensor *next = l + 1 < hp->n_layer ? e->layers[l + 1] : NULL;
    mask = next ? ts_act_mask(&next[TS_E_Q], &next[TS_E_K], &next[TS_E_V]) : 0;
    for (int t = t0; t < t1; t++) {
        float *x = j->x + (size_t)t * E, *o = j->o + (size_t)t * E;
        ts_enc_add_bias(o, &W[TS_E_DOWN_B], E);
        for (int i = 0; i < E; i++) x[i] += o[i];
        k->layernorm(x, vec(&W[TS_E_OUT_LN_W]), vec(&W[TS_E_OUT_LN_B]), x, E, hp->eps);
        if (mask) ts_quantize_act_row(k, j->act, x, t, E, mask);
    }
    ts_threadpool_barrier(pool, nth);
}

static void enc_task(void *arg, int ith, int nth) {
    enc_job *j = (enc_job *)arg;
    embed(j, ith, nth);
    ts_threadpool_barrier(j->pool, nth);
    for (int l = 0; l < j->e->hp.n_layer; l++) block(j, l, ith, nth);
}

static void job_free(enc_job *j) {
    free(j->seq_of); free(j->t); free(j->q); free(j->kb); free(j->vb); free(j->kh); free(j->vh); free(j->o);
    free(j->ff); free(j->gate); free(j->emb); free(j->scores); free(j->act[TS_ACT_Q8X32]); free(j->act[TS_ACT_Q8K]);
}

int ts_encoder_encode(const ts_encoder *e, const int32_t *tokens, int n_tok, const int32_t *seq_start, int n_seq,
                      float *hidden, int n_threads) {
    const ts_enc_hparams *hp = &e->hp;
    if (!e->finalized || n_tok <= 0 || n_seq <= 0 || n_seq > n_tok || seq_start[0] != 0) return -1;
    int longest = 0;
    for (int s = 0; s < n_seq; s++) {
        const int end = s + 1 < n_seq ? seq_start[s + 1] : n_tok;
        if (end <= seq_start[s] || end > n_tok || end - seq_start[s] > hp->n_ctx) return -1;
        if (end - seq_start[s] > longest) longest = end - seq_start[s];
    }
    for (int t = 0; t < n_tok; t++)
        if (tokens[t] < 0 || tokens[t] >= hp->n_vocab) return -1;
    enc_job j = {0};
    j.e = e;
    j.tokens = tokens;
    j.n = n_tok;
    j.n_seq = n_seq;
    j.x = hidden;
    j.longest = longest;
    j.pool = ts_threadpool_global();
    const int nth = n_threads > 0 && n_threads < ts_threadpool_size(j.pool) ? n_threads : ts_threadpool_size(j.pool);
    const size_t n = (size_t)n_tok, E = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
    int32_t *starts = malloc(((size_t)n_seq + 1) * sizeof(int32_t));
    j.seq_of = malloc(n * sizeof(int32_t));
    j.t = malloc(n * E * sizeof(float));
    j.q = malloc(n * E * sizeof(float));
    j.kb = malloc(n * E * sizeof(float));
    j.vb = malloc(n * E * sizeof(float));
    j.kh = malloc(n * E * sizeof(float));
    j.vh = malloc(n * E * sizeof(float));
    j.o = malloc(n * E * sizeof(float));
    j.ff = malloc(n * F * sizeof(float));
    j.gate = malloc(n * F * sizeof(float));
    j.emb = malloc((size_t)nth * E * sizeof(float));
    j.scores = malloc((size_t)nth * TS_ENC_QBLOCK * (size_t)longest * sizeof(float));
    const int64_t widest = (hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd);
    const int64_t padded = (widest + TS_QK_K - 1) / TS_QK_K * TS_QK_K;
    j.act[TS_ACT_Q8X32] = malloc(n * ts_act_row_size(TS_ACT_Q8X32, padded));
    j.act[TS_ACT_Q8K] = malloc(n * ts_act_row_size(TS_ACT_Q8K, padded));
    if (!starts || !j.seq_of || !j.t || !j.q || !j.kb || !j.vb || !j.kh || !j.vh || !j.o || !j.ff || !j.gate ||
        !j.emb || !j.scores || !j.act[TS_ACT_Q8X32] || !j.act[TS_ACT_Q8K]) {
        free(starts);
        job_free(&j);
        return -2;
    }
    memcpy(starts, seq_start, (size_t)n_seq * sizeof(int32_t));
    starts[n_seq] = n_tok;
    j.seq_start = starts;
    for (int s = 0; s < n_seq; s++)
        for (int t = starts[s]; t < starts[s + 1]; t++) j.seq_of[t] = s;
    ts_threadpool_run(j.pool, enc_task, &j, nth);
    free(starts);
    job_free(&j);
    return 0;
}
