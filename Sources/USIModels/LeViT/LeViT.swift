import Foundation
import USICore

/// LeViT's `ConvNorm`: a bias-free convolution followed by BatchNorm (`linear`, `bn`).
public final class LeViTConvNorm: Module, UnaryLayer {
    let linear: Conv2d, bn: BatchNorm

    /// Creates the layer; the BatchNorm weight starts at `bnWeightInit`.
    public init(inputChannels: Int, outputChannels: Int, kernelSize: Int = 1, stride: Int = 1, padding: Int = 0,
                bnWeightInit: Float = 1) {
        linear = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
                        stride: stride, padding: .symmetric(padding), bias: false)
        bn = BatchNorm(outputChannels)
        bn.weight?.fill(bnWeightInit)
        super.init()
    }

    /// Applies conv then BatchNorm to `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { bn(linear(x)) }
}

/// LeViT's `LinearNorm`: a bias-free Linear followed by BatchNorm1d over the channels of
/// every token (`linear`, `bn`).
public final class LeViTLinearNorm: Module, UnaryLayer {
    let linear: Linear, bn: BatchNorm

    /// Creates the layer; the BatchNorm weight starts at `bnWeightInit`.
    public init(inputFeatures: Int, outputFeatures: Int, bnWeightInit: Float = 1) {
        linear = Linear(inputFeatures: inputFeatures, outputFeatures: outputFeatures, bias: false)
        bn = BatchNorm(outputFeatures)
        bn.weight?.fill(bnWeightInit)
        super.init()
    }

    /// Applies Linear then BatchNorm to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { bn(linear(x)) }
}

/// LeViT's `NormLinear` head: BatchNorm1d then Linear (truncated normal σ 0.02, zero bias).
public final class LeViTNormLinear: Module, UnaryLayer {
    let bn: BatchNorm, linear: Linear

    /// Creates the head.
    public init(inputFeatures: Int, outputFeatures: Int) {
        bn = BatchNorm(inputFeatures)
        linear = Linear(inputFeatures: inputFeatures, outputFeatures: outputFeatures)
        TransformerInit.truncatedNormal(linear)
        super.init()
    }

    /// Applies BatchNorm then Linear to `[N, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { linear(bn(x)) }
}

/// A module holding only a `ln` child (timm's `nn.Sequential(act, ln)` / `(down, ln)`, whose
/// first member has no parameters); the caller applies the first member itself.
final class LeViTNamedLinearNorm: Module {
    let ln: LeViTLinearNorm
    init(_ ln: LeViTLinearNorm) {
        self.ln = ln
        super.init()
    }
}

/// Relative-position index tables and bias expansion shared by LeViT's attention layers.
enum LeViTAttentionBias {
    /// `idx[q][k] = |Δrow|·width + |Δcol|` for query positions on a `stride` sub-grid and key
    /// positions on the full `resolution` grid (timm's `attention_bias_idxs`), flattened.
    static func indices(resolution: Int, stride: Int) -> [Int] {
        let keys = (0..<resolution).flatMap { r in (0..<resolution).map { (r, $0) } }
        let queryCoords = Swift.stride(from: 0, to: resolution, by: stride).map { $0 }
        let queries = queryCoords.flatMap { r in queryCoords.map { (r, $0) } }
        return queries.flatMap { q in keys.map { k in abs(q.0 - k.0) * resolution + abs(q.1 - k.1) } }
    }

    /// `biases[:, idx]` as `[heads, queries, keys]`.
    static func expand(_ biases: Tensor, indices: [Int], queries: Int, keys: Int) -> Tensor {
        gatherLastAxis(biases, indices: indices).reshaped([biases.shape[0], queries, keys])
    }
}

