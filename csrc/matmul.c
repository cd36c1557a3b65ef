/* Threaded drivers: quantized matrix products and grouped-query attention over the pool. */
#include <stdlib.h>
#include <string.h>

#include "ts/kernels.h"
#include "ts/repack.h"
#include "ts/threadpool.h"

typedef struct {
    ts_vec_dot_fn dot;
    ts_vec_dot_rows_fn dot_rows;
    ts_gemm_fn gemm;
    int gemm_one;
    ts_quantize_row_fn quantize; /* NULL: the dot takes f32 activations as they are */
    const char *w;               /* (rows, row_bytes) */
    int64_t rows, cols, row_bytes;
    const float *x;              /* (n, cols) f32 */
    int64_t n;
    const char *xq;              /* (n, act_row) activation rows */
    size_t act_row;
    float *y;                    /* (n, rows) */
    ts_threadpool *pool;
} matmul_job;

/* Rows are handed out to threads in groups; without a gemm, a group's weights stay in cache
 * while every activation row passes over them. */
#define TS_ROW_GROUP 16
_Static_assert(TS_ROW_GROUP % TS_PACK_ROWS == 0, "a thread's rows must be whole packed groups");

/* Rows [r0, r1) of y for all n activation rows. */
static void matmul_rows(ts_vec_dot_fn dot, ts_vec_dot_rows_fn dot_rows, ts_gemm_fn gemm, int gemm_one, const void *w,
                        int64_t r0, int64_t r1, int64_t cols, int64_t row_bytes, const void *xq, size_t act_row,
                        int64_t n, float *y, int64_t y_stride) {
    if (r1 <= r0) return;
    if (gemm && (n > 1 || gemm_one)) {
        /* The gemm orders its own work over these rows and all activation rows. A lone token
         * takes it too where it is as fast (gemm_one): then its sums do not depend on how many
         * others share the batch, so a seeded reply does not change with what the KV cache
         * already held. */
        gemm(cols, (int)(r1 - r0), (int)n, (const char *)w + r0 * row_bytes, (size_t)row_bytes, xq, act_row, y + r0,
             (size_t)y_stride);
        return;
    }
    for (int64_t g0 = r0; g0 < r1; g0 += TS_ROW_GROUP) {
        const int64_t g1 = g0 + TS_ROW_GROUP < r1 ? g0 + TS_ROW_GROUP : r1;
        for (int64_t t = 0; t < n; t++) {
            const char *xr = (const char *)xq + (size_t)t * act_row;
            float *yr = y + t * y_stride;
            if (dot_rows)
                dot_rows(cols, &yr[g0], (const char *)w + g0 * row_bytes, (size_t)row_bytes, xr, (int)(g1 - g0));
            else
                for (int64_t r = g0; r < g1; r++) dot(cols, &yr[r], (const char *)w + r * row_bytes, xr);
        }
    }
}

void ts_matmul_part(ts_vec_dot_fn dot, ts_vec_dot_rows_fn dot_rows, ts_gemm_fn gemm, int gemm_one, const void *w,
                    int64_t rows,
                    int64_t cols, int64_t row_bytes,
                    const void *xq, size_t act_row, int64_t n, float *y, int64_t y_stride,
                    int ith, int nth) {
    const int64_t groups = (rows + TS_ROW_GROUP - 1) / TS_ROW_GROUP;
    const int64_t g0 = groups * ith / nth, g1 = groups * (ith + 1) / nth;
    const int64_t r1 = g1 * TS_ROW_GROUP < rows ? g1 * TS_ROW_GROUP : rows;
    matmul_rows(dot, dot_rows, gemm, gemm_one, w, g0 * TS_ROW_GROUP, r1, cols, row_bytes, xq, act_row, n, y, y_stride);
}

/* Pieces per thread a claimed matmul is cut into: enough that a thread delayed by another
 * process (a server's network thread, on a machine with as many cores as compute threads) leaves
 * most of its share to the others, few enough that claiming costs nothing next to a piece. */
#define TS_CLAIMS_PER_THREAD 4

void ts_matmul_claim(ts_vec_dot_fn dot, ts_vec_dot_rows_fn dot_rows, ts_gemm_fn gemm, int gemm_one, const void *w,
                     int64_t rows, int64_t cols, int64_t row_bytes, const void *xq, size_t act_row, int64_t n, float *y,
                     int64_t y_stride, int ith, int nth, atomic_int *next) {
    if (!next) {
        ts_matmul_part(dot, dot_rows, gemm, gemm_one, w, rows, cols, row_bytes, xq, act_row, n, y, y_stride, ith, nth);
        return;
    }
    const int64_t groups = (rows + TS_ROW_GROUP - 1) / TS_ROW_GROUP;
    /* Pieces of whole 32-row panels (csrc/x86_avx512/gemm_panel.c's), so that none computes half an empty panel. */
    int64_t per = (groups / ((int64_t)nth * TS_CLAIMS_PER_THREAD) + 1) / 2 * 2;
    if (per < 2) per = 2;
    for (;;) {
        const int64_t g = (int64_t)atomic_fetch_add_explicit(next, 1, memory_order_relaxed) * per;
        if (g >= groups) return;
        const int64_t r1 = (g + per) * TS_ROW_GROUP < rows ? (g + per) * TS_ROW_GROUP : rows;
        matmul_rows(dot, dot_rows, gemm, gemm_one, w, g * TS_ROW_GROUP, r1, cols, row_bytes, xq, act_row, n, y,
                    y_stride);
    }
}

