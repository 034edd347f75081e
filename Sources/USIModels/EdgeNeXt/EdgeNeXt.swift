import Foundation

// EdgeNeXt ("EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision
// Applications", Maaz et al. 2022) as timm builds it (timm/models/edgenext.py), channels-last.

/// timm's `PositionalEncodingFourier`: fixed sine/cosine features of the normalised (y, x)
/// position, projected by a 1×1 conv (`token_projection`) to the block width.
public final class EdgeNeXtPositionalEncoding: Module {
    let token_projection: Conv2d
    let hiddenDimension: Int
    let temperature: Double

    init(hiddenDimension: Int = 32, dimension: Int, temperature: Double = 10000) {
        token_projection = Conv2d(inputChannels: hiddenDimension * 2, outputChannels: dimension, kernelSize: 1)
        self.hiddenDimension = hiddenDimension
        self.temperature = temperature
        super.init()
    }

    /// The `[1, H·W, dimension]` encoding of an `H × W` map.
    func callAsFunction(height: Int, width: Int) -> Tensor {
        let d = hiddenDimension
        let scale = 2 * Double.pi, eps = 1e-6
        let frequencies = (0..<d).map { pow(temperature, Double(2 * ($0 / 2)) / Double(d)) }
        var values = [Float](repeating: 0, count: height * width * 2 * d)
        for h in 0..<height {
            let y = Double(h + 1) / (Double(height) + eps) * scale
            for w in 0..<width {
                let x = Double(w + 1) / (Double(width) + eps) * scale
                let base = (h * width + w) * 2 * d
                for i in 0..<d {
                    // Channels [0, d) encode y, [d, 2d) encode x; even indices sine, odd cosine.
                    values[base + i] = Float(i % 2 == 0 ? sin(y / frequencies[i]) : cos(y / frequencies[i]))
                    values[base + d + i] = Float(i % 2 == 0 ? sin(x / frequencies[i]) : cos(x / frequencies[i]))
                }
            }
        }
        let features = Tensor(shape: [1, height, width, 2 * d], values: values)
        return token_projection(features).reshaped([1, height * width, token_projection.outputChannels])
    }
}

/// timm's `Mlp` (fc1 → GELU → fc2) over the last axis.
public final class EdgeNeXtMlp: Module, UnaryLayer {
    let fc1: Linear, fc2: Linear

    init(_ dimension: Int, hidden: Int) {
        fc1 = Linear(inputFeatures: dimension, outputFeatures: hidden)
        fc2 = Linear(inputFeatures: hidden, outputFeatures: dimension)
        super.init()
    }

    /// Applies the MLP to `[..., dimension]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(gelu(fc1(x))) }
}

/// timm's `CrossCovarianceAttn` (XCA): attention across channels — a `head_dim × head_dim`
/// map per head from L2-normalised queries and keys along the token axis, scaled by a learned
/// per-head `temperature`.
public final class EdgeNeXtCrossCovarianceAttention: Module, UnaryLayer {
    let qkv: Linear, proj: Linear
    /// `[heads, 1, 1]`.
    @Parameter var temperature: Tensor
    let heads: Int

    init(_ dimension: Int, heads: Int, qkvBias: Bool) {
        qkv = Linear(inputFeatures: dimension, outputFeatures: dimension * 3, bias: qkvBias)
        proj = Linear(inputFeatures: dimension, outputFeatures: dimension)
        temperature = Tensor(shape: [heads, 1, 1], repeating: 1)
        self.heads = heads
        super.init()
    }

    /// `[B, N, C]` tokens to `[B, N, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, n, c) = (x.shape[0], x.shape[1], x.shape[2])
        let headDimension = c / heads
        // [B, N, 3, heads, hd] → [3, B, heads, hd, N]
        let qkvTokens = qkv(x).reshaped([b, n, 3, heads, headDimension]).permuted([2, 0, 3, 4, 1])
        let parts = qkvTokens.split(sizes: [1, 1, 1], axis: 0).map { $0.reshaped([b, heads, headDimension, n]) }
        let q = edgeNeXtL2Normalized(parts[0]), k = edgeNeXtL2Normalized(parts[1]), v = parts[2]
        let attention = softmax(matmul(q, k, transposeB: true) * temperature)  // [B, heads, hd, hd]
        let out = matmul(attention, v)  // [B, heads, hd, N]
        return proj(out.permuted([0, 3, 1, 2]).reshaped([b, n, c]))
    }
}

