/// A fully connected layer, `x · weightᵀ + bias`, over the last axis. `weight` is
/// `[outputFeatures, inputFeatures]` (PyTorch layout).
public final class Linear: Module, UnaryLayer {
    /// `[out, in]`.
    @Parameter public private(set) var weight: Tensor
    /// `[out]` or `nil`.
    @Parameter public private(set) var bias: Tensor?
    /// The weight packed for inference (see ``Module/prepareForInference(precision:convolutions:)``).
    var packedWeights: PackedWeights?

    /// Creates the layer with PyTorch's default initialisation.
    public init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true) {
        weight = Initialization.pytorchDefault([outputFeatures, inputFeatures], fanIn: inputFeatures)
        self.bias = bias ? Initialization.pytorchDefault([outputFeatures], fanIn: inputFeatures) : nil
        super.init()
    }

    /// Input features.
    public var inputFeatures: Int { weight.shape[1] }
    /// Output features.
    public var outputFeatures: Int { weight.shape[0] }

    /// Applies the layer.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let packedWeights, let y = preparedForward(x, packedWeights) { return y }
        return linear(x, weight: weight, bias: bias)
    }
}
