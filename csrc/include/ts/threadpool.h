/* A persistent pool of worker threads: one job at a time, run by every thread, then a join. */
#ifndef TS_THREADPOOL_H
#define TS_THREADPOOL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Called on each of nth threads with ith in [0, nth); the caller's thread is ith 0. */
typedef void (*ts_task_fn)(void *ctx, int ith, int nth);

typedef struct ts_threadpool ts_threadpool;

ts_threadpool *ts_threadpool_create(int n_threads);
void ts_threadpool_free(ts_threadpool *p);
int ts_threadpool_size(const ts_threadpool *p);
/* Runs fn on min(n, size) threads (n <= 0: all) and returns when every one has finished.
 * Calls from different OS threads are serialized. */
void ts_threadpool_run(ts_threadpool *p, ts_task_fn fn, void *ctx, int n);
/* Inside a task: waits until all nth threads of the current job reach the barrier. nth is the
 * task's own, so a job the caller ran alone (nth 1) never waits on the pool. */
void ts_threadpool_barrier(ts_threadpool *p, int nth);

/* The process-wide pool, created on first use with one thread per online CPU. */
ts_threadpool *ts_threadpool_global(void);
int ts_cpu_count(void);

#ifdef __cplusplus
}
#endif
#endif
