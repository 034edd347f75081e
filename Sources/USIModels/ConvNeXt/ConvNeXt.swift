/// timm's ConvNeXt (`timm/models/convnext.py`, timm 1.0.31): `convnext_atto` (1×1-conv MLP,
/// `conv_mlp=True`), `convnext_tiny` and `convnext_small` (Linear MLP). Channels-last throughout, so timm's
/// `LayerNorm2d` and `LayerNorm` are both a layer norm over the last axis here, and a 1×1
/// convolution and a Linear are the same product (they differ only in their file shapes).
///
/// Parameter names equal timm's: `stem.0.weight`, `stages.1.downsample.1.weight`,
/// `stages.0.blocks.0.conv_dw.weight`, `…norm.weight`, `…mlp.fc1.weight`, `…gamma`,
/// `head.norm.weight`, `head.fc.weight`.

/// timm's `trunc_normal_(std=.02)` weight with a zero bias, as ConvNeXt's `_init_weights`.
func convNeXtInitialise(_ weight: Tensor, _ bias: Tensor?) {
    weight.assign(Initialization.truncatedNormal(weight.shape, standardDeviation: 0.02))
    bias?.fill(0)
}

/// A Conv2d initialised as ConvNeXt's `_init_weights`.
func convNeXtConvolution(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1,
                         padding: Int = 0, groups: Int = 1) -> Conv2d {
    let conv = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
                      stride: stride, padding: .symmetric(padding), groups: groups, bias: true)
    convNeXtInitialise(conv.weight, conv.bias)
    return conv
}

/// A Linear initialised as ConvNeXt's `_init_weights`.
func convNeXtLinear(_ inputFeatures: Int, _ outputFeatures: Int) -> Linear {
    let linear = Linear(inputFeatures: inputFeatures, outputFeatures: outputFeatures)
    convNeXtInitialise(linear.weight, linear.bias)
    return linear
}

/// ConvNeXt's MLP (timm `Mlp`, GELU): `fc1` → GELU → `fc2`, as 1×1 convolutions
/// (`use_conv=True`, weights `[out, in, 1, 1]` in files) or Linear layers.
public final class ConvNeXtMlp: Module, UnaryLayer {
    let fc1: any UnaryLayer, fc2: any UnaryLayer

    /// Creates the MLP; `convolutional` selects 1×1 convolutions (timm's `conv_mlp`).
    public init(channels: Int, hiddenChannels: Int, convolutional: Bool) {
        if convolutional {
            fc1 = convNeXtConvolution(channels, hiddenChannels, kernelSize: 1)
            fc2 = convNeXtConvolution(hiddenChannels, channels, kernelSize: 1)
        } else {
            fc1 = convNeXtLinear(channels, hiddenChannels)
            fc2 = convNeXtLinear(hiddenChannels, channels)
        }
        super.init()
    }

    /// Applies the MLP over the channel (last) axis.
    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(gelu(fc1(x))) }
}

/// The ConvNeXt block: 7×7 depthwise conv → LayerNorm → MLP (×4) → layer scale `gamma`,
/// plus the identity shortcut.
public final class ConvNeXtBlock: Module, UnaryLayer {
    @ModuleInfo(key: "conv_dw") var convDepthwise: Conv2d
    let norm: LayerNorm
    let mlp: ConvNeXtMlp
    /// Layer scale (timm's `gamma`), `[C]`.
    @Parameter var gamma: Tensor?
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block. `layerScale` is timm's `ls_init_value` (nil disables `gamma`).
    public init(channels: Int, kernelSize: Int = 7, mlpRatio: Int = 4, convolutionalMlp: Bool,
                layerScale: Float? = 1e-6, dropPathRate: Float = 0) {
        _convDepthwise.wrappedValue = convNeXtConvolution(channels, channels, kernelSize: kernelSize, padding: (kernelSize - 1) / 2,
                                            groups: channels)
        norm = LayerNorm(channels, epsilon: 1e-6)
        mlp = ConvNeXtMlp(channels: channels, hiddenChannels: mlpRatio * channels, convolutional: convolutionalMlp)
        gamma = layerScale.map { Tensor(shape: [channels], repeating: $0) }
        dropPath = dropPathRate > 0 ? DropPath(probability: dropPathRate) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = mlp(norm(convDepthwise(x)))
        if let gamma { y = y * gamma }
        if let dropPath { y = dropPath(y) }
        return y + x
    }
}

/// A ConvNeXt stage: optional downsample (LayerNorm, 2×2 stride-2 conv) and blocks.
public final class ConvNeXtStage: Module, UnaryLayer {
    let downsample: Sequential?
    let blocks: Sequential

