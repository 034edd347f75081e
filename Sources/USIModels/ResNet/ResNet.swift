/// timm's ResNet (`timm/models/resnet.py`, timm 1.0.31): the plain 7×7-stem ResNets
/// (`resnet18`, `resnet26`, `resnet34`, `resnet50`) and the `t` variant (`resnet10t`: a deep
/// "tiered" 3×3 stem and average-pool downsampling in the shortcut).
///
/// Parameter names equal timm's `state_dict` keys (`conv1.weight`, `layer1.0.bn2.running_var`,
/// `layer2.0.downsample.1.weight`, `fc.bias`, …), so timm weights load with `strict: true` and
/// our weights load back into timm.

/// Creates a bias-free convolution initialised as timm's ResNet does: `kaiming_normal_` with
/// `mode='fan_out'`, ReLU gain (std = √(2 / (out·kh·kw))).
func resnetConvolution(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1,
                       padding: Int = 0, groups: Int = 1) -> Conv2d {
    let conv = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
                      stride: stride, padding: .symmetric(padding), groups: groups, bias: false)
    conv.weight.assign(Initialization.kaimingNormal(conv.weight.shape, fan: outputChannels * kernelSize * kernelSize))
    return conv
}

/// The residual block of ResNet-18/34 (timm's `BasicBlock`): 3×3 conv–BN–ReLU, 3×3 conv–BN,
/// plus the (optionally projected) shortcut, then ReLU.
public final class ResNetBasicBlock: Module, UnaryLayer {
    /// Output channels per `planes`.
    public static let expansion = 1
    let conv1: Conv2d, bn1: BatchNorm, conv2: Conv2d, bn2: BatchNorm
    let downsample: Sequential?
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block. `zeroInitLast` zeroes `bn2.weight` (timm's default `zero_init_last`).
    public init(inputChannels: Int, planes: Int, stride: Int, downsample: Sequential?, dropPathRate: Float = 0,
                zeroInitLast: Bool = true) {
        conv1 = resnetConvolution(inputChannels, planes, kernelSize: 3, stride: stride, padding: 1)
        bn1 = BatchNorm(planes)
        conv2 = resnetConvolution(planes, planes * Self.expansion, kernelSize: 3, padding: 1)
        bn2 = BatchNorm(planes * Self.expansion)
        if zeroInitLast { bn2.weight?.fill(0) }
        self.downsample = downsample
        dropPath = dropPathRate > 0 ? DropPath(probability: dropPathRate) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = relu(bn1(conv1(x)))
        y = bn2(conv2(y))
        if let dropPath { y = dropPath(y) }
        return relu(y + (downsample?(x) ?? x))
    }

    /// Folds every BatchNorm into its convolution (inference only).
    public func foldBatchNorms() {
        conv1.foldBatchNorm(bn1)
        conv2.foldBatchNorm(bn2)
        if let downsample { resnetFoldShortcut(downsample) }
    }
}

/// Folds the BN of a projection shortcut (`[pool,] conv, bn`) into its convolution.
func resnetFoldShortcut(_ downsample: Sequential) {
    let layers = downsample.layers
    for i in 1..<layers.count {
        if let conv = layers[i - 1] as? Conv2d, let norm = layers[i] as? BatchNorm { conv.foldBatchNorm(norm) }
    }
}

/// The bottleneck block of ResNet-26/50 (timm's `Bottleneck`): 1×1 reduce, 3×3 (strided),
/// 1×1 expand (×4), each with BN, ReLU after the first two and after the residual sum.
public final class ResNetBottleneck: Module, UnaryLayer {
    /// Output channels per `planes`.
    public static let expansion = 4
    let conv1: Conv2d, bn1: BatchNorm, conv2: Conv2d, bn2: BatchNorm, conv3: Conv2d, bn3: BatchNorm
    let downsample: Sequential?
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block. `zeroInitLast` zeroes `bn3.weight` (timm's default `zero_init_last`).
    public init(inputChannels: Int, planes: Int, stride: Int, downsample: Sequential?, dropPathRate: Float = 0,
                zeroInitLast: Bool = true) {
        let width = planes
        let output = planes * Self.expansion
        conv1 = resnetConvolution(inputChannels, width, kernelSize: 1)
        bn1 = BatchNorm(width)
        conv2 = resnetConvolution(width, width, kernelSize: 3, stride: stride, padding: 1)
        bn2 = BatchNorm(width)
        conv3 = resnetConvolution(width, output, kernelSize: 1)
        bn3 = BatchNorm(output)
        if zeroInitLast { bn3.weight?.fill(0) }
        self.downsample = downsample
        dropPath = dropPathRate > 0 ? DropPath(probability: dropPathRate) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = relu(bn1(conv1(x)))
        y = relu(bn2(conv2(y)))
        y = bn3(conv3(y))
        if let dropPath { y = dropPath(y) }
        return relu(y + (downsample?(x) ?? x))
    }

    /// Folds every BatchNorm into its convolution (inference only).
    public func foldBatchNorms() {
        conv1.foldBatchNorm(bn1)
        conv2.foldBatchNorm(bn2)
        conv3.foldBatchNorm(bn3)
        if let downsample { resnetFoldShortcut(downsample) }
    }
}

/// timm's ResNet family: stem, four stages (`layer1`…`layer4`), global average pool and `fc`.
public final class ResNet: Module, HeadedBackbone, BatchNormFoldable {
    /// Residual block type.
    public enum Block: Sendable, Hashable {
        /// ``ResNetBasicBlock`` (expansion 1).
        case basic
        /// ``ResNetBottleneck`` (expansion 4).
        case bottleneck