/// LeViT's multi-head attention with learned relative-position biases (`attn`): `qkv`
/// (LinearNorm), per-head softmax(q·kᵀ·scale + bias)·v, then hard-swish and `proj.ln`.
public final class LeViTAttention: Module, UnaryLayer {
    let qkv: LeViTLinearNorm, proj: LeViTNamedLinearNorm
    /// `[heads, resolution²]` relative-position biases (`attention_biases`), initialised to 0.
    @Parameter(key: "attention_biases") public private(set) var attentionBiases: Tensor
    let heads: Int, keyDim: Int, valueDim: Int, resolution: Int
    let biasIndices: [Int]
    let activation: Activation

    /// Creates the layer for a `resolution × resolution` token grid.
    public init(dim: Int, keyDim: Int, heads: Int, attentionRatio: Double, resolution: Int, activation: Activation = .hardSwish) {
        self.heads = heads
        self.keyDim = keyDim
        valueDim = Int(attentionRatio * Double(keyDim))
        self.resolution = resolution
        self.activation = activation
        qkv = LeViTLinearNorm(inputFeatures: dim, outputFeatures: heads * (2 * keyDim + valueDim))
        proj = LeViTNamedLinearNorm(LeViTLinearNorm(inputFeatures: heads * valueDim, outputFeatures: dim, bnWeightInit: 0))
        _attentionBiases.wrappedValue = Tensor.zeros([heads, resolution * resolution])
        biasIndices = LeViTAttentionBias.indices(resolution: resolution, stride: 1)
        super.init()
    }

    /// Attends over `[N, resolution², C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, n) = (x.shape[0], x.shape[1])
        let parts = qkv(x).reshaped([b, n, heads, 2 * keyDim + valueDim]).split(sizes: [keyDim, keyDim, valueDim], axis: 3)
        let q = parts[0].permuted([0, 2, 1, 3]), k = parts[1].permuted([0, 2, 1, 3]), v = parts[2].permuted([0, 2, 1, 3])
        let bias = LeViTAttentionBias.expand(attentionBiases, indices: biasIndices, queries: n, keys: n)
        let scores = matmul(q, k, transposeB: true) * (1 / Float(keyDim).squareRoot()) + bias
        let out = matmul(softmax(scores), v).permuted([0, 2, 1, 3]).reshaped([b, n, heads * valueDim])
        return proj.ln(activation(out))
    }
}

/// LeViT's `AttentionDownsample`: queries from every second token (`q.down`, then `q.ln`),
/// keys and values from all tokens (`kv`), relative-position biases, `proj.ln` to `outDim`.
public final class LeViTAttentionDownsample: Module, UnaryLayer {
    let kv: LeViTLinearNorm, q: LeViTNamedLinearNorm, proj: LeViTNamedLinearNorm
    /// `[heads, resolution²]` relative-position biases (`attention_biases`).
    @Parameter(key: "attention_biases") public private(set) var attentionBiases: Tensor
    let heads: Int, keyDim: Int, valueDim: Int, resolution: Int, stride: Int
    let biasIndices: [Int]
    let activation: Activation

    /// Creates the layer for a `resolution × resolution` input grid and stride 2.
    public init(inputDim: Int, outputDim: Int, keyDim: Int, heads: Int, attentionRatio: Double = 4, resolution: Int,
                stride: Int = 2, activation: Activation = .hardSwish) {
        self.heads = heads
        self.keyDim = keyDim
        valueDim = Int(attentionRatio * Double(keyDim))
        self.resolution = resolution
        self.stride = stride
        self.activation = activation
        kv = LeViTLinearNorm(inputFeatures: inputDim, outputFeatures: heads * (keyDim + valueDim))
        q = LeViTNamedLinearNorm(LeViTLinearNorm(inputFeatures: inputDim, outputFeatures: heads * keyDim))
        proj = LeViTNamedLinearNorm(LeViTLinearNorm(inputFeatures: heads * valueDim, outputFeatures: outputDim))
        _attentionBiases.wrappedValue = Tensor.zeros([heads, resolution * resolution])
        biasIndices = LeViTAttentionBias.indices(resolution: resolution, stride: stride)
        super.init()
    }

