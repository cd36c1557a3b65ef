/* The image encoder's forward pass: patch embedding, ViT blocks with bidirectional attention and
 * the projector, as one pool job whose phases are separated by barriers (as in forward.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts/encoder_ops.h"
#include "ts/threadpool.h"
#include "ts/vision.h"

/* Queries per attention work item: a block shares one pass over the head's keys and values. */
#define TS_VIT_QBLOCK 32

struct ts_vit {
    ts_vit_hparams hp;
    int side, n_patch, n_pos, n_tok; /* patches per side, patches, positions (+ class), outputs */
    ts_tensor g[TS_V_GLOBAL_COUNT];
    ts_tensor (*layers)[TS_V_LAYER_COUNT]; /* (n_layer) */
    int finalized;
    const ts_kernels *k;
};

ts_vit *ts_vit_create(const ts_vit_hparams *hp) {
    const int limit = 1 << 16;
    if (hp->patch_size <= 0 || hp->image_size <= 0 || hp->image_size % hp->patch_size != 0 ||
        hp->image_size / hp->patch_size > 1024 || hp->patch_size > 1024 || hp->n_embd <= 0 ||
        hp->n_embd > limit || hp->n_ff <= 0 || hp->n_ff > 4 * limit || hp->n_head <= 0 ||
        hp->n_embd % hp->n_head != 0 || hp->n_layer < 0 || hp->n_layer > 4096 || !(hp->eps >= 0.0f) ||
        hp->eps > 1.0f || (hp->ffn_act != TS_VACT_GELU && hp->ffn_act != TS_VACT_GELU_QUICK) ||
        (hp->has_class != 0 && hp->has_class != 1) || hp->n_out <= 0 || hp->n_out > 4 * limit)
        return NULL;
    const int side = hp->image_size / hp->patch_size;
    int n_tok;
    if (hp->proj == TS_VPROJ_GEMMA3) {
        if (hp->pool <= 0 || side % hp->pool != 0 || hp->has_class) return NULL;
        n_tok = (side / hp->pool) * (side / hp->pool);
    } else if (hp->proj == TS_VPROJ_MLP) {
        if (hp->n_mm_ff <= 0 || hp->n_mm_ff > 4 * limit) return NULL;
        n_tok = side * side;
    } else {
        return NULL;
    }
    ts_vit *v = calloc(1, sizeof(*v));
    if (!v) return NULL;
    v->hp = *hp;
    v->side = side;
    v->n_patch = side * side;
    v->n_pos = v->n_patch + hp->has_class;
    v->n_tok = n_tok;
    v->layers = calloc(hp->n_layer > 0 ? (size_t)hp->n_layer : 1, sizeof(*v->layers));
    if (!v->layers) { free(v); return NULL; }
    v->k = ts_kernels_get();
    return v;
}

void ts_vit_free(ts_vit *v) {
    if (!v) return;
    free(v->layers);
    free(v);
}

int ts_vit_n_tokens(const ts_vit *v) { return v->n_tok; }

/* The (rows, cols) a slot must have; *vector says it must be f32. */
static void slot_shape(const ts_vit *v, int layer, int slot, int64_t *rows, int64_t *cols, int *vector) {
    const ts_vit_hparams *hp = &v->hp;
    const int64_t E = hp->n_embd;
    *rows = 1;
    *vector = 1;
    if (layer >= 0) {
        switch (slot) {
        case TS_V_Q: case TS_V_K: case TS_V_V: case TS_V_O: *rows = E; *cols = E; *vector = 0; break;
        case TS_V_UP: *rows = hp->n_ff; *cols = E; *vector = 0; break;
        case TS_V_DOWN: *rows = E; *cols = hp->n_ff; *vector = 0; break;
        case TS_V_UP_B: *cols = hp->n_ff; break;
        default: *cols = E;
        }
        return;
    }
    switch (slot) {
    case TS_V_PATCH: *rows = E; *cols = 3 * (int64_t)hp->patch_size * hp->patch_size; *vector = 0; break;
    case TS_V_POS: *rows = v->n_pos; *cols = E; break;
    case TS_V_MM_PROJ: *rows = hp->n_out; *cols = E; *vector = 0; break;
    case TS_V_MM0: *rows = hp->n_mm_ff; *cols = E; *vector = 0; break;
    case TS_V_MM0_B: *cols = hp->n_mm_ff; break;
    case TS_V_MM2: *rows = hp->n_out; *cols = hp->n_mm_ff; *vector = 0; break;
    case TS_V_MM2_B: *cols = hp->n_out; break;
    default: *cols = E;
    }
}

