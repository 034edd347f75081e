// Strided N-d copies and broadcasting binary ops (permute, slice, concat, pad, broadcast).
// Dimensions are coalesced first (size-1 dims dropped, contiguous neighbours merged); the
// innermost loop has fast paths for unit and zero strides. Work is split over the outer
// index space, or over the innermost range when there is a single row.
#include "usi_internal.h"

#define USI_MAX_DIMS 8

typedef struct {
    int ndim;
    int nops;
    int64_t shape[USI_MAX_DIMS];
    int64_t st[3][USI_MAX_DIMS];
} nd_iter;

// Drops size-1 dims and merges dim i into i+1 when every operand is contiguous across them.
USI_MULTIVERSION
static void nd_coalesce(nd_iter *d) {
    int nd = 0;
    int64_t shape[USI_MAX_DIMS], st[3][USI_MAX_DIMS];
    for (int i = 0; i < d->ndim; i++) {
        if (d->shape[i] == 1) continue;
        shape[nd] = d->shape[i];
        for (int k = 0; k < d->nops; k++) st[k][nd] = d->st[k][i];
        nd++;
    }
    if (nd == 0) {
        shape[0] = 1;
        for (int k = 0; k < d->nops; k++) st[k][0] = 0;
        nd = 1;
    }
    // merge from the inside out
    int out = 0;
    int64_t mshape[USI_MAX_DIMS], mst[3][USI_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        if (out > 0) {
            int ok = 1;
            for (int k = 0; k < d->nops; k++)
                if (mst[k][out - 1] != st[k][i] * shape[i]) ok = 0;
            if (ok) {
                mshape[out - 1] *= shape[i];
                for (int k = 0; k < d->nops; k++) mst[k][out - 1] = st[k][i];
                continue;
            }
        }
        mshape[out] = shape[i];
        for (int k = 0; k < d->nops; k++) mst[k][out] = st[k][i];
        out++;
    }
    d->ndim = out;
    for (int i = 0; i < out; i++) {
        d->shape[i] = mshape[i];
        for (int k = 0; k < d->nops; k++) d->st[k][i] = mst[k][i];
    }
}

static int64_t nd_rows(const nd_iter *d) {
    int64_t r = 1;
    for (int i = 0; i < d->ndim - 1; i++) r *= d->shape[i];
    return r;
}

// Offsets of outer row `row` (a linear index over dims 0..ndim-2).
static void nd_offsets(const nd_iter *d, int64_t row, int64_t *off, int64_t *idx) {
    for (int k = 0; k < d->nops; k++) off[k] = 0;
    for (int i = d->ndim - 2; i >= 0; i--) {
        int64_t q = row % d->shape[i];
        row /= d->shape[i];
        idx[i] = q;
        for (int k = 0; k < d->nops; k++) off[k] += q * d->st[k][i];
    }
}

static void nd_next(const nd_iter *d, int64_t *off, int64_t *idx) {
    for (int i = d->ndim - 2; i >= 0; i--) {
        idx[i]++;
        for (int k = 0; k < d->nops; k++) off[k] += d->st[k][i];
        if (idx[i] < d->shape[i]) return;
        for (int k = 0; k < d->nops; k++) off[k] -= d->st[k][i] * d->shape[i];
        idx[i] = 0;
    }
}

// Walks rows [r0, r1) (inner range [i0, i1) of each row) calling inner(ctx, off, i0, i1).
typedef void (*nd_inner_fn)(const void *ctx, const int64_t *off, int64_t i0, int64_t i1);

typedef struct {
    const nd_iter *d;
    nd_inner_fn inner;
    const void *ctx;
    int64_t rows;
} nd_job;

USI_MULTIVERSION
static void nd_walk(const nd_iter *d, nd_inner_fn inner, const void *ctx, int64_t r0,
                    int64_t r1, int64_t i0, int64_t i1) {
    int64_t off[3], idx[USI_MAX_DIMS];
    nd_offsets(d, r0, off, idx);
    for (int64_t r = r0; r < r1; r++) {
        inner(ctx, off, i0, i1);
        if (r + 1 < r1) nd_next(d, off, idx);
    }
}

USI_MULTIVERSION
static void nd_range(void *vctx, int64_t b, int64_t e) {
    const nd_job *j = (const nd_job *)vctx;
    if (j->rows > 1)
        nd_walk(j->d, j->inner, j->ctx, b, e, 0, j->d->shape[j->d->ndim - 1]);
    else
        nd_walk(j->d, j->inner, j->ctx, 0, 1, b, e);
}

static void nd_run(const nd_iter *d, nd_inner_fn inner, const void *ctx, int parallel) {
    int64_t rows = nd_rows(d), inner_n = d->shape[d->ndim - 1];
    if (!parallel || rows * inner_n < 2 * USI_GRAIN) {
        nd_walk(d, inner, ctx, 0, rows, 0, inner_n);
        return;
    }
    nd_job j = {d, inner, ctx, rows};
    if (rows > 1)
        usi_parallel_range(rows, inner_n, nd_range, &j);
    else
        usi_parallel_range(inner_n, 1, nd_range, &j);
}

// ----------------------------------------------------------------------------------------
// Strided copy.

