import Foundation
import USICore

/// ResMLP's `Affine` normalisation: `beta + alpha · x` with `alpha`, `beta` of shape `[1, 1, C]`.
public final class MLPAffine: Module, UnaryLayer {
    /// `[1, 1, C]` scale (`alpha`), initialised to 1.
    @Parameter public private(set) var alpha: Tensor
    /// `[1, 1, C]` shift (`beta`), initialised to 0.
    @Parameter public private(set) var beta: Tensor

    /// Creates the layer.
    public init(_ dim: Int) {
        alpha = Tensor(shape: [1, 1, dim], repeating: 1)
        beta = Tensor(shape: [1, 1, dim], repeating: 0)
        super.init()
    }

    /// Applies the affine map to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { alpha * x + beta }
}

/// timm's `MixerBlock`: token mixing (an MLP across the patch axis) and channel mixing, each
/// pre-normed with LayerNorm (ε 1e-6) and residual.
public final class MixerBlock: Module, UnaryLayer {
    let norm1: LayerNorm
    @ModuleInfo(key: "mlp_tokens") var mlpTokens: TransformerMlp
    let norm2: LayerNorm
    @ModuleInfo(key: "mlp_channels") var mlpChannels: TransformerMlp
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block for `tokens` patches of width `dim` (token MLP 0.5·dim, channel MLP 4·dim).
    public init(dim: Int, tokens: Int, mlpRatio: (Double, Double) = (0.5, 4), dropPath: Float = 0, seed: UInt64 = 0) {
        norm1 = LayerNorm(dim, epsilon: 1e-6)
        _mlpTokens.wrappedValue = TransformerMlp(inputFeatures: tokens, hiddenFeatures: Int(mlpRatio.0 * Double(dim)))
        norm2 = LayerNorm(dim, epsilon: 1e-6)
        _mlpChannels.wrappedValue = TransformerMlp(inputFeatures: dim, hiddenFeatures: Int(mlpRatio.1 * Double(dim)))
        self.dropPath = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        super.init()
    }

    /// Applies the block to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let mixed = mlpTokens(norm1(x).transposed(1, 2)).transposed(1, 2)
        let y = x + (dropPath.map { $0(mixed) } ?? mixed)
        let channels = mlpChannels(norm2(y))
        return y + (dropPath.map { $0(channels) } ?? channels)
    }
}

/// timm's ResMLP `ResBlock`: Affine pre-norms, a linear token mixer and a channel MLP, each
/// scaled by a learned per-channel layer scale (`ls1`, `ls2`, initialised to `initValues`).
public final class ResMLPBlock: Module, UnaryLayer {
    let norm1: MLPAffine
    @ModuleInfo(key: "linear_tokens") var linearTokens: Linear
    let norm2: MLPAffine
    @ModuleInfo(key: "mlp_channels") var mlpChannels: TransformerMlp
    @Parameter(key: "ls1") var layerScale1: Tensor
    @Parameter(key: "ls2") var layerScale2: Tensor
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block for `tokens` patches of width `dim`.
    public init(dim: Int, tokens: Int, mlpRatio: Double = 4, initValues: Float = 1e-4, dropPath: Float = 0, seed: UInt64 = 0) {
        norm1 = MLPAffine(dim)
        _linearTokens.wrappedValue = Linear(inputFeatures: tokens, outputFeatures: tokens)
        norm2 = MLPAffine(dim)
        _mlpChannels.wrappedValue = TransformerMlp(inputFeatures: dim, hiddenFeatures: Int(mlpRatio * Double(dim)))
        _layerScale1.wrappedValue = Tensor(shape: [dim], repeating: initValues)
        _layerScale2.wrappedValue = Tensor(shape: [dim], repeating: initValues)
        self.dropPath = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        super.init()
    }

    /// Applies the block to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let mixed = layerScale1 * linearTokens(norm1(x).transposed(1, 2)).transposed(1, 2)
        let y = x + (dropPath.map { $0(mixed) } ?? mixed)
        let channels = layerScale2 * mlpChannels(norm2(y))
        return y + (dropPath.map { $0(channels) } ?? channels)
    }
}

/// timm's `MlpMixer` class, which builds both MLP-Mixer (`mixer_*`) and ResMLP (`resmlp_*`):
/// a patch-embedding stem, `blocks`, a final norm, average pooling over tokens and a head.
///
/// The token-mixing layers are as wide as the number of patches, so another input size
/// changes their shapes: such a model trains from scratch but cannot load weights made for
/// 224 px (timm behaves the same with `img_size`).
public final class MlpMixer: Module, HeadedBackbone {
    /// Which block type the model stacks.
    public enum Kind: Sendable, Hashable {
        /// MLP-Mixer: LayerNorm, token MLP (0.5·C) and channel MLP (4·C).
        case mixer
        /// ResMLP: Affine norms, linear token mixing, channel MLP (4·C), layer scale.
        case resMLP(initValues: Float)
    }

