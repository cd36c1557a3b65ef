/* A memory read-bandwidth probe for the kernel benchmark: every thread sums its share of a buffer. */
#include <stdint.h>
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