typedef struct {
    float *dst;
    const float *src;
    int64_t sd, ss;  // innermost strides
    int accumulate;
} copy_ctx;

USI_MULTIVERSION
static void copy_inner(const void *vctx, const int64_t *off, int64_t i0, int64_t i1) {
    const copy_ctx *c = (const copy_ctx *)vctx;
    int64_t n = i1 - i0;
    float *restrict d = c->dst + off[0] + i0 * c->sd;
    const float *restrict s = c->src + off[1] + i0 * c->ss;
    if (c->sd == 1 && c->ss == 1) {
        if (c->accumulate)
            for (int64_t i = 0; i < n; i++) d[i] += s[i];
        else
            memcpy(d, s, (size_t)n * sizeof(float));
    } else if (c->sd == 1 && c->ss == 0) {
        float v = s[0];
        if (c->accumulate)
            for (int64_t i = 0; i < n; i++) d[i] += v;
        else
            for (int64_t i = 0; i < n; i++) d[i] = v;
    } else if (c->sd == 1) {
        int64_t ss = c->ss;
        if (c->accumulate)
            for (int64_t i = 0; i < n; i++) d[i] += s[i * ss];
        else
            for (int64_t i = 0; i < n; i++) d[i] = s[i * ss];
    } else {
        int64_t sd = c->sd, ss = c->ss;
        if (c->accumulate)
            for (int64_t i = 0; i < n; i++) d[i * sd] += s[i * ss];
        else
            for (int64_t i = 0; i < n; i++) d[i * sd] = s[i * ss];
    }
}

USI_MULTIVERSION
void usi_copy_strided(float *dst, const int64_t *dst_strides, const float *src,
                      const int64_t *src_strides, const int64_t *shape, int ndim,
                      int accumulate) {
    if (ndim < 0 || ndim > USI_MAX_DIMS) return;
    nd_iter d;
    d.ndim = ndim;
    d.nops = 2;
    int dst_broadcast = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return;
        d.shape[i] = shape[i];
        d.st[0][i] = dst_strides[i];
        d.st[1][i] = src_strides[i];
        if (dst_strides[i] == 0 && shape[i] > 1) dst_broadcast = 1;
    }
    nd_coalesce(&d);
    int last = d.ndim - 1;
    copy_ctx c = {dst, src, d.st[0][last], d.st[1][last], accumulate};
    // A zero destination stride makes several source elements meet in one place: run it
    // serially so the order (and so the result) is fixed.
    nd_run(&d, copy_inner, &c, !dst_broadcast);
}

// ----------------------------------------------------------------------------------------
// Broadcasting binary op; out is contiguous over `shape`.

typedef struct {
    int op;
    float *out;
    const float *a, *b;
    int64_t so, sa, sb;
} bin_ctx;

#define BIN_LOOP(EXPR)                                                                     \
    do {                                                                                   \
        if (sa == 1 && sb == 1)                                                            \
            for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[i]; o[i] = (EXPR); }   \
        else if (sa == 1 && sb == 0) {                                                     \
            float y = b[0];                                                                \
            for (int64_t i = 0; i < n; i++) { float x = a[i]; o[i] = (EXPR); }             \
        } else if (sa == 0 && sb == 1) {                                                   \
            float x = a[0];                                                                \
            for (int64_t i = 0; i < n; i++) { float y = b[i]; o[i] = (EXPR); }             \
        } else                                                                             \
            for (int64_t i = 0; i < n; i++) {                                              \
                float x = a[i * sa], y = b[i * sb];                                        \
                o[i] = (EXPR);                                                             \
            }                                                                              \
    } while (0)

USI_MULTIVERSION
static void bin_inner(const void *vctx, const int64_t *off, int64_t i0, int64_t i1) {
    const bin_ctx *c = (const bin_ctx *)vctx;
    int64_t n = i1 - i0, sa = c->sa, sb = c->sb;
    float *restrict o = c->out + off[0] + i0;  // out's innermost stride is 1
    const float *restrict a = c->a + off[1] + i0 * sa;
    const float *restrict b = c->b + off[2] + i0 * sb;
    switch (c->op) {
    case USI_ADD: BIN_LOOP(x + y); break;
    case USI_SUB: BIN_LOOP(x - y); break;
    case USI_MUL: BIN_LOOP(x * y); break;
    case USI_DIV: BIN_LOOP(x / y); break;
    default: break;
    }
}

USI_MULTIVERSION
void usi_binary_forward(int op, float *out, const float *a, const int64_t *a_strides,
                        const float *b, const int64_t *b_strides, const int64_t *shape,
                        int ndim) {
    if (ndim < 0 || ndim > USI_MAX_DIMS) return;
    nd_iter d;
    d.ndim = ndim;
    d.nops = 3;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] <= 0) return;
        d.shape[i] = shape[i];
        d.st[0][i] = s;
        d.st[1][i] = a_strides[i];
        d.st[2][i] = b_strides[i];
        s *= shape[i];
    }
    nd_coalesce(&d);
    int last = d.ndim - 1;
    bin_ctx c = {op, out, a, b, d.st[0][last], d.st[1][last], d.st[2][last]};
    nd_run(&d, bin_inner, &c, 1);
}
