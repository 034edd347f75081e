import USICore

/// Turns one sample's source into normalised floats `[outputHeight, outputWidth,
/// outputChannels]` (channels-last). Implementations are values shared by all workers; the
/// per-thread state lives in the ``TransformWorkspace``.
public protocol SampleTransform: Sendable {
    /// Output height in pixels.
    var outputHeight: Int { get }
    /// Output width in pixels.
    var outputWidth: Int { get }
    /// Output channels (1 or 3).
    var outputChannels: Int { get }
    /// Transforms `source` into `output` (`outputHeight * outputWidth * outputChannels`
    /// floats), drawing all randomness from `generator`.
    func apply(_ source: ImageSource, into output: UnsafeMutablePointer<Float>,
               generator: inout RandomGenerator, workspace: TransformWorkspace) throws
}

extension SampleTransform {
    /// Floats per output sample.
    public var outputSize: Int { outputHeight * outputWidth * outputChannels }

    /// Transforms one source into a new array (convenience; the loader writes into batch
    /// buffers instead).
    public func apply(_ source: ImageSource, generator: inout RandomGenerator,
                      workspace: TransformWorkspace) throws -> [Float] {
        var out = [Float](repeating: 0, count: outputSize)
        try out.withUnsafeMutableBufferPointer {
            try apply(source, into: $0.baseAddress!, generator: &generator, workspace: workspace)
        }
        return out
    }
}

/// The ImageNet mean and standard deviation (timm's `IMAGENET_DEFAULT_MEAN/STD`).
public enum ImageNetStatistics {
    public static let mean: [Float] = [0.485, 0.456, 0.406]
    public static let std: [Float] = [0.229, 0.224, 0.225]
}

/// timm's RandAugment fill colour: the mean as bytes, `min(255, round(255 * mean))`.
func fillColor(mean: [Float]) -> [UInt8] {
    mean.map { UInt8(min(255, max(0, pythonRound(255 * Double($0))))) }
}

func validateNormalization(mean: [Float], std: [Float]) throws {
    guard mean.count == std.count, mean.count == 1 || mean.count == 3 else {
        throw DataError.invalidArgument("mean and std need 1 or 3 values each, got \(mean.count) and \(std.count)")
    }
    guard std.allSatisfy({ $0 > 0 }) else { throw DataError.invalidArgument("std must be positive, got \(std)") }
}
