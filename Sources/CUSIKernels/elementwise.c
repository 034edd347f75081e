// Flat elementwise helpers and reductions.
#include "usi_internal.h"

#include <stdlib.h>

typedef struct {
    float *y;
    const float *x, *m;
    float a, b;
} ew_ctx;

USI_MULTIVERSION
static void affine_range(void *v, int64_t b, int64_t e) {
    const ew_ctx *c = (const ew_ctx *)v;
    float *restrict y = c->y;
    const float *restrict x = c->x;
    float a = c->a, bb = c->b;
    if (y == x) {  // in place
        for (int64_t i = b; i < e; i++) c->y[i] = a * c->y[i] + bb;
        return;
    }
    for (int64_t i = b; i < e; i++) y[i] = a * x[i] + bb;
}

// y [n] = a * x [n] + b
USI_MULTIVERSION
void usi_affine(float *y, const float *x, float a, float b, size_t n) {
    ew_ctx c = {y, x, NULL, a, b};
    usi_parallel_range((int64_t)n, 1, affine_range, &c);
}

USI_MULTIVERSION
static void accumulate_range(void *v, int64_t b, int64_t e) {
    const ew_ctx *c = (const ew_ctx *)v;
    float *restrict y = c->y;
    const float *restrict x = c->x;
    for (int64_t i = b; i < e; i++) y[i] += x[i];
}

// y [n] += x [n]
USI_MULTIVERSION
void usi_accumulate(float *y, const float *x, size_t n) {
    ew_ctx c = {y, x, NULL, 0, 0};
    usi_parallel_range((int64_t)n, 1, accumulate_range, &c);
}

USI_MULTIVERSION
static void mul_range(void *v, int64_t b, int64_t e) {
    const ew_ctx *c = (const ew_ctx *)v;
    float *y = c->y;
    const float *x = c->x, *m = c->m;
    for (int64_t i = b; i < e; i++) y[i] = x[i] * m[i];
}

// y [n] = x [n] * m [n]
USI_MULTIVERSION
void usi_mul(float *y, const float *x, const float *m, size_t n) {
    ew_ctx c = {y, x, m, 0, 0};
    usi_parallel_range((int64_t)n, 1, mul_range, &c);
}

// ----------------------------------------------------------------------------------------
// Reductions. Every output element is summed by one task in a fixed order, in double.

// Sum of x[0..n) with stride 1, in double with 8 independent lanes (vectorisable).
USI_MULTIVERSION
static double sum_contig(const float *x, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l];
    double s = 0.0;
    for (; i < n; i++) s += (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + s;
}

typedef struct {
    float *out;
    const float *x;
    int64_t outer, n, inner;
} rs_ctx;

#define RS_BLOCK 512

// Tasks over (outer, inner block) pairs.
USI_MULTIVERSION
static void reduce_sum_range(void *v, int64_t b, int64_t e) {
    const rs_ctx *c = (const rs_ctx *)v;
    if (c->inner == 1) {
        for (int64_t o = b; o < e; o++) c->out[o] = (float)sum_contig(c->x + o * c->n, c->n);
        return;
    }
    int64_t nblk = (c->inner + RS_BLOCK - 1) / RS_BLOCK;
    double acc[RS_BLOCK];
    for (int64_t it = b; it < e; it++) {
        int64_t o = it / nblk, blk = it % nblk;
        int64_t j0 = blk * RS_BLOCK, j1 = j0 + RS_BLOCK < c->inner ? j0 + RS_BLOCK : c->inner;
        int64_t w = j1 - j0;
        for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
        const float *xo = c->x + o * c->n * c->inner + j0;
        for (int64_t k = 0; k < c->n; k++) {
            const float *xr = xo + k * c->inner;
            for (int64_t j = 0; j < w; j++) acc[j] += (double)xr[j];
        }
        float *out = c->out + o * c->inner + j0;
        for (int64_t j = 0; j < w; j++) out[j] = (float)acc[j];
    }
}

typedef struct {
    const float *x;
    double *part;
    int64_t n, inner;
    int tasks;
} rs_partial_ctx;

// Task t sums rows [k0, k1) of x [n, inner] into its own partial row.
USI_MULTIVERSION
static void rs_partial(void *v, int t) {
    const rs_partial_ctx *c = (const rs_partial_ctx *)v;
    int64_t k0, k1;
    usi_split(c->n, c->tasks, t, &k0, &k1);
    double *acc = c->part + (size_t)t * c->inner;
    for (int64_t k = k0; k < k1; k++) {
        const float *xr = c->x + k * c->inner;
        for (int64_t j = 0; j < c->inner; j++) acc[j] += (double)xr[j];
    }
}

