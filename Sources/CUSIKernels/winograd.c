// Frozen 3x3 stride-1 convolutions as Winograd F(2x2, 3x3) (Lavin & Gray, 2016).
//
// Each 2x2 output tile is A^T [ (G g G^T) . (B^T d B) ] A over its 4x4 input tile d: 16
// multiplies per tile and (input, output) channel pair instead of the direct form's 36, so a
// 2.25x smaller product. Over channels the 16 element-wise products are 16 GEMMs
//   M_xi [tiles, OC] = V_xi [tiles, C] U_xi^T,   U_xi [OC, C] = (G g G^T)[xi], packed once,
// on the packed kernel (FP32, or BF16 with vdpbf16ps). Tiles run in chunks sized by the shape
// alone (so results do not depend on the thread count): a chunk's input transform V (all 16
// components at once: 16 loads and 32 additions per tile and channel), its 16 products and its
// output transform run in per-thread scratch that stays in L2. (Producing each V_xi inside the
// GEMM's fill instead, as the direct path's im2col rows are, read 64 inputs per tile and channel
// and took a quarter of the time.)
//
// Rounding differs from the direct form (about 1e-6 relative in FP32), so it is only used where
// a caller asks for it: frozen layers prepared for inference.
#include "usi_internal.h"

#include <stdlib.h>

struct usi_winograd_weights {
    int OC, C, precision;
    usi_packed_weights *u[16];
};

int usi_winograd_applies(const usi_conv_shape *s) {
    if (s->KH != 3 || s->KW != 3 || s->SH != 1 || s->SW != 1 || s->DH != 1 || s->DW != 1 || s->groups != 1)
        return 0;
    // Narrow layers are bound by the transforms, not the product.
    if (s->C < 16 || s->OC < 16 || s->OH < 2 || s->OW < 2) return 0;
    // Odd outputs waste part of the last tile: keep F(2,3) where it still saves 30 % of the
    // multiplies (7x7 and 5x5 do, 3x3 does not).
    int64_t tiles = (int64_t)((s->OH + 1) / 2) * ((s->OW + 1) / 2);
    return 16 * tiles * 10 <= 9 * (int64_t)s->OH * s->OW * 7;
}

usi_winograd_weights *usi_winograd_pack(int precision, int OC, int C, const float *w) {
    if (OC <= 0 || C <= 0 || !usi_precision_supported(precision)) return NULL;
    usi_winograd_weights *p = calloc(1, sizeof *p);
    float *u = malloc(sizeof(float) * 16 * (size_t)OC * C);
    if (!p || !u) goto fail;
    p->OC = OC;
    p->C = C;
    p->precision = precision;
    // U = G g G^T per (oc, c), in double; G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++) {
            double g[3][3], t[4][3];
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) g[a][b] = w[(((size_t)o * 3 + a) * 3 + b) * C + c];
            for (int i = 0; i < 4; i++)
                for (int b = 0; b < 3; b++) t[i][b] = G[i][0] * g[0][b] + G[i][1] * g[1][b] + G[i][2] * g[2][b];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    u[((size_t)(i * 4 + j) * OC + o) * C + c] =
                        (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
        }
    for (int xi = 0; xi < 16; xi++) {
        p->u[xi] = usi_pack_weights(precision, OC, C, u + (size_t)xi * OC * C, C);
        if (!p->u[xi]) goto fail;
    }
    free(u);
    return p;
fail:
    free(u);
    usi_winograd_free(p);
    return NULL;
}

void usi_winograd_free(usi_winograd_weights *p) {
    if (!p) return;
    for (int xi = 0; xi < 16; xi++) usi_packed_weights_free(p->u[xi]);
    free(p);
}


#if USI_X86
#include <immintrin.h>
#define WINO_AVX512 __attribute__((target("avx512f")))