int ts_vit_set_tensor(ts_vit *v, int layer, int slot, const ts_tensor *t) {
    if (layer < -1 || layer >= v->hp.n_layer || v->finalized) return -1;
    if (slot < 0 || slot >= (layer < 0 ? TS_V_GLOBAL_COUNT : TS_V_LAYER_COUNT)) return -1;
    int64_t rows, cols;
    int vector;
    slot_shape(v, layer, slot, &rows, &cols, &vector);
    if (t->data == NULL || t->rows != rows || t->cols != cols) return -1;
    if (vector ? t->type != TS_TYPE_F32 : (t->type < 0 || t->type >= TS_TYPE_COUNT || !v->k->vec_dot[t->type]))
        return -1;
    const size_t need = ts_row_size(t->type, cols);
    if (need == 0 || t->row_bytes < (int64_t)need) return -1;
    if (layer < 0) v->g[slot] = *t;
    else v->layers[layer][slot] = *t;
    return 0;
}

int ts_vit_finalize(ts_vit *v, char *msg, int msg_len) {
    static const int required[] = {TS_V_LN1_W, TS_V_Q, TS_V_K, TS_V_V, TS_V_O, TS_V_LN2_W, TS_V_UP, TS_V_DOWN};
    const ts_vit_hparams *hp = &v->hp;
    int need[TS_V_GLOBAL_COUNT] = {0};
    need[TS_V_PATCH] = need[TS_V_POS] = 1;
    need[TS_V_CLASS] = hp->has_class;
    if (hp->proj == TS_VPROJ_GEMMA3) {
        need[TS_V_MM_NORM_W] = need[TS_V_MM_PROJ] = 1;
    } else {
        need[TS_V_MM0] = 1;
        /* Without mm.2 the output is mm.0's. */
        if (!v->g[TS_V_MM2].data && hp->n_mm_ff != hp->n_out) {
            snprintf(msg, (size_t)msg_len, "mlp projector without mm.2 must have n_mm_ff == n_out");
            return -1;
        }
    }
    for (int s = 0; s < TS_V_GLOBAL_COUNT; s++)
        if (need[s] && !v->g[s].data) {
            snprintf(msg, (size_t)msg_len, "encoder lacks weight slot %d", s);
            return -1;
        }
    for (int l = 0; l < hp->n_layer; l++)
        for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
            if (!v->layers[l][required[i]].data) {
                snprintf(msg, (size_t)msg_len, "block %d lacks weight slot %d", l, required[i]);
                return -1;
            }
    v->finalized = 1;
    return 0;
}

/* Scratch of one encode call. */
typedef struct {
    const ts_vit *v;
    const float *pixels;  /* (3, image_size, image_size) */
    float *out;           /* (n_tok, n_out) */
    int max_in;           /* widest matmul input row */
    float *x;             /* (n_pos, n_embd) residual stream */
    float *t;             /* (n_pos, max_in) normed input / attention output / patch pixels */
    float *q, *kb, *vb;   /* (n_pos, n_embd) each */
    float *kh, *vh;       /* (n_head, n_pos, head_dim): keys and values with biases, head-major */
    float *o;             /* (n_pos, n_embd) matmul output added to the residual */
    float *ff;            /* (n_pos, max(n_ff, n_mm_ff)) */
    float *scores;        /* (nth, TS_VIT_QBLOCK, n_pos) attention scratch per thread */
    void *act[3];         /* per ts_act: (n_pos, activation row of the current input) */
    ts_threadpool *pool;
} vit_job;

