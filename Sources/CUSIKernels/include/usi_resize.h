// Float image resizing for tensors (the distiller's teacher input, position-embedding grids).
#ifndef USI_RESIZE_H
#define USI_RESIZE_H
#ifdef __cplusplus
extern "C" {
#endif
/// Bilinear resize of x [N, H, W, C] to out [N, OH, OW, C], PyTorch's
/// F.interpolate(mode="bilinear", align_corners=False, antialias=False).
void usi_resize_bilinear_nhwc(float *out, const float *x, int N, int H, int W, int C, int OH, int OW);
#ifdef __cplusplus
}
#endif
#endif
