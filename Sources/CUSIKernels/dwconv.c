// Depthwise convolution (groups == C == OC), channels-last, direct loops vectorised along C.
// x [N, H, W, C], w [C, KH, KW, 1], out [N, OH, OW, C]. The weights are transposed once per
// call to wt [KH, KW, C] so the innermost loop runs over contiguous channels.
// Forward and dx split over output / input rows; dw and dbias use per-task partials over a
// fixed row partition, added in task order. The naive reference is usi_conv2d_*_naive with
// groups = C.
#include "usi_internal.h"

#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// 8-lane float vectors (GCC/Clang vector extension: one AVX2 register in the x86-64-v3 copies,
// two SSE registers in the baseline copies, two NEON registers on arm64). Macros rather than functions, so no
// function passes a 32-byte vector by value (which would change the ABI without AVX).
typedef float usi_v8 __attribute__((vector_size(32)));
#define V8_LOAD(p) __extension__({ usi_v8 v8_; memcpy(&v8_, (p), sizeof v8_); v8_; })
#define V8_STORE(p, v) do { usi_v8 v8s_ = (v); memcpy((p), &v8s_, sizeof v8s_); } while (0)
#define V8_ZERO ((usi_v8){0, 0, 0, 0, 0, 0, 0, 0})

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
    int avx512;       // forward: the AVX-512 row kernel may run (decided on the calling thread)
} dw_ctx;

static inline void fma_run(float *restrict o, const float *restrict a, const float *restrict b,
                           int n) {
    for (int c = 0; c < n; c++) o[c] += a[c] * b[c];
}

#define DW_MAX_TAPS 64  // taps gathered per output pixel on the fast path

// o[c] (=|+=) sum over taps t of a[t][c] * b[t][c]. Blocks of 32 channels stay in four
// 8-lane registers across all taps; then single vectors; then a scalar tail.
USI_MULTIVERSION
static void tap_sum(float *o, const float *const *a, const float *const *b, int nt, int C,
                    const float *init, int accumulate) {
    int c0 = 0;
    for (; c0 + 32 <= C; c0 += 32) {
        usi_v8 s0, s1, s2, s3;
        const float *src = accumulate ? o : init;
        if (src) {
            s0 = V8_LOAD(src + c0);
            s1 = V8_LOAD(src + c0 + 8);
            s2 = V8_LOAD(src + c0 + 16);
            s3 = V8_LOAD(src + c0 + 24);
        } else {
            s0 = s1 = s2 = s3 = V8_ZERO;
        }
        for (int t = 0; t < nt; t++) {
            const float *ap = a[t] + c0, *bp = b[t] + c0;
            s0 += V8_LOAD(ap) * V8_LOAD(bp);
            s1 += V8_LOAD(ap + 8) * V8_LOAD(bp + 8);
            s2 += V8_LOAD(ap + 16) * V8_LOAD(bp + 16);
            s3 += V8_LOAD(ap + 24) * V8_LOAD(bp + 24);
        }
        V8_STORE(o + c0, s0);
        V8_STORE(o + c0 + 8, s1);
        V8_STORE(o + c0 + 16, s2);
        V8_STORE(o + c0 + 24, s3);
    }
    for (; c0 + 8 <= C; c0 += 8) {
        const float *src = accumulate ? o : init;
        usi_v8 s0 = src ? V8_LOAD(src + c0) : V8_ZERO;
        for (int t = 0; t < nt; t++) s0 += V8_LOAD(a[t] + c0) * V8_LOAD(b[t] + c0);
        V8_STORE(o + c0, s0);
    }
    for (; c0 < C; c0++) {
        float acc = accumulate ? o[c0] : (init ? init[c0] : 0.0f);
        for (int t = 0; t < nt; t++) acc += a[t][c0] * b[t][c0];
        o[c0] = acc;
    }
}

// One output pixel (any window, any padding): its valid taps through tap_sum.
USI_MULTIVERSION
static void dw_fwd_pixel(const dw_ctx *k, int64_t r, int ow) {
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW;
    int n = (int)(r / s->OH), oh = (int)(r % s->OH);
    const float *xn = k->x + (size_t)n * H * W * C;
    int ih0 = oh * s->SH - s->PT, iw0 = ow * s->SW - s->PL;
    float *o = k->out + ((size_t)r * s->OW + ow) * C;
    if (s->KH * s->KW <= DW_MAX_TAPS) {
        const float *xs[DW_MAX_TAPS], *wsp[DW_MAX_TAPS];
        int nt = 0;
        for (int kh = 0; kh < s->KH; kh++) {
            int ih = ih0 + kh * s->DH;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                int iw = iw0 + kw * s->DW;
                if (iw < 0 || iw >= W) continue;
                xs[nt] = xn + ((size_t)ih * W + iw) * C;
                wsp[nt] = k->wt + ((size_t)kh * KW + kw) * C;
                nt++;
            }
        }
        tap_sum(o, xs, wsp, nt, C, k->bias, 0);
        return;
    }
    if (k->bias)
        memcpy(o, k->bias, (size_t)C * sizeof(float));
    else
        memset(o, 0, (size_t)C * sizeof(float));
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