/// `F.normalize(x, dim=-1)`: `x / max(‖x‖₂, 1e-12)` along the last axis.
func edgeNeXtL2Normalized(_ x: Tensor) -> Tensor {
    x / clamp(sqrt(square(x).sum(axes: [-1], keepingAxes: true)), lower: 1e-12)
}

/// timm's EdgeNeXt `ConvBlock`: depthwise k×k conv → LayerNorm → MLP (×4) → layer scale, plus
/// the input.
public final class EdgeNeXtConvBlock: Module, UnaryLayer {
    let conv_dw: Conv2d, norm: LayerNorm, mlp: EdgeNeXtMlp
    @Parameter var gamma: Tensor
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    init(_ dimension: Int, kernelSize: Int, expansion: Int, layerScale: Float, dropPath rate: Float) {
        conv_dw = Conv2d(inputChannels: dimension, outputChannels: dimension, kernelSize: kernelSize,
                         padding: .symmetric(kernelSize / 2), groups: dimension)
        norm = LayerNorm(dimension, epsilon: 1e-6)
        mlp = EdgeNeXtMlp(dimension, hidden: expansion * dimension)
        gamma = Tensor(shape: [dimension], repeating: layerScale)
        dropPath = rate > 0 ? DropPath(probability: rate) : nil
        super.init()
    }

    /// `[N, H, W, C]` to `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = gamma * mlp(norm(conv_dw(x)))
        if let dropPath { y = dropPath(y) }
        return x + y
    }
}

/// timm's `SplitTransposeBlock`: multi-scale depthwise convs over channel groups (Res2Net
/// style), optional positional encoding, cross-covariance attention and an MLP, each with layer
/// scale.
public final class EdgeNeXtSplitTransposeBlock: Module, UnaryLayer {
    let convs: [Conv2d]
    let pos_embd: EdgeNeXtPositionalEncoding?
    let norm_xca: LayerNorm, xca: EdgeNeXtCrossCovarianceAttention
    let norm: LayerNorm, mlp: EdgeNeXtMlp
    @Parameter var gamma_xca: Tensor
    @Parameter var gamma: Tensor
    let chunkSizes: [Int]
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    init(_ dimension: Int, scales: Int, heads: Int, expansion: Int, positionalEncoding: Bool, layerScale: Float,
         dropPath rate: Float) {
        let width = max(Int((Double(dimension) / Double(scales)).rounded(.up)), dimension / scales)
        let convCount = max(1, scales - 1)
        convs = (0..<convCount).map { _ in
            Conv2d(inputChannels: width, outputChannels: width, kernelSize: 3, padding: .symmetric(1), groups: width)
        }
        // torch.chunk(x, convCount + 1): pieces of ceil(C / chunks), the last one smaller.
        let piece = (dimension + convCount) / (convCount + 1)
        chunkSizes = stride(from: 0, to: dimension, by: piece).map { min(piece, dimension - $0) }
        pos_embd = positionalEncoding ? EdgeNeXtPositionalEncoding(dimension: dimension) : nil
        norm_xca = LayerNorm(dimension, epsilon: 1e-6)
        xca = EdgeNeXtCrossCovarianceAttention(dimension, heads: heads, qkvBias: true)
        norm = LayerNorm(dimension, epsilon: 1e-6)
        mlp = EdgeNeXtMlp(dimension, hidden: expansion * dimension)
        gamma_xca = Tensor(shape: [dimension], repeating: layerScale)
        gamma = Tensor(shape: [dimension], repeating: layerScale)
        dropPath = rate > 0 ? DropPath(probability: rate) : nil
        super.init()
    }

    /// `[N, H, W, C]` to `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(chunkSizes.count == convs.count + 1, "EdgeNeXt: \(c) channels do not split into \(convs.count + 1) groups")
        let pieces = x.split(sizes: chunkSizes, axis: 3)
        var outputs: [Tensor] = []
        var current = pieces[0]
        for (i, conv) in convs.enumerated() {
            if i > 0 { current = current + pieces[i] }
            current = conv(current)
            outputs.append(current)
        }
        outputs.append(pieces[pieces.count - 1])
        var tokens = concatenate(outputs, axis: 3).reshaped([b, h * w, c])
        if let pos_embd { tokens = tokens + pos_embd(height: h, width: w) }
        var attended = gamma_xca * xca(norm_xca(tokens))
        if let dropPath { attended = dropPath(attended) }
        tokens = tokens + attended
        var y = gamma * mlp(norm(tokens.reshaped([b, h, w, c])))
        if let dropPath { y = dropPath(y) }
        return x + y
    }
}

