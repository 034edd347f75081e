// Depthwise convolution (groups == C == OC), channels-last, direct loops vectorised along C.
// x [N, H, W, C], w [C, KH, KW, 1], out [N, OH, OW, C]. The weights are transposed once per
// call to wt [KH, KW, C] so the innermost loop runs over contiguous channels.
// Forward and dx split over output / input rows; dw and dbias use per-task partials over a
// fixed row partition, added in task order. The naive reference is usi_conv2d_*_naive with
// groups = C.
#include "usi_internal.h"

#include <stdlib.h>

static float *transpose_weights(const float *w, int C, int taps) {
    float *wt = (float *)malloc((size_t)C * taps * sizeof(float));
    if (!wt) return NULL;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < taps; k++) wt[(size_t)k * C + c] = w[(size_t)c * taps + k];
    return wt;
}

typedef struct {
    float *out;       // forward out / backward dx
    const float *x;
    const float *wt;
    const float *bias;
    const float *dout;
    double *part;     // dw partials [tasks, taps + 1, C]
    const usi_conv_shape *s;
    int tasks;
} dw_ctx;

static inline void fma_run(float *restrict o, const float *restrict a, const float *restrict b,
                           int n) {
    for (int c = 0; c < n; c++) o[c] += a[c] * b[c];
}

static void dw_fwd_range(void *v, int64_t r0, int64_t r1) {
    const dw_ctx *k = (const dw_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / s->OH), oh = (int)(r % s->OH);
        const float *xn = k->x + (size_t)n * H * W * C;
        int ih0 = oh * s->SH - s->PT;
        for (int ow = 0; ow < s->OW; ow++) {
            float *o = k->out + ((size_t)r * s->OW + ow) * C;
            if (k->bias)
                memcpy(o, k->bias, (size_t)C * sizeof(float));
            else
                memset(o, 0, (size_t)C * sizeof(float));
            int iw0 = ow * s->SW - s->PL;
            for (int kh = 0; kh < s->KH; kh++) {
                int ih = ih0 + kh * s->DH;
                if (ih < 0 || ih >= H) continue;
                const float *xr = xn + (size_t)ih * W * C;
                for (int kw = 0; kw < KW; kw++) {
                    int iw = iw0 + kw * s->DW;
                    if (iw < 0 || iw >= W) continue;
                    fma_run(o, xr + (size_t)iw * C, k->wt + ((size_t)kh * KW + kw) * C, C);
                }
            }
        }
    }
}

// out [N, OH, OW, C] = depthwise conv(x, w [C, KH, KW, 1]) + bias [C]
void usi_dwconv2d_forward(float *out, const float *x, const float *w, const float *bias,
                          const usi_conv_shape *s) {
    int taps = s->KH * s->KW;
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || s->C <= 0) return;
    float *wt = transpose_weights(w, s->C, taps);
    if (!wt) return;
    dw_ctx k = {out, x, wt, bias, NULL, NULL, s, 0};
    usi_parallel_range((int64_t)s->N * s->OH, (int64_t)s->OW * s->C * taps, dw_fwd_range, &k);
    free(wt);
}

// dx rows (n, ih) gather from every output position whose window covers them.
static void dw_dx_range(void *v, int64_t r0, int64_t r1) {
    const dw_ctx *k = (const dw_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / H), ih = (int)(r % H);
        float *dxr = k->out + (size_t)r * W * C;
        for (int kh = 0; kh < s->KH; kh++) {
            int t = ih + s->PT - kh * s->DH;
            if (t < 0 || t % s->SH != 0) continue;
            int oh = t / s->SH;
            if (oh >= s->OH) continue;
            const float *drow = k->dout + ((size_t)n * s->OH + oh) * s->OW * C;
            const float *wk = k->wt + (size_t)kh * KW * C;
            for (int iw = 0; iw < W; iw++) {
                float *d = dxr + (size_t)iw * C;
                for (int kw = 0; kw < KW; kw++) {
                    int u = iw + s->PL - kw * s->DW;
                    if (u < 0 || u % s->SW != 0) continue;
                    int ow = u / s->SW;
                    if (ow >= s->OW) continue;
                    fma_run(d, drow + (size_t)ow * C, wk + (size_t)kw * C, C);
                }
            }
        }
    }
}

