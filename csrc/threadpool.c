/* Persistent worker threads that spin briefly for the next job, then sleep on a condition. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ts/threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TS_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define TS_PAUSE() __asm__ __volatile__("yield")
#else
#define TS_PAUSE() ((void)0)
#endif

/* About a millisecond of spinning for the next job: long enough to bridge the gap between the
 * steps of a generation, short enough not to burn a core while idle. */
#define TS_SPIN_ITERS 20000

/* How long a thread spins at a barrier or at the end of a job before it sleeps. On an idle
 * machine the threads of a phase finish within microseconds of each other and never sleep; when
 * another process holds a partner's core, spinning on would keep this core busy too, while a
 * sleeping thread frees it for the partner to migrate to. */
#define TS_WAIT_SPIN_NS 100000

struct ts_threadpool {
    int size;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t run_mu; /* one job at a time */
    atomic_int gen;          /* bumped once per job */
    atomic_int done;         /* workers finished with the current job */
    atomic_int stop;
    ts_task_fn fn;
    void *ctx;
    int nth;
    atomic_int bar_count;
    atomic_int bar_gen;
    pthread_mutex_t wait_mu; /* sleepers at a barrier or at the end of a job */
    pthread_cond_t wait_cv;
    atomic_int sleepers;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits until *v != old (or, with at_least, until *v >= old): spins for a while, then sleeps
 * until wake_waiters. The counter is checked after `sleepers` is raised, and wakers read
 * `sleepers` after changing the counter (both sequentially consistent), so no wake-up is lost. */
static void wait_for(ts_threadpool *p, atomic_int *v, int old, int at_least) {
#define TS_WAIT_DONE() (at_least ? atomic_load(v) >= old : atomic_load(v) != old)
    int64_t t0 = 0;
    for (int spins = 0; !TS_WAIT_DONE(); spins++) {
        TS_PAUSE();
        if ((spins & 63) != 63) continue;
        if (t0 == 0) t0 = now_ns();
        else if (now_ns() - t0 > TS_WAIT_SPIN_NS) {
            pthread_mutex_lock(&p->wait_mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!TS_WAIT_DONE()) pthread_cond_wait(&p->wait_cv, &p->wait_mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->wait_mu);
            return;
        }
    }
#undef TS_WAIT_DONE
}

static void wake_waiters(ts_threadpool *p) {
    if (atomic_load(&p->sleepers) == 0) return;
    pthread_mutex_lock(&p->wait_mu);
    pthread_cond_broadcast(&p->wait_cv);
    pthread_mutex_unlock(&p->wait_mu);
}

typedef struct { ts_threadpool *pool; int ith; } worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = (worker_arg *)arg;
    ts_threadpool *p = wa->pool;
    const int ith = wa->ith;
    free(wa);
    int seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < TS_SPIN_ITERS) {
                TS_PAUSE();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load(&p->gen);
        if (ith < p->nth) p->fn(p->ctx, ith, p->nth);
        atomic_fetch_add(&p->done, 1);
        wake_waiters(p);
    }
    return NULL;
}

ts_threadpool *ts_threadpool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 512) n_threads = 512;
    ts_threadpool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->size = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_mutex_init(&p->wait_mu, NULL);
    pthread_cond_init(&p->wait_cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof(*wa));
        wa->pool = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->size = i; /* run with the threads we have */
            break;
        }
    }
    return p;
}

void ts_threadpool_free(ts_threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->size; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->run_mu);
    pthread_mutex_destroy(&p->wait_mu);
    pthread_cond_destroy(&p->wait_cv);
    free(p);
}

int ts_threadpool_size(const ts_threadpool *p) { return p->size; }

void ts_threadpool_run(ts_threadpool *p, ts_task_fn fn, void *ctx, int n) {
    int nth = (n <= 0 || n > p->size) ? p->size : n;
    if (nth == 1) { /* no hand-off: the caller does the work */
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->ctx = ctx;
    p->nth = nth;
    atomic_store(&p->done, 0);
    atomic_store(&p->bar_count, 0);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, nth);
    wait_for(p, &p->done, p->size - 1, 1);
    pthread_mutex_unlock(&p->run_mu);
}

void ts_threadpool_barrier(ts_threadpool *p, int nth) {
    if (nth <= 1) return;
    const int g = atomic_load(&p->bar_gen);
    if (atomic_fetch_add(&p->bar_count, 1) == nth - 1) {
        atomic_store(&p->bar_count, 0);
        atomic_fetch_add(&p->bar_gen, 1);
        wake_waiters(p);
        return;
    }
    wait_for(p, &p->bar_gen, g, 0);
}

int ts_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static ts_threadpool *g_pool;
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void global_init(void) { g_pool = ts_threadpool_create(ts_cpu_count()); }

ts_threadpool *ts_threadpool_global(void) {
    pthread_once(&g_pool_once, global_init);
    return g_pool;
}
