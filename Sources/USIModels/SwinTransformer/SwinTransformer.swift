import USICore

/// timm's `SwinTransformer` (1.0.x) as configured by `swin_tiny_patch4_window7_224` and
/// `swin_small_patch4_window7_224`: a patch-4 embedding with LayerNorm, four stages of
/// window-attention blocks (every second one on windows shifted by half a window, with
/// relative-position biases), patch merging at the start of stages 1–3, a final LayerNorm,
/// average pooling and `head.fc`.
///
/// Parameter names and order equal timm's `state_dict` (`patch_embed.proj.weight`,
/// `layers.0.blocks.1.attn.relative_position_bias_table`, `layers.1.downsample.reduction.weight`,
/// `norm.weight`, `head.fc.weight`, …); the index tables and masks are not state, as in timm.
///
/// Another input size changes the model as timm's `img_size` does: stage `i` runs on a
/// ⌈grid/2ⁱ⌉ token grid (grid = ⌊size/4⌋); a stage whose grid is no larger than the window
/// uses one unshifted window of the grid's size, so its `relative_position_bias_table` shrinks
/// to `(2r − 1)²` rows; grids that are not a multiple of the window are zero-padded.
public final class SwinTransformer: Module, HeadedBackbone {
    /// The shape hyper-parameters of a Swin variant.
    public struct Architecture: Sendable, Hashable {
        /// Patch size in pixels.
        public var patchSize: Int
        /// Target window side in tokens.
        public var window: Int
        /// Width of the first stage (doubled at every stage).
        public var embedDim: Int
        /// Blocks per stage.
        public var depths: [Int]
        /// Attention heads per stage.
        public var heads: [Int]
        /// MLP hidden width over the block width.
        public var mlpRatio: Double = 4

        /// Creates an architecture description.
        public init(patchSize: Int, window: Int, embedDim: Int, depths: [Int], heads: [Int]) {
            self.patchSize = patchSize
            self.window = window
            self.embedDim = embedDim
            self.depths = depths
            self.heads = heads
        }

        /// Swin-T: `swin_tiny_patch4_window7_224`.
        public static let tiny = Architecture(patchSize: 4, window: 7, embedDim: 96, depths: [2, 2, 6, 2], heads: [3, 6, 12, 24])
        /// Swin-S: `swin_small_patch4_window7_224`.
        public static let small = Architecture(patchSize: 4, window: 7, embedDim: 96, depths: [2, 2, 18, 2], heads: [3, 6, 12, 24])

        /// Width of stage `i`.
        public func width(_ i: Int) -> Int { embedDim << i }
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The shape hyper-parameters.
    public let architecture: Architecture
    /// Patch embedding (`patch_embed`).
    @ModuleInfo(key: "patch_embed") public private(set) var patchEmbed: SwinPatchEmbed
    /// The four stages (`layers.i`).
    public let layers: [SwinTransformerStage]
    /// Final LayerNorm (`norm`).
    public let norm: LayerNorm
    /// The classifier (`head.fc`), `nil` with 0 classes.
    public private(set) var head: SwinClassifierHead?

    /// The token grid side of each stage for `inputSize` (timm: ⌊size/patch⌋, then halved
    /// rounding up at every patch merging).
    public static func stageResolutions(inputSize: Int, architecture: Architecture) -> [Int] {
        var r = inputSize / architecture.patchSize
        return architecture.depths.indices.map { i in
            if i > 0 { r = (r + 1) / 2 }
            return r
        }
    }

    /// Builds the model with timm's initialisation: every Linear truncated normal σ 0.02 with
    /// zero bias, bias tables truncated normal σ 0.02, LayerNorms 1/0, the patch convolution
    /// PyTorch's default. `dropPathRate` is the stochastic depth at the last block (timm
    /// increases it linearly over the blocks; the zoo builds with 0, timm's default is 0.1).
    ///
    /// - Throws: ``ModelError`` when the input is smaller than one patch.
    public init(config: BackboneConfig, architecture: Architecture, dropPathRate: Float = 0) throws {
        guard config.inputSize >= architecture.patchSize else {
            throw ModelError(description: "\(config.architecture): input size \(config.inputSize) is smaller than the patch size \(architecture.patchSize)")
        }
        self.config = config
        self.architecture = architecture
        _patchEmbed.wrappedValue = SwinPatchEmbed(inputChannels: config.inputChannels, embedDim: architecture.embedDim,
                                                  patchSize: architecture.patchSize)
        let resolutions = SwinTransformer.stageResolutions(inputSize: config.inputSize, architecture: architecture)
        var rates = DropPath.linearRates(dropPathRate, count: architecture.depths.reduce(0, +))[...]
        var stages: [SwinTransformerStage] = []
        for (i, depth) in architecture.depths.enumerated() {
            let dim = architecture.width(i)
            let downsample = i > 0 ? SwinPatchMerging(dim: architecture.width(i - 1), outDim: dim) : nil
            let blocks = (0..<depth).map { j in
                SwinTransformerBlock(dim: dim, heads: architecture.heads[i], resolution: resolutions[i],
                                     targetWindow: architecture.window, shifted: j % 2 == 1, mlpRatio: architecture.mlpRatio,
                                     dropPath: rates.popFirst()!, seed: UInt64(100 * i + j))
            }
            stages.append(SwinTransformerStage(downsample: downsample, blocks: blocks))
        }
        layers = stages
        norm = LayerNorm(architecture.width(architecture.depths.count - 1))
        super.init()
        for stage in layers {
            for block in stage.blocks {
                TransformerInit.truncatedNormal(block.attn.qkv)
                TransformerInit.truncatedNormal(block.attn.proj)
                TransformerInit.truncatedNormal(block.mlp.fc1)
                TransformerInit.truncatedNormal(block.mlp.fc2)
            }
            if let reduction = stage.downsample?.reduction { TransformerInit.truncatedNormal(reduction) }
        }
        resetClassifier(classes: config.classes)
    }

    /// The last stage's grid after the final norm, `[N, r, r, C]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.inputSize && x.shape[2] == config.inputSize
                     && x.shape[3] == config.inputChannels,
                     "\(config.architecture): input \(x.shape) must be [N, \(config.inputSize), \(config.inputSize), \(config.inputChannels)]")
        var h = patchEmbed(x)
        for stage in layers { h = stage(h) }
        return norm(h)
    }

    /// Average over the grid, then `head.fc` (or the pooled `[N, C]` with `preLogits`).
    public func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        let pooled = features.mean(axes: [1, 2])
        if preLogits { return pooled }
        return head.map { $0.fc(pooled) } ?? pooled
    }

    /// A new `head.fc` for `classes` outputs (truncated normal σ 0.02, zero bias), or none for 0.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        if classes > 0 {
            let linear = Linear(inputFeatures: architecture.width(architecture.depths.count - 1), outputFeatures: classes)
            TransformerInit.truncatedNormal(linear)
            linear.train(isTraining)
            head = SwinClassifierHead(linear)
        } else {
            head = nil
        }
    }

    /// timm's `no_weight_decay`: every `relative_position_bias_table`.
    public var noWeightDecay: Set<String> {
        Set(namedParameters().map(\.name).filter { $0.contains("relative_position_bias_table") })
    }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["head.fc."] }
}