// V = B^T d B for the tiles [t0, t0 + rows), all 16 components: component xi of tile r, channel c
// is v[(xi * rows + r) * ldv + c]. Inputs outside the image read `zeros` (C floats). 16 channels
// per register: the packed kernels it feeds need AVX-512, so the Winograd form runs only there.
WINO_AVX512
static void wino_input_transform_avx512(float *restrict v, int64_t ldv, const float *x, const float *zeros,
                                        const usi_conv_shape *s, int64_t t0, int64_t rows, int TH, int TW) {
    const int C = s->C, per = TH * TW;
    const size_t plane = (size_t)rows * ldv;
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = t0 + r;
        int n = (int)(t / per), th = (int)(t % per) / TW, tw = (int)(t % per) % TW;
        const float *d[16];
        for (int a = 0; a < 4; a++) {
            int ih = 2 * th - s->PT + a;
            for (int b = 0; b < 4; b++) {
                int iw = 2 * tw - s->PL + b;
                d[a * 4 + b] = ih < 0 || ih >= s->H || iw < 0 || iw >= s->W
                                   ? zeros
                                   : x + (((size_t)n * s->H + ih) * s->W + iw) * C;
            }
        }
        float *out = v + (size_t)r * ldv;
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = C - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c)) - 1u);
            __m512 u[16];
            for (int b = 0; b < 4; b++) {
                __m512 d0 = _mm512_maskz_loadu_ps(k, d[b] + c), d1 = _mm512_maskz_loadu_ps(k, d[4 + b] + c);
                __m512 d2 = _mm512_maskz_loadu_ps(k, d[8 + b] + c), d3 = _mm512_maskz_loadu_ps(k, d[12 + b] + c);
                u[b] = _mm512_sub_ps(d0, d2);
                u[4 + b] = _mm512_add_ps(d1, d2);
                u[8 + b] = _mm512_sub_ps(d2, d1);
                u[12 + b] = _mm512_sub_ps(d1, d3);
            }
            for (int i = 0; i < 4; i++) {
                __m512 e0 = u[i * 4], e1 = u[i * 4 + 1], e2 = u[i * 4 + 2], e3 = u[i * 4 + 3];
                float *o = out + (size_t)(i * 4) * plane + c;
                _mm512_mask_storeu_ps(o, k, _mm512_sub_ps(e0, e2));
                _mm512_mask_storeu_ps(o + plane, k, _mm512_add_ps(e1, e2));
                _mm512_mask_storeu_ps(o + 2 * plane, k, _mm512_sub_ps(e2, e1));
                _mm512_mask_storeu_ps(o + 3 * plane, k, _mm512_sub_ps(e1, e3));
            }
        }
    }
}

// Y = A^T M A (A^T = [1 1 1 0; 0 1 -1 -1]) plus the bias, for the tiles [t0, t0 + rows):
// component xi of tile r, output channel o is m[(xi * rows + r) * ldm + o]. 16 channels per register.
WINO_AVX512
static void wino_output_transform_avx512(float *out, const float *m, int64_t ldm, const float *bias,
                                         const usi_conv_shape *s, int64_t t0, int64_t rows, int TH, int TW) {
    const int OC = s->OC, per = TH * TW;
    const size_t plane = (size_t)rows * ldm;
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = t0 + r;
        int n = (int)(t / per), th = (int)(t % per) / TW, tw = (int)(t % per) % TW;
        int oh = 2 * th, ow = 2 * tw, two_rows = s->OH - oh > 1, two_cols = s->OW - ow > 1;
        float *y00 = out + (((size_t)n * s->OH + oh) * s->OW + ow) * OC;
        const float *mr = m + (size_t)r * ldm;
        for (int o = 0; o < OC; o += 16) {
            __mmask16 k = OC - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (OC - o)) - 1u);
            __m512 t0v[4], t1v[4];
            for (int i = 0; i < 4; i++) {
                const float *mi = mr + (size_t)(i * 4) * plane + o;
                __m512 m0 = _mm512_maskz_loadu_ps(k, mi), m1 = _mm512_maskz_loadu_ps(k, mi + plane);
                __m512 m2 = _mm512_maskz_loadu_ps(k, mi + 2 * plane), m3 = _mm512_maskz_loadu_ps(k, mi + 3 * plane);
                t0v[i] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                t1v[i] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + o) : _mm512_setzero_ps();
            // The same association as the portable transform: ((a + b) + c) + bias.
            _mm512_mask_storeu_ps(y00 + o, k, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t0v[0], t0v[1]), t0v[2]), b));
            if (two_cols)
                _mm512_mask_storeu_ps(y00 + OC + o, k,
                                      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t1v[0], t1v[1]), t1v[2]), b));
            if (two_rows) {
                float *y10 = y00 + (size_t)s->OW * OC;
                _mm512_mask_storeu_ps(y10 + o, k, _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t0v[1], t0v[2]), t0v[3]), b));
                if (two_cols)
                    _mm512_mask_storeu_ps(y10 + OC + o, k,
                                          _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t1v[1], t1v[2]), t1v[3]), b));
            }
        }
    }
}