static const float *vec(const ts_tensor *t) { return (const float *)t->data; }

static void quantize_row(vit_job *j, const float *src, int r, int cols, unsigned mask) {
    ts_quantize_act_row(j->v->k, j->act, src, r, cols, mask);
}

/* This thread's share of y (n, w.rows) = input @ W^T (see ts_enc_matmul). */
static void mm(vit_job *j, const ts_tensor *w, const float *src, int64_t src_stride, int n, float *y,
               int64_t y_stride, int ith, int nth) {
    ts_enc_matmul(j->v->k, w, src, src_stride, j->act, n, y, y_stride, ith, nth);
}

static void patch_embed(vit_job *j, int ith, int nth) {
    const ts_vit *v = j->v;
    const ts_vit_hparams *hp = &v->hp;
    const int P = hp->patch_size, S = hp->image_size, E = hp->n_embd, cols = 3 * P * P;
    const int p0 = v->n_patch * ith / nth, p1 = v->n_patch * (ith + 1) / nth;
    const unsigned mask = ts_act_mask(&v->g[TS_V_PATCH], NULL, NULL);
    for (int p = p0; p < p1; p++) {
        const int py = p / v->side, px = p % v->side;
        float *row = j->t + (size_t)p * j->max_in;
        for (int c = 0; c < 3; c++)
            for (int dy = 0; dy < P; dy++)
                memcpy(row + (c * P + dy) * P, j->pixels + ((size_t)c * S + (size_t)py * P + dy) * S + (size_t)px * P,
                       (size_t)P * sizeof(float));
        quantize_row(j, row, p, cols, mask);
    }
    ts_threadpool_barrier(j->pool, nth);
    mm(j, &v->g[TS_V_PATCH], j->t, j->max_in, v->n_patch, j->o, E, ith, nth);
    ts_threadpool_barrier(j->pool, nth);
    const int t0 = v->n_pos * ith / nth, t1 = v->n_pos * (ith + 1) / nth;
    const float *pos = vec(&v->g[TS_V_POS]);
    for (int t = t0; t < t1; t++) {
        float *x = j->x + (size_t)t * E;
        if (t < hp->has_class) {
            memcpy(x, vec(&v->g[TS_V_CLASS]), (size_t)E * sizeof(float));
        } else {
            memcpy(x, j->o + (size_t)(t - hp->has_class) * E, (size_t)E * sizeof(float));
            ts_enc_add_bias(x, &v->g[TS_V_PATCH_B], E);
        }
        for (int i = 0; i < E; i++) x[i] += pos[(size_t)t * E + i];
        if (v->g[TS_V_PRE_LN_W].data)
            v->k->layernorm(x, vec(&v->g[TS_V_PRE_LN_W]), v->g[TS_V_PRE_LN_B].data ? vec(&v->g[TS_V_PRE_LN_B]) : NULL,
                            x, E, hp->eps);
    }
}

static void attend(vit_job *j, int ith, int nth) {
    const ts_vit *v = j->v;
    const int E = v->hp.n_embd, H = v->hp.n_head, hd = E / H, n = v->n_pos;
    const int n_blocks = (n + TS_VIT_QBLOCK - 1) / TS_VIT_QBLOCK;
    const float scale = 1.0f / sqrtf((float)hd);
    float *scores = j->scores + (size_t)ith * TS_VIT_QBLOCK * n;
    for (int64_t item = ith; item < (int64_t)H * n_blocks; item += nth) {
        const int h = (int)(item % H), r0 = (int)(item / H) * TS_VIT_QBLOCK;
        const int nq = n - r0 < TS_VIT_QBLOCK ? n - r0 : TS_VIT_QBLOCK;
        v->k->attn_f32(j->q + (size_t)r0 * E + (size_t)h * hd, E, nq, j->kh + (size_t)h * n * hd,
                       j->vh + (size_t)h * n * hd, hd, n, hd, scale, scores,
                       j->t + (size_t)r0 * j->max_in + (size_t)h * hd, j->max_in);
    }
}

