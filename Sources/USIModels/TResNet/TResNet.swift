/// timm's TResNet (`timm/models/tresnet.py`, timm 1.0.31): `tresnet_m`, `tresnet_l`,
/// `tresnet_v2_l`. Space-to-depth stem, anti-aliased (blur-pool) downsampling, squeeze-and-
/// excitation in the first three stages, BatchNorm + leaky ReLU (`ConvNormAct`; recent timm uses
/// plain BN + activation instead of inplace-ABN), average-pool shortcuts, "fast" global pool.
///
/// Parameter names equal timm's: `body.conv1.conv.weight`, `body.conv1.bn.running_var`,
/// `body.layer1.0.conv1.conv.weight`, `body.layer1.0.se.fc1.bias`,
/// `body.layer2.0.downsample.1.conv.weight`, `head.fc.weight`.

/// A bias-free convolution with timm TResNet's init (`kaiming_normal_`, fan-out, leaky-ReLU
/// gain with slope 0, i.e. √2).
func tresnetConvolution(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, bias: Bool = false) -> Conv2d {
    let conv = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
                      padding: .symmetric((kernelSize - 1) / 2), bias: bias)
    conv.weight.assign(Initialization.kaimingNormal(conv.weight.shape, fan: outputChannels * kernelSize * kernelSize))
    return conv
}

/// Reflection padding by one pixel on every side of `[N, H, W, C]` (PyTorch `F.pad(mode='reflect')`),
/// composed from slices and concatenation so it has a gradient.
func tresnetReflectPadOne(_ x: Tensor) -> Tensor {
    let h = x.shape[1], w = x.shape[2]
    precondition(h >= 2 && w >= 2, "reflect padding needs at least 2×2 input, got \(x.shape)")
    let rows = concatenate([x.slice(axis: 1, 1..<2), x, x.slice(axis: 1, (h - 2)..<(h - 1))], axis: 1)
    return concatenate([rows.slice(axis: 2, 1..<2), rows, rows.slice(axis: 2, (w - 2)..<(w - 1))], axis: 2)
}

/// timm's `BlurPool2d` (filter size 3, stride 2, reflect padding): a fixed depthwise
/// [1, 2, 1]ᵀ[1, 2, 1] / 16 blur, then subsampling. Its filter is a non-persistent buffer in
/// timm, so it has no `state_dict` key here either.
public final class TResNetBlurPool: Module, UnaryLayer {
    /// The fixed `[C, 3, 3, 1]` depthwise blur: neither trained nor saved.
    @Constant var filter: Tensor
    let channels: Int

    /// Creates the layer for `channels` channels.
    public init(channels: Int) {
        self.channels = channels
        let taps: [Float] = [1, 2, 1]
        let kernel = (0..<9).map { taps[$0 / 3] * taps[$0 % 3] / 16 }
        filter = Tensor(shape: [channels, 3, 3, 1], values: (0..<channels).flatMap { _ in kernel })
        super.init()
    }

    /// Blurs and subsamples `[N, H, W, C]` by 2.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(tresnetReflectPadOne(x), weight: filter, stride: (2, 2), groups: channels)
    }
}

/// timm's `ConvNormAct` as TResNet uses it: convolution (stride 1 when anti-aliased), BN,
/// optional leaky ReLU, then the blur pool when strided. Keys `conv.weight`, `bn.*`.
public final class TResNetConvNormAct: Module, UnaryLayer {
    let conv: Conv2d
    let bn: BatchNorm
    let negativeSlope: Float?
    @ModuleInfo(key: "aa") var antiAlias: TResNetBlurPool?

    /// Creates the layer; `negativeSlope` nil means no activation; stride 2 adds the blur pool.
    public init(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, negativeSlope: Float?) {
        precondition(stride == 1 || kernelSize == 3, "TResNet strides only its anti-aliased 3×3 convolutions")
        conv = tresnetConvolution(inputChannels, outputChannels, kernelSize: kernelSize)
        bn = BatchNorm(outputChannels)
        self.negativeSlope = negativeSlope
        _antiAlias.wrappedValue = stride > 1 ? TResNetBlurPool(channels: outputChannels) : nil
        super.init()
    }