#if defined(__x86_64__)
#define DW_AVX512 __attribute__((target("avx512f")))

// Output columns whose windows lie inside the input horizontally, in blocks of 4 columns x 16
// channels held in registers: a weight vector is loaded once per 4 outputs and, with KW and SW
// constant, each input vector once per block (the unrolled loads coincide). Taps in
// tap_sum's order, one FMA each. One block: `cols` (<= 4) output columns from channel c0.
static inline __attribute__((always_inline)) DW_AVX512 void
dw_block_avx512(float *o, const float *const *xr, const float *const *wk, int nkh, int64_t xoff,
                int c0, int C, const float *bias, __mmask16 m, const int full, const int cols,
                const int KW, const int SW) {
#define DW_LD(p) (full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, (p)))
    __m512 b = bias ? DW_LD(bias + c0) : _mm512_setzero_ps();
    __m512 a0 = b, a1 = b, a2 = b, a3 = b;
    for (int t = 0; t < nkh; t++) {
        const float *xb = xr[t] + xoff + c0, *wb = wk[t] + c0;
        for (int kw = 0; kw < KW; kw++) {
            __m512 wv = DW_LD(wb + (size_t)kw * C);
            a0 = _mm512_fmadd_ps(DW_LD(xb + (size_t)kw * C), wv, a0);
            if (cols > 1) a1 = _mm512_fmadd_ps(DW_LD(xb + (size_t)(SW + kw) * C), wv, a1);
            if (cols > 2) a2 = _mm512_fmadd_ps(DW_LD(xb + (size_t)(2 * SW + kw) * C), wv, a2);
            if (cols > 3) a3 = _mm512_fmadd_ps(DW_LD(xb + (size_t)(3 * SW + kw) * C), wv, a3);
        }
    }
#undef DW_LD
    // Masked stores are slow on AMD's AVX-512: only the channel tail uses them.
#define DW_ST(p, v) (full ? _mm512_storeu_ps((p), (v)) : _mm512_mask_storeu_ps((p), m, (v)))
    DW_ST(o + c0, a0);
    if (cols > 1) DW_ST(o + C + c0, a1);
    if (cols > 2) DW_ST(o + 2 * (size_t)C + c0, a2);
    if (cols > 3) DW_ST(o + 3 * (size_t)C + c0, a3);
#undef DW_ST
}

// `cols` output columns from `ow`, every channel: full 16-channel blocks, then the tail.
static inline __attribute__((always_inline)) DW_AVX512 void
dw_cols_avx512(float *orow, const float *const *xr, const float *const *wk, int nkh, int ow, int C,
               const float *bias, int PL, const int cols, const int KW, const int SW) {
    const int cfull = C / 16 * 16;
    float *o = orow + (size_t)ow * C;
    int64_t xoff = ((int64_t)ow * SW - PL) * C;
    for (int c0 = 0; c0 < cfull; c0 += 16)
        dw_block_avx512(o, xr, wk, nkh, xoff, c0, C, bias, 0xFFFF, 1, cols, KW, SW);
    if (cfull < C)
        dw_block_avx512(o, xr, wk, nkh, xoff, cfull, C, bias,
                        (__mmask16)((1u << (C - cfull)) - 1u), 0, cols, KW, SW);
}

static inline __attribute__((always_inline)) DW_AVX512 void
dw_row_avx512_impl(float *orow, const float *const *xr, const float *const *wk, int nkh, int ow0,
                   int ow1, int C, const float *bias, int PL, const int KW, const int SW) {
    int ow = ow0;
    for (; ow + 4 <= ow1; ow += 4) dw_cols_avx512(orow, xr, wk, nkh, ow, C, bias, PL, 4, KW, SW);
    for (; ow < ow1; ow++) dw_cols_avx512(orow, xr, wk, nkh, ow, C, bias, PL, 1, KW, SW);
}

// The common windows get their own unrolled copies.
DW_AVX512 static void dw_row_avx512(float *orow, const float *const *xr, const float *const *wk,
                                    int nkh, int ow0, int ow1, int C, const float *bias, int PL,
                                    int KW, int SW) {
#define DW_CASE(kw_, sw_)                                                              \
    if (KW == kw_ && SW == sw_) {                                                      \
        dw_row_avx512_impl(orow, xr, wk, nkh, ow0, ow1, C, bias, PL, kw_, sw_);         \
        return;                                                                        \
    }
    DW_CASE(3, 1) DW_CASE(3, 2) DW_CASE(5, 1) DW_CASE(5, 2) DW_CASE(7, 1) DW_CASE(7, 2)
#undef DW_CASE
    dw_row_avx512_impl(orow, xr, wk, nkh, ow0, ow1, C, bias, PL, KW, SW);
}
#endif

