/// A 2-D convolution over channels-last `[N, H, W, C]` input. The weight is stored OHWI
/// (`[out, kh, kw, in/groups]`) and exchanged with files as PyTorch's OIHW.
public final class Conv2d: Module, UnaryLayer {
    /// `[out, kh, kw, in/groups]`.
    @Parameter(layout: .convolutionWeight) public private(set) var weight: Tensor
    /// `[out]` or `nil`. Folding a BatchNorm adds one (see ``foldBatchNorm(_:)``).
    @Parameter public private(set) var bias: Tensor?
    /// Stride (height, width).
    public let stride: (Int, Int)
    /// Padding rule.
    public let padding: Padding
    /// Dilation (height, width).
    public let dilation: (Int, Int)
    /// Channel groups (`groups == in == out` is a depthwise convolution).
    public let groups: Int
    /// The weight packed for inference (see ``Module/prepareForInference(precision:convolutions:)``).
    var packedWeights: PackedWeights?
    /// The weight transformed for Winograd F(2×2, 3×3) at inference, where it was asked for.
    var winogradWeights: WinogradWeights?
    /// The taps of single-pixel outputs over small inputs, where the fastest form was asked for.
    var wholeInputTaps: WholeInputTaps?

    /// Creates the layer with PyTorch's default initialisation.
    public init(inputChannels: Int, outputChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: Padding = .valid, dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true) {
        precondition(inputChannels % groups == 0 && outputChannels % groups == 0,
                     "Conv2d: channels \(inputChannels)→\(outputChannels) not divisible by groups \(groups)")
        let fanIn = inputChannels / groups * kernelSize.0 * kernelSize.1
        _weight.wrappedValue = Initialization.pytorchDefault([outputChannels, kernelSize.0, kernelSize.1, inputChannels / groups], fanIn: fanIn)
        self.bias = bias ? Initialization.pytorchDefault([outputChannels], fanIn: fanIn) : nil
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        super.init()
    }

    /// Square-kernel convenience.
    public convenience init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Padding = .valid, dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        self.init(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: (kernelSize, kernelSize),
                  stride: (stride, stride), padding: padding, dilation: (dilation, dilation), groups: groups, bias: bias)
    }

    /// Output channels.
    public var outputChannels: Int { weight.shape[0] }
    /// Input channels.
    public var inputChannels: Int { weight.shape[3] * groups }

    /// Applies the convolution.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let packedWeights, let y = preparedForward(x, packedWeights) { return y }
        return conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    /// Folds an inference-mode BatchNorm that follows this convolution into its weight and
    /// bias, and turns the BatchNorm into an identity: `bn(conv(x))` is unchanged.
    public func foldBatchNorm(_ norm: BatchNorm) {
        precondition(norm.featureCount == outputChannels, "foldBatchNorm: \(norm.featureCount) features for \(outputChannels) channels")
        let (scale, shift) = norm.inferenceScaleAndShift()
        let perChannel = weight.count / outputChannels
        let w = weight.pointer
        for o in 0..<outputChannels {
            for i in 0..<perChannel { w[o * perChannel + i] *= scale[o] }
        }
        let newBias = Tensor(shape: [outputChannels], values: (0..<outputChannels).map { o in
            (bias?.pointer[o] ?? 0) * scale[o] + shift[o]
        })
        if let bias { bias.assign(newBias) } else {
            bias = newBias
            if !weight.requiresGrad { newBias.requiresGrad = false }
        }
        norm.markFolded()
    }
}
