// USI image kernels: the data pipeline's hot loops (uint8 pixels, channels-last).
//
// Images are [H, W, C] uint8 with an explicit row stride in bytes (C is 1 or 3; most
// functions accept any C >= 1). Where a function mirrors a Pillow operation, it reproduces
// Pillow's arithmetic exactly (same fixed-point coefficients, same float/double evaluation
// order, same truncation), because timm's augmentations run on PIL images. The files that
// implement these functions are compiled without floating-point contraction (no FMA) for
// that reason.
#ifndef USI_IMAGE_H
#define USI_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum usi_resample {
    USI_RESAMPLE_NEAREST = 0,   // affine only
    USI_RESAMPLE_BILINEAR = 2,  // PIL Image.BILINEAR
    USI_RESAMPLE_BICUBIC = 3,   // PIL Image.BICUBIC
};

// ----------------------------------------------------------------------------------------
// Geometry.

/// PIL `Image.resize(size=(dw, dh), resample, box=box)` on src [sh, sw, C] (row stride
/// src_stride bytes) -> dst [dh, dw, C] (packed). box = {x0, y0, x1, y1} in source pixels
/// (floats, like PIL's); an antialiased separable filter (horizontal pass first) with
/// 22-bit fixed-point coefficients. filter: USI_RESAMPLE_BILINEAR or USI_RESAMPLE_BICUBIC.
/// Returns 0 on success, -1 on bad arguments or allocation failure.
int usi_image_resize(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh,
                     int src_stride, int channels, const float box[4], int filter);

/// Copies the rectangle (x, y, w, h) of src [sh, sw, C] into packed dst [h, w, C]. The
/// rectangle must lie inside the image.
void usi_image_crop(uint8_t *dst, const uint8_t *src, int src_stride, int x, int y, int w,
                    int h, int channels);

/// Mirrors each row of a packed image [h, w, C] in place (horizontal flip).
void usi_image_hflip(uint8_t *image, int w, int h, int channels);

/// PIL `Image.transform(size, AFFINE, matrix, resample, fillcolor=fill)` for an output of
/// the same size as the input: dst(x, y) = src(a0*(x+.5) + a1*(y+.5) + a2,
/// a3*(x+.5) + a4*(y+.5) + a5), with PIL's bicubic (a = -1 cubic, truncated) or bilinear
/// sampling, or nearest; points outside the source take fill[C]. src and dst are packed
/// [h, w, C] and must not overlap.
void usi_image_affine(uint8_t *dst, const uint8_t *src, int w, int h, int channels,
                      const double matrix[6], int filter, const uint8_t *fill);

// ----------------------------------------------------------------------------------------
// Pixel operations (PIL ImageOps / ImageEnhance), in place on n pixels of C channels.

/// out = lut[in] for every sample (one 256-entry table for all channels).
void usi_image_apply_lut(uint8_t *image, size_t n_pixels, int channels, const uint8_t *lut);
/// out = luts[c * 256 + in] (one table per channel).
void usi_image_apply_channel_luts(uint8_t *image, size_t n_pixels, int channels,
                                  const uint8_t *luts);
/// Per-channel histograms: hist[c * 256 + v] = count.
void usi_image_histogram(const uint8_t *image, size_t n_pixels, int channels,
                         int64_t *hist);
/// ImageOps.autocontrast(image) with cutoff 0, per channel.
void usi_image_autocontrast(uint8_t *image, size_t n_pixels, int channels);
/// ImageOps.equalize(image), per channel.
void usi_image_equalize(uint8_t *image, size_t n_pixels, int channels);
/// ImageEnhance.Brightness(image).enhance(factor): blend with black.
void usi_image_brightness(uint8_t *image, size_t n_pixels, int channels, float factor);
/// ImageEnhance.Color(image).enhance(factor): blend with the L (ITU-R 601-2) grey image.
/// A no-op for single-channel images, as in PIL.
void usi_image_color(uint8_t *image, size_t n_pixels, int channels, float factor);
/// ImageEnhance.Contrast(image).enhance(factor): blend with the mean grey level.
void usi_image_contrast(uint8_t *image, size_t n_pixels, int channels, float factor);
/// ImageEnhance.Sharpness(image).enhance(factor): blend with ImageFilter.SMOOTH of the
/// image (3x3 kernel [1 1 1; 1 5 1; 1 1 1] / 13, border pixels unfiltered).
/// scratch must hold w*h*C bytes.
void usi_image_sharpness(uint8_t *image, int w, int h, int channels, float factor,
                         uint8_t *scratch);

// ----------------------------------------------------------------------------------------
// Colour conversions (packed pixels).

/// PIL convert("L"): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
void usi_image_rgb_to_gray(uint8_t *dst, const uint8_t *src, size_t n_pixels);
/// Grey to RGB by replication.
void usi_image_gray_to_rgb(uint8_t *dst, const uint8_t *src, size_t n_pixels);
/// Keeps the first dst_channels of every src_channels-sample pixel (dropping alpha, as PIL's
/// convert("RGB") / convert("L") do, without compositing). dst may alias src.
void usi_image_keep_channels(uint8_t *dst, const uint8_t *src, size_t n_pixels, int src_channels,
                             int dst_channels);
/// 16-bit grey (host order) to 8 bits the way PIL converts mode I;16 to L: values above 255
/// saturate (PIL clips; it does not scale). dst may alias src.
void usi_image_gray16_to_gray8_clip(uint8_t *dst, const uint16_t *src, size_t n_pixels);
/// CMYK (as libjpeg returns it from Adobe files, i.e. inverted) to RGB the way PIL
/// converts a CMYK JPEG: R = C*K/255 rounded (PIL's MULDIV255).
void usi_image_cmyk_to_rgb(uint8_t *dst, const uint8_t *src, size_t n_pixels);

// ----------------------------------------------------------------------------------------
// Output: uint8 -> normalised float.

/// dst[p, c] = (src[p, c'] / 255 - mean[c]) / std[c] for n pixels, adapting channels:
/// in 1 -> out 3 replicates grey; in 3 -> out 1 converts to L first (PIL convert("L"));
/// otherwise in_channels must equal out_channels.
void usi_image_normalize(float *dst, const uint8_t *src, size_t n_pixels, int in_channels,
                         int out_channels, const float *mean, const float *std);

// ----------------------------------------------------------------------------------------
// Batch mixing on float batches x [N, H, W, C] (timm's batch-flip pairing: i with N-1-i).

/// Mixup: x[i] = lam * x[i] + (1 - lam) * x[N-1-i] (original values) for all i.
void usi_batch_mixup(float *x, int n, size_t sample_size, float lam);
/// CutMix: x[i][y0:y1, x0:x1, :] = x[N-1-i][y0:y1, x0:x1, :] (original values) for all i.
void usi_batch_cutmix(float *x, int n, int h, int w, int c, int y0, int y1, int x0, int x1);

#ifdef __cplusplus
}
#endif
#endif