USI_MULTIVERSION
static void dw_fwd_range(void *v, int64_t r0, int64_t r1) {
    const dw_ctx *k = (const dw_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int OW = s->OW;
    // Columns whose windows are inside the input horizontally, [owa, owb), take the
    // register-blocked path where usi_cpu_level allows AVX-512; the others go pixel by pixel.
    int owa = 0, owb = 0;
#if defined(__x86_64__)
    if (s->DW == 1 && s->KH <= DW_MAX_TAPS && k->avx512) {
        owa = (s->PL + s->SW - 1) / s->SW;
        owb = s->W - s->KW + s->PL < 0 ? 0 : (s->W - s->KW + s->PL) / s->SW + 1;
        if (owb > OW) owb = OW;
        if (owa > owb) owa = owb;
    }
#endif
    for (int64_t r = r0; r < r1; r++) {
        for (int ow = 0; ow < owa; ow++) dw_fwd_pixel(k, r, ow);
#if defined(__x86_64__)
        if (owb > owa) {
            int n = (int)(r / s->OH), oh = (int)(r % s->OH), nkh = 0;
            const float *xr[DW_MAX_TAPS], *wk[DW_MAX_TAPS];
            for (int kh = 0; kh < s->KH; kh++) {
                int ih = oh * s->SH - s->PT + kh * s->DH;
                if (ih < 0 || ih >= s->H) continue;
                xr[nkh] = k->x + ((size_t)n * s->H + ih) * s->W * s->C;
                wk[nkh++] = k->wt + (size_t)kh * s->KW * s->C;
            }
            dw_row_avx512(k->out + (size_t)r * OW * s->C, xr, wk, nkh, owa, owb, s->C, k->bias,
                          s->PL, s->KW, s->SW);
        }
#endif
        for (int ow = owb > owa ? owb : owa; ow < OW; ow++) dw_fwd_pixel(k, r, ow);
    }
}

// out [N, OH, OW, C] = depthwise conv(x, w [C, KH, KW, 1]) + bias [C]
USI_MULTIVERSION
void usi_dwconv2d_forward(float *out, const float *x, const float *w, const float *bias,
                          const usi_conv_shape *s) {
    int taps = s->KH * s->KW;
    if (s->N <= 0 || s->OH <= 0 || s->OW <= 0 || s->C <= 0) return;
    float *wt = transpose_weights(w, s->C, taps);
    if (!wt) return;
    dw_ctx k = {out, x, wt, bias, NULL, NULL, s, 0, usi_cpu_level() >= USI_CPU_AVX512};
    usi_parallel_range((int64_t)s->N * s->OH, (int64_t)s->OW * s->C * taps, dw_fwd_range, &k);
    free(wt);
}

// dx rows (n, ih) gather from every output position whose window covers them.
USI_MULTIVERSION
static void dw_dx_range(void *v, int64_t r0, int64_t r1) {
    const dw_ctx *k = (const dw_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW;
    const float *ds[DW_MAX_TAPS], *wsp[DW_MAX_TAPS];
    const int fast = s->KH * s->KW <= DW_MAX_TAPS;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / H), ih = (int)(r % H);
        float *dxr = k->out + (size_t)r * W * C;
        for (int iw = 0; iw < W; iw++) {
            float *d = dxr + (size_t)iw * C;
            int nt = 0;
            for (int kh = 0; kh < s->KH; kh++) {
                int t = ih + s->PT - kh * s->DH;
                if (t < 0 || t % s->SH != 0) continue;
                int oh = t / s->SH;
                if (oh >= s->OH) continue;
                const float *drow = k->dout + ((size_t)n * s->OH + oh) * s->OW * C;
                const float *wk = k->wt + (size_t)kh * KW * C;
                for (int kw = 0; kw < KW; kw++) {
                    int u = iw + s->PL - kw * s->DW;
                    if (u < 0 || u % s->SW != 0) continue;
                    int ow = u / s->SW;
                    if (ow >= s->OW) continue;
                    if (fast) {
                        ds[nt] = drow + (size_t)ow * C;
                        wsp[nt] = wk + (size_t)kw * C;
                        nt++;
                    } else {
                        fma_run(d, drow + (size_t)ow * C, wk + (size_t)kw * C, C);
                    }
                }
            }
            if (fast && nt > 0) tap_sum(d, ds, wsp, nt, C, NULL, 1);
        }
    }
}