// x [outer, n, inner] -> out [outer, inner] (assigned)
USI_MULTIVERSION
void usi_reduce_sum(float *out, const float *x, int64_t outer, int64_t n, int64_t inner) {
    if (outer <= 0 || inner <= 0) return;
    if (n <= 0) {
        memset(out, 0, (size_t)(outer * inner) * sizeof(float));
        return;
    }
    rs_ctx c = {out, x, outer, n, inner};
    if (inner == 1) {
        usi_parallel_range(outer, n, reduce_sum_range, &c);
        return;
    }
    int64_t nblk = (inner + RS_BLOCK - 1) / RS_BLOCK;
    int64_t blk_w = inner < RS_BLOCK ? inner : RS_BLOCK;
    if (outer == 1 && n * inner >= 4 * USI_GRAIN) {
        // A single output row but many input rows (e.g. a bias gradient): fixed row chunks,
        // per-chunk partials added in chunk order.
        int tasks = usi_fixed_tasks(n, inner);
        double *part = tasks > 1 ? (double *)calloc((size_t)tasks * (size_t)inner, sizeof(double)) : NULL;
        if (part) {
            rs_partial_ctx p = {x, part, n, inner, tasks};
            usi_parallel_for(tasks, rs_partial, &p);
            for (int64_t j = 0; j < inner; j++) {
                double s = 0.0;
                for (int t = 0; t < tasks; t++) s += part[(size_t)t * inner + j];
                out[j] = (float)s;
            }
            free(part);
            return;
        }
    }
    usi_parallel_range(outer * nblk, n * blk_w, reduce_sum_range, &c);
}

typedef struct {
    const float *x;
    int64_t n;
    int tasks;
    double *part;
    usi_chunk_reduce_fn chunk;
} chunked_ctx;

USI_MULTIVERSION
static void chunked_task(void *v, int t) {
    const chunked_ctx *c = (const chunked_ctx *)v;
    int64_t b, e;
    usi_split(c->n, c->tasks, t, &b, &e);
    c->part[t] = c->chunk(c->x + b, e - b);
}

// Sum of chunk(x[b..e)) over chunks fixed by n alone (deterministic for any thread count),
// combined in chunk order.
USI_MULTIVERSION
double usi_chunked_reduce(const float *x, int64_t n, usi_chunk_reduce_fn chunk) {
    int tasks = usi_fixed_tasks(n, 1);
    if (tasks == 1) return chunk(x, n);
    double part[USI_MAX_FIXED_TASKS];
    chunked_ctx c = {x, n, tasks, part, chunk};
    usi_parallel_for(tasks, chunked_task, &c);
    double s = 0.0;
    for (int t = 0; t < tasks; t++) s += part[t];
    return s;
}

// Sum of all n elements in double; the partition depends only on n.
USI_MULTIVERSION
double usi_sum_all(const float *x, size_t n) { return usi_chunked_reduce(x, (int64_t)n, sum_contig); }

USI_MULTIVERSION
static double nonfinite_contig(const float *x, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= ((x[i] - x[i]) != 0.0f);  // inf - inf and NaN
    return bad;
}

// 1 if any of x [n] is NaN or +-Inf.
USI_MULTIVERSION
int usi_has_nonfinite(const float *x, size_t n) {
    return usi_chunked_reduce(x, (int64_t)n, nonfinite_contig) > 0.0;
}

// out [C] += column sums of x [M, C].
USI_MULTIVERSION
void usi_colsum_add(float *out, const float *x, int64_t M, int64_t C) {
    if (!out || M <= 0 || C <= 0) return;
    int tasks = usi_fixed_tasks(M, C);
    double *part = (double *)calloc((size_t)tasks * (size_t)C, sizeof(double));
    if (!part) {  // out of memory: a serial pass in float, still in a fixed order
        for (int64_t r = 0; r < M; r++)
            for (int64_t j = 0; j < C; j++) out[j] += x[r * C + j];
        return;
    }
    rs_partial_ctx p = {x, part, M, C, tasks};
    usi_parallel_for(tasks, rs_partial, &p);
    for (int64_t j = 0; j < C; j++) {
        double s = 0.0;
        for (int t = 0; t < tasks; t++) s += part[(size_t)t * C + j];
        out[j] += (float)s;
    }
    free(part);
}