// Task t: dw/dbias partials over its output rows, float per row, double across rows.
static void dw_dw_task(void *v, int t) {
    const dw_ctx *k = (const dw_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW, taps = s->KH * s->KW;
    int64_t r0, r1;
    usi_split((int64_t)s->N * s->OH, k->tasks, t, &r0, &r1);
    size_t tn = (size_t)(taps + 1) * C;
    float *tmp = (float *)malloc(tn * sizeof(float));
    double *part = k->part + (size_t)t * tn;
    if (!tmp) return;
    for (int64_t r = r0; r < r1; r++) {
        memset(tmp, 0, tn * sizeof(float));
        int n = (int)(r / s->OH), oh = (int)(r % s->OH);
        const float *xn = k->x + (size_t)n * H * W * C;
        int ih0 = oh * s->SH - s->PT;
        for (int ow = 0; ow < s->OW; ow++) {
            const float *d = k->dout + ((size_t)r * s->OW + ow) * C;
            float *tb = tmp + (size_t)taps * C;
            for (int c = 0; c < C; c++) tb[c] += d[c];
            if (!k->x) continue;
            int iw0 = ow * s->SW - s->PL;
            for (int kh = 0; kh < s->KH; kh++) {
                int ih = ih0 + kh * s->DH;
                if (ih < 0 || ih >= H) continue;
                const float *xr = xn + (size_t)ih * W * C;
                for (int kw = 0; kw < KW; kw++) {
                    int iw = iw0 + kw * s->DW;
                    if (iw < 0 || iw >= W) continue;
                    fma_run(tmp + ((size_t)kh * KW + kw) * C, d, xr + (size_t)iw * C, C);
                }
            }
        }
        for (size_t i = 0; i < tn; i++) part[i] += (double)tmp[i];
    }
    free(tmp);
}

// dx [N, H, W, C] += ..., dw [C, KH, KW, 1] += ..., dbias [C] += ... (each may be NULL)
void usi_dwconv2d_backward(float *dx, float *dw, float *dbias, const float *dout,
                           const float *x, const float *w, const usi_conv_shape *s) {
    const int C = s->C, taps = s->KH * s->KW;
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || C <= 0) return;
    if (dx) {
        float *wt = transpose_weights(w, C, taps);
        if (wt) {
            dw_ctx k = {dx, NULL, wt, NULL, dout, NULL, s, 0};
            int64_t work = (int64_t)s->W * C * ((s->KH + s->SH - 1) / s->SH) *
                           ((s->KW + s->SW - 1) / s->SW);
            usi_parallel_range((int64_t)s->N * s->H, work, dw_dx_range, &k);
            free(wt);
        }
    }
    if (dw || dbias) {
        int64_t rows = (int64_t)s->N * s->OH;
        int tasks = usi_fixed_tasks(rows, (int64_t)s->OW * C * taps);
        size_t tn = (size_t)(taps + 1) * C;
        double *part = (double *)calloc((size_t)tasks * tn, sizeof(double));
        if (!part) return;
        dw_ctx k = {NULL, dw ? x : NULL, NULL, NULL, dout, part, s, tasks};
        usi_parallel_for(tasks, dw_dw_task, &k);
        for (int c = 0; c < C; c++) {
            for (int j = 0; j <= taps; j++) {
                double acc = 0.0;
                for (int t = 0; t < tasks; t++) acc += part[(size_t)t * tn + (size_t)j * C + c];
                if (j < taps) {
                    if (dw) dw[(size_t)c * taps + j] += (float)acc;
                } else if (dbias) {
                    dbias[c] += (float)acc;
                }
            }
        }
        free(part);
    }
}
