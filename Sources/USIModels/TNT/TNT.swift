import USICore

/// timm's `TNT` (Transformer in Transformer) as configured by `tnt_s_patch16_224`: every
/// 16 × 16 patch becomes 4 × 4 "pixel" tokens (7 × 7 stride-4 convolution per patch, plus
/// `pixel_pos`) handled by an inner transformer, and one patch token (projected from its
/// pixels, plus a class token and `patch_pos`) handled by an outer transformer; class-token
/// pooling after the final LayerNorm and a linear `head`.
///
/// Parameter names and order equal timm's `state_dict` (`cls_token`, `patch_pos`, `pixel_pos`,
/// `pixel_embed.proj.weight`, `norm1_proj.weight`, `proj.weight`, `norm2_proj.weight`,
/// `blocks.0.attn_in.qk.weight`, …, `norm.weight`, `head.weight`). `pixel_pos` keeps PyTorch's
/// `[1, innerDim, 4, 4]` layout in files and is permuted to channels-last when used.
///
/// `patch_pos` is built for `config.inputSize` (a ⌊size/16⌋² grid, as timm's `img_size`).
public final class TNT: Module, HeadedBackbone {
    /// The shape hyper-parameters of a TNT variant.
    public struct Architecture: Sendable, Hashable {
        /// Patch side in pixels.
        public var patchSize: Int
        /// Stride of the per-patch convolution (pixel grid side = ⌈patch/stride⌉).
        public var pixelStride: Int
        /// Patch-token width.
        public var embedDim: Int
        /// Pixel-token width.
        public var innerDim: Int
        /// Number of blocks.
        public var depth: Int
        /// Heads of the inner (pixel) attention.
        public var innerHeads: Int
        /// Heads of the outer (patch) attention.
        public var outerHeads: Int
        /// MLP hidden width over `embedDim` (the inner MLP is always 4×).
        public var mlpRatio: Double = 4

        /// Creates an architecture description.
        public init(patchSize: Int, pixelStride: Int, embedDim: Int, innerDim: Int, depth: Int, innerHeads: Int, outerHeads: Int) {
            self.patchSize = patchSize
            self.pixelStride = pixelStride
            self.embedDim = embedDim
            self.innerDim = innerDim
            self.depth = depth
            self.innerHeads = innerHeads
            self.outerHeads = outerHeads
        }

        /// TNT-S: `tnt_s_patch16_224`.
        public static let small = Architecture(patchSize: 16, pixelStride: 4, embedDim: 384, innerDim: 24, depth: 12,
                                               innerHeads: 4, outerHeads: 6)

        /// Pixel-grid side per patch.
        public var pixelSide: Int { (patchSize + pixelStride - 1) / pixelStride }
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The shape hyper-parameters.
    public let architecture: Architecture
    /// `[1, 1, C]` class token (`cls_token`).
    @Parameter(key: "cls_token") public private(set) var classToken: Tensor
    /// `[1, 1 + patches, C]` patch position embedding (`patch_pos`).
    @Parameter(key: "patch_pos") public private(set) var patchPosition: Tensor
    /// `[1, innerDim, s, s]` pixel position embedding (`pixel_pos`, PyTorch layout).
    @Parameter(key: "pixel_pos") public private(set) var pixelPosition: Tensor
    @ModuleInfo(key: "pixel_embed") var pixelEmbed: TNTPixelEmbed
    @ModuleInfo(key: "norm1_proj") var norm1Proj: LayerNorm
    let proj: Linear
    @ModuleInfo(key: "norm2_proj") var norm2Proj: LayerNorm
    /// The blocks (`blocks.i`).
    public let blocks: [TNTBlock]
    /// Final LayerNorm (`norm`).
    public let norm: LayerNorm
    /// The classifier (`head`), `nil` with 0 classes.
    public private(set) var head: Linear?

    /// Patches per side.
    public var gridSize: Int { config.inputSize / architecture.patchSize }