    /// Runs conv → BN → activation → blur pool.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = bn(conv(x))
        if let negativeSlope { y = leakyReLU(y, negativeSlope: negativeSlope) }
        if let antiAlias { y = antiAlias(y) }
        return y
    }
}

/// timm's `SEModule` with explicit reduction channels: global mean → 1×1 conv → ReLU →
/// 1×1 conv → sigmoid gate.
public final class TResNetSqueezeExcite: Module, UnaryLayer {
    let fc1: Conv2d, fc2: Conv2d

    /// Creates the module.
    public init(channels: Int, reducedChannels: Int) {
        fc1 = tresnetConvolution(channels, reducedChannels, kernelSize: 1, bias: true)
        fc2 = tresnetConvolution(reducedChannels, channels, kernelSize: 1, bias: true)
        super.init()
    }

    /// Scales each channel of `[N, H, W, C]` by its gate.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let squeezed = x.mean(axes: [1, 2], keepingAxes: true)
        return x * sigmoid(fc2(relu(fc1(squeezed))))
    }
}

/// The shortcut projection: 2×2 average pool (stride 2, ceil mode, padding excluded) when
/// strided, then a 1×1 `ConvNormAct` without activation.
func tresnetDownsample(_ inputChannels: Int, _ outputChannels: Int, stride: Int) -> Sequential {
    var layers: [any UnaryLayer] = []
    if stride == 2 { layers.append(AvgPool2d(kernelSize: 2, stride: 2, ceilMode: true, countIncludePad: false)) }
    layers.append(TResNetConvNormAct(inputChannels, outputChannels, kernelSize: 1, negativeSlope: nil))
    return Sequential(layers)
}

/// TResNet's basic block: 3×3 (anti-aliased when strided, leaky ReLU 1e-3), 3×3, SE,
/// residual, ReLU. The last BN weight starts at zero.
public final class TResNetBasicBlock: Module, UnaryLayer {
    // Declared in timm's registration order (the shortcut first).
    let downsample: Sequential?
    let conv1: TResNetConvNormAct, conv2: TResNetConvNormAct
    let se: TResNetSqueezeExcite?
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block.
    public init(inputChannels: Int, planes: Int, stride: Int, downsample: Sequential?, useSqueezeExcite: Bool,
                dropPathRate: Float = 0) {
        conv1 = TResNetConvNormAct(inputChannels, planes, kernelSize: 3, stride: stride, negativeSlope: 1e-3)
        conv2 = TResNetConvNormAct(planes, planes, kernelSize: 3, negativeSlope: nil)
        conv2.bn.weight?.fill(0)
        se = useSqueezeExcite ? TResNetSqueezeExcite(channels: planes, reducedChannels: max(planes / 4, 64)) : nil
        self.downsample = downsample
        dropPath = dropPathRate > 0 ? DropPath(probability: dropPathRate) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let shortcut = downsample?(x) ?? x
        var y = conv2(conv1(x))
        if let se { y = se(y) }
        if let dropPath { y = dropPath(y) }
        return relu(y + shortcut)
    }
}