        var expansion: Int { self == .basic ? 1 : 4 }
    }

    /// Stem type (timm's `stem_type`).
    public enum Stem: Sendable, Hashable {
        /// One 7×7 stride-2 convolution of 64 channels (`''`).
        case standard
        /// Three 3×3 convolutions of `width`, `width`, `2·width` (`'deep'`).
        case deep(width: Int)
        /// Three 3×3 convolutions of `3·(width/4)`, `width`, `2·width` (`'deep_tiered'`).
        case deepTiered(width: Int)
    }

    /// An architecture: the arguments of timm's model function.
    public struct Architecture: Sendable, Hashable {
        /// Block type of every stage.
        public var block: Block
        /// Blocks per stage.
        public var layers: [Int]
        /// Stem type.
        public var stem: Stem = .standard
        /// Average-pool then 1×1 conv in the projection shortcut (timm's `avg_down`).
        public var averageDownsample: Bool = false
        /// Base widths of the four stages.
        public var channels: [Int] = [64, 128, 256, 512]

        /// Creates an architecture description.
        public init(block: Block, layers: [Int], stem: Stem = .standard, averageDownsample: Bool = false,
                    channels: [Int] = [64, 128, 256, 512]) {
            self.block = block
            self.layers = layers
            self.stem = stem
            self.averageDownsample = averageDownsample
            self.channels = channels
        }

        /// timm `resnet10t`.
        public static let resnet10t = Architecture(block: .basic, layers: [1, 1, 1, 1], stem: .deepTiered(width: 32),
                                                   averageDownsample: true)
        /// timm `resnet18`.
        public static let resnet18 = Architecture(block: .basic, layers: [2, 2, 2, 2])
        /// timm `resnet26`.
        public static let resnet26 = Architecture(block: .bottleneck, layers: [2, 2, 2, 2])
        /// timm `resnet34`.
        public static let resnet34 = Architecture(block: .basic, layers: [3, 4, 6, 3])
        /// timm `resnet50`.
        public static let resnet50 = Architecture(block: .bottleneck, layers: [3, 4, 6, 3])
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The architecture.
    public let architecture: Architecture
    /// Channels of the final feature map (input of `fc`).
    public let featureCount: Int
    /// Dropout probability before the classifier (timm's `drop_rate`).
    public let dropRate: Float

    @ModuleInfo(key: "head_drop") private var headDropout: Dropout?
    /// timm's `conv1`: the 7×7 convolution, or the deep stem's `Sequential`.
    @ModuleInfo(key: "conv1") var stem: any UnaryLayer
    let bn1: BatchNorm
    let layer1: Sequential, layer2: Sequential, layer3: Sequential, layer4: Sequential
    private(set) var fc: any UnaryLayer

    /// The four stages in order.
    var stages: [Sequential] { [layer1, layer2, layer3, layer4] }

