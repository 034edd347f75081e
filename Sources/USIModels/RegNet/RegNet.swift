/// timm's RegNetY (`timm/models/regnet.py`, timm 1.0.31): `regnety_008` and `regnety_032`.
/// A 3×3 stride-2 stem, four stages of Y blocks (1×1, grouped 3×3, squeeze-excitation on the
/// bottleneck, 1×1, projected or identity shortcut, ReLU after the sum), global average pool
/// and `head.fc`. Keys equal timm's: `stem.conv.weight`, `s2.b1.conv2.bn.running_var`,
/// `s3.b4.se.fc1.bias`, `s1.b1.downsample.conv.weight`, `head.fc.weight`, …

/// timm's `ConvNormAct`: convolution (no bias), BatchNorm and, unless linear, ReLU; the
/// convolution initialised as timm's RegNet does, normal with std √(2 / fan-out) where
/// fan-out = k·k·out / groups.
public final class RegNetConvNormAct: Module, UnaryLayer {
    let conv: Conv2d
    let bn: BatchNorm
    let activates: Bool

    /// Creates the layer; padding is timm's symmetric `(stride − 1 + k − 1) / 2`.
    public init(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, groups: Int = 1,
                activates: Bool = true) {
        conv = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
                      padding: .symmetric((stride - 1 + kernelSize - 1) / 2), groups: groups, bias: false)
        conv.weight.assign(Initialization.kaimingNormal(conv.weight.shape, fan: kernelSize * kernelSize * outputChannels / groups))
        bn = BatchNorm(outputChannels)
        self.activates = activates
        super.init()
    }

    /// Runs the layer on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = bn(conv(x))
        return activates ? relu(y) : y
    }

    /// Folds the BatchNorm into the convolution (inference only).
    public func foldBatchNorm() { conv.foldBatchNorm(bn) }
}

/// timm's `SEModule` as RegNet uses it: its reduction width comes from the block's input
/// channels, not the bottleneck's (`rd_channels = round(in_chs · se_ratio)`).
public final class RegNetSqueezeExcite: Module, UnaryLayer {
    let fc1: Conv2d, fc2: Conv2d

    /// Creates the module with timm's RegNet initialisation of both 1×1 convolutions.
    public init(channels: Int, reducedChannels: Int) {
        fc1 = Conv2d(inputChannels: channels, outputChannels: reducedChannels, kernelSize: 1)
        fc1.weight.assign(Initialization.kaimingNormal(fc1.weight.shape, fan: reducedChannels))
        fc1.bias?.fill(0)
        fc2 = Conv2d(inputChannels: reducedChannels, outputChannels: channels, kernelSize: 1)
        fc2.weight.assign(Initialization.kaimingNormal(fc2.weight.shape, fan: channels))
        fc2.bias?.fill(0)
        super.init()
    }

    /// Scales each channel of `[N, H, W, C]` by its sigmoid gate.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x * sigmoid(fc2(relu(fc1(x.mean(axes: [1, 2], keepingAxes: true)))))
    }
}

/// The RegNetY block (timm's `Bottleneck` with `bottle_ratio` 1): grouped 3×3 of fixed group
/// width, SE after it, linear 1×1, shortcut, ReLU.
public final class RegNetBottleneck: Module, UnaryLayer {
    let conv1: RegNetConvNormAct, conv2: RegNetConvNormAct
    let se: RegNetSqueezeExcite
    let conv3: RegNetConvNormAct
    let downsample: RegNetConvNormAct?
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block. `zeroInitLast` zeroes `conv3.bn.weight` (timm's default).
    public init(inputChannels: Int, outputChannels: Int, stride: Int, groupWidth: Int, squeezeRatio: Double,
                dropPathRate: Float = 0, zeroInitLast: Bool = true) {
        conv1 = RegNetConvNormAct(inputChannels, outputChannels, kernelSize: 1)
        conv2 = RegNetConvNormAct(outputChannels, outputChannels, kernelSize: 3, stride: stride,
                                  groups: outputChannels / groupWidth)
        se = RegNetSqueezeExcite(channels: outputChannels,
                                 reducedChannels: Int((Double(inputChannels) * squeezeRatio).rounded(.toNearestOrEven)))
        conv3 = RegNetConvNormAct(outputChannels, outputChannels, kernelSize: 1, activates: false)
        if zeroInitLast { conv3.bn.weight?.fill(0) }
        downsample = inputChannels != outputChannels || stride != 1
            ? RegNetConvNormAct(inputChannels, outputChannels, kernelSize: 1, stride: stride, activates: false) : nil
        dropPath = dropPathRate > 0 ? DropPath(probability: dropPathRate) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = conv3(se(conv2(conv1(x))))
        if let dropPath { y = dropPath(y) }
        return relu(y + (downsample?(x) ?? x))
    }

    /// Folds every BatchNorm into its convolution (inference only).
    public func foldBatchNorms() {
        for layer in [conv1, conv2, conv3] { layer.foldBatchNorm() }
        downsample?.foldBatchNorm()
    }
}

/// timm's RegNet: `stem`, stages `s1`…`s4` of blocks `b1`…, global average pool, `head.fc`.
public final class RegNet: Module, HeadedBackbone, BatchNormFoldable {
    /// An architecture: the per-stage widths and depths that timm's `generate_regnet` derives
    /// from (w0, wa, wm, depth, group size), written out so that no float rounding of ours can
    /// differ from timm's.
    public struct Architecture: Sendable, Hashable {
        /// Output channels of each stage.
        public var widths: [Int]
        /// Blocks per stage.
        public var depths: [Int]
        /// Channels per group of the 3×3 convolutions.
        public var groupWidth: Int
        /// SE reduction relative to a block's input channels.
        public var squeezeRatio: Double = 0.25
        /// Stem output channels.
        public var stemWidth: Int = 32