typedef struct {
    const usi_conv_shape *s;
    const float *x;
    const usi_winograd_weights *w;
    const float *bias;
    float *out;
    int64_t tiles, chunk;
    int TH, TW;
    int failed;
} wino_job;

// Per-thread scratch: a chunk's V and M, and a row of zeros for the padding.
static _Thread_local float *tl_scratch;
static _Thread_local size_t tl_capacity;

static void wino_task(void *v, int task) {
    wino_job *j = (wino_job *)v;
    const usi_conv_shape *s = j->s;
    const int C = s->C, OC = s->OC;
    int64_t t0 = (int64_t)task * j->chunk, rows = j->tiles - t0 < j->chunk ? j->tiles - t0 : j->chunk;
    // Row strides off powers of two: the micro-kernel reads 12 rows of V at once, which would
    // fall into few L1 sets 256 or 512 floats apart.
    const int64_t ldv = C + 16, ldm = OC + 16;
    size_t need = (size_t)16 * j->chunk * (ldv + ldm) + C;
    if (tl_capacity < need) {
        free(tl_scratch);
        tl_scratch = malloc(sizeof(float) * need);
        tl_capacity = tl_scratch ? need : 0;
        if (!tl_scratch) {
            j->failed = 1;
            return;
        }
    }
    float *vbuf = tl_scratch, *mbuf = vbuf + (size_t)16 * rows * ldv, *zeros = mbuf + (size_t)16 * rows * ldm;
    memset(zeros, 0, sizeof(float) * C);
    wino_input_transform_avx512(vbuf, ldv, j->x, zeros, s, t0, rows, j->TH, j->TW);
    for (int xi = 0; xi < 16; xi++)
        if (!usi_gemm_packed_weights((int)rows, vbuf + (size_t)xi * rows * ldv, (int)ldv, j->w->u[xi],
                                     mbuf + (size_t)xi * rows * ldm, (int)ldm, NULL)) {
            j->failed = 1;
            return;
        }
    wino_output_transform_avx512(j->out, mbuf, ldm, j->bias, s, t0, rows, j->TH, j->TW);
}
#endif

int usi_conv2d_forward_winograd(float *out, const float *x, const usi_winograd_weights *w,
                                const float *bias, const usi_conv_shape *s) {
#if !USI_X86
    (void)out, (void)x, (void)w, (void)bias, (void)s;
    return 0;  // no packed kernels to run the products on (usi_winograd_pack returned NULL)
#else
    if (!w || !usi_winograd_applies(s) || w->OC != s->OC || w->C != s->C ||
        !usi_precision_supported(w->precision))
        return 0;
    if (s->N <= 0) return 1;
    wino_job j = {s, x, w, bias, out, 0, 0, (s->OH + 1) / 2, (s->OW + 1) / 2, 0};
    j.tiles = (int64_t)s->N * j.TH * j.TW;
    // About 256 K floats of V and M per chunk (1 MB of scratch), a whole number of 12-row
    // micro-panels, and at least two chunks when there are enough tiles to share.
    int64_t chunk = (16384 / (s->C + s->OC) + 11) / 12 * 12;
    if (chunk < 48) chunk = 48;
    int64_t half = ((j.tiles + 1) / 2 + 11) / 12 * 12;
    if (j.tiles >= 48 && chunk > half) chunk = half;
    j.chunk = chunk;
    usi_parallel_for((int)((j.tiles + chunk - 1) / chunk), wino_task, &j);
    return !j.failed;
#endif
}
