// Normalisation over rows x [M, C] (channels-last BatchNorm has M = N*H*W) and LayerNorm
// over the last axis. Cross-row reductions use per-task double partials over a fixed row
// partition (depends only on M and C), added in task order.
#include "usi_internal.h"

#include <stdlib.h>

typedef struct {
    const float *x, *dy;
    const float *shift;  // per-channel value subtracted before summing (may be NULL)
    double *part;        // [tasks, 2, C]
    int64_t M;
    int C, tasks;
    int mode;            // 0: sums of (x-shift), (x-shift)^2; 1: sums of dy, dy*(x-shift)
} colstat_ctx;

USI_MULTIVERSION
static void colstat_task(void *v, int t) {
    const colstat_ctx *k = (const colstat_ctx *)v;
    int64_t r0, r1;
    usi_split(k->M, k->tasks, t, &r0, &r1);
    const int C = k->C;
    double *s1 = k->part + (size_t)t * 2 * C, *s2 = s1 + C;
    const float *sh = k->shift;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = k->x + (size_t)r * C;
        if (k->mode == 0) {
            for (int c = 0; c < C; c++) {
                double d = (double)x[c] - (double)sh[c];
                s1[c] += d;
                s2[c] += d * d;
            }
        } else {
            const float *dy = k->dy + (size_t)r * C;
            for (int c = 0; c < C; c++) {
                double g = (double)dy[c];
                s1[c] += g;
                s2[c] += g * ((double)x[c] - (double)sh[c]);
            }
        }
    }
}

// sum1, sum2 [C] (assigned) from the fixed-partition partials.
USI_MULTIVERSION
static int colstats(double *sum1, double *sum2, const float *x, const float *dy,
                    const float *shift, int64_t M, int C, int mode) {
    int tasks = usi_fixed_tasks(M, C);
    double *part = (double *)calloc((size_t)tasks * 2 * C, sizeof(double));
    if (!part) return 0;
    colstat_ctx k = {x, dy, shift, part, M, C, tasks, mode};
    usi_parallel_for(tasks, colstat_task, &k);
    for (int c = 0; c < C; c++) {
        double a = 0.0, b = 0.0;
        for (int t = 0; t < tasks; t++) {
            a += part[(size_t)t * 2 * C + c];
            b += part[(size_t)t * 2 * C + C + c];
        }
        sum1[c] = a;
        sum2[c] = b;
    }
    free(part);
    return 1;
}

typedef struct {
    float *y;
    const float *x, *dy;
    const float *a, *b, *k, *mean;  // per-channel coefficients
    int C;
} rowmap_ctx;

// y = (x - mean) * a + b
USI_MULTIVERSION
static void bn_apply_range(void *v, int64_t r0, int64_t r1) {
    const rowmap_ctx *k = (const rowmap_ctx *)v;
    const int C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict x = k->x + (size_t)r * C;
        float *restrict y = k->y + (size_t)r * C;
        for (int c = 0; c < C; c++) y[c] = (x[c] - k->mean[c]) * k->a[c] + k->b[c];
    }
}

// dx += a * (dy - b - (x - mean) * k)
USI_MULTIVERSION
static void bn_dx_range(void *v, int64_t r0, int64_t r1) {
    const rowmap_ctx *k = (const rowmap_ctx *)v;
    const int C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict x = k->x + (size_t)r * C;
        const float *restrict dy = k->dy + (size_t)r * C;
        float *restrict dx = k->y + (size_t)r * C;
        for (int c = 0; c < C; c++)
            dx[c] += k->a[c] * (dy[c] - k->b[c] - (x[c] - k->mean[c]) * k->k[c]);
    }
}

