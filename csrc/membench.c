/* Benchmark entry points: a memory read-bandwidth probe (every thread sums its share of a
 * buffer) and matrix-vector products streamed back to back as the forward pass runs them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts/kernels.h"
#include "ts/threadpool.h"

typedef struct {
    const uint64_t *p;
    size_t n;          /* uint64 words */
    uint64_t sums[64]; /* one per thread, so the reads cannot be optimized away */
} probe_job;

static void probe_task(void *arg, int ith, int nth) {
    probe_job *j = (probe_job *)arg;
    const size_t a = j->n * (size_t)ith / (size_t)nth, b = j->n * (size_t)(ith + 1) / (size_t)nth;
    /* Eight independent lanes keep enough loads in flight to saturate memory. */
    uint64_t s[8] = {0};
    size_t i = a;
    for (; i + 8 <= b; i += 8)
        for (int l = 0; l < 8; l++) s[l] += j->p[i + l];
    for (; i < b; i++) s[0] += j->p[i];
    uint64_t t = 0;
    for (int l = 0; l < 8; l++) t += s[l];
    if (ith < 64) j->sums[ith] = t;
}

uint64_t ts_read_probe(const void *buf, size_t n_bytes, int n_threads) {
    probe_job j;
    memset(&j, 0, sizeof(j));
    j.p = (const uint64_t *)buf;
    j.n = n_bytes / sizeof(uint64_t);
    if (n_threads > 64) n_threads = 64;
    ts_threadpool_run(ts_threadpool_global(), probe_task, &j, n_threads);
    uint64_t t = 0;
    for (int i = 0; i < 64; i++) t += j.sums[i];
    return t;
}

typedef struct {
    const ts_kernels *k;
    int type;
    const void *const *ws;
    int n_w;
    int64_t rows, cols, row_bytes;
    const void *xq;
    size_t act_row;
    float *y;
    ts_threadpool *pool;
} stream_job;

static void stream_task(void *arg, int ith, int nth) {
    const stream_job *j = (const stream_job *)arg;
    for (int i = 0; i < j->n_w; i++) {
        ts_matmul_part(j->k->vec_dot[j->type], j->k->vec_dot_rows[j->type], j->k->gemm[j->type], j->k->gemm_one[j->type],
                       j->ws[i], j->rows, j->cols, j->row_bytes, j->xq, j->act_row, 1, j->y, j->rows, ith, nth);
        ts_threadpool_barrier(j->pool, nth);
    }
}

int ts_matvec_stream(const ts_kernels *kern, int type, const void *const *ws, int n_w, int64_t rows, int64_t cols,
                     int64_t row_bytes, const float *x, float *y, int n_threads) {
    const ts_kernels *k = kern ? kern : ts_kernels_get();
    const ts_type_traits *tr = ts_type_traits_get(type);
    if (!tr || !k->vec_dot[type] || n_w <= 0 || rows <= 0 || cols <= 0) return -1;
    const size_t need = ts_row_size(type, cols);
    if (need == 0 || row_bytes < (int64_t)need) return -1;
    stream_job j = {k, type, ws, n_w, rows, cols, row_bytes, x, (size_t)cols * sizeof(float), y,
                    ts_threadpool_global()};
    void *buf = NULL;
    if (tr->act != TS_ACT_F32) {
        const ts_quantize_row_fn quantize = tr->act == TS_ACT_Q8K ? k->quantize_q8k : k->quantize_q8x32;
        j.act_row = ts_act_row_size(tr->act, cols);
        buf = malloc(j.act_row);
        if (!quantize || !buf) {
            free(buf);
            return -1;
        }
        quantize(x, buf, cols);
        j.xq = buf;
    }
    ts_threadpool_run(j.pool, stream_task, &j, n_threads);
    free(buf);
    return 0;
}