    /// Builds the model with timm's initialisation: `cls_token`, `patch_pos` and `pixel_pos`
    /// truncated normal σ 0.02, every Linear truncated normal σ 0.02 with zero bias,
    /// LayerNorms 1/0, the pixel convolution PyTorch's default.
    ///
    /// - Throws: ``ModelError`` when the input is smaller than one patch.
    public init(config: BackboneConfig, architecture: Architecture, dropPathRate: Float = 0) throws {
        guard config.inputSize >= architecture.patchSize else {
            throw ModelError(description: "\(config.architecture): input size \(config.inputSize) is smaller than the patch size \(architecture.patchSize)")
        }
        self.config = config
        self.architecture = architecture
        let grid = config.inputSize / architecture.patchSize
        let side = architecture.pixelSide, pixels = side * side
        let (dim, inner) = (architecture.embedDim, architecture.innerDim)
        _classToken.wrappedValue = Initialization.truncatedNormal([1, 1, dim], standardDeviation: 0.02)
        _patchPosition.wrappedValue = Initialization.truncatedNormal([1, 1 + grid * grid, dim], standardDeviation: 0.02)
        _pixelPosition.wrappedValue = Initialization.truncatedNormal([1, inner, side, side], standardDeviation: 0.02)
        _pixelEmbed.wrappedValue = TNTPixelEmbed(inputChannels: config.inputChannels, innerDim: inner,
                                                 patchSize: architecture.patchSize, stride: architecture.pixelStride)
        _norm1Proj.wrappedValue = LayerNorm(pixels * inner)
        proj = Linear(inputFeatures: pixels * inner, outputFeatures: dim)
        _norm2Proj.wrappedValue = LayerNorm(dim)
        blocks = DropPath.linearRates(dropPathRate, count: architecture.depth).enumerated().map { i, rate in
            TNTBlock(innerDim: inner, outerDim: dim, pixels: pixels, innerHeads: architecture.innerHeads,
                     outerHeads: architecture.outerHeads, mlpRatio: architecture.mlpRatio, dropPath: rate, seed: UInt64(i))
        }
        norm = LayerNorm(dim)
        super.init()
        TransformerInit.truncatedNormal(proj)
        for block in blocks {
            for linear in [block.attnIn.qk, block.attnIn.v, block.attnIn.proj, block.mlpIn.fc1, block.mlpIn.fc2, block.proj,
                           block.attnOut.qk, block.attnOut.v, block.attnOut.proj, block.mlp.fc1, block.mlp.fc2] {
                TransformerInit.truncatedNormal(linear)
            }
        }
        resetClassifier(classes: config.classes)
    }

    /// Patch tokens after the final norm, `[N, 1 + patches, C]` (class token first).
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.inputSize && x.shape[2] == config.inputSize
                     && x.shape[3] == config.inputChannels,
                     "\(config.architecture): input \(x.shape) must be [N, \(config.inputSize), \(config.inputSize), \(config.inputChannels)]")
        let batch = x.shape[0], patches = gridSize * gridSize
        let (dim, inner) = (architecture.embedDim, architecture.innerDim)
        let embedded = pixelEmbed.proj(pixelEmbed.tiles(x)) + pixelPosition.permuted([0, 2, 3, 1])
        var pixels = embedded.reshaped([batch * patches, embedded.shape[1] * embedded.shape[2], inner])
        let projected = norm2Proj(proj(norm1Proj(pixels.reshaped([batch, patches, pixels.shape[1] * inner]))))
        let cls = Tensor.zeros([batch, 1, dim]) + classToken
        var tokens = concatenate([cls, projected], axis: 1) + patchPosition
        for block in blocks { (pixels, tokens) = block(pixels: pixels, patches: tokens) }
        return norm(tokens)
    }

    /// Class-token pooling, then the head (or the pooled `[N, C]` with `preLogits`).
    public func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        let pooled = features.slice(axis: 1, 0..<1).reshaped([features.shape[0], features.shape[2]])
        if preLogits { return pooled }
        return head.map { $0(pooled) } ?? pooled
    }

    /// A new head for `classes` outputs (truncated normal σ 0.02, zero bias), or none for 0.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        if classes > 0 {
            let linear = Linear(inputFeatures: architecture.embedDim, outputFeatures: classes)
            TransformerInit.truncatedNormal(linear)
            linear.train(isTraining)
            head = linear
        } else {
            head = nil
        }
    }

    /// timm's `no_weight_decay`: the position embeddings and the class token.
    public var noWeightDecay: Set<String> { ["patch_pos", "pixel_pos", "cls_token"] }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["head."] }
}