static void block(vit_job *j, const ts_tensor *W, int ith, int nth) {
    const ts_vit *v = j->v;
    const ts_vit_hparams *hp = &v->hp;
    const ts_kernels *k = v->k;
    const int n = v->n_pos, E = hp->n_embd, F = hp->n_ff;
    const int t0 = n * ith / nth, t1 = n * (ith + 1) / nth;
    ts_threadpool *pool = j->pool;
    const float *ln1_b = W[TS_V_LN1_B].data ? vec(&W[TS_V_LN1_B]) : NULL;
    const float *ln2_b = W[TS_V_LN2_B].data ? vec(&W[TS_V_LN2_B]) : NULL;

    unsigned mask = ts_act_mask(&W[TS_V_Q], &W[TS_V_K], &W[TS_V_V]);
    for (int t = t0; t < t1; t++) {
        float *tr = j->t + (size_t)t * j->max_in;
        k->layernorm(j->x + (size_t)t * E, vec(&W[TS_V_LN1_W]), ln1_b, tr, E, hp->eps);
        quantize_row(j, tr, t, E, mask);
    }
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_V_Q], j->t, j->max_in, n, j->q, E, ith, nth);
    mm(j, &W[TS_V_K], j->t, j->max_in, n, j->kb, E, ith, nth);
    mm(j, &W[TS_V_V], j->t, j->max_in, n, j->vb, E, ith, nth);
    ts_threadpool_barrier(pool, nth);
    const int H = hp->n_head, hd = E / H;
    for (int t = t0; t < t1; t++) {
        float *kr = j->kb + (size_t)t * E, *vr = j->vb + (size_t)t * E;
        ts_enc_add_bias(j->q + (size_t)t * E, &W[TS_V_Q_B], E);
        ts_enc_add_bias(kr, &W[TS_V_K_B], E);
        ts_enc_add_bias(vr, &W[TS_V_V_B], E);
        ts_enc_split_heads(j->kh, j->vh, kr, vr, t, n, H, hd);
    }
    ts_threadpool_barrier(pool, nth);
    attend(j, ith, nth);
    ts_threadpool_barrier(pool, nth);
    mask = ts_act_mask(&W[TS_V_O], NULL, NULL);
    for (int t = t0; t < t1; t++) quantize_row(j, j->t + (size_t)t * j->max_in, t, E, mask);
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_V_O], j->t, j->max_in, n, j->o, E, ith, nth);
    ts_threadpool_barrier(pool, nth);

    mask = ts_act_mask(&W[TS_V_UP], NULL, NULL);
    for (int t = t0; t < t1; t++) {
        float *x = j->x + (size_t)t * E, *o = j->o + (size_t)t * E, *tr = j->t + (size_t)t * j->max_in;
        ts_enc_add_bias(o, &W[TS_V_O_B], E);
        for (int i = 0; i < E; i++) x[i] += o[i];
        k->layernorm(x, vec(&W[TS_V_LN2_W]), ln2_b, tr, E, hp->eps);
        quantize_row(j, tr, t, E, mask);
    }
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_V_UP], j->t, j->max_in, n, j->ff, F, ith, nth);
    ts_threadpool_barrier(pool, nth);
    mask = ts_act_mask(&W[TS_V_DOWN], NULL, NULL);
    for (int t = t0; t < t1; t++) {
        float *f = j->ff + (size_t)t * F;
        ts_enc_add_bias(f, &W[TS_V_UP_B], F);
        if (hp->ffn_act == TS_VACT_GELU_QUICK) k->gelu_quick(f, f, F);
        else k->gelu(f, f, F);
        quantize_row(j, f, t, F, mask);
    }
    ts_threadpool_barrier(pool, nth);
    mm(j, &W[TS_V_DOWN], j->ff, F, n, j->o, E, ith, nth);
    ts_threadpool_barrier(pool, nth);
    for (int t = t0; t < t1; t++) {
        float *x = j->x + (size_t)t * E, *o = j->o + (size_t)t * E;
        ts_enc_add_bias(o, &W[TS_V_DOWN_B], E);
        for (int i = 0; i < E; i++) x[i] += o[i];
    }
}