// y, x [M, C]; mean, invstd, var_biased [C] written; gamma, beta [C] may be NULL.
USI_MULTIVERSION
void usi_batchnorm_forward_train(float *y, float *mean, float *invstd, float *var_biased,
                                 const float *x, const float *gamma, const float *beta,
                                 int64_t M, int C, float eps) {
    if (C <= 0 || M <= 0) return;
    double *s1 = (double *)malloc(sizeof(double) * 2 * C);
    float *buf = (float *)malloc(sizeof(float) * 3 * C);
    if (!s1 || !buf) {
        free(s1);
        free(buf);
        return;
    }
    double *s2 = s1 + C;
    float *shift = buf, *a = buf + C, *b = buf + 2 * C;
    memcpy(shift, x, sizeof(float) * C);  // first row: a shift near the mean keeps sums exact
    colstats(s1, s2, x, NULL, shift, M, C, 0);
    for (int c = 0; c < C; c++) {
        double md = s1[c] / (double)M;
        double var = s2[c] / (double)M - md * md;
        if (var < 0) var = 0;
        double is = 1.0 / sqrt(var + (double)eps);
        mean[c] = (float)((double)shift[c] + md);
        invstd[c] = (float)is;
        if (var_biased) var_biased[c] = (float)var;
        a[c] = (float)(is * (gamma ? (double)gamma[c] : 1.0));
        b[c] = beta ? beta[c] : 0.0f;
    }
    rowmap_ctx k = {y, x, NULL, a, b, NULL, mean, C};
    usi_parallel_range(M, C, bn_apply_range, &k);
    free(s1);
    free(buf);
}

// y = (x - rmean) / sqrt(rvar + eps) * gamma + beta
USI_MULTIVERSION
void usi_batchnorm_forward_eval(float *y, const float *x, const float *rmean,
                                const float *rvar, const float *gamma, const float *beta,
                                int64_t M, int C, float eps) {
    if (C <= 0 || M <= 0) return;
    float *buf = (float *)malloc(sizeof(float) * 2 * C);
    if (!buf) return;
    float *a = buf, *b = buf + C;
    for (int c = 0; c < C; c++) {
        a[c] = (float)((gamma ? (double)gamma[c] : 1.0) / sqrt((double)rvar[c] + (double)eps));
        b[c] = beta ? beta[c] : 0.0f;
    }
    rowmap_ctx k = {y, x, NULL, a, b, NULL, rmean, C};
    usi_parallel_range(M, C, bn_apply_range, &k);
    free(buf);
}

// Standard training-mode BN backward (statistics depend on x).
USI_MULTIVERSION
void usi_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                            const float *x, const float *mean, const float *invstd,
                            const float *gamma, int64_t M, int C) {
    if (C <= 0 || M <= 0) return;
    double *s1 = (double *)malloc(sizeof(double) * 2 * C);
    float *buf = (float *)malloc(sizeof(float) * 3 * C);
    if (!s1 || !buf) {
        free(s1);
        free(buf);
        return;
    }
    double *s2 = s1 + C;
    colstats(s1, s2, x, dy, mean, M, C, 1);  // sum dy, sum dy * (x - mean)
    float *a = buf, *b = buf + C, *kk = buf + 2 * C;
    for (int c = 0; c < C; c++) {
        double is = invstd[c];
        if (dbeta) dbeta[c] += (float)s1[c];
        if (dgamma) dgamma[c] += (float)(s2[c] * is);
        a[c] = (float)((gamma ? (double)gamma[c] : 1.0) * is);
        b[c] = (float)(s1[c] / (double)M);
        kk[c] = (float)(s2[c] / (double)M * is * is);
    }
    if (dx) {
        rowmap_ctx k = {dx, x, dy, a, b, kk, mean, C};
        usi_parallel_range(M, C, bn_dx_range, &k);
    }
    free(s1);
    free(buf);
}

// Eval-mode backward: y is affine in x.
USI_MULTIVERSION
void usi_batchnorm_backward_eval(float *dx, float *dgamma, float *dbeta, const float *dy,
                                 const float *x, const float *rmean, const float *rvar,
                                 const float *gamma, int64_t M, int C, float eps) {
    if (C <= 0 || M <= 0) return;
    float *buf = (float *)malloc(sizeof(float) * 3 * C);
    if (!buf) return;
    float *a = buf, *b = buf + C, *kk = buf + 2 * C;
    for (int c = 0; c < C; c++) {
        double is = 1.0 / sqrt((double)rvar[c] + (double)eps);
        a[c] = (float)((gamma ? (double)gamma[c] : 1.0) * is);
        b[c] = 0.0f;
        kk[c] = 0.0f;
    }
    if (dgamma || dbeta) {
        double *s1 = (double *)malloc(sizeof(double) * 2 * C);
        if (s1) {
            double *s2 = s1 + C;
            colstats(s1, s2, x, dy, rmean, M, C, 1);
            for (int c = 0; c < C; c++) {
                if (dbeta) dbeta[c] += (float)s1[c];
                if (dgamma) dgamma[c] += (float)(s2[c] / sqrt((double)rvar[c] + (double)eps));
            }
            free(s1);
        }
    }
    if (dx) {
        rowmap_ctx k = {dx, x, dy, a, b, kk, rmean, C};
        usi_parallel_range(M, C, bn_dx_range, &k);
    }
    free(buf);
}