static void matmul_task(void *arg, int ith, int nth) {
    matmul_job *j = (matmul_job *)arg;
    if (j->quantize) {
        for (int64_t t = ith; t < j->n; t += nth)
            j->quantize(j->x + t * j->cols, (char *)j->xq + (size_t)t * j->act_row, j->cols);
        ts_threadpool_barrier(j->pool, nth);
    }
    ts_matmul_part(j->dot, j->dot_rows, j->gemm, j->gemm_one, j->w, j->rows, j->cols, j->row_bytes, j->xq, j->act_row, j->n, j->y,
                   j->rows, ith, nth);
}

int ts_matmul(const ts_kernels *kern, int type, const void *w, int64_t rows, int64_t cols,
              int64_t row_bytes, int packed, const float *x, int64_t n, float *y, int n_threads) {
    const ts_kernels *k = kern ? kern : ts_kernels_get();
    const ts_type_traits *tr = ts_type_traits_get(type);
    if (!tr || !k->vec_dot[type] || rows <= 0 || cols <= 0 || n <= 0) return -1;
    if (packed && (!k->gemm_packed[type] || rows % TS_PACK_ROWS || row_bytes != (int64_t)ts_row_size(type, cols)))
        return -1;
    const size_t need = ts_row_size(type, cols);
    if (need == 0 || row_bytes < (int64_t)need) return -1;

    matmul_job j = {0};
    j.dot = k->vec_dot[type];
    j.dot_rows = k->vec_dot_rows[type];
    j.gemm = packed ? k->gemm_packed[type] : k->gemm[type];
    j.gemm_one = packed || k->gemm_one[type];
    j.w = (const char *)w;
    j.rows = rows;
    j.cols = cols;
    j.row_bytes = row_bytes;
    j.x = x;
    j.n = n;
    j.y = y;
    j.pool = ts_threadpool_global();
    char *buf = NULL;
    if (tr->act == TS_ACT_F32) {
        j.xq = (const char *)x;
        j.act_row = (size_t)cols * sizeof(float);
    } else {
        j.quantize = tr->act == TS_ACT_Q8K ? k->quantize_q8k : k->quantize_q8x32;
        if (!j.quantize) return -1;
        j.act_row = ts_act_row_size(tr->act, cols);
        buf = malloc(j.act_row * (size_t)n);
        if (!buf) return -1;
        j.xq = buf;
    }
    ts_threadpool_run(j.pool, matmul_task, &j, n_threads);
    free(buf);
    return 0;
}

static void attn_task(void *arg, int ith, int nth) {
    const ts_attn_batch *b = (const ts_attn_batch *)arg;
    const int items = ts_attn_batch_items(b, nth);
    for (int item = ith; item < items; item += nth) ts_attn_batch_run(b, item, nth);
}

int ts_attention(const ts_kernels *kern, const float *q, const void *k, const void *v, int kv_type,
                 const int32_t *q_pos, int n_tok, int n_head, int n_kv_head, int head_dim,
                 int n_ctx, int window, float scale, float softcap, const float *sinks, float *out, int n_threads) {
    const ts_kernels *kt = kern ? kern : ts_kernels_get();
    if (!kt->attn_head || n_tok <= 0 || n_head <= 0 || n_kv_head <= 0 || head_dim <= 0 ||
        n_ctx <= 0 || n_head % n_kv_head != 0)
        return -1;
    if (!ts_cache_row_bytes(kv_type, head_dim)) return -1;
    for (int t = 0; t < n_tok; t++)
        if (q_pos[t] < 0 || q_pos[t] >= n_ctx) return -1;
    const ts_attn_batch b = {kt, q, (int64_t)n_head * head_dim, out, (int64_t)n_head * head_dim, k, v, kv_type, 0,
                             (int64_t)n_ctx * head_dim, q_pos, NULL, NULL, n_tok, n_head, n_kv_head, head_dim, window,
                             scale, softcap, sinks};
    ts_threadpool_run(ts_threadpool_global(), attn_task, (void *)&b, n_threads);
    return 0;
}