/* gemma3: average pool windows of pool x pool patches, RMS norm, project. */
static void project_gemma3(vit_job *j, int ith, int nth) {
    const ts_vit *v = j->v;
    const ts_vit_hparams *hp = &v->hp;
    const int E = hp->n_embd, K = hp->pool, per_side = v->side / K;
    const int o0 = v->n_tok * ith / nth, o1 = v->n_tok * (ith + 1) / nth;
    const ts_tensor *proj = &v->g[TS_V_MM_PROJ];
    const unsigned mask = ts_act_mask(proj, NULL, NULL);
    const float inv = 1.0f / (float)(K * K);
    for (int o = o0; o < o1; o++) {
        const int oy = o / per_side, ox = o % per_side;
        float *tr = j->t + (size_t)o * j->max_in;
        memset(tr, 0, (size_t)E * sizeof(float));
        for (int dy = 0; dy < K; dy++)
            for (int dx = 0; dx < K; dx++) {
                const float *x = j->x + ((size_t)(oy * K + dy) * v->side + (size_t)(ox * K + dx)) * E;
                for (int i = 0; i < E; i++) tr[i] += x[i];
            }
        for (int i = 0; i < E; i++) tr[i] *= inv;
        v->k->rmsnorm(tr, vec(&v->g[TS_V_MM_NORM_W]), tr, E, hp->eps);
        quantize_row(j, tr, o, E, mask);
    }
    ts_threadpool_barrier(j->pool, nth);
    mm(j, proj, j->t, j->max_in, v->n_tok, j->out, hp->n_out, ith, nth);
}

/* mlp: mm.0, GELU, mm.2 over every patch (the class token is dropped). */
static void project_mlp(vit_job *j, int ith, int nth) {
    const ts_vit *v = j->v;
    const ts_vit_hparams *hp = &v->hp;
    const int E = hp->n_embd, M = hp->n_mm_ff, n = v->n_patch;
    const int p0 = n * ith / nth, p1 = n * (ith + 1) / nth;
    const float *feat = j->x + (size_t)hp->has_class * E;
    const ts_tensor *mm0 = &v->g[TS_V_MM0], *mm2 = &v->g[TS_V_MM2];
    unsigned mask = ts_act_mask(mm0, NULL, NULL);
    for (int p = p0; p < p1; p++) quantize_row(j, feat + (size_t)p * E, p, E, mask);
    ts_threadpool_barrier(j->pool, nth);
    float *hidden = mm2->data ? j->ff : j->out;
    mm(j, mm0, feat, E, n, hidden, M, ith, nth);
    ts_threadpool_barrier(j->pool, nth);
    mask = ts_act_mask(mm2, NULL, NULL);
    for (int p = p0; p < p1; p++) {
        float *h = hidden + (size_t)p * M;
        ts_enc_add_bias(h, &v->g[TS_V_MM0_B], M);
        v->k->gelu(h, h, M);
        if (mm2->data) quantize_row(j, h, p, M, mask);
    }
    if (!mm2->data) return;
    ts_threadpool_barrier(j->pool, nth);
    mm(j, mm2, j->ff, M, n, j->out, hp->n_out, ith, nth);
    ts_threadpool_barrier(j->pool, nth);
    for (int p = p0; p < p1; p++) ts_enc_add_bias(j->out + (size_t)p * hp->n_out, &v->g[TS_V_MM2_B], hp->n_out);
}