    /// Creates the stage.
    public init(inputChannels: Int, outputChannels: Int, stride: Int, depth: Int, convolutionalMlp: Bool,
                layerScale: Float?, dropPathRates: [Float]) {
        if inputChannels != outputChannels || stride > 1 {
            downsample = Sequential([
                LayerNorm(inputChannels, epsilon: 1e-6),
                convNeXtConvolution(inputChannels, outputChannels, kernelSize: stride > 1 ? 2 : 1, stride: stride),
            ])
        } else {
            downsample = nil
        }
        blocks = Sequential((0..<depth).map { i in
            ConvNeXtBlock(channels: outputChannels, convolutionalMlp: convolutionalMlp, layerScale: layerScale,
                          dropPathRate: dropPathRates[i])
        })
        super.init()
    }

    /// Runs the stage.
    public func callAsFunction(_ x: Tensor) -> Tensor { blocks(downsample?(x) ?? x) }
}

/// timm's `NormMlpClassifierHead` without hidden layer: global average pool → LayerNorm → `fc`.
public final class ConvNeXtHead: Module {
    let norm: LayerNorm
    private(set) var fc: any UnaryLayer
    let features: Int

    init(features: Int, classes: Int) {
        self.features = features
        norm = LayerNorm(features, epsilon: 1e-6)
        fc = classes > 0 ? convNeXtLinear(features, classes) : Identity()
        super.init()
    }

    func reset(classes: Int) {
        fc = classes > 0 ? convNeXtLinear(features, classes) : Identity()
        fc.train(isTraining)
    }
}

/// timm's ConvNeXt: patch stem (4×4 stride-4 conv, LayerNorm), four stages, norm head.
public final class ConvNeXt: Module, HeadedBackbone {
    /// An architecture: the arguments of timm's model function.
    public struct Architecture: Sendable, Hashable {
        /// Blocks per stage.
        public var depths: [Int]
        /// Channels per stage.
        public var dims: [Int]
        /// 1×1 convolutions in the MLP (timm's `conv_mlp`).
        public var convolutionalMlp: Bool

        /// Creates an architecture description.
        public init(depths: [Int], dims: [Int], convolutionalMlp: Bool) {
            self.depths = depths
            self.dims = dims
            self.convolutionalMlp = convolutionalMlp
        }

        /// timm `convnext_atto`.
        public static let atto = Architecture(depths: [2, 2, 6, 2], dims: [40, 80, 160, 320], convolutionalMlp: true)
        /// timm `convnext_tiny`.
        public static let tiny = Architecture(depths: [3, 3, 9, 3], dims: [96, 192, 384, 768], convolutionalMlp: false)
        /// timm `convnext_small`.
        public static let small = Architecture(depths: [3, 3, 27, 3], dims: [96, 192, 384, 768], convolutionalMlp: false)
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The architecture.
    public let architecture: Architecture
    /// Channels of the final feature map.
    public let featureCount: Int
    /// Dropout probability before the classifier (timm's `drop_rate`).
    public let dropRate: Float

    @ModuleInfo(key: "head_drop") private var headDropout: Dropout?
    let stem: Sequential
    let stages: Sequential
    let head: ConvNeXtHead

    /// Builds the network with timm's initialisation (truncated-normal σ 0.02 weights, zero
    /// biases, layer scale 1e-6).
    public init(config: BackboneConfig, architecture: Architecture, dropRate: Float = 0, dropPathRate: Float = 0) {
        self.config = config
        self.architecture = architecture
        self.dropRate = dropRate
        _headDropout.wrappedValue = dropRate > 0 ? Dropout(probability: dropRate) : nil
        let dims = architecture.dims
        stem = Sequential([
            convNeXtConvolution(config.inputChannels, dims[0], kernelSize: 4, stride: 4),
            LayerNorm(dims[0], epsilon: 1e-6),
        ])
        let allRates = DropPath.linearRates(dropPathRate, count: architecture.depths.reduce(0, +))
        var blockIndex = 0
        var stages: [ConvNeXtStage] = []
        var previous = dims[0]
        for (i, depth) in architecture.depths.enumerated() {
            let rates = Array(allRates[blockIndex..<blockIndex + depth])
            blockIndex += depth
            stages.append(ConvNeXtStage(inputChannels: previous, outputChannels: dims[i], stride: i > 0 ? 2 : 1,
                                        depth: depth, convolutionalMlp: architecture.convolutionalMlp,
                                        layerScale: 1e-6, dropPathRates: rates))
            previous = dims[i]
        }
        self.stages = Sequential(stages)
        featureCount = previous
        head = ConvNeXtHead(features: previous, classes: config.classes)
        super.init()
    }

    /// Stem and stages: `[N, H/32, W/32, C]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor { stages(stem(x)) }

    /// Global average pool, LayerNorm (the pre-logits), dropout (training), `head.fc`.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        var y = head.norm(globalAvgPool2d(features))
        if preLogits { return y }
        if let headDropout { y = headDropout(y) }
        return head.fc(y)
    }

    /// Replaces `head.fc` with a freshly initialised Linear (identity for 0 classes).
    public func resetClassifier(classes: Int) {
        head.reset(classes: classes)
        config.classes = classes
    }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["head.fc."] }
}
