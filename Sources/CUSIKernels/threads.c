// The kernel thread pool: a few persistent pthreads that wait on a condition variable.
// usi_parallel_for hands out task indices through an atomic counter; the calling thread
// runs tasks too and returns when every task has finished. Results never depend on which
// thread ran a task: kernels partition their output, and reductions combine per-task
// partials in task order.
#define _GNU_SOURCE
#include "usi_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

void usi_flush_denormals(void) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    fpcr |= (1ull << 24);  // FZ
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#endif
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work_cv;  // workers wait here for a new generation
    pthread_cond_t done_cv;  // the caller waits here for the job to finish
    void (*fn)(void *ctx, int task);
    void *ctx;
    int n_tasks;
    atomic_int next;
    atomic_int remaining;
    int active;              // workers currently inside a job
    unsigned long generation;
    int shutdown;
    pthread_t *threads;
    int n_workers;           // pool threads (budget - 1)
} usi_pool;

static usi_pool g_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};
// Serialises jobs and resizing; a second concurrent caller runs its tasks inline.
static pthread_mutex_t g_call_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_budget = 0;  // 0 = not yet initialised
static _Thread_local int tl_in_pool = 0;

// The default budget: $USI_NUM_THREADS when set, else the online CPUs.
static int default_threads(void) {
    const char *env = getenv("USI_NUM_THREADS");
    long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int usi_get_num_threads(void) {
    int n = atomic_load(&g_budget);
    if (n == 0) {
        int d = default_threads();
        int expected = 0;
        atomic_compare_exchange_strong(&g_budget, &expected, d);
        n = atomic_load(&g_budget);
    }
    return n;
}

static void *worker_main(void *arg) {
    unsigned long seen = (unsigned long)(uintptr_t)arg;
    usi_flush_denormals();
    tl_in_pool = 1;
    usi_pool *p = &g_pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->shutdown) break;
        seen = p->generation;
        void (*fn)(void *, int) = p->fn;
        void *ctx = p->ctx;
        int n = p->n_tasks;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        for (;;) {
            int t = atomic_fetch_add(&p->next, 1);
            if (t >= n) break;
            fn(ctx, t);
            atomic_fetch_sub(&p->remaining, 1);
        }
        pthread_mutex_lock(&p->mu);
        p->active--;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

// Stops the workers. Caller holds g_call_mu.
static void pool_stop(void) {
    usi_pool *p = &g_pool;
    if (p->n_workers == 0) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->n_workers = 0;
    p->shutdown = 0;
}

// Starts budget-1 workers if they are not running. Caller holds g_call_mu.
static void pool_start(int budget) {
    usi_pool *p = &g_pool;
    int want = budget - 1;
    if (p->n_workers == want) return;
    pool_stop();
    if (want <= 0) return;
    p->threads = (pthread_t *)calloc((size_t)want, sizeof(pthread_t));
    if (!p->threads) return;
    pthread_mutex_lock(&p->mu);
    unsigned long gen = p->generation;
    pthread_mutex_unlock(&p->mu);
    int started = 0;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, (void *)(uintptr_t)gen) != 0) break;
        started++;
    }
    p->n_workers = started;
}

void usi_pool_resize(int n) {
    if (n < 1) n = 1;
    pthread_mutex_lock(&g_call_mu);
    atomic_store(&g_budget, n);
    pool_stop();  // workers restart lazily with the new size
    pthread_mutex_unlock(&g_call_mu);
}

static void run_inline(int n_tasks, void (*fn)(void *, int), void *ctx) {
    for (int t = 0; t < n_tasks; t++) fn(ctx, t);
}

void usi_parallel_for(int n_tasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (n_tasks <= 0) return;
    int budget = usi_get_num_threads();
    if (n_tasks == 1 || budget <= 1 || tl_in_pool) {
        run_inline(n_tasks, fn, ctx);
        return;
    }
    if (pthread_mutex_trylock(&g_call_mu) != 0) {  // another thread owns the pool
        run_inline(n_tasks, fn, ctx);
        return;
    }
    pool_start(budget);
    usi_pool *p = &g_pool;
    if (p->n_workers == 0) {
        pthread_mutex_unlock(&g_call_mu);
        run_inline(n_tasks, fn, ctx);
        return;
    }
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done_cv, &p->mu);  // late wakers of a past job
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->remaining, n_tasks);
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    tl_in_pool = 1;  // nested parallel_for calls from a task run inline
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1);
        if (t >= n_tasks) break;
        fn(ctx, t);
        atomic_fetch_sub(&p->remaining, 1);
    }
    tl_in_pool = 0;

    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->remaining) > 0 || p->active > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&g_call_mu);
}

// ----------------------------------------------------------------------------------------
// Range helpers.

typedef struct {
    usi_range_fn fn;
    void *ctx;
    int64_t n;
    int tasks;
} range_job;

static void range_task(void *vctx, int t) {
    range_job *j = (range_job *)vctx;
    int64_t b, e;
    usi_split(j->n, j->tasks, t, &b, &e);
    if (e > b) j->fn(j->ctx, b, e);
}

void usi_parallel_range(int64_t n, int64_t work_per_item, usi_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (work_per_item < 1) work_per_item = 1;
    int64_t work = n * work_per_item;
    int budget = usi_get_num_threads();
    int64_t tasks = work / USI_GRAIN;
    int64_t cap = budget > 1 ? 4 * (int64_t)budget : 1;
    if (tasks > cap) tasks = cap;
    if (tasks > n) tasks = n;
    if (tasks <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job j = {fn, ctx, n, (int)tasks};
    usi_parallel_for((int)tasks, range_task, &j);
}

int usi_fixed_tasks(int64_t items, int64_t work_per_item) {
    if (items <= 0) return 1;
    if (work_per_item < 1) work_per_item = 1;
    int64_t tasks = items * work_per_item / USI_GRAIN;
    if (tasks > USI_MAX_FIXED_TASKS) tasks = USI_MAX_FIXED_TASKS;
    if (tasks > items) tasks = items;
    return tasks < 1 ? 1 : (int)tasks;
}