/// TResNet's bottleneck: 1×1, 3×3 (anti-aliased when strided), SE on the narrow width, 1×1
/// expand (×4, last BN weight zero), residual, ReLU.
public final class TResNetBottleneck: Module, UnaryLayer {
    // Declared in timm's registration order (the shortcut first, SE before conv3).
    let downsample: Sequential?
    let conv1: TResNetConvNormAct, conv2: TResNetConvNormAct
    let se: TResNetSqueezeExcite?
    let conv3: TResNetConvNormAct
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block.
    public init(inputChannels: Int, planes: Int, stride: Int, downsample: Sequential?, useSqueezeExcite: Bool,
                dropPathRate: Float = 0) {
        conv1 = TResNetConvNormAct(inputChannels, planes, kernelSize: 1, negativeSlope: 1e-3)
        conv2 = TResNetConvNormAct(planes, planes, kernelSize: 3, stride: stride, negativeSlope: 1e-3)
        se = useSqueezeExcite ? TResNetSqueezeExcite(channels: planes, reducedChannels: max(planes * 4 / 8, 64)) : nil
        conv3 = TResNetConvNormAct(planes, planes * 4, kernelSize: 1, negativeSlope: nil)
        conv3.bn.weight?.fill(0)
        self.downsample = downsample
        dropPath = dropPathRate > 0 ? DropPath(probability: dropPathRate) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let shortcut = downsample?(x) ?? x
        var y = conv2(conv1(x))
        if let se { y = se(y) }
        y = conv3(y)
        if let dropPath { y = dropPath(y) }
        return relu(y + shortcut)
    }
}

/// Rearranges 4×4 pixel blocks into channels: `[N, H, W, C]` → `[N, H/4, W/4, 16·C]`, channel
/// order (row in block, column in block, channel) as timm's `SpaceToDepth` on NCHW.
public func tresnetSpaceToDepth(_ x: Tensor, blockSize: Int = 4) -> Tensor {
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    precondition(h % blockSize == 0 && w % blockSize == 0, "space-to-depth needs H and W divisible by \(blockSize), got \(x.shape)")
    return x.reshaped([n, h / blockSize, blockSize, w / blockSize, blockSize, c])
        .permuted([0, 1, 3, 2, 4, 5])
        .reshaped([n, h / blockSize, w / blockSize, blockSize * blockSize * c])
}

/// TResNet's `body`: space-to-depth, `conv1` (leaky ReLU 0.01), `layer1`…`layer4`.
public final class TResNetBody: Module, UnaryLayer {
    let conv1: TResNetConvNormAct
    let layer1: Sequential, layer2: Sequential, layer3: Sequential, layer4: Sequential

    /// The four stages in order.
    var layers: [Sequential] { [layer1, layer2, layer3, layer4] }

    init(conv1: TResNetConvNormAct, layers: [Sequential]) {
        precondition(layers.count == 4, "TResNet: four stages (layer1…layer4), got \(layers.count)")
        self.conv1 = conv1
        (layer1, layer2, layer3, layer4) = (layers[0], layers[1], layers[2], layers[3])
        super.init()
    }

    /// Runs the body.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        layers.reduce(conv1(tresnetSpaceToDepth(x))) { $1($0) }
    }
}

/// timm's `ClassifierHead` (fast average pool, dropout, `fc`).
public final class TResNetHead: Module {
    private(set) var fc: any UnaryLayer
    let features: Int

    init(features: Int, classes: Int) {
        self.features = features
        fc = TResNetHead.classifier(features, classes)
        super.init()
    }

    /// TResNet's init: weight normal(0, 0.01), bias PyTorch's default.
    static func classifier(_ features: Int, _ classes: Int) -> any UnaryLayer {
        guard classes > 0 else { return Identity() }
        let linear = Linear(inputFeatures: features, outputFeatures: classes)
        linear.weight.assign(Initialization.normal(linear.weight.shape, standardDeviation: 0.01))
        return linear
    }

    func reset(classes: Int) {
        fc = TResNetHead.classifier(features, classes)
        fc.train(isTraining)
    }
}

/// timm's TResNet.
public final class TResNet: Module, HeadedBackbone, BatchNormFoldable {
    /// An architecture: the arguments of timm's model function.
    public struct Architecture: Sendable, Hashable {
        /// Blocks per stage.
        public var layers: [Int]
        /// Width multiplier of the 64-channel base.
        public var widthFactor: Double
        /// TResNet v2: bottlenecks in every stage, width rounded to a multiple of 8.
        public var v2: Bool

