import Synchronization

/// Seeded parameter initialisation with timm's/PyTorch's distributions.
///
/// Layers draw their initial values from a generator. Inside ``withSeed(_:_:)`` that generator
/// belongs to the calling task alone, so a model built there is the same whatever other threads
/// construct meanwhile (`Models.create` builds this way). Outside it, layers share one
/// process-wide generator that ``seed(_:)`` resets.
public enum Initialization {
    /// A generator owned by one `withSeed` scope.
    private final class ScopedGenerator: Sendable {
        let state: Mutex<RandomGenerator>
        init(seed: UInt64) { state = Mutex(RandomGenerator(seed: seed)) }
    }

    private static let processGenerator = Mutex(RandomGenerator(seed: 0))
    @TaskLocal private static var scoped: ScopedGenerator?

    /// Reseeds the process-wide generator. Reproducible only while no other thread builds
    /// layers; prefer ``withSeed(_:_:)``.
    public static func seed(_ seed: UInt64) { processGenerator.withLock { $0 = RandomGenerator(seed: seed) } }

    /// Runs `body` with a fresh generator seeded with `seed` that only this task's layer
    /// initialisers draw from: the same seed gives the same weights even while other threads
    /// build models concurrently.
    public static func withSeed<T>(_ seed: UInt64, _ body: () throws -> T) rethrows -> T {
        try $scoped.withValue(ScopedGenerator(seed: seed), operation: body)
    }

    private static func tensor(_ shape: [Int], _ sample: (inout RandomGenerator) -> Float) -> Tensor {
        let n = shape.reduce(1, *)
        let values = if let scoped {
            scoped.state.withLock { g in (0..<n).map { _ in sample(&g) } }
        } else {
            processGenerator.withLock { g in (0..<n).map { _ in sample(&g) } }
        }
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
