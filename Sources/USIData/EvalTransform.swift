import Foundation
import CUSIKernels
import USICore

/// The evaluation transform (timm's `transforms_imagenet_eval`, centre mode): resize the
/// shorter side to `floor(size / cropPercentage)` (torchvision `Resize(int)`), take the
/// centre `size × size` crop, normalise.
///
/// By default the result equals timm's exactly, so evaluation and `usi predict` agree with timm
/// to the digit. With `decodeScaling`, JPEGs at least twice the resize target are decoded at
/// reduced DCT scale first: faster on large photos, but not bit-identical to PIL.
public struct EvalTransform: SampleTransform {
    /// Output side.
    public var size: Int
    /// timm's `crop_pct`: the fraction of the resized image the centre crop keeps.
    public var cropPercentage: Double
    /// Resampling filter.
    public var interpolation: Interpolation
    /// Per-channel mean (1 or 3 values; also sets the output channels).
    public var mean: [Float]
    /// Per-channel standard deviation.
    public var std: [Float]
    /// Decode large JPEGs at reduced DCT scale (faster, not bit-identical to timm).
    public var decodeScaling: Bool

    /// Creates the transform (defaults: 224 px, crop_pct 0.875, bicubic, ImageNet mean/std,
    /// exact decoding).
    public init(size: Int = 224, cropPercentage: Double = 0.875, interpolation: Interpolation = .bicubic,
                mean: [Float] = ImageNetStatistics.mean, std: [Float] = ImageNetStatistics.std,
                decodeScaling: Bool = false) throws {
        guard size > 0, cropPercentage > 0 else {
            throw DataError.invalidArgument("eval transform needs a positive size and crop percentage, got \(size), \(cropPercentage)")
        }
        try validateNormalization(mean: mean, std: std)
        self.size = size
        self.cropPercentage = cropPercentage
        self.interpolation = interpolation
        self.mean = mean
        self.std = std
        self.decodeScaling = decodeScaling
    }

    public var outputHeight: Int { size }
    public var outputWidth: Int { size }
    public var outputChannels: Int { mean.count }

    /// The size after the shorter-side resize, as torchvision computes it.
    public func resizedSize(width: Int, height: Int) -> (width: Int, height: Int) {
        let scaleSize = Int(floor(Double(size) / cropPercentage))
        if width <= height {
            return (scaleSize, Int(Double(scaleSize * height) / Double(width)))
        }
        return (Int(Double(scaleSize * width) / Double(height)), scaleSize)
    }

    public func apply(_ source: ImageSource, into output: UnsafeMutablePointer<Float>,
                      generator: inout RandomGenerator, workspace: TransformWorkspace) throws {
        let channels = try prepare(source, workspace: workspace)
        usi_image_normalize(output, workspace.first.pointer, size * size, Int32(channels),
                            Int32(outputChannels), mean, std)
    }

    /// The 8-bit centre crop before normalisation.
    public func processedImage(_ source: ImageSource, workspace: TransformWorkspace) throws -> Image {
        let channels = try prepare(source, workspace: workspace)
        let pixels = [UInt8](UnsafeBufferPointer(start: workspace.first.pointer, count: size * size * channels))
        return Image(uncheckedWidth: size, height: size, channels: channels, pixels: pixels)
    }

    private func prepare(_ source: ImageSource, workspace: TransformWorkspace) throws -> Int {
        let working = outputChannels
        let interpolation = self.interpolation, scaling = decodeScaling, size = self.size
        workspace.first.reserve(size * size * 3)
        let viewChannels = try workspace.withPixels(of: source, channels: working, plan: { w, h in
            let target = resizedSize(width: w, height: h)
            let denominator = scaling
                ? JPEGDecoder.scaleDenominator(cropWidth: Double(w), cropHeight: Double(h),
                                               targetWidth: target.width, targetHeight: target.height)
                : 1
            return (denominator, target)
        }, body: { view, fullW, fullH, target -> Int in
            let c = view.channels
            var resized = view
            if target.width != fullW || target.height != fullH || view.width != fullW || view.height != fullH {
                workspace.second.reserve(target.width * target.height * c)
                try resizeRegion(view, fullWidth: fullW, fullHeight: fullH,
                                 region: CropRegion(top: 0, left: 0, height: fullH, width: fullW),
                                 outputWidth: target.width, outputHeight: target.height,
                                 interpolation: interpolation, into: workspace.second.pointer)
                resized = PixelView(pointer: UnsafePointer(workspace.second.pointer), width: target.width,
                                    height: target.height, channels: c)
            }
            centerCrop(resized, size: size, into: workspace.first.pointer)
            return c
        })
        if working == 3 && viewChannels == 1 {
            usi_image_gray_to_rgb(workspace.first.pointer, workspace.first.pointer, size * size)
            return 3
        }
        return viewChannels
    }
}

/// torchvision's `center_crop`: offsets `round((side - size) / 2)`; images smaller than the
/// crop are padded with zeros first.
func centerCrop(_ view: PixelView, size: Int, into dst: UnsafeMutablePointer<UInt8>) {
    let c = view.channels
    if view.width >= size && view.height >= size {
        let top = pythonRound(Double(view.height - size) / 2), left = pythonRound(Double(view.width - size) / 2)
        usi_image_crop(dst, view.pointer, Int32(view.rowStride), Int32(left), Int32(top), Int32(size), Int32(size), Int32(c))
        return
    }
    // pad (left/top get the floor half), then crop the centre of the padded image
    let padW = max(0, size - view.width), padH = max(0, size - view.height)
    let paddedW = view.width + padW, paddedH = view.height + padH
    let top = pythonRound(Double(paddedH - size) / 2), left = pythonRound(Double(paddedW - size) / 2)
    dst.update(repeating: 0, count: size * size * c)
    for y in 0..<size {
        let sy = y + top - padH / 2
        guard sy >= 0 && sy < view.height else { continue }
        for x in 0..<size {
            let sx = x + left - padW / 2
            guard sx >= 0 && sx < view.width else { continue }
            for k in 0..<c { dst[(y * size + x) * c + k] = view.pointer[sy * view.rowStride + sx * c + k] }
        }
    }
}
