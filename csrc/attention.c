/* Splitting a batch's attention into items of rows that share one K/V head. */
#include <math.h>

#include "ts/kernels.h"

/* Tokens per item: as many as fill TS_ATTN_MAX_ROWS rows with whole head groups, so that tokens
 * of one sequence share each K/V load. Rows of distinct sequences (a decode batch) share
 * nothing: one token per item then spreads them evenly over the threads (blocks of several
 * left 2:1 splits, e.g. 3 items for 2 threads at B = 2 with three kv heads). */
static int tokens_per_block(const ts_attn_batch *b) {
    int shared = !b->seq;
    for (int t = 1; t < b->n_tok && !shared; t++) shared = b->seq[t] == b->seq[t - 1];
    if (!shared) return 1;
    const int group = b->n_head / b->n_head_kv;
    const int tb = TS_ATTN_MAX_ROWS / group;
    return tb > 0 ? tb : 1;
}

/* Parts a head group is cut into: more than one only when blocks x kv heads would leave
 * threads idle (decode of one token with few kv heads). */
static int group_parts(const ts_attn_batch *b, int nth) {
    const int group = b->n_head / b->n_head_kv, tb = tokens_per_block(b);
    const int blocks = (b->n_tok + tb - 1) / tb;
    int parts = 1;
    while (blocks * b->n_head_kv * parts < nth && parts < group) parts++;
    /* A group wider than the row limit is always cut. */
    while ((group + parts - 1) / parts > TS_ATTN_MAX_ROWS) parts++;
    return parts;
}

int ts_attn_batch_items(const ts_attn_batch *b, int nth) {
    const int tb = tokens_per_block(b);
    return (b->n_tok + tb - 1) / tb * b->n_head_kv * group_parts(b, nth);
}

void ts_attn_batch_run(const ts_attn_batch *b, int item, int nth) {
    const int group = b->n_head / b->n_head_kv, tb = tokens_per_block(b), parts = group_parts(b, nth);
    const int part = item % parts, g = (item / parts) % b->n_head_kv, blk = item / (parts * b->n_head_kv);
    const int per = (group + parts - 1) / parts;
    const int h0 = g * group + part * per, h1 = h0 + per < (g + 1) * group ? h0 + per : (g + 1) * group;
    const int t_end = (blk + 1) * tb < b->n_tok ? (blk + 1) * tb : b->n_tok;
    if (h0 >= h1) return;
    /* Runs of tokens of one sequence share the cache rows. */
    for (int t0 = blk * tb; t0 < t_end;) {
        const int s = b->seq ? b->seq[t0] : 0;
        int t1 = t0 + 1;
        while (t1 < t_end && (b->seq ? b->seq[t1] : 0) == s) t1++;
        int32_t p0[TS_ATTN_MAX_ROWS], p1[TS_ATTN_MAX_ROWS];
        for (int t = t0; t < t1; t++) {
            const int p = b->pos[t];
            p0[t - t0] = b->window > 0 && p - b->window + 1 > 0 ? p - b->window + 1 : 0;
            p1[t - t0] = b->end ? b->end[t] : p + 1;
        }
        const size_t off = (size_t)s * b->seq_stride + (size_t)g * b->head_stride;
        const float *q = b->q + (size_t)t0 * b->q_stride + (size_t)h0 * b->head_dim;
        float *out = b->out + (size_t)t0 * b->out_stride + (size_t)h0 * b->head_dim;
        const float *sinks = b->sinks ? b->sinks + h0 : NULL;
        const size_t bytes = ts_cache_bytes(b->kv_type, (int64_t)off);
        const void *kc = (const char *)b->kc + bytes, *vc = (const char *)b->vc + bytes;
        if (b->kv_type != TS_TYPE_F16) {
            b->k->attn_rows_quant(q, b->q_stride, out, b->out_stride, t1 - t0, h1 - h0, p0, p1, b->kv_type, kc, vc,
                                  b->head_dim, b->head_dim, b->scale, b->softcap, sinks);
        } else if (b->k->attn_rows) {
            b->k->attn_rows(q, b->q_stride, out, b->out_stride, t1 - t0, h1 - h0, p0, p1, kc, vc,
                            b->head_dim, b->head_dim, b->scale, b->softcap, sinks);
        } else { /* a level without a grouped kernel: one head at a time */
            for (int t = 0; t < t1 - t0; t++)
                for (int h = 0; h < h1 - h0; h++)
                    b->k->attn_head(q + (size_t)t * b->q_stride + (size_t)h * b->head_dim, kc, vc,
                                    b->head_dim, p0[t], p1[t], b->head_dim, b->scale, b->softcap,
                                    sinks ? sinks[h] : -INFINITY, out + (size_t)t * b->out_stride + (size_t)h * b->head_dim);
        }
        t0 = t1;
    }
}