    /// `[N, r², C]` tokens to `[N, ⌈r/2⌉², outDim]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, n, c) = (x.shape[0], x.shape[1], x.shape[2])
        let parts = kv(x).reshaped([b, n, heads, keyDim + valueDim]).split(sizes: [keyDim, valueDim], axis: 3)
        let k = parts[0].permuted([0, 2, 1, 3]), v = parts[1].permuted([0, 2, 1, 3])
        let sub = LeViTAttentionDownsample.subsample(x.reshaped([b, resolution, resolution, c]), stride: stride)
        let nq = sub.shape[1] * sub.shape[2]
        let query = q.ln(sub.reshaped([b, nq, c])).reshaped([b, nq, heads, keyDim]).permuted([0, 2, 1, 3])
        let bias = LeViTAttentionBias.expand(attentionBiases, indices: biasIndices, queries: nq, keys: n)
        let scores = matmul(query, k, transposeB: true) * (1 / Float(keyDim).squareRoot()) + bias
        let out = matmul(softmax(scores), v).permuted([0, 2, 1, 3]).reshaped([b, nq, heads * valueDim])
        return proj.ln(activation(out))
    }

    /// `x[:, ::stride, ::stride]` of `[N, H, W, C]` (timm's `Downsample` without pooling),
    /// composed of pad, reshape and slice so it is differentiable.
    static func subsample(_ x: Tensor, stride: Int) -> Tensor {
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride
        let padded = (ho * stride == h && wo * stride == w) ? x
            : x.padded([(0, 0), (0, ho * stride - h), (0, wo * stride - w), (0, 0)])
        return padded.reshaped([b, ho, stride, wo, stride, c])
            .slice(axis: 2, 0..<1).slice(axis: 4, 0..<1).reshaped([b, ho, wo, c])
    }
}

/// LeViT's `LevitMlp`: `ln1` (LinearNorm), hard-swish, `ln2` (LinearNorm, BN weight 0).
public final class LeViTMlp: Module, UnaryLayer {
    let ln1: LeViTLinearNorm, ln2: LeViTLinearNorm
    let activation: Activation

    /// Creates the MLP.
    public init(inputFeatures: Int, hiddenFeatures: Int, activation: Activation = .hardSwish) {
        ln1 = LeViTLinearNorm(inputFeatures: inputFeatures, outputFeatures: hiddenFeatures)
        ln2 = LeViTLinearNorm(inputFeatures: hiddenFeatures, outputFeatures: inputFeatures, bnWeightInit: 0)
        self.activation = activation
        super.init()
    }

    /// Applies the MLP to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { ln2(activation(ln1(x))) }
}

/// LeViT's `LevitBlock`: residual attention then residual MLP.
public final class LeViTBlock: Module, UnaryLayer {
    let attn: LeViTAttention, mlp: LeViTMlp
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block.
    public init(dim: Int, keyDim: Int, heads: Int, attentionRatio: Double, mlpRatio: Double, resolution: Int,
                dropPath: Float = 0, seed: UInt64 = 0) {
        attn = LeViTAttention(dim: dim, keyDim: keyDim, heads: heads, attentionRatio: attentionRatio, resolution: resolution)
        mlp = LeViTMlp(inputFeatures: dim, hiddenFeatures: Int(Double(dim) * mlpRatio))
        self.dropPath = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        super.init()
    }

    /// Applies the block to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let a = attn(x)
        let y = x + (dropPath.map { $0(a) } ?? a)
        let m = mlp(y)
        return y + (dropPath.map { $0(m) } ?? m)
    }
}

/// LeViT's `LevitDownsample`: attention downsampling then a residual MLP (ratio 2).
public final class LeViTDownsample: Module, UnaryLayer {
    @ModuleInfo(key: "attn_downsample") var attnDownsample: LeViTAttentionDownsample
    let mlp: LeViTMlp
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the stage transition.
    public init(inputDim: Int, outputDim: Int, keyDim: Int, resolution: Int, dropPath: Float = 0, seed: UInt64 = 0) {
        _attnDownsample.wrappedValue = LeViTAttentionDownsample(inputDim: inputDim, outputDim: outputDim, keyDim: keyDim,
                                                  heads: inputDim / keyDim, attentionRatio: 4, resolution: resolution)
        mlp = LeViTMlp(inputFeatures: outputDim, hiddenFeatures: outputDim * 2)
        self.dropPath = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        super.init()
    }