// Task t: dw/dbias partials over its output rows; per row, each (tap, channel block) sums
// over the row's pixels in registers (float), then adds into the task's double partial.
USI_MULTIVERSION
static void dw_dw_task(void *v, int t) {
    const dw_ctx *k = (const dw_ctx *)v;
    const usi_conv_shape *s = k->s;
    const int H = s->H, W = s->W, C = s->C, KW = s->KW, taps = s->KH * s->KW, OW = s->OW;
    int64_t r0, r1;
    usi_split((int64_t)s->N * s->OH, k->tasks, t, &r0, &r1);
    size_t tn = (size_t)(taps + 1) * C;
    double *part = k->part + (size_t)t * tn;
    for (int64_t r = r0; r < r1; r++) {
        int n = (int)(r / s->OH), oh = (int)(r % s->OH);
        const float *drow = k->dout + (size_t)r * OW * C;
        // dbias
        {
            double *pb = part + (size_t)taps * C;
            int c0 = 0;
            for (; c0 + 8 <= C; c0 += 8) {
                usi_v8 a0 = V8_ZERO;
                for (int ow = 0; ow < OW; ow++) a0 += V8_LOAD(drow + (size_t)ow * C + c0);
                float t8[8];
                V8_STORE(t8, a0);
                for (int l = 0; l < 8; l++) pb[c0 + l] += (double)t8[l];
            }
            for (; c0 < C; c0++) {
                float acc = 0.0f;
                for (int ow = 0; ow < OW; ow++) acc += drow[(size_t)ow * C + c0];
                pb[c0] += (double)acc;
            }
        }
        if (!k->x) continue;
        const float *xn = k->x + (size_t)n * H * W * C;
        for (int kh = 0; kh < s->KH; kh++) {
            int ih = oh * s->SH - s->PT + kh * s->DH;
            if (ih < 0 || ih >= H) continue;
            const float *xr = xn + (size_t)ih * W * C;
            for (int kw = 0; kw < KW; kw++) {
                // ow with 0 <= ow*SW - PL + kw*DW < W
                int off = kw * s->DW - s->PL;
                int lo = off >= 0 ? 0 : (-off + s->SW - 1) / s->SW;
                int hi = W - off <= 0 ? 0 : (W - off + s->SW - 1) / s->SW;
                if (hi > OW) hi = OW;
                if (hi <= lo) continue;
                double *pw = part + ((size_t)kh * KW + kw) * C;
                const int64_t xstep = (int64_t)s->SW * C;
                const float *xp0 = xr + (int64_t)(lo * s->SW + off) * C;
                const float *dp0 = drow + (size_t)lo * C;
                int c0 = 0;
                for (; c0 + 32 <= C; c0 += 32) {
                    usi_v8 a0 = V8_ZERO, a1 = a0, a2 = a0, a3 = a0;
                    const float *dp = dp0 + c0, *xp = xp0 + c0;
                    for (int ow = lo; ow < hi; ow++, dp += C, xp += xstep) {
                        a0 += V8_LOAD(dp) * V8_LOAD(xp);
                        a1 += V8_LOAD(dp + 8) * V8_LOAD(xp + 8);
                        a2 += V8_LOAD(dp + 16) * V8_LOAD(xp + 16);
                        a3 += V8_LOAD(dp + 24) * V8_LOAD(xp + 24);
                    }
                    float t[32];
                    V8_STORE(t, a0);
                    V8_STORE(t + 8, a1);
                    V8_STORE(t + 16, a2);
                    V8_STORE(t + 24, a3);
                    for (int l = 0; l < 32; l++) pw[c0 + l] += (double)t[l];
                }
                for (; c0 + 8 <= C; c0 += 8) {
                    usi_v8 a0 = V8_ZERO;
                    const float *dp = dp0 + c0, *xp = xp0 + c0;
                    for (int ow = lo; ow < hi; ow++, dp += C, xp += xstep)
                        a0 += V8_LOAD(dp) * V8_LOAD(xp);
                    float t[8];
                    V8_STORE(t, a0);
                    for (int l = 0; l < 8; l++) pw[c0 + l] += (double)t[l];
                }
                for (; c0 < C; c0++) {
                    float acc = 0.0f;
                    const float *dp = dp0 + c0, *xp = xp0 + c0;
                    for (int ow = lo; ow < hi; ow++, dp += C, xp += xstep) acc += *dp * *xp;
                    pw[c0] += (double)acc;
                }
            }
        }
    }
}

// dx [N, H, W, C] += ..., dw [C, KH, KW, 1] += ..., dbias [C] += ... (each may be NULL)
USI_MULTIVERSION
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
