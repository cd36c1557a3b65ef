/* The start shared by every level's grouped attention kernel (attn_rows, attn_rows_quant). */
#ifndef TS_ATTN_ROWS_H
#define TS_ATTN_ROWS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ts/kernels.h"

/* The largest head the grouped kernels widen a block of rows for (on the stack); larger heads go
 * one row at a time. Every quantized cache's heads fit: they have no per-row path. */
#define TS_ATTN_ROWS_MAX_DIM 256
_Static_assert(TS_ATTN_QUANT_MAX_DIM <= TS_ATTN_ROWS_MAX_DIM, "quantized rows go through the grouped kernel");

/* Rows t * n_head + h of a group: each one's softmax state reset (running maximum m = -inf, sum
 * l = 0, output zero), and the positions the kernel reads for all of them, [*lo, *hi): from the
 * lowest start of a row that sees any position to the highest end. Blocks start at *lo. */
static inline void ts_attn_rows_begin(int n_tok, int n_head, const int32_t *p0, const int32_t *p1, int head_dim,
                                      float *out, int64_t out_stride, float *m, float *l, int *lo, int *hi) {
    *lo = p1[0];
    *hi = p0[0];
    for (int t = 0; t < n_tok; t++) {
        if (p0[t] < p1[t] && p0[t] < *lo) *lo = p0[t];
        if (p1[t] > *hi) *hi = p1[t];
        for (int h = 0; h < n_head; h++) {
            m[t * n_head + h] = -INFINITY;
            l[t * n_head + h] = 0.0f;
            memset(out + t * out_stride + (int64_t)h * head_dim, 0, (size_t)head_dim * sizeof(float));
        }
    }
}

#endif