    /// Builds the network for `config` (classes, input channels) with timm's initialisation:
    /// kaiming-normal (fan-out) convolutions, BN weight 1 / bias 0 with the last BN of every
    /// residual branch zeroed, PyTorch's default `Linear` init for `fc`.
    ///
    /// - Parameters:
    ///   - dropRate: dropout before `fc` in training (timm's `drop_rate`, default 0).
    ///   - dropPathRate: stochastic depth, linearly increasing over blocks (timm's `drop_path_rate`).
    public init(config: BackboneConfig, architecture: Architecture, dropRate: Float = 0, dropPathRate: Float = 0) {
        self.config = config
        self.architecture = architecture
        self.dropRate = dropRate
        precondition(architecture.layers.count == 4 && architecture.channels.count == 4,
                     "ResNet: four stages (layer1…layer4), got \(architecture.layers.count) block counts and \(architecture.channels.count) widths")
        _headDropout.wrappedValue = dropRate > 0 ? Dropout(probability: dropRate) : nil
        let inputChannels = config.inputChannels
        var inplanes: Int
        switch architecture.stem {
        case .standard:
            inplanes = 64
            _stem.wrappedValue = resnetConvolution(inputChannels, inplanes, kernelSize: 7, stride: 2, padding: 3)
        case let .deep(width), let .deepTiered(width):
            inplanes = width * 2
            var first = width
            if case .deepTiered = architecture.stem { first = 3 * (width / 4) }
            _stem.wrappedValue = Sequential([
                resnetConvolution(inputChannels, first, kernelSize: 3, stride: 2, padding: 1),
                BatchNorm(first), ActivationLayer(.relu),
                resnetConvolution(first, width, kernelSize: 3, padding: 1),
                BatchNorm(width), ActivationLayer(.relu),
                resnetConvolution(width, inplanes, kernelSize: 3, padding: 1),
            ])
        }
        bn1 = BatchNorm(inplanes)

        let rates = DropPath.linearRates(dropPathRate, count: architecture.layers.reduce(0, +))
        var blockIndex = 0
        var stages: [Sequential] = []
        let expansion = architecture.block.expansion
        for (stageIndex, (planes, count)) in zip(architecture.channels, architecture.layers).enumerated() {
            let stride = stageIndex == 0 ? 1 : 2
            var downsample: Sequential?
            if stride != 1 || inplanes != planes * expansion {
                let projection = resnetConvolution(inplanes, planes * expansion, kernelSize: 1,
                                                   stride: architecture.averageDownsample ? 1 : stride)
                if architecture.averageDownsample {
                    let pool: any UnaryLayer = stride == 1 ? Identity()
                        : AvgPool2d(kernelSize: 2, stride: stride, ceilMode: true, countIncludePad: false)
                    downsample = Sequential([pool, projection, BatchNorm(planes * expansion)])
                } else {
                    downsample = Sequential([projection, BatchNorm(planes * expansion)])
                }
            }
            var blocks: [any UnaryLayer] = []
            for i in 0..<count {
                let rate = rates[blockIndex]
                let s = i == 0 ? stride : 1
                let d = i == 0 ? downsample : nil
                switch architecture.block {
                case .basic:
                    blocks.append(ResNetBasicBlock(inputChannels: inplanes, planes: planes, stride: s, downsample: d,
                                                   dropPathRate: rate))
                case .bottleneck:
                    blocks.append(ResNetBottleneck(inputChannels: inplanes, planes: planes, stride: s, downsample: d,
                                                   dropPathRate: rate))
                }
                inplanes = planes * expansion
                blockIndex += 1
            }
            stages.append(Sequential(blocks))
        }
        (layer1, layer2, layer3, layer4) = (stages[0], stages[1], stages[2], stages[3])
        featureCount = inplanes
        fc = config.classes > 0 ? Linear(inputFeatures: inplanes, outputFeatures: config.classes) : Identity()
        super.init()
    }

    /// Stem (conv1, bn1, ReLU, 3×3/2 max pool) and the four stages: `[N, H/32, W/32, C]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        var y = relu(bn1(stem(x)))
        y = maxPool2d(y, kernel: (3, 3), stride: (2, 2), padding: .symmetric(1))
        for stage in stages { y = stage(y) }
        return y
    }

    /// Global average pool, dropout (training only, if `dropRate` > 0), then `fc`.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        var y = globalAvgPool2d(features)
        if let headDropout { y = headDropout(y) }
        return preLogits ? y : fc(y)
    }

    /// Replaces `fc` with a freshly initialised `Linear` (or an identity for 0 classes).
    public func resetClassifier(classes: Int) {
        fc = classes > 0 ? Linear(inputFeatures: featureCount, outputFeatures: classes) : Identity()
        fc.train(isTraining)
        config.classes = classes
    }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["fc."] }

    /// Folds every BatchNorm into the convolution before it, for a frozen eval-mode model (the
    /// USI teacher): the logits are unchanged, the BNs become identities and the convolutions
    /// gain biases (so the `state_dict` no longer matches timm's). Call after loading weights.
    public func foldBatchNorms() {
        if let conv = stem as? Conv2d {
            conv.foldBatchNorm(bn1)
        } else if let sequential = stem as? Sequential {
            resnetFoldShortcut(sequential)
            if let last = sequential.layers.last as? Conv2d { last.foldBatchNorm(bn1) }
        }
        for stage in stages {
            for block in stage.layers {
                (block as? ResNetBasicBlock)?.foldBatchNorms()
                (block as? ResNetBottleneck)?.foldBatchNorms()
            }
        }
    }
}
