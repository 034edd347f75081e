import CUSIKernels
import USICore

/// The training transform of the USI recipe (timm's `transforms_imagenet_train` order):
/// decode → RandomResizedCrop (resampled with Pillow's filter) → horizontal flip →
/// RandAugment → normalise to floats.
///
/// With `decodeScaling`, a JPEG whose sampled crop is at least twice the output size is
/// decoded at 1/2, 1/4 or 1/8 scale in the DCT domain and the crop box is mapped onto the
/// smaller image (fractional box, resize filter clipped to the pixels covering the crop).
/// This is much faster and visually equivalent but not bit-identical to PIL; with
/// `decodeScaling: false` (or for decoded sources) the crop+resize equals torchvision's
/// `resized_crop` exactly.
public struct TrainTransform: SampleTransform {
    /// Output height.
    public var height: Int
    /// Output width.
    public var width: Int
    /// The crop sampler.
    public var crop: RandomResizedCrop
    /// Resampling of the crop resize (and of RandAugment's geometric ops).
    public var interpolation: Interpolation
    /// Probability of a horizontal flip.
    public var horizontalFlipProbability: Double
    /// RandAugment, or nil for none.
    public var randAugment: RandAugment?
    /// Per-channel mean of the normalisation (1 or 3 values; also sets the output channels).
    public var mean: [Float]
    /// Per-channel standard deviation.
    public var std: [Float]
    /// Decode large JPEGs at reduced DCT scale when the crop allows it.
    public var decodeScaling: Bool

    /// Creates the transform; the defaults are the USI recipe at 224 px (bicubic,
    /// scale 0.08–1, flip 0.5, `rand-m7-mstd0.5-inc1`, ImageNet mean/std).
    public init(size: Int = 224, crop: RandomResizedCrop = RandomResizedCrop(),
                interpolation: Interpolation = .bicubic, horizontalFlipProbability: Double = 0.5,
                randAugment: RandAugment? = RandAugment(), mean: [Float] = ImageNetStatistics.mean,
                std: [Float] = ImageNetStatistics.std, decodeScaling: Bool = true) throws {
        guard size > 0 else { throw DataError.invalidArgument("transform size must be positive, got \(size)") }
        try validateNormalization(mean: mean, std: std)
        height = size
        width = size
        self.crop = crop
        self.interpolation = interpolation
        self.horizontalFlipProbability = horizontalFlipProbability
        self.randAugment = randAugment
        self.mean = mean
        self.std = std
        self.decodeScaling = decodeScaling
    }

    public var outputHeight: Int { height }
    public var outputWidth: Int { width }
    public var outputChannels: Int { mean.count }

    public func apply(_ source: ImageSource, into output: UnsafeMutablePointer<Float>,
                      generator: inout RandomGenerator, workspace: TransformWorkspace) throws {
        let channels = try augment(source, generator: &generator, workspace: workspace)
        usi_image_normalize(output, workspace.first.pointer, width * height, Int32(channels),
                            Int32(outputChannels), mean, std)
    }

    /// The augmented 8-bit image before normalisation (for inspection and tests).
    public func augmentedImage(_ source: ImageSource, generator: inout RandomGenerator,
                               workspace: TransformWorkspace) throws -> Image {
        let channels = try augment(source, generator: &generator, workspace: workspace)
        let pixels = [UInt8](UnsafeBufferPointer(start: workspace.first.pointer, count: width * height * channels))
        return Image(uncheckedWidth: width, height: height, channels: channels, pixels: pixels)
    }

    /// Runs everything up to normalisation; the result is in `workspace.first` with the
    /// returned number of channels (the output channels).
    func augment(_ source: ImageSource, generator: inout RandomGenerator,
                 workspace: TransformWorkspace) throws -> Int {
        let outW = width, outH = height, workingChannels = outputChannels
        let sampler = crop, scaling = decodeScaling
        workspace.first.reserve(outW * outH * 3)
        workspace.second.reserve(outW * outH * 3)
        let interpolation = self.interpolation
        let resizedChannels = try workspace.withPixels(of: source, channels: workingChannels, plan: { fullW, fullH in
            let region = sampler.sample(width: fullW, height: fullH, generator: &generator)
            let denominator = scaling
                ? JPEGDecoder.scaleDenominator(cropWidth: Double(region.width), cropHeight: Double(region.height),
                                               targetWidth: outW, targetHeight: outH)
                : 1
            return (denominator, region)
        }, body: { view, fullW, fullH, region in
            try resizeRegion(view, fullWidth: fullW, fullHeight: fullH, region: region, outputWidth: outW,
                             outputHeight: outH, interpolation: interpolation, into: workspace.first.pointer)
            return view.channels
        })
        let n = outW * outH
        // grey sources were resized as one channel; expand now if the model wants RGB
        var channels = 1
        if workingChannels == 3 {
            channels = 3
            if resizedChannels == 1 {
                usi_image_gray_to_rgb(workspace.first.pointer, workspace.first.pointer, n)
            }
        }
        if generator.nextDouble() < horizontalFlipProbability {
            usi_image_hflip(workspace.first.pointer, Int32(outW), Int32(outH), Int32(channels))
        }
        if let randAugment {
            let fill = fillColor(mean: mean)
            for operation in randAugment.sampleOperations(generator: &generator) {
                operation.apply(to: workspace.first.pointer, width: outW, height: outH, channels: channels,
                                scratch: workspace.second.pointer, fill: fill, interpolation: randAugment.interpolation)
            }
        }
        return channels
    }
}