// ----------------------------------------------------------------------------------------
// LayerNorm over the last axis (PyTorch semantics: biased variance).

static double row_sum_d(const float *x, int C) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= C; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l];
    double s = 0.0;
    for (; i < C; i++) s += (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + s;
}

typedef struct {
    float *y, *mean, *rstd;
    const float *x, *w, *b;
    int C;
    float eps;
} ln_ctx;

USI_MULTIVERSION
static void ln_fwd_range(void *v, int64_t r0, int64_t r1) {
    const ln_ctx *k = (const ln_ctx *)v;
    const int C = k->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = k->x + (size_t)r * C;
        float *y = k->y + (size_t)r * C;
        double md = row_sum_d(x, C) / C;
        float m = (float)md;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0;
        int i = 0;
        for (; i + 8 <= C; i += 8)
            for (int l = 0; l < 8; l++) {
                double d = (double)x[i + l] - md;
                acc[l] += d * d;
            }
        for (; i < C; i++) {
            double d = (double)x[i] - md;
            tail += d * d;
        }
        double var = (((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                      ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail) / C;
        float rs = (float)(1.0 / sqrt(var + (double)k->eps));
        if (k->mean) k->mean[r] = m;
        if (k->rstd) k->rstd[r] = rs;
        if (k->w && k->b)
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rs * k->w[c] + k->b[c];
        else if (k->w)
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rs * k->w[c];
        else if (k->b)
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rs + k->b[c];
        else
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rs;
    }
}

// y, x [M, C]; mean, rstd [M] (may be NULL); weight, bias [C] (may be NULL).
USI_MULTIVERSION
void usi_layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t M, int C,
                           float eps) {
    if (M <= 0 || C <= 0) return;
    ln_ctx k = {y, mean, rstd, x, weight, bias, C, eps};
    usi_parallel_range(M, 2 * (int64_t)C, ln_fwd_range, &k);
}

typedef struct {
    float *dx;
    const float *dy, *x, *mean, *rstd, *w;
    double *part;  // [tasks, 2, C]: dweight, dbias partials
    int64_t M;
    int C, tasks;
    int want_params;
} lnb_ctx;

USI_MULTIVERSION
static void ln_bwd_task(void *v, int t) {
    const lnb_ctx *k = (const lnb_ctx *)v;
    const int C = k->C;
    int64_t r0, r1;
    usi_split(k->M, k->tasks, t, &r0, &r1);
    double *pw = k->want_params ? k->part + (size_t)t * 2 * C : NULL;
    double *pb = pw ? pw + C : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = k->x + (size_t)r * C, *dy = k->dy + (size_t)r * C;
        const float m = k->mean[r], rs = k->rstd[r];
        if (pw)
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * rs;
                pw[c] += (double)(dy[c] * xh);
                pb[c] += (double)dy[c];
            }
        if (!k->dx) continue;
        // m1 = mean(dy * w), m2 = mean(dy * w * xhat)
        double a1[8] = {0}, a2[8] = {0}, t1 = 0, t2 = 0;
        int i = 0;
        for (; i + 8 <= C; i += 8)
            for (int l = 0; l < 8; l++) {
                float g = dy[i + l] * (k->w ? k->w[i + l] : 1.0f);
                float xh = (x[i + l] - m) * rs;
                a1[l] += (double)g;
                a2[l] += (double)(g * xh);
            }
        for (; i < C; i++) {
            float g = dy[i] * (k->w ? k->w[i] : 1.0f);
            float xh = (x[i] - m) * rs;
            t1 += g;
            t2 += (double)(g * xh);
        }
        double s1 = t1, s2 = t2;
        for (int l = 0; l < 8; l++) {
            s1 += a1[l];
            s2 += a2[l];
        }
        float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
        float *dx = k->dx + (size_t)r * C;
        if (k->w)
            for (int c = 0; c < C; c++)
                dx[c] += rs * (dy[c] * k->w[c] - m1 - (x[c] - m) * rs * m2);
        else
            for (int c = 0; c < C; c++) dx[c] += rs * (dy[c] - m1 - (x[c] - m) * rs * m2);
    }
}

