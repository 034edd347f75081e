import Foundation
import USICore

/// timm's `VisionTransformer` as configured by `deit_*` and `vit_*_patch16_224`: patch
/// embedding, class token, learned absolute position embedding, pre-norm blocks, final
/// LayerNorm, class-token pooling and a linear head.
///
/// Parameter names equal timm's `state_dict` keys (`cls_token`, `pos_embed`,
/// `patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, `norm.weight`, `head.weight`, …).
///
/// The position embedding is built for `config.inputSize` (a `(size/patch)²` grid); inputs
/// must have that size. Weights trained at another size load through
/// ``loadResamplingPositionEmbedding(_:strict:skippingMismatchedPrefixes:)``, which resamples
/// `pos_embed` as timm's `resample_abs_pos_embed` does.
public final class VisionTransformer: Module, HeadedBackbone {
    /// The shape hyper-parameters of a ViT variant.
    public struct Architecture: Sendable, Hashable {
        /// Patch size in pixels.
        public var patchSize: Int
        /// Token width.
        public var embedDim: Int
        /// Number of blocks.
        public var depth: Int
        /// Attention heads per block.
        public var heads: Int
        /// MLP hidden width over `embedDim`.
        public var mlpRatio: Double = 4
        /// Bias on the `qkv` projection.
        public var qkvBias: Bool = true

        /// Creates an architecture description.
        public init(patchSize: Int, embedDim: Int, depth: Int, heads: Int, mlpRatio: Double = 4, qkvBias: Bool = true) {
            self.patchSize = patchSize
            self.embedDim = embedDim
            self.depth = depth
            self.heads = heads
            self.mlpRatio = mlpRatio
            self.qkvBias = qkvBias
        }

        /// DeiT-Tiny / ViT-Tiny: patch 16, width 192, 12 blocks, 3 heads.
        public static let tiny16 = Architecture(patchSize: 16, embedDim: 192, depth: 12, heads: 3)
        /// DeiT-Small / ViT-Small: patch 16, width 384, 12 blocks, 6 heads.
        public static let small16 = Architecture(patchSize: 16, embedDim: 384, depth: 12, heads: 6)
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The shape hyper-parameters.
    public let architecture: Architecture
    /// Patch embedding (`patch_embed`).
    @ModuleInfo(key: "patch_embed") public private(set) var patchEmbed: TransformerPatchEmbed
    /// `[1, 1, C]` class token (`cls_token`).
    @Parameter(key: "cls_token") public private(set) var classToken: Tensor
    /// `[1, 1 + gridH·gridW, C]` position embedding (`pos_embed`).
    @Parameter(key: "pos_embed") public private(set) var positionEmbedding: Tensor
    /// The transformer blocks (`blocks.i`).
    public let blocks: [TransformerBlock]
    /// Final LayerNorm (`norm`).
    public let norm: LayerNorm
    /// The classifier (`head`), `nil` with 0 classes.
    public private(set) var head: Linear?

    /// Patches per side.
    public var gridSize: Int { config.inputSize / architecture.patchSize }

    /// Builds the model with timm's initialisation (weight_init ''): `pos_embed` truncated
    /// normal σ 0.02, `cls_token` normal σ 1e-6, every Linear truncated normal σ 0.02 with zero
    /// bias, LayerNorms 1/0, the patch convolution PyTorch's default.
    ///
    /// - Throws: ``ModelError`` when the input size is not a multiple of the patch size.
    public init(config: BackboneConfig, architecture: Architecture, dropPathRate: Float = 0) throws {
        let grid = try TransformerPatchEmbed.gridSize(for: config, patchSize: architecture.patchSize)
        self.config = config
        self.architecture = architecture
        let dim = architecture.embedDim
        _patchEmbed.wrappedValue = TransformerPatchEmbed(inputChannels: config.inputChannels, embedDim: dim, patchSize: architecture.patchSize)
        _classToken.wrappedValue = Initialization.normal([1, 1, dim], standardDeviation: 1e-6)
        _positionEmbedding.wrappedValue = Initialization.truncatedNormal([1, 1 + grid * grid, dim], standardDeviation: 0.02)
        blocks = DropPath.linearRates(dropPathRate, count: architecture.depth).enumerated().map { i, rate in
            TransformerBlock(dim: dim, heads: architecture.heads, mlpRatio: architecture.mlpRatio,
                             qkvBias: architecture.qkvBias, dropPath: rate, seed: UInt64(i))
        }
        norm = LayerNorm(dim, epsilon: 1e-6)
        super.init()
        for block in blocks {
            TransformerInit.truncatedNormal(block.attn.qkv)
            TransformerInit.truncatedNormal(block.attn.proj)
            TransformerInit.truncatedNormal(block.mlp.fc1)
            TransformerInit.truncatedNormal(block.mlp.fc2)
        }
        resetClassifier(classes: config.classes)
    }

