import Foundation

/// A model's speed and size as the paper's comparison reports them: inference throughput at
/// batch 64 and latency at batch 1 (each the median over repeated runs, BatchNorm folded, FP32,
/// no tape), parameters and GFLOPs (multiply-accumulates, as timm/fvcore/the paper count them).
public struct InferenceSpeed: Sendable, Equatable {
    /// Images per second at the throughput batch.
    public var imagesPerSecond: Double
    /// Median milliseconds for one image at batch 1.
    public var latencyMilliseconds: Double
    /// Parameters.
    public var parameters: Int
    /// Giga multiply-accumulates per image.
    public var gflops: Double

    /// Measures `model` (which it folds and prepares for inference, so pass a copy you do not
    /// train any more). Inputs are deterministic noise; speed does not depend on the values.
    public static func measure(_ model: any Backbone, settings: ComparisonSpeedSettings) -> InferenceSpeed {
        let parameters = model.parameterCount
        let c = model.config
        model.eval()
        func input(batch: Int) -> Tensor {
            var generator = RandomGenerator(seed: 0)
            let count = batch * c.inputSize * c.inputSize * c.inputChannels
            return Tensor(shape: [batch, c.inputSize, c.inputSize, c.inputChannels],
                          values: (0..<count).map { _ in generator.nextFloat() - 0.5 })
        }
        let single = input(batch: settings.latencyBatch)
        // FLOPs before folding: folding removes BatchNorm, which the counter does not count anyway.
        let macs = withoutGradients { FlopCounter.count { model(single) }.flops } / 2
        (model as? BatchNormFoldable)?.foldBatchNorms()
        model.prepareForInference(precision: .float32)
        let batch = input(batch: settings.throughputBatch)
        let batchSeconds = KernelBenchmark.medianSeconds(minimumRuns: 3, minimumSeconds: settings.minimumSeconds) {
            _ = withoutGradients { model(batch) }
        }
        let latencySeconds = KernelBenchmark.medianSeconds(minimumRuns: 10, minimumSeconds: settings.minimumSeconds) {
            _ = withoutGradients { model(single) }
        }
        return InferenceSpeed(imagesPerSecond: Double(settings.throughputBatch) / batchSeconds,
                              latencyMilliseconds: latencySeconds * 1000 / Double(settings.latencyBatch),
                              parameters: parameters, gflops: Double(macs) / Double(settings.latencyBatch) / 1e9)
    }

    /// Giga multiply-accumulates of one image through `model` at its input size.
    public static func gigaMACs(_ model: any Backbone) -> Double {
        let c = model.config
        let x = Tensor(shape: [1, c.inputSize, c.inputSize, c.inputChannels], repeating: 0.1)
        model.eval()
        return Double(withoutGradients { FlopCounter.count { model(x) }.flops }) / 2 / 1e9
    }
}