    /// The shape hyper-parameters of a variant.
    public struct Architecture: Sendable, Hashable {
        /// Patch size in pixels.
        public var patchSize: Int
        /// Token width.
        public var embedDim: Int
        /// Number of blocks.
        public var depth: Int
        /// Block type.
        public var kind: Kind

        /// Creates an architecture description.
        public init(patchSize: Int, embedDim: Int, depth: Int, kind: Kind) {
            self.patchSize = patchSize
            self.embedDim = embedDim
            self.depth = depth
            self.kind = kind
        }
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The shape hyper-parameters.
    public let architecture: Architecture
    /// Patch embedding (`stem`).
    public let stem: TransformerPatchEmbed
    /// The blocks (`blocks.i`).
    public let blocks: [any UnaryLayer]
    /// Final norm (`norm`): LayerNorm for Mixer, Affine for ResMLP.
    public let norm: any UnaryLayer
    /// The classifier (`head`), `nil` with 0 classes.
    public private(set) var head: Linear?

    /// Builds the model with timm's `_init_weights` (non-flax): Linear weights Xavier-uniform
    /// with bias zero (normal σ 1e-6 inside `mlp` modules), the stem convolution LeCun-normal
    /// with zero bias, LayerNorm 1/0, the head zeros.
    ///
    /// - Throws: ``ModelError`` when the input size is not a multiple of the patch size.
    public init(config: BackboneConfig, architecture: Architecture, dropPathRate: Float = 0) throws {
        let grid = try TransformerPatchEmbed.gridSize(for: config, patchSize: architecture.patchSize)
        self.config = config
        self.architecture = architecture
        let dim = architecture.embedDim
        stem = TransformerPatchEmbed(inputChannels: config.inputChannels, embedDim: dim, patchSize: architecture.patchSize)
        switch architecture.kind {
        case .mixer:
            blocks = (0..<architecture.depth).map { MixerBlock(dim: dim, tokens: grid * grid, dropPath: dropPathRate, seed: UInt64($0)) }
            norm = LayerNorm(dim, epsilon: 1e-6)
        case let .resMLP(initValues):
            blocks = (0..<architecture.depth).map {
                ResMLPBlock(dim: dim, tokens: grid * grid, initValues: initValues, dropPath: dropPathRate, seed: UInt64($0))
            }
            norm = MLPAffine(dim)
        }
        super.init()
        let stemFanIn = stem.proj.weight.count / dim
        TransformerInit.lecunNormal(stem.proj.weight, fanIn: stemFanIn)
        stem.proj.bias?.fill(0)
        for (name, module) in namedModules() {
            guard let linear = module as? Linear else { continue }
            TransformerInit.xavierUniform(linear.weight, fanIn: linear.inputFeatures, fanOut: linear.outputFeatures)
            if let bias = linear.bias {
                bias.assign(name.contains("mlp") ? Initialization.normal(bias.shape, standardDeviation: 1e-6)
                                                 : Tensor.zeros(bias.shape))
            }
        }
        resetClassifier(classes: config.classes)
    }

    /// Tokens after the final norm, `[N, gridH·gridW, C]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.inputSize && x.shape[2] == config.inputSize
                     && x.shape[3] == config.inputChannels,
                     "\(config.architecture): input \(x.shape) must be [N, \(config.inputSize), \(config.inputSize), \(config.inputChannels)]")
        var h = stem(x)
        for block in blocks { h = block(h) }
        return norm(h)
    }

    /// Average over tokens, then the head (or the pooled `[N, C]` with `preLogits`).
    public func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        let pooled = features.mean(axes: [1])
        if preLogits { return pooled }
        return head.map { $0(pooled) } ?? pooled
    }

    /// A new head for `classes` outputs (zeros, as timm's Mixer init), or none for 0.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        if classes > 0 {
            let linear = Linear(inputFeatures: architecture.embedDim, outputFeatures: classes)
            linear.weight.fill(0)
            linear.bias?.fill(0)
            linear.train(isTraining)
            head = linear
        } else {
            head = nil
        }
    }

    /// timm's Mixer defines no `no_weight_decay` names.
    public var noWeightDecay: Set<String> { [] }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["head."] }
}