    /// Downsamples `[N, r², Cin]` to `[N, ⌈r/2⌉², Cout]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = attnDownsample(x)
        let m = mlp(y)
        return y + (dropPath.map { $0(m) } ?? m)
    }
}

/// timm's `Stem16`: four stride-2 3×3 `ConvNorm`s (`conv1`…`conv4`) with hard-swish between
/// them, `[N, H, W, C]` to `[N, H/16, W/16, D]`.
final class LeViTStem: Module, UnaryLayer {
    let conv1: LeViTConvNorm, conv2: LeViTConvNorm, conv3: LeViTConvNorm, conv4: LeViTConvNorm

    /// `widths`: the input channels, then the four convolutions' outputs.
    init(widths: [Int]) {
        func convNorm(_ i: Int) -> LeViTConvNorm {
            LeViTConvNorm(inputChannels: widths[i], outputChannels: widths[i + 1], kernelSize: 3, stride: 2, padding: 1)
        }
        conv1 = convNorm(0)
        conv2 = convNorm(1)
        conv3 = convNorm(2)
        conv4 = convNorm(3)
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        conv4(hardSwish(conv3(hardSwish(conv2(hardSwish(conv1(x)))))))
    }
}

/// One LeViT stage (`stages.i`): an optional `downsample` and `blocks`.
final class LeViTStage: Module, UnaryLayer {
    let downsample: LeViTDownsample?
    let blocks: [LeViTBlock]

    init(downsample: LeViTDownsample?, blocks: [LeViTBlock]) {
        self.downsample = downsample
        self.blocks = blocks
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = downsample.map { $0(x) } ?? x
        for block in blocks { h = block(h) }
        return h
    }
}

/// timm's `LevitDistilled` (what `levit_128s`, `levit_256`, `levit_384` build in timm 1.0.31):
/// a 4-convolution stride-16 stem with hard-swish, three attention stages, average pooling
/// over tokens, and two `NormLinear` heads (`head`, `head_dist`) whose logits are averaged.
///
/// The attention-bias tables depend on the token grid (input size / 16), so another input
/// size changes the `attention_biases` shapes (as timm's `img_size` does).
public final class LeViT: Module, HeadedBackbone {
    /// The shape hyper-parameters of a variant.
    public struct Architecture: Sendable, Hashable {
        /// Token width per stage.
        public var embedDims: [Int]
        /// Query/key width per head.
        public var keyDim: Int
        /// Heads per stage.
        public var heads: [Int]
        /// Blocks per stage.
        public var depths: [Int]
        /// Value width over key width in the blocks.
        public var attentionRatio: Double = 2
        /// MLP hidden width over token width in the blocks.
        public var mlpRatio: Double = 2

        /// Creates an architecture description.
        public init(embedDims: [Int], keyDim: Int, heads: [Int], depths: [Int]) {
            self.embedDims = embedDims
            self.keyDim = keyDim
            self.heads = heads
            self.depths = depths
        }

        /// `levit_128s`.
        public static let levit128s = Architecture(embedDims: [128, 256, 384], keyDim: 16, heads: [4, 6, 8], depths: [2, 3, 4])
        /// `levit_256`.
        public static let levit256 = Architecture(embedDims: [256, 384, 512], keyDim: 32, heads: [4, 6, 8], depths: [4, 4, 4])
        /// `levit_384`.
        public static let levit384 = Architecture(embedDims: [384, 512, 768], keyDim: 32, heads: [6, 9, 12], depths: [4, 4, 4])
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The shape hyper-parameters.
    public let architecture: Architecture
    let stem: LeViTStem
    let stages: [LeViTStage]
    /// Classifier (`head`); `nil` with 0 classes.
    public private(set) var head: LeViTNormLinear?
    /// Distillation classifier (`head_dist`); `nil` with 0 classes.
    @ModuleInfo(key: "head_dist") public private(set) var headDistillation: LeViTNormLinear? = nil

