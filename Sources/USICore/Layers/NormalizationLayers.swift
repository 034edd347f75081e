/// Batch normalisation over the channel (last) axis — PyTorch's BatchNorm1d/2d for
/// channels-last tensors, with `weight`, `bias`, `running_mean`, `running_var` and
/// `num_batches_tracked` under timm's names.
public final class BatchNorm: Module, UnaryLayer {
    /// `[C]` scale.
    @Parameter public private(set) var weight: Tensor?
    /// `[C]` shift.
    @Parameter public private(set) var bias: Tensor?
    /// `[C]` running mean.
    @Buffer(key: "running_mean") public private(set) var runningMean: Tensor
    /// `[C]` running (unbiased) variance.
    @Buffer(key: "running_var") public private(set) var runningVariance: Tensor
    /// Number of training batches seen (stored as I64 in files).
    @Buffer(key: "num_batches_tracked", layout: .integerCounter) public private(set) var batchesTracked: Tensor
    /// Added to the variance.
    public let epsilon: Float
    /// Running-statistics momentum (PyTorch's convention: weight of the new batch).
    public let momentum: Float
    /// After folding into a convolution the layer passes its input through.
    public private(set) var isFolded = false
    /// The ranks whose batches share this layer's training statistics (`--sync-bn`, as
    /// PyTorch's `SyncBatchNorm`); nil = this process's batch alone. Every rank must set it.
    public var synchronization: (any Communicator)?

    /// Creates the layer: weight 1, bias 0, running mean 0, running variance 1.
    public init(_ featureCount: Int, epsilon: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
        weight = affine ? Tensor(shape: [featureCount], repeating: 1) : nil
        bias = affine ? Tensor(shape: [featureCount], repeating: 0) : nil
        _runningMean.wrappedValue = Tensor(shape: [featureCount], repeating: 0)
        _runningVariance.wrappedValue = Tensor(shape: [featureCount], repeating: 1)
        _batchesTracked.wrappedValue = Tensor(shape: [], repeating: 0)
        self.epsilon = epsilon
        self.momentum = momentum
        super.init()
    }

    /// The number of channels.
    public var featureCount: Int { runningMean.count }

    /// Normalises with batch statistics in training mode, running statistics in eval mode.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if isFolded { return x }
        if isTraining { batchesTracked.pointer.pointee += 1 }
        if isTraining, let synchronization, synchronization.size > 1 {
            return synchronizedBatchNorm(x, weight: weight, bias: bias, runningMean: runningMean,
                                         runningVariance: runningVariance, momentum: momentum, epsilon: epsilon,
                                         communicator: synchronization)
        }
        return batchNorm(x, weight: weight, bias: bias, runningMean: runningMean, runningVariance: runningVariance,
                         training: isTraining, momentum: momentum, epsilon: epsilon)
    }

    /// Eval-mode BN as `x·scale + shift` per channel.
    func inferenceScaleAndShift() -> (scale: [Float], shift: [Float]) {
        (0..<featureCount).reduce(into: ([Float](), [Float]())) { acc, c in
            let s = (weight?.pointer[c] ?? 1) / (runningVariance.pointer[c] + epsilon).squareRoot()
            acc.0.append(s)
            acc.1.append((bias?.pointer[c] ?? 0) - runningMean.pointer[c] * s)
        }
    }

    func markFolded() { isFolded = true }
}

/// Layer normalisation over the last axis (timm's `LayerNorm`, and `LayerNorm2d` for
/// channels-last images).
public final class LayerNorm: Module, UnaryLayer {
    /// `[C]` scale.
    @Parameter public private(set) var weight: Tensor?
    /// `[C]` shift.
    @Parameter public private(set) var bias: Tensor?
    /// Added to the variance.
    public let epsilon: Float

    /// Creates the layer: weight 1, bias 0.
    public init(_ featureCount: Int, epsilon: Float = 1e-5, affine: Bool = true) {
        weight = affine ? Tensor(shape: [featureCount], repeating: 1) : nil
        bias = affine ? Tensor(shape: [featureCount], repeating: 0) : nil
        self.epsilon = epsilon
        super.init()
    }

    /// Normalises each row.
    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, epsilon: epsilon) }
}