/// timm's `EdgeNeXtStage`: optional downsampling (LayerNorm + 2×2 stride-2 conv), then conv
/// blocks and finally the split-transpose (global) blocks.
public final class EdgeNeXtStage: Module, UnaryLayer {
    let downsample: Sequential?
    let blocks: Sequential

    init(inputChannels: Int, outputChannels: Int, stride: Int, depth: Int, globalBlocks: Int, heads: Int, scales: Int,
         kernelSize: Int, expansion: Int, positionalEncoding: Bool, layerScale: Float, dropPathRates: [Float]) {
        if stride == 1 {
            downsample = nil
        } else {
            downsample = Sequential([
                LayerNorm(inputChannels, epsilon: 1e-6),
                Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 2, stride: 2),
            ])
        }
        var layers: [any UnaryLayer] = []
        for i in 0..<depth {
            if i < depth - globalBlocks {
                layers.append(EdgeNeXtConvBlock(outputChannels, kernelSize: kernelSize, expansion: expansion,
                                                layerScale: layerScale, dropPath: dropPathRates[i]))
            } else {
                layers.append(EdgeNeXtSplitTransposeBlock(outputChannels, scales: scales, heads: heads, expansion: expansion,
                                                          positionalEncoding: positionalEncoding, layerScale: layerScale,
                                                          dropPath: dropPathRates[i]))
            }
        }
        blocks = Sequential(layers)
        super.init()
    }

    /// `[N, H, W, Cin]` to `[N, H/stride, W/stride, Cout]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { blocks(downsample.map { $0(x) } ?? x) }
}

/// timm's `NormMlpClassifierHead` as EdgeNeXt uses it: global average pool → LayerNorm → `fc`.
public final class EdgeNeXtHead: Module {
    let norm: LayerNorm
    private(set) var fc: any UnaryLayer

    init(features: Int, classes: Int) {
        norm = LayerNorm(features, epsilon: 1e-6)
        fc = classes > 0 ? Linear(inputFeatures: features, outputFeatures: classes) : Identity()
        super.init()
    }

    func replaceClassifier(features: Int, classes: Int) {
        fc = classes > 0 ? Linear(inputFeatures: features, outputFeatures: classes) : Identity()
        fc.train(isTraining)
    }
}

/// EdgeNeXt: a patchify stem (4×4 conv + LayerNorm), four stages of depthwise conv blocks
/// ending in split-depthwise-transpose attention blocks, and a pool → LayerNorm → linear head.
/// Parameter names, shapes and initialisation equal timm's.
public final class EdgeNeXt: Module, HeadedBackbone {
    /// An architecture: the arguments of timm's `EdgeNeXt`.
    public struct Architecture: Sendable, Hashable {
        /// Stage widths.
        public var dimensions: [Int]
        /// Blocks per stage.
        public var depths: [Int]
        /// Split-transpose blocks at the end of each stage.
        public var globalBlocks: [Int] = [0, 1, 1, 1]
        /// Depthwise kernel size of each stage's conv blocks.
        public var kernelSizes: [Int] = [3, 5, 7, 9]
        /// Attention heads of each stage's split-transpose blocks.
        public var heads: [Int] = [8, 8, 8, 8]
        /// Channel groups (scales) of each stage's split-transpose blocks.
        public var scales: [Int] = [2, 2, 3, 4]
        /// Whether a stage's split-transpose blocks add a positional encoding.
        public var positionalEncoding: [Bool] = [false, true, false, false]
        /// MLP expansion ratio.
        public var expansion: Int = 4
        /// Initial layer-scale value.
        public var layerScale: Float = 1e-6

        /// timm `edgenext_small`.
        public static let small = Architecture(dimensions: [48, 96, 160, 304], depths: [3, 3, 9, 3])
    }

    /// Architecture and data configuration.
    public private(set) var config: BackboneConfig
    /// The architecture.
    public let architecture: Architecture
    /// Channels of the features (the last stage's width).
    public let featureCount: Int
    /// Dropout probability before the classifier (timm's `drop_rate`, default 0).
    public let dropRate: Float