    /// Builds the model with timm's initialisation: PyTorch defaults for convolutions and
    /// linears, BatchNorm weights 1 (0 after the attention projection and the second MLP
    /// layer of each block), attention biases 0, heads truncated normal σ 0.02.
    ///
    /// - Throws: ``ModelError`` when the input size is smaller than 16.
    public init(config: BackboneConfig, architecture: Architecture, dropPathRate: Float = 0) throws {
        guard config.inputSize >= 16 else {
            throw ModelError(description: "\(config.architecture): input size \(config.inputSize) is below the stem stride 16")
        }
        self.config = config
        self.architecture = architecture
        let d0 = architecture.embedDims[0]
        let widths = [config.inputChannels, d0 / 8, d0 / 4, d0 / 2, d0]
        stem = LeViTStem(widths: widths)
        var resolution = config.inputSize / 16
        var stages: [LeViTStage] = []
        var inputDim = d0
        for (i, dim) in architecture.embedDims.enumerated() {
            var downsample: LeViTDownsample?
            if i > 0 {
                downsample = LeViTDownsample(inputDim: inputDim, outputDim: dim, keyDim: architecture.keyDim,
                                             resolution: resolution, dropPath: dropPathRate, seed: UInt64(100 + i))
                resolution = (resolution - 1) / 2 + 1
            }
            let blocks = (0..<architecture.depths[i]).map { j in
                LeViTBlock(dim: dim, keyDim: architecture.keyDim, heads: architecture.heads[i],
                           attentionRatio: architecture.attentionRatio, mlpRatio: architecture.mlpRatio,
                           resolution: resolution, dropPath: dropPathRate, seed: UInt64(10 * i + j))
            }
            stages.append(LeViTStage(downsample: downsample, blocks: blocks))
            inputDim = dim
        }
        self.stages = stages
        super.init()
        resetClassifier(classes: config.classes)
    }

    /// Tokens after the last stage, `[N, r², C]` with `r` = ⌈input/64⌉.
    public func forwardFeatures(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.inputSize && x.shape[2] == config.inputSize
                     && x.shape[3] == config.inputChannels,
                     "\(config.architecture): input \(x.shape) must be [N, \(config.inputSize), \(config.inputSize), \(config.inputChannels)]")
        var h = stem(x)
        h = h.reshaped([h.shape[0], h.shape[1] * h.shape[2], h.shape[3]])
        for stage in stages { h = stage(h) }
        return h
    }

    /// Average over tokens, then `(head(x) + head_dist(x)) / 2` (timm's eval output, and its
    /// training output unless distillation training is switched on).
    public func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        let pooled = features.mean(axes: [1])
        if preLogits { return pooled }
        guard let head, let headDistillation else { return pooled }
        return (head(pooled) + headDistillation(pooled)) * 0.5
    }

    /// New heads for `classes` outputs, or none for 0.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        let dim = architecture.embedDims.last!
        if classes > 0 {
            let h = LeViTNormLinear(inputFeatures: dim, outputFeatures: classes)
            let hd = LeViTNormLinear(inputFeatures: dim, outputFeatures: classes)
            h.train(isTraining)
            hd.train(isTraining)
            head = h
            headDistillation = hd
        } else {
            head = nil
            headDistillation = nil
        }
    }

    /// timm's `no_weight_decay`: every `attention_biases`.
    public var noWeightDecay: Set<String> {
        Set(namedParameters().map(\.name).filter { $0.contains("attention_biases") })
    }

    /// Both classifiers' key prefixes.
    public var classifierPrefixes: [String] { ["head.", "head_dist."] }
}