static void vit_task(void *arg, int ith, int nth) {
    vit_job *j = (vit_job *)arg;
    const ts_vit *v = j->v;
    const ts_vit_hparams *hp = &v->hp;
    const int E = hp->n_embd;
    patch_embed(j, ith, nth);
    for (int l = 0; l < hp->n_layer; l++) block(j, v->layers[l], ith, nth);
    if (v->g[TS_V_POST_LN_W].data) {
        const int t0 = v->n_pos * ith / nth, t1 = v->n_pos * (ith + 1) / nth;
        const float *b = v->g[TS_V_POST_LN_B].data ? vec(&v->g[TS_V_POST_LN_B]) : NULL;
        for (int t = t0; t < t1; t++) {
            float *x = j->x + (size_t)t * E;
            v->k->layernorm(x, vec(&v->g[TS_V_POST_LN_W]), b, x, E, hp->eps);
        }
    }
    /* Pooling and the projector read rows other threads wrote. */
    ts_threadpool_barrier(j->pool, nth);
    if (hp->proj == TS_VPROJ_GEMMA3) project_gemma3(j, ith, nth);
    else project_mlp(j, ith, nth);
}

static void job_free(vit_job *j) {
    free(j->x); free(j->t); free(j->q); free(j->kb); free(j->vb); free(j->kh); free(j->vh);
    free(j->o); free(j->ff);
    free(j->scores); free(j->act[TS_ACT_Q8X32]); free(j->act[TS_ACT_Q8K]);
}

int ts_vit_encode(const ts_vit *v, const float *pixels, float *out, int n_threads) {
    if (!v->finalized) return -1;
    const ts_vit_hparams *hp = &v->hp;
    vit_job j = {0};
    j.v = v;
    j.pixels = pixels;
    j.out = out;
    j.pool = ts_threadpool_global();
    const int nth = n_threads > 0 && n_threads < ts_threadpool_size(j.pool) ? n_threads : ts_threadpool_size(j.pool);
    int max_in = hp->n_embd;
    if (hp->n_ff > max_in) max_in = hp->n_ff;
    if (3 * hp->patch_size * hp->patch_size > max_in) max_in = 3 * hp->patch_size * hp->patch_size;
    if (hp->proj == TS_VPROJ_MLP && hp->n_mm_ff > max_in) max_in = hp->n_mm_ff;
    j.max_in = max_in;
    const int ff_w = hp->proj == TS_VPROJ_MLP && hp->n_mm_ff > hp->n_ff ? hp->n_mm_ff : hp->n_ff;
    const size_t np = (size_t)v->n_pos, E = (size_t)hp->n_embd;
    j.x = malloc(np * E * sizeof(float));
    j.t = malloc(np * (size_t)max_in * sizeof(float));
    j.q = malloc(np * E * sizeof(float));
    j.kb = malloc(np * E * sizeof(float));
    j.vb = malloc(np * E * sizeof(float));
    j.kh = malloc(np * E * sizeof(float));
    j.vh = malloc(np * E * sizeof(float));
    j.o = malloc(np * E * sizeof(float));
    j.ff = malloc(np * (size_t)ff_w * sizeof(float));
    j.scores = malloc((size_t)nth * TS_VIT_QBLOCK * np * sizeof(float));
    /* Widest row rounded up to whole blocks of either activation format. */
    const int64_t padded = ((int64_t)max_in + TS_QK_K - 1) / TS_QK_K * TS_QK_K;
    j.act[TS_ACT_Q8X32] = malloc(np * ts_act_row_size(TS_ACT_Q8X32, padded));
    j.act[TS_ACT_Q8K] = malloc(np * ts_act_row_size(TS_ACT_Q8K, padded));
    if (!j.x || !j.t || !j.q || !j.kb || !j.vb || !j.kh || !j.vh || !j.o || !j.ff || !j.scores || !j.act[TS_ACT_Q8X32] ||
        !j.act[TS_ACT_Q8K]) {
        job_free(&j);
        return -2;
    }
    ts_threadpool_run(j.pool, vit_task, &j, nth);
    job_free(&j);
    return 0;
}