    @ModuleInfo(key: "head_drop") private var headDropout: Dropout?
    let stem: Sequential
    let stages: Sequential
    let head: EdgeNeXtHead

    /// Builds the network for `config` with timm's initialisation (truncated normal std 0.02 for
    /// convs and linears, zero biases, layer scale 1e-6). Inputs must be at least 32 px.
    public init(config: BackboneConfig, architecture: Architecture, dropRate: Float = 0, dropPathRate: Float = 0) throws {
        guard config.inputSize >= 32 else {
            throw ModelError(description: "EdgeNeXt downsamples by 32 without padding: input size \(config.inputSize) must be at least 32")
        }
        self.config = config
        self.architecture = architecture
        self.dropRate = dropRate
        _headDropout.wrappedValue = dropRate > 0 ? Dropout(probability: dropRate) : nil
        let dims = architecture.dimensions
        stem = Sequential([
            Conv2d(inputChannels: config.inputChannels, outputChannels: dims[0], kernelSize: 4, stride: 4),
            LayerNorm(dims[0], epsilon: 1e-6),
        ])
        // timm's calculate_drop_path_rates(stagewise=True): linear over all blocks, split by stage.
        let allRates = DropPath.linearRates(dropPathRate, count: architecture.depths.reduce(0, +))
        var blockIndex = 0
        var stageList: [any UnaryLayer] = []
        var inputChannels = dims[0]
        for i in 0..<dims.count {
            let depth = architecture.depths[i]
            let rates = Array(allRates[blockIndex..<blockIndex + depth])
            blockIndex += depth
            stageList.append(EdgeNeXtStage(
                inputChannels: inputChannels, outputChannels: dims[i], stride: i == 0 ? 1 : 2, depth: depth,
                globalBlocks: architecture.globalBlocks[i], heads: architecture.heads[i], scales: architecture.scales[i],
                kernelSize: architecture.kernelSizes[i], expansion: architecture.expansion,
                positionalEncoding: architecture.positionalEncoding[i], layerScale: architecture.layerScale,
                dropPathRates: rates))
            inputChannels = dims[i]
        }
        stages = Sequential(stageList)
        featureCount = dims[dims.count - 1]
        head = EdgeNeXtHead(features: featureCount, classes: config.classes)
        super.init()
        Self.initializeWeights(self)
    }

    /// timm's `_init_weights`: `trunc_normal_tf_(std=0.02)` (±2σ) on conv and linear weights, zero biases.
    static func initializeWeights(_ module: Module) {
        for (_, child) in module.namedModules() {
            let weight: Tensor?, bias: Tensor?
            if let conv = child as? Conv2d { (weight, bias) = (conv.weight, conv.bias) }
            else if let linear = child as? Linear { (weight, bias) = (linear.weight, linear.bias) }
            else { continue }
            if let weight {
                weight.assign(Initialization.truncatedNormal(weight.shape, standardDeviation: 0.02, lower: -0.04, upper: 0.04))
            }
            bias?.fill(0)
        }
    }

    /// Stem and stages: `[N, H, W, inputChannels]` → `[N, H/32, W/32, featureCount]`.
    public func forwardFeatures(_ x: Tensor) -> Tensor { stages(stem(x)) }

    /// Global pool → LayerNorm (the pre-logits, `[N, featureCount]`) → dropout → `head.fc`.
    public func forwardHead(_ features: Tensor, preLogits: Bool = false) -> Tensor {
        var x = head.norm(globalAvgPool2d(features))
        if let headDropout { x = headDropout(x) }
        return preLogits ? x : head.fc(x)
    }

    /// Replaces `head.fc` with a fresh `Linear(featureCount, classes)` (PyTorch's default
    /// initialisation, as timm's `reset_classifier`); 0 removes it.
    public func resetClassifier(classes: Int) {
        config.classes = classes
        head.replaceClassifier(features: featureCount, classes: classes)
    }

    /// The classifier's keys.
    public var classifierPrefixes: [String] { ["head.fc."] }

    /// timm's model-level `no_weight_decay` for EdgeNeXt is empty (the XCA `temperature`
    /// tensors are declared by the attention module only, which timm's optimiser factory does
    /// not consult), so nothing beyond 1-D tensors and biases is excluded.
    public var noWeightDecay: Set<String> { [] }
}