// dx [M, C] += ..., dweight, dbias [C] += ... (each may be NULL).
USI_MULTIVERSION
void usi_layernorm_backward(float *dx, float *dweight, float *dbias, const float *dy,
                            const float *x, const float *mean, const float *rstd,
                            const float *weight, int64_t M, int C) {
    if (M <= 0 || C <= 0) return;
    int want = dweight || dbias;
    int tasks = usi_fixed_tasks(M, 3 * (int64_t)C);
    double *part = want ? (double *)calloc((size_t)tasks * 2 * C, sizeof(double)) : NULL;
    if (want && !part) return;
    lnb_ctx k = {dx, dy, x, mean, rstd, weight, part, M, C, tasks, want};
    usi_parallel_for(tasks, ln_bwd_task, &k);
    if (want) {
        for (int c = 0; c < C; c++) {
            double a = 0.0, b = 0.0;
            for (int t = 0; t < tasks; t++) {
                a += part[(size_t)t * 2 * C + c];
                b += part[(size_t)t * 2 * C + C + c];
            }
            if (dweight) dweight[c] += (float)a;
            if (dbias) dbias[c] += (float)b;
        }
        free(part);
    }
}

// ---- Synchronised BatchNorm: the per-channel sums the ranks all-reduce, and the element-wise
// passes that use the all-reduced statistics (Sources/USICore/Ops/SyncBatchNorm.swift).

void usi_batchnorm_sums(double *sum1, double *sum2, const float *x, const float *dy, const float *shift,
                        int64_t M, int C) {
    if (C <= 0) return;
    if (M <= 0 || !colstats(sum1, sum2, x, dy, shift, M, C, dy ? 1 : 0)) {
        for (int c = 0; c < C; c++) sum1[c] = sum2[c] = 0.0;
    }
}

USI_MULTIVERSION
void usi_batchnorm_normalize(float *y, const float *x, const float *mean, const float *invstd,
                             const float *gamma, const float *beta, int64_t M, int C) {
    if (C <= 0 || M <= 0) return;
    float *buf = (float *)malloc(sizeof(float) * 2 * C);
    if (!buf) return;
    float *a = buf, *b = buf + C;
    for (int c = 0; c < C; c++) {
        a[c] = invstd[c] * (gamma ? gamma[c] : 1.0f);
        b[c] = beta ? beta[c] : 0.0f;
    }
    rowmap_ctx k = {y, x, NULL, a, b, NULL, mean, C};
    usi_parallel_range(M, C, bn_apply_range, &k);
    free(buf);
}

USI_MULTIVERSION
void usi_batchnorm_backward_input(float *dx, const float *dy, const float *x, const float *mean,
                                  const float *invstd, const float *gamma, const double *sum_dy,
                                  const double *sum_dy_xmu, double count, int64_t M, int C) {
    if (C <= 0 || M <= 0 || count <= 0) return;
    float *buf = (float *)malloc(sizeof(float) * 3 * C);
    if (!buf) return;
    float *a = buf, *b = buf + C, *kk = buf + 2 * C;
    for (int c = 0; c < C; c++) {
        double is = invstd[c];
        a[c] = (float)((gamma ? (double)gamma[c] : 1.0) * is);
        b[c] = (float)(sum_dy[c] / count);
        kk[c] = (float)(sum_dy_xmu[c] / count * is * is);
    }
    rowmap_ctx k = {dx, x, dy, a, b, kk, mean, C};
    usi_parallel_range(M, C, bn_dx_range, &k);
    free(buf);
}
