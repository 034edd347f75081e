import Synchronization

/// Seeded parameter initialisation with timm's/PyTorch's distributions.
///
/// Layers draw their initial values from one process-wide generator; ``seed(_:)`` makes model
/// construction reproducible (`Models.create` seeds it).
public enum Initialization {
    private static let generator = Mutex(RandomGenerator(seed: 0))

    /// Reseeds the generator used by every layer initialiser.
    public static func seed(_ seed: UInt64) { generator.withLock { $0 = RandomGenerator(seed: seed) } }

    private static func tensor(_ shape: [Int], _ sample: (inout RandomGenerator) -> Float) -> Tensor {
        let n = shape.reduce(1, *)
        let values = generator.withLock { g in (0..<n).map { _ in sample(&g) } }
        return Tensor(shape: shape, values: values)
    }

    /// Uniform on [low, high).
    public static func uniform(_ shape: [Int], low: Float, high: Float) -> Tensor {
        tensor(shape) { low + (high - low) * $0.nextFloat() }
    }

    /// Normal with the given mean and standard deviation.
    public static func normal(_ shape: [Int], mean: Float = 0, standardDeviation: Float) -> Tensor {
        tensor(shape) { mean + standardDeviation * Float($0.normal()) }
    }

    /// timm's `trunc_normal_`: normal(mean, std) resampled until inside the absolute bounds
    /// [lower, upper] (default ±2, i.e. ±2/std standard deviations for std 0.02 — as timm).
    public static func truncatedNormal(_ shape: [Int], mean: Float = 0, standardDeviation: Float,
                                       lower: Float = -2, upper: Float = 2) -> Tensor {
        tensor(shape) { g in
            while true {
                let v = mean + standardDeviation * Float(g.normal())
                if v >= lower && v <= upper { return v }
            }
        }
    }

    /// PyTorch's default for `Conv2d`/`Linear` weights and biases (`kaiming_uniform_(a=√5)`):
    /// uniform on ±1/√fanIn.
    public static func pytorchDefault(_ shape: [Int], fanIn: Int) -> Tensor {
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        return uniform(shape, low: -bound, high: bound)
    }

    /// `kaiming_normal_` with gain √2 (ReLU): std = √2 / √fan (timm's ResNet uses fan-out).
    public static func kaimingNormal(_ shape: [Int], fan: Int) -> Tensor {
        normal(shape, standardDeviation: (2 / Float(max(fan, 1))).squareRoot())
    }
}