        /// Creates an architecture description.
        public init(widths: [Int], depths: [Int], groupWidth: Int, squeezeRatio: Double = 0.25, stemWidth: Int = 32) {
            self.widths = widths
            self.depths = depths
            self.groupWidth = groupWidth
            self.squeezeRatio = squeezeRatio
            self.stemWidth = stemWidth
        }

        /// timm `regnety_008` (w0 56, wa 38.84, wm 2.4, depth 14, group size 16).
        public static let regnety008 = Architecture(widths: [64, 128, 320, 768], depths: [1, 3, 8, 2], groupWidth: 16)
        /// timm `regnety_032` (w0 80, wa 42.63, wm 2.66, depth 21, group size 24).
        public static let regnety032 = Architecture(widths: [72, 216, 576, 1512], depths: [2, 5, 13, 1], groupWidth: 24)
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The architecture.
    public let architecture: Architecture
    /// Channels of the final feature map (input of `head.fc`).
    public var featureCount: Int { architecture.widths.last! }

    let stem: RegNetConvNormAct
    let s1: NamedSequential, s2: NamedSequential, s3: NamedSequential, s4: NamedSequential
    @ModuleInfo(key: "head") private var head: RegNetHead

    var stages: [NamedSequential] { [s1, s2, s3, s4] }

    /// Builds the network with timm's initialisation (normal fan-out convolutions, BN 1/0 with
    /// each block's last BN zeroed, classifier normal std 0.01 with zero bias).
    ///
    /// - Parameter dropPathRate: stochastic depth, linearly increasing over blocks.
    public init(config: BackboneConfig, architecture: Architecture, dropPathRate: Float = 0) {
        precondition(architecture.widths.count == 4 && architecture.depths.count == 4, "RegNet: four stages")
        self.config = config
        self.architecture = architecture
        stem = RegNetConvNormAct(config.inputChannels, architecture.stemWidth, kernelSize: 3, stride: 2)
        let rates = DropPath.linearRates(dropPathRate, count: architecture.depths.reduce(0, +))
        var inputChannels = architecture.stemWidth, blockIndex = 0
        var stages: [NamedSequential] = []
        for (width, depth) in zip(architecture.widths, architecture.depths) {
            var blocks: [(name: String, layer: any UnaryLayer)] = []
            for i in 0..<depth {
                blocks.append(("b\(i + 1)", RegNetBottleneck(inputChannels: inputChannels, outputChannels: width,
                                                             stride: i == 0 ? 2 : 1, groupWidth: min(architecture.groupWidth, width),
                                                             squeezeRatio: architecture.squeezeRatio,
                                                             dropPathRate: rates[blockIndex])))
                inputChannels = width
                blockIndex += 1
            }
            stages.append(NamedSequential(blocks))
        }
        (s1, s2, s3, s4) = (stages[0], stages[1], stages[2], stages[3])
        _head.wrappedValue = RegNetHead(features: architecture.widths.last!, classes: config.classes)
        super.init()
    }

    /// Stem and the four stages: `[N, H/32, W/32, C]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor { stages.reduce(stem(x)) { $1($0) } }

    /// Global average pool, then `head.fc`.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        let pooled = globalAvgPool2d(features)
        return preLogits ? pooled : head.fc(pooled)
    }

    /// Replaces `head.fc` with timm's freshly initialised classifier (identity for 0 classes).
    public func resetClassifier(classes: Int) {
        head = RegNetHead(features: featureCount, classes: classes)
        head.train(isTraining)
        config.classes = classes
    }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["head.fc."] }

    /// Folds every BatchNorm into the convolution before it (a frozen eval-mode teacher).
    public func foldBatchNorms() {
        stem.foldBatchNorm()
        for stage in stages { for block in stage.layers { (block as? RegNetBottleneck)?.foldBatchNorms() } }
    }
}

/// timm's `ClassifierHead` as RegNet has it: only `fc` carries weights.
final class RegNetHead: Module {
    private(set) var fc: any UnaryLayer

    init(features: Int, classes: Int) {
        if classes > 0 {
            let linear = Linear(inputFeatures: features, outputFeatures: classes)
            linear.weight.assign(Initialization.normal(linear.weight.shape, standardDeviation: 0.01))
            linear.bias?.fill(0)
            fc = linear
        } else {
            fc = Identity()
        }
        super.init()
    }
}
