// Softmax family over the last axis of x [M, C], numerically stable (row max subtracted).
// Rows are independent and split over the pool; the cross-entropy loss adds per-task
// double partials over a fixed row partition, in task order.
#include "usi_internal.h"

#include <stdlib.h>

// Row maximum with 16 independent lanes (vectorisable). NaNs are ignored here; they still
// propagate through exp(x - max) into the row's output.
USI_MULTIVERSION
static float row_max(const float *x, int C) {
    float acc[16];
    for (int l = 0; l < 16; l++) acc[l] = -INFINITY;
    int j = 0;
    for (; j + 16 <= C; j += 16)
        for (int l = 0; l < 16; l++) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
    float m = -INFINITY;
    for (; j < C; j++) m = x[j] > m ? x[j] : m;
    for (int l = 0; l < 16; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

// Sum in float with 16 independent lanes (vectorisable), then the lanes in double.
USI_MULTIVERSION
static double row_sum_f(const float *x, int C) {
    float acc[16] = {0};
    int j = 0;
    for (; j + 16 <= C; j += 16)
        for (int l = 0; l < 16; l++) acc[l] += x[j + l];
    double s = 0.0;
    for (; j < C; j++) s += x[j];
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

USI_MULTIVERSION
static double row_dot_f(const float *a, const float *b, int C) {
    float acc[16] = {0};
    int j = 0;
    for (; j + 16 <= C; j += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[j + l] * b[j + l];
    double s = 0.0;
    for (; j < C; j++) s += (double)a[j] * b[j];
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

// y [C] = softmax(x [C]); returns log(sum exp(x - max)) and stores max.
USI_MULTIVERSION
static double softmax_row(float *restrict y, const float *restrict x, int C, float *max_out) {
    float m = row_max(x, C);
    if (m == -INFINITY) m = 0.0f;  // all -inf: avoid inf - inf
    for (int j = 0; j < C; j++) y[j] = usi_expf(x[j] - m);
    double s = row_sum_f(y, C);
    float inv = (float)(1.0 / s);
    for (int j = 0; j < C; j++) y[j] *= inv;
    *max_out = m;
    return log(s);
}

typedef struct {
    float *y;
    const float *x, *dy;
    int C;
} sm_ctx;

USI_MULTIVERSION
static void softmax_range(void *v, int64_t r0, int64_t r1) {
    const sm_ctx *k = (const sm_ctx *)v;
    float m;
    for (int64_t r = r0; r < r1; r++)
        softmax_row(k->y + (size_t)r * k->C, k->x + (size_t)r * k->C, k->C, &m);
}

USI_MULTIVERSION
void usi_softmax_forward(float *y, const float *x, int64_t M, int C) {
    if (M <= 0 || C <= 0) return;
    sm_ctx k = {y, x, NULL, C};
    usi_parallel_range(M, 4 * (int64_t)C, softmax_range, &k);
}

USI_MULTIVERSION
static void softmax_bwd_range(void *v, int64_t r0, int64_t r1) {
    const sm_ctx *k = (const sm_ctx *)v;
    const int C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict y = k->x + (size_t)r * C, *restrict dy = k->dy + (size_t)r * C;
        float *restrict dx = k->y + (size_t)r * C;
        float s = (float)row_dot_f(dy, y, C);
        for (int j = 0; j < C; j++) dx[j] += y[j] * (dy[j] - s);
    }
}

// dx += y * (dy - sum(dy * y))
USI_MULTIVERSION
void usi_softmax_backward(float *dx, const float *dy, const float *y, int64_t M, int C) {
    if (!dx || M <= 0 || C <= 0) return;
    sm_ctx k = {dx, y, dy, C};
    usi_parallel_range(M, 2 * (int64_t)C, softmax_bwd_range, &k);
}

USI_MULTIVERSION
static void log_softmax_range(void *v, int64_t r0, int64_t r1) {
    const sm_ctx *k = (const sm_ctx *)v;
    const int C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict x = k->x + (size_t)r * C;
        float *restrict y = k->y + (size_t)r * C;
        float m = row_max(x, C);
        if (m == -INFINITY) m = 0.0f;
        float acc[16] = {0};
        int j = 0;
        for (; j + 16 <= C; j += 16)
            for (int l = 0; l < 16; l++) acc[l] += usi_expf(x[j + l] - m);
        double s = 0.0;
        for (; j < C; j++) s += usi_expf(x[j] - m);
        for (int l = 0; l < 16; l++) s += acc[l];
        float lse = (float)log(s);
        for (j = 0; j < C; j++) y[j] = (x[j] - m) - lse;
    }
}

USI_MULTIVERSION
void usi_log_softmax_forward(float *y, const float *x, int64_t M, int C) {
    if (M <= 0 || C <= 0) return;
    sm_ctx k = {y, x, NULL, C};
    usi_parallel_range(M, 4 * (int64_t)C, log_softmax_range, &k);
}

USI_MULTIVERSION
static void log_softmax_bwd_range(void *v, int64_t r0, int64_t r1) {
    const sm_ctx *k = (const sm_ctx *)v;
    const int C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict y = k->x + (size_t)r * C, *restrict dy = k->dy + (size_t)r * C;
        float *restrict dx = k->y + (size_t)r * C;
        float s = (float)row_sum_f(dy, C);
        for (int j = 0; j < C; j++) dx[j] += dy[j] - usi_expf(y[j]) * s;
    }
}

// dx += dy - exp(y) * sum(dy)
USI_MULTIVERSION
void usi_log_softmax_backward(float *dx, const float *dy, const float *y, int64_t M, int C) {
    if (!dx || M <= 0 || C <= 0) return;
    sm_ctx k = {dx, y, dy, C};
    usi_parallel_range(M, 3 * (int64_t)C, log_softmax_bwd_range, &k);
}

// ----------------------------------------------------------------------------------------
// Cross entropy.

typedef struct {
    float *probs;
    const float *logits, *targets;
    const int32_t *labels;
    double *part;
    int64_t M;
    int C, tasks;
} ce_ctx;

USI_MULTIVERSION
static void ce_fwd_task(void *v, int t) {
    const ce_ctx *k = (const ce_ctx *)v;
    const int C = k->C;
    int64_t r0, r1;
    usi_split(k->M, k->tasks, t, &r0, &r1);
    double loss = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = k->logits + (size_t)r * C;
        float m;
        double lse = softmax_row(k->probs + (size_t)r * C, x, C, &m);
        if (k->targets) {
            // -sum_j t_j (x_j - m - lse)
            const float *tg = k->targets + (size_t)r * C;
            double st = 0.0, stx = 0.0;
            for (int j = 0; j < C; j++) {
                st += tg[j];
                stx += (double)tg[j] * ((double)x[j] - m);
            }
            loss += st * lse - stx;
        } else {
            int32_t lab = k->labels[r];
            if (lab >= 0 && lab < C) loss += lse - ((double)x[lab] - m);
        }
    }
    k->part[t] = loss;
}

// Mean over rows of the cross-entropy; probs [M, C] = softmax(logits). Hard labels outside
// [0, C) contribute nothing (the caller validates labels).
USI_MULTIVERSION
double usi_cross_entropy_forward(float *probs, const float *logits, const float *targets,
                                 const int32_t *labels, int64_t M, int C) {
    if (M <= 0 || C <= 0) return 0.0;
    int tasks = usi_fixed_tasks(M, 4 * (int64_t)C);
    double part[USI_MAX_FIXED_TASKS];
    ce_ctx k = {probs, logits, targets, labels, part, M, C, tasks};
    usi_parallel_for(tasks, ce_fwd_task, &k);
    double s = 0.0;
    for (int t = 0; t < tasks; t++) s += part[t];
    return s / (double)M;
}

typedef struct {
    float *dlogits;
    const float *probs, *targets;
    const int32_t *labels;
    int C;
    float f;  // scale / M
} ceb_ctx;

USI_MULTIVERSION
static void ce_bwd_range(void *v, int64_t r0, int64_t r1) {
    const ceb_ctx *k = (const ceb_ctx *)v;
    const int C = k->C;
    const float f = k->f;
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict p = k->probs + (size_t)r * C;
        float *restrict dl = k->dlogits + (size_t)r * C;
        if (k->targets) {
            const float *restrict tg = k->targets + (size_t)r * C;
            float st = (float)row_sum_f(tg, C);
            for (int j = 0; j < C; j++) dl[j] += f * (p[j] * st - tg[j]);
        } else {
            int32_t lab = k->labels[r];
            if (lab < 0 || lab >= C) continue;
            for (int j = 0; j < C; j++) dl[j] += f * p[j];
            dl[lab] -= f;
        }
    }
}

// dlogits += scale * (probs * sum(t) - t) / M
USI_MULTIVERSION
void usi_cross_entropy_backward(float *dlogits, const float *probs, const float *targets,
                                const int32_t *labels, int64_t M, int C, float scale) {
    if (!dlogits || M <= 0 || C <= 0) return;
    ceb_ctx k = {dlogits, probs, targets, labels, C, (float)((double)scale / (double)M)};
    usi_parallel_range(M, 2 * (int64_t)C, ce_bwd_range, &k);
}
