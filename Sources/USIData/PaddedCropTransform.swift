import CUSIKernels
import USICore

/// The light training augmentation of the plain baseline (the CIFAR recipe): resize to the
/// output size, pad every side with `padding` zero pixels, take a random `size × size` crop,
/// flip horizontally with probability 0.5, normalise.
public struct PaddedCropTransform: SampleTransform {
    /// Output side.
    public var size: Int
    /// Zero padding on each side before the random crop.
    public var padding: Int
    /// Resampling of the initial resize.
    public var interpolation: Interpolation
    /// Probability of a horizontal flip.
    public var horizontalFlipProbability: Double
    /// Per-channel mean (1 or 3 values; also sets the output channels).
    public var mean: [Float]
    /// Per-channel standard deviation.
    public var std: [Float]

    /// Creates the transform.
    public init(size: Int, padding: Int, interpolation: Interpolation = .bilinear, horizontalFlipProbability: Double = 0.5,
                mean: [Float] = ImageNetStatistics.mean, std: [Float] = ImageNetStatistics.std) throws {
        guard size > 0, padding >= 0 else {
            throw DataError.invalidArgument("padded crop needs size > 0 and padding >= 0, got \(size), \(padding)")
        }
        try validateNormalization(mean: mean, std: std)
        self.size = size
        self.padding = padding
        self.interpolation = interpolation
        self.horizontalFlipProbability = horizontalFlipProbability
        self.mean = mean
        self.std = std
    }

    public var outputHeight: Int { size }
    public var outputWidth: Int { size }
    public var outputChannels: Int { mean.count }

    public func apply(_ source: ImageSource, into output: UnsafeMutablePointer<Float>,
                      generator: inout RandomGenerator, workspace: TransformWorkspace) throws {
        // A training augmentation: the faster reduced-scale JPEG decode is fine here.
        let resize = try EvalTransform(size: size, cropPercentage: 1, interpolation: interpolation, mean: mean, std: std,
                                       decodeScaling: true)
        let image = try resize.processedImage(source, workspace: workspace)
        let c = image.channels
        // The crop's top-left corner in padded coordinates; rows/columns outside the image are zero.
        let top = generator.integer(in: 0..<(2 * padding + 1)) - padding
        let left = generator.integer(in: 0..<(2 * padding + 1)) - padding
        var pixels = [UInt8](repeating: 0, count: size * size * c)
        image.pixels.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                let columnStart = max(0, left), columnEnd = min(size, size + left)
                guard columnEnd > columnStart else { return }
                for row in 0..<size {
                    let sourceRow = row + top
                    guard sourceRow >= 0 && sourceRow < size else { continue }
                    let outColumn = columnStart - left
                    (dst.baseAddress! + (row * size + outColumn) * c).update(
                        from: src.baseAddress! + (sourceRow * size + columnStart) * c, count: (columnEnd - columnStart) * c)
                }
            }
        }
        if generator.nextDouble() < horizontalFlipProbability {
            usi_image_hflip(&pixels, Int32(size), Int32(size), Int32(c))
        }
        usi_image_normalize(output, pixels, size * size, Int32(c), Int32(outputChannels), mean, std)
    }
}