        /// Creates an architecture description.
        public init(layers: [Int], widthFactor: Double = 1, v2: Bool = false) {
            self.layers = layers
            self.widthFactor = widthFactor
            self.v2 = v2
        }

        /// timm `tresnet_m`.
        public static let m = Architecture(layers: [3, 4, 11, 3])
        /// timm `tresnet_l`.
        public static let l = Architecture(layers: [4, 5, 18, 3], widthFactor: 1.2)
        /// timm `tresnet_v2_l`.
        public static let v2L = Architecture(layers: [3, 4, 23, 3], widthFactor: 1, v2: true)
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
    let body: TResNetBody
    let head: TResNetHead

    /// Builds the network with timm's initialisation (kaiming fan-out convolutions, zeroed last
    /// BN weight of every block, classifier weight normal(0, 0.01)). Input sizes must be
    /// multiples of 4 (space-to-depth).
    public init(config: BackboneConfig, architecture: Architecture, dropRate: Float = 0, dropPathRate: Float = 0) {
        self.config = config
        self.architecture = architecture
        self.dropRate = dropRate
        _headDropout.wrappedValue = dropRate > 0 ? Dropout(probability: dropRate) : nil
        var planes = Int(64 * architecture.widthFactor)
        if architecture.v2 { planes = planes / 8 * 8 }
        var inplanes = planes
        let conv1 = TResNetConvNormAct(config.inputChannels * 16, planes, kernelSize: 3, negativeSlope: 0.01)
        let rates = DropPath.linearRates(dropPathRate, count: architecture.layers.reduce(0, +))
        var blockIndex = 0
        var layers: [Sequential] = []
        for stage in 0..<4 {
            let bottleneck = stage >= 2 || architecture.v2
            let expansion = bottleneck ? 4 : 1
            let stagePlanes = planes << stage
            let stride = stage == 0 ? 1 : 2
            let useSqueezeExcite = stage < 3
            var downsample: Sequential?
            if stride != 1 || inplanes != stagePlanes * expansion {
                downsample = tresnetDownsample(inplanes, stagePlanes * expansion, stride: stride)
            }
            var blocks: [any UnaryLayer] = []
            for i in 0..<architecture.layers[stage] {
                let rate = rates[blockIndex]
                if bottleneck {
                    blocks.append(TResNetBottleneck(inputChannels: inplanes, planes: stagePlanes, stride: i == 0 ? stride : 1,
                                                    downsample: i == 0 ? downsample : nil,
                                                    useSqueezeExcite: useSqueezeExcite, dropPathRate: rate))
                } else {
                    blocks.append(TResNetBasicBlock(inputChannels: inplanes, planes: stagePlanes, stride: i == 0 ? stride : 1,
                                                    downsample: i == 0 ? downsample : nil,
                                                    useSqueezeExcite: useSqueezeExcite, dropPathRate: rate))
                }
                inplanes = stagePlanes * expansion
                blockIndex += 1
            }
            layers.append(Sequential(blocks))
        }
        body = TResNetBody(conv1: conv1, layers: layers)
        featureCount = inplanes
        head = TResNetHead(features: inplanes, classes: config.classes)
        super.init()
    }

    /// Space-to-depth stem and the four stages: `[N, H/32, W/32, C]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor { body(x) }

    /// Global average pool, dropout (training), `head.fc`.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        var y = globalAvgPool2d(features)
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

    /// Folds every BatchNorm into the convolution before it, for a frozen eval-mode model (the
    /// USI teacher): the logits are unchanged, the BNs become identities and the convolutions
    /// gain biases (so the `state_dict` no longer matches timm's). Call after loading weights.
    public func foldBatchNorms() {
        for (_, module) in namedModules() {
            if let layer = module as? TResNetConvNormAct { layer.conv.foldBatchNorm(layer.bn) }
        }
    }
}
