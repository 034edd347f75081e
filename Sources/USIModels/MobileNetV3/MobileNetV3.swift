/// MobileNetV3 ("Searching for MobileNetV3", Howard et al. 2019) as timm builds it
/// (timm/models/mobilenetv3.py): a stem conv, EfficientNet-style blocks with hard-swish and
/// hard-sigmoid squeeze-excitation, and the "efficient head" — global pool → 1×1 `conv_head`
/// with bias (no BN) → hard-swish → flatten → `classifier`.
///
/// Parameter names, shapes and initialisation equal timm's, so a timm `state_dict` loads
/// strictly and ours loads back into timm.
public final class MobileNetV3: Module, HeadedBackbone {
    /// An architecture: the arguments of timm's `_gen_mobilenet_v3`.
    public struct Architecture: Sendable, Hashable {
        /// timm's block strings per stage.
        public var stages: [[String]]
        /// Channel multiplier (`0.5` for `_050`).
        public var channelMultiplier: Double
        /// Width of `conv_head` (timm's `num_features`: 1024 small, 1280 large).
        public var headChannels: Int
        /// The network's default activation.
        public var activation: Activation = .hardSwish

        /// `mobilenetv3_small_*` stages.
        public static let smallStages = [
            ["ds_r1_k3_s2_e1_c16_se0.25_nre"],
            ["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
            ["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"],
            ["ir_r2_k5_s1_e3_c48_se0.25"],
            ["ir_r3_k5_s2_e6_c96_se0.25"],
            ["cn_r1_k1_s1_c576"],
        ]
        /// `mobilenetv3_large_*` stages.
        public static let largeStages = [
            ["ds_r1_k3_s1_e1_c16_nre"],
            ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
            ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
            ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
            ["ir_r2_k3_s1_e6_c112_se0.25"],
            ["ir_r3_k5_s2_e6_c160_se0.25"],
            ["cn_r1_k1_s1_c960"],
        ]

        /// timm `mobilenetv3_small_050`.
        public static let small050 = Architecture(stages: smallStages, channelMultiplier: 0.5, headChannels: 1024)
        /// timm `mobilenetv3_small_100`.
        public static let small100 = Architecture(stages: smallStages, channelMultiplier: 1.0, headChannels: 1024)
        /// timm `mobilenetv3_large_100`.
        public static let large100 = Architecture(stages: largeStages, channelMultiplier: 1.0, headChannels: 1280)
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The architecture.
    public let architecture: Architecture
    /// Channels of the last block (timm's `num_features`, the output of ``forwardFeatures(_:)``).
    public let featureCount: Int
    /// Width of the pre-logits features (`conv_head` output).
    public let headChannels: Int
    /// Dropout probability before the classifier (timm's `drop_rate`, default 0).
    public let dropRate: Float

    @ModuleInfo(key: "head_drop") private var headDropout: Dropout?
    let conv_stem: Conv2d
    let bn1: BatchNorm
    let blocks: Sequential
    let conv_head: Conv2d
    private(set) var classifier: any UnaryLayer

    /// Builds the network for `config` with timm's initialisation (`_init_weight_goog`).
    /// - Parameters:
    ///   - dropRate: dropout before the classifier (timm `drop_rate`).
    ///   - dropPathRate: stochastic depth, linearly increasing over the blocks (timm `drop_path_rate`).
    public init(config: BackboneConfig, architecture: Architecture, dropRate: Float = 0, dropPathRate: Float = 0) throws {
        self.config = config
        self.architecture = architecture
        self.dropRate = dropRate
        _headDropout.wrappedValue = dropRate > 0 ? Dropout(probability: dropRate) : nil
        let multiplier = architecture.channelMultiplier
        let round = { (c: Int) in efficientNetRoundChannels(c, multiplier: multiplier) }
        // timm: `fix_stem = channel_multiplier < 0.75`.
        let stem = multiplier < 0.75 ? 16 : round(16)
        conv_stem = efficientNetConvolution(config.inputChannels, stem, kernelSize: 3, stride: 2, padding: .symmetric)
        bn1 = BatchNorm(stem)
        let builder = EfficientNetBuilder(roundChannels: round, activation: architecture.activation, padding: .symmetric,
                                          normalization: .pytorch, squeezeExcite: .mobileNetV3, dropPathRate: dropPathRate)
        let built = try builder.build(inputChannels: stem, stages: architecture.stages)
        blocks = Sequential(built.stages)
        featureCount = built.outputChannels
        headChannels = architecture.headChannels
        conv_head = Conv2d(inputChannels: featureCount, outputChannels: headChannels, kernelSize: 1)
        classifier = config.classes > 0 ? Linear(inputFeatures: headChannels, outputFeatures: config.classes) : Identity()
        super.init()
        efficientNetInitializeWeights(self)
    }

    /// Stem and blocks: `[N, H, W, inputChannels]` → `[N, H/32, W/32, featureCount]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        blocks(architecture.activation(bn1(conv_stem(x))))
    }

    /// Global pool → `conv_head` → hard-swish (the pre-logits, `[N, headChannels]`) → dropout → classifier.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        let n = features.shape[0]
        let pooled = globalAvgPool2d(features).reshaped([n, 1, 1, featureCount])
        var x = architecture.activation(conv_head(pooled)).reshaped([n, headChannels])
        if preLogits { return x }
        if let headDropout { x = headDropout(x) }
        return classifier(x)
    }

    /// Replaces the classifier with a fresh `Linear(headChannels, classes)` (PyTorch's default
    /// initialisation, as timm's `reset_classifier`); 0 removes it.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        classifier = classes > 0 ? Linear(inputFeatures: headChannels, outputFeatures: classes) : Identity()
        classifier.train(isTraining)
    }

    /// The classifier's keys.
    public var classifierPrefixes: [String] { ["classifier."] }
}