    /// Tokens after the final norm: `[N, 1 + gridH·gridW, C]` (class token first).
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.inputSize && x.shape[2] == config.inputSize
                     && x.shape[3] == config.inputChannels,
                     "\(config.architecture): input \(x.shape) must be [N, \(config.inputSize), \(config.inputSize), \(config.inputChannels)]")
        let tokens = patchEmbed(x)
        let batch = tokens.shape[0]
        let cls = Tensor.zeros([batch, 1, architecture.embedDim]) + classToken
        var h = concatenate([cls, tokens], axis: 1) + positionEmbedding
        for block in blocks { h = block(h) }
        return norm(h)
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

    /// timm's `no_weight_decay`: `pos_embed` and `cls_token`.
    public var noWeightDecay: Set<String> { ["pos_embed", "cls_token"] }

    /// The classifier's key prefix.
    public var classifierPrefixes: [String] { ["head."] }

    /// Loads a timm `state_dict`, first resampling its `pos_embed` to this model's grid when
    /// it was saved for another input size (as timm's `checkpoint_filter_fn` does with
    /// `resample_abs_pos_embed`: bicubic, antialiased, class token kept). Otherwise the same
    /// as ``Module/load(_:strict:skippingMismatchedPrefixes:keyPrefix:)``.
    @discardableResult
    public func loadResamplingPositionEmbedding(_ file: SafeTensorsFile, strict: Bool = true,
                                                skippingMismatchedPrefixes: [String] = []) throws -> LoadReport {
        try load(try VisionTransformer.resamplingPositionEmbedding(in: file, toGrid: (gridSize, gridSize)),
                 strict: strict, skippingMismatchedPrefixes: skippingMismatchedPrefixes)
    }

    /// `file` with its `pos_embed` (`[1, 1 + g², C]`, a square grid) resampled to `grid`; the
    /// file itself when it already fits or has no `pos_embed`.
    public static func resamplingPositionEmbedding(in file: SafeTensorsFile, toGrid grid: (Int, Int),
                                                   prefixTokens: Int = 1) throws -> SafeTensorsFile {
        guard let entry = file.entries["pos_embed"], entry.shape.count == 3,
              entry.shape[1] != prefixTokens + grid.0 * grid.1 else { return file }
        let oldTokens = entry.shape[1] - prefixTokens
        let side = Int(Double(oldTokens).squareRoot().rounded())
        guard side * side == oldTokens else {
            throw ModelError(description: "\(file.source): pos_embed \(entry.shape) is not a square grid plus \(prefixTokens) prefix token(s)")
        }
        var records: [String: SafeTensorsRecord] = [:]
        for name in file.names {
            let e = file.entries[name]!
            switch e.dtype {
            case .int64, .int32, .int16, .int8, .uint8, .bool:
                records[name] = SafeTensorsRecord(int64: try file.integers(name), shape: e.shape)
            default:
                records[name] = SafeTensorsRecord(try file.tensor(name))
            }
        }
        let resampled = resampleAbsolutePositionEmbedding(try file.tensor("pos_embed"), newSize: grid,
                                                           oldSize: (side, side), prefixTokens: prefixTokens)
        records["pos_embed"] = SafeTensorsRecord(resampled)
        return try SafeTensorsFile(data: SafeTensors.encode(records, metadata: file.metadata), source: file.source)
    }
}
