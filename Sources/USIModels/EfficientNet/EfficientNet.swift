/// EfficientNet ("EfficientNet: Rethinking Model Scaling for CNNs", Tan & Le 2019) and
/// EfficientNet-Lite as timm builds them (timm/models/efficientnet.py): a stem conv, MBConv
/// blocks, a 1×1 `conv_head` with BN and activation, global average pooling and `classifier`.
///
/// The `tf_` variants use TensorFlow "SAME" padding and BN epsilon 1e-3, so TF-trained weights
/// give TF's outputs. Parameter names, shapes and initialisation equal timm's.
public final class EfficientNet: Module, HeadedBackbone {
    /// An architecture: the arguments of timm's `_gen_efficientnet*`, at width and depth 1.0.
    public struct Architecture: Sendable, Hashable {
        /// timm's block strings per stage.
        public var stages: [[String]]
        /// The network's activation.
        public var activation: Activation
        /// Squeeze-excitation style (ratios come from the block strings).
        public var squeezeExcite: EfficientNetSqueezeExciteStyle = .efficientNet
        /// Convolution padding rule.
        public var padding: EfficientNetPadding = .symmetric
        /// BatchNorm settings.
        public var normalization: EfficientNetNormalization = .pytorch
        /// Stem width.
        public var stemChannels: Int = 32
        /// Width of `conv_head` (timm's `num_features`).
        public var headChannels: Int = 1280

        /// timm `efficientnet_b0`.
        public static let b0 = Architecture(stages: [
            ["ds_r1_k3_s1_e1_c16_se0.25"],
            ["ir_r2_k3_s2_e6_c24_se0.25"],
            ["ir_r2_k5_s2_e6_c40_se0.25"],
            ["ir_r3_k3_s2_e6_c80_se0.25"],
            ["ir_r3_k5_s1_e6_c112_se0.25"],
            ["ir_r4_k5_s2_e6_c192_se0.25"],
            ["ir_r1_k3_s1_e6_c320_se0.25"],
        ], activation: .silu)

        /// timm `efficientnet_lite0`: no SE, ReLU6.
        public static let lite0 = Architecture(stages: [
            ["ds_r1_k3_s1_e1_c16"],
            ["ir_r2_k3_s2_e6_c24"],
            ["ir_r2_k5_s2_e6_c40"],
            ["ir_r3_k3_s2_e6_c80"],
            ["ir_r3_k5_s1_e6_c112"],
            ["ir_r4_k5_s2_e6_c192"],
            ["ir_r1_k3_s1_e6_c320"],
        ], activation: .relu6)

        /// timm `tf_efficientnet_lite0`: `lite0` with TF "SAME" padding and BN epsilon 1e-3.
        public static let tfLite0: Architecture = {
            var a = lite0
            a.padding = .same
            a.normalization = .tensorflow
            return a
        }()
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The architecture.
    public let architecture: Architecture
    /// Channels of the features (`conv_head` output, timm's `num_features`).
    public let featureCount: Int
    /// Dropout probability before the classifier (timm's `drop_rate`, default 0).
    public let dropRate: Float

    @ModuleInfo(key: "head_drop") private var headDropout: Dropout?
    let conv_stem: Conv2d
    let bn1: BatchNorm
    let blocks: Sequential
    let conv_head: Conv2d
    let bn2: BatchNorm
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
        let norm = architecture.normalization
        let stem = architecture.stemChannels
        conv_stem = efficientNetConvolution(config.inputChannels, stem, kernelSize: 3, stride: 2, padding: architecture.padding)
        bn1 = norm.make(stem)
        let builder = EfficientNetBuilder(roundChannels: { efficientNetRoundChannels($0) }, activation: architecture.activation,
                                          padding: architecture.padding, normalization: norm,
                                          squeezeExcite: architecture.squeezeExcite, dropPathRate: dropPathRate)
        let built = try builder.build(inputChannels: stem, stages: architecture.stages)
        blocks = Sequential(built.stages)
        featureCount = architecture.headChannels
        conv_head = efficientNetConvolution(built.outputChannels, featureCount, kernelSize: 1, padding: architecture.padding)
        bn2 = norm.make(featureCount)
        classifier = config.classes > 0 ? Linear(inputFeatures: featureCount, outputFeatures: config.classes) : Identity()
        super.init()
        efficientNetInitializeWeights(self)
    }

    /// Stem, blocks and head conv: `[N, H, W, inputChannels]` → `[N, H/32, W/32, featureCount]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        let act = architecture.activation
        let y = blocks(act(bn1(conv_stem(x))))
        return act(bn2(conv_head(y)))
    }

    /// Global average pool (the pre-logits, `[N, featureCount]`) → dropout → classifier.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        var x = globalAvgPool2d(features)
        if let headDropout { x = headDropout(x) }
        return preLogits ? x : classifier(x)
    }

    /// Replaces the classifier with a fresh `Linear(featureCount, classes)` (PyTorch's default
    /// initialisation, as timm's `reset_classifier`); 0 removes it.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        classifier = classes > 0 ? Linear(inputFeatures: featureCount, outputFeatures: classes) : Identity()
        classifier.train(isTraining)
    }

    /// The classifier's keys.
    public var classifierPrefixes: [String] { ["classifier."] }
}
