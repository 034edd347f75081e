import Foundation
import USICore

/// Initialisers of timm's transformer and MLP families, applied to existing layers.
enum TransformerInit {
    /// `trunc_normal_(weight, std)` with timm's absolute bounds ±2, bias zero (ViT's Linear init).
    static func truncatedNormal(_ layer: Linear, standardDeviation: Float = 0.02) {
        layer.weight.assign(Initialization.truncatedNormal(layer.weight.shape, standardDeviation: standardDeviation))
        layer.bias?.fill(0)
    }

    /// `xavier_uniform_`: uniform on ±√(6 / (fanIn + fanOut)).
    static func xavierUniform(_ weight: Tensor, fanIn: Int, fanOut: Int) {
        let bound = (6 / Float(fanIn + fanOut)).squareRoot()
        weight.assign(Initialization.uniform(weight.shape, low: -bound, high: bound))
    }

    /// timm's `lecun_normal_`: a normal truncated at ±2 standard deviations with the standard
    /// deviation corrected for the truncation, √(1/fanIn) / 0.8796….
    static func lecunNormal(_ weight: Tensor, fanIn: Int) {
        let std = (1 / Float(fanIn)).squareRoot() / 0.87962566103423978
        weight.assign(Initialization.truncatedNormal(weight.shape, standardDeviation: std, lower: -2 * std, upper: 2 * std))
    }
}

/// timm's `Mlp`: `fc1 → activation → fc2` over the last axis (dropout 0).
public final class TransformerMlp: Module, UnaryLayer {
    /// First projection `[hidden, in]`.
    public let fc1: Linear
    /// Second projection `[out, hidden]`.
    public let fc2: Linear
    /// The hidden nonlinearity (GELU by default).
    public let activation: Activation

    /// Creates the block with PyTorch's default Linear initialisation.
    public init(inputFeatures: Int, hiddenFeatures: Int, outputFeatures: Int? = nil, activation: Activation = .gelu) {
        fc1 = Linear(inputFeatures: inputFeatures, outputFeatures: hiddenFeatures)
        fc2 = Linear(inputFeatures: hiddenFeatures, outputFeatures: outputFeatures ?? inputFeatures)
        self.activation = activation
        super.init()
    }

    /// Applies the MLP to `[..., in]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(activation(fc1(x))) }
}

/// timm's multi-head self-attention (`timm.layers.Attention`): `qkv` projection, scaled dot
/// product per head, softmax, `proj`. Tokens `[N, T, C]`.
public final class TransformerAttention: Module, UnaryLayer {
    /// `[3·C, C]` projection to queries, keys and values.
    public let qkv: Linear
    /// `[C, C]` output projection.
    public let proj: Linear
    /// Number of heads.
    public let heads: Int

    /// Creates the block (`dim` divisible by `heads`).
    public init(dim: Int, heads: Int, qkvBias: Bool = true) {
        precondition(dim % heads == 0, "TransformerAttention: dim \(dim) is not divisible by \(heads) heads")
        qkv = Linear(inputFeatures: dim, outputFeatures: 3 * dim, bias: qkvBias)
        proj = Linear(inputFeatures: dim, outputFeatures: dim)
        self.heads = heads
        super.init()
    }

    /// Attends over the tokens of `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
        let headDim = c / heads
        // [N, T, 3·C] → [3, N, heads, T, headDim], as timm's reshape/permute(2, 0, 3, 1, 4).
        let parts = qkv(x).reshaped([b, t, 3, heads, headDim]).permuted([2, 0, 3, 1, 4]).split(sizes: [1, 1, 1], axis: 0)
        let q = parts[0].reshaped([b, heads, t, headDim]) * (1 / Float(headDim).squareRoot())
        let k = parts[1].reshaped([b, heads, t, headDim])
        let v = parts[2].reshaped([b, heads, t, headDim])
        let attention = softmax(matmul(q, k, transposeB: true))
        let out = matmul(attention, v).permuted([0, 2, 1, 3]).reshaped([b, t, c])
        return proj(out)
    }
}

/// timm's pre-norm transformer `Block`: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`, with
/// optional stochastic depth.
public final class TransformerBlock: Module, UnaryLayer {
    /// LayerNorm before attention.
    public let norm1: LayerNorm
    /// Self-attention.
    public let attn: TransformerAttention
    /// LayerNorm before the MLP.
    public let norm2: LayerNorm
    /// The MLP.
    public let mlp: TransformerMlp
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block (LayerNorm epsilon 1e-6 as timm's ViT).
    public init(dim: Int, heads: Int, mlpRatio: Double = 4, qkvBias: Bool = true, dropPath: Float = 0,
                normEpsilon: Float = 1e-6, seed: UInt64 = 0) {
        norm1 = LayerNorm(dim, epsilon: normEpsilon)
        attn = TransformerAttention(dim: dim, heads: heads, qkvBias: qkvBias)
        norm2 = LayerNorm(dim, epsilon: normEpsilon)
        mlp = TransformerMlp(inputFeatures: dim, hiddenFeatures: Int(Double(dim) * mlpRatio))
        self.dropPath = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        super.init()
    }

    /// Applies the block to `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = x + branch(attn(norm1(x)))
        return y + branch(mlp(norm2(y)))
    }

    private func branch(_ x: Tensor) -> Tensor { dropPath.map { $0(x) } ?? x }
}

/// timm's `PatchEmbed`: a `patch × patch` convolution with stride `patch`, flattened to tokens
/// `[N, H'·W', C]` (row-major over the grid, the order of timm's `flatten(2).transpose(1, 2)`).
public final class TransformerPatchEmbed: Module, UnaryLayer {
    /// The projection convolution (`proj`).
    public let proj: Conv2d
    /// Patch size in pixels.
    public let patchSize: Int

    /// The side of the token grid for `config`'s input size.
    ///
    /// - Throws: ``ModelError`` when the input size is not a positive multiple of `patchSize`.
    public static func gridSize(for config: BackboneConfig, patchSize: Int) throws -> Int {
        guard config.inputSize % patchSize == 0, config.inputSize >= patchSize else {
            throw ModelError(description: "\(config.architecture): input size \(config.inputSize) must be a positive multiple of the patch size \(patchSize)")
        }
        return config.inputSize / patchSize
    }

    /// Creates the layer with PyTorch's default convolution initialisation.
    public init(inputChannels: Int, embedDim: Int, patchSize: Int) {
        proj = Conv2d(inputChannels: inputChannels, outputChannels: embedDim, kernelSize: patchSize, stride: patchSize)
        self.patchSize = patchSize
        super.init()
    }

    /// Images `[N, H, W, C]` to tokens `[N, (H/p)·(W/p), embedDim]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = proj(x)
        return y.reshaped([y.shape[0], y.shape[1] * y.shape[2], y.shape[3]])
    }
}
