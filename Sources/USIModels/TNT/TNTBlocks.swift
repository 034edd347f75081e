import USICore

/// TNT's `Attention`: bias-free `qk` (queries and keys) and `v` projections, scaled dot
/// product per head, softmax, `proj` (with bias). Tokens `[N, T, C]`.
public final class TNTAttention: Module, UnaryLayer {
    /// `[2·C, C]` projection to queries and keys (no bias).
    public let qk: Linear
    /// `[C, C]` projection to values (no bias).
    public let v: Linear
    /// `[C, C]` output projection.
    public let proj: Linear
    /// Number of heads.
    public let heads: Int

    /// Creates the layer (`dim` divisible by `heads`).
    public init(dim: Int, heads: Int) {
        precondition(dim % heads == 0, "TNTAttention: dim \(dim) is not divisible by \(heads) heads")
        qk = Linear(inputFeatures: dim, outputFeatures: 2 * dim, bias: false)
        v = Linear(inputFeatures: dim, outputFeatures: dim, bias: false)
        proj = Linear(inputFeatures: dim, outputFeatures: dim)
        self.heads = heads
        super.init()
    }

    /// Attends over the tokens of `[N, T, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
        let headDim = c / heads
        let parts = qk(x).reshaped([b, t, 2, heads, headDim]).permuted([2, 0, 3, 1, 4]).split(sizes: [1, 1], axis: 0)
        let q = parts[0].reshaped([b, heads, t, headDim]), k = parts[1].reshaped([b, heads, t, headDim])
        let values = v(x).reshaped([b, t, heads, headDim]).permuted([0, 2, 1, 3])
        let attention = softmax(matmul(q, k, transposeB: true) * (1 / Float(headDim).squareRoot()))
        return proj(matmul(attention, values).permuted([0, 2, 1, 3]).reshaped([b, t, c]))
    }
}

/// TNT's `Block` (timm's non-legacy form): an inner transformer over the pixel tokens of each
/// patch (`norm_in`, `attn_in`, `norm_mlp_in`, `mlp_in`), their flattened sum projected into the
/// patch tokens (`norm1_proj`, bias-free `proj`, `norm2_proj`; the class token is left alone),
/// then an outer transformer over the patch tokens (`norm_out`, `attn_out`, `norm_mlp`, `mlp`).
public final class TNTBlock: Module {
    @ModuleInfo(key: "norm_in") var normIn: LayerNorm
    @ModuleInfo(key: "attn_in") var attnIn: TNTAttention
    @ModuleInfo(key: "norm_mlp_in") var normMlpIn: LayerNorm
    @ModuleInfo(key: "mlp_in") var mlpIn: TransformerMlp
    @ModuleInfo(key: "norm1_proj") var norm1Proj: LayerNorm
    let proj: Linear
    @ModuleInfo(key: "norm2_proj") var norm2Proj: LayerNorm
    @ModuleInfo(key: "norm_out") var normOut: LayerNorm
    @ModuleInfo(key: "attn_out") var attnOut: TNTAttention
    @ModuleInfo(key: "norm_mlp") var normMlp: LayerNorm
    let mlp: TransformerMlp
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    /// Creates the block: `innerDim`-wide pixel tokens, `pixels` per patch, `outerDim`-wide
    /// patch tokens.
    public init(innerDim: Int, outerDim: Int, pixels: Int, innerHeads: Int, outerHeads: Int, mlpRatio: Double = 4,
                dropPath: Float = 0, seed: UInt64 = 0) {
        _normIn.wrappedValue = LayerNorm(innerDim)
        _attnIn.wrappedValue = TNTAttention(dim: innerDim, heads: innerHeads)
        _normMlpIn.wrappedValue = LayerNorm(innerDim)
        _mlpIn.wrappedValue = TransformerMlp(inputFeatures: innerDim, hiddenFeatures: 4 * innerDim)
        _norm1Proj.wrappedValue = LayerNorm(innerDim * pixels)
        proj = Linear(inputFeatures: innerDim * pixels, outputFeatures: outerDim, bias: false)
        _norm2Proj.wrappedValue = LayerNorm(outerDim)
        _normOut.wrappedValue = LayerNorm(outerDim)
        _attnOut.wrappedValue = TNTAttention(dim: outerDim, heads: outerHeads)
        _normMlp.wrappedValue = LayerNorm(outerDim)
        mlp = TransformerMlp(inputFeatures: outerDim, hiddenFeatures: Int(Double(outerDim) * mlpRatio))
        self.dropPath = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        super.init()
    }

    /// Pixel tokens `[N·patches, pixels, innerDim]` and patch tokens `[N, 1 + patches, outerDim]`
    /// to their updated values.
    public func callAsFunction(pixels: Tensor, patches: Tensor) -> (pixels: Tensor, patches: Tensor) {
        var p = pixels + branch(attnIn(normIn(pixels)))
        p = p + branch(mlpIn(normMlpIn(p)))
        let (b, n, c) = (patches.shape[0], patches.shape[1], patches.shape[2])
        let flattened = p.reshaped([b, n - 1, p.shape[1] * p.shape[2]])
        let spatial = patches.slice(axis: 1, 1..<n) + norm2Proj(proj(norm1Proj(flattened)))
        var t = concatenate([patches.slice(axis: 1, 0..<1), spatial], axis: 1)
        precondition(t.shape == [b, n, c])
        t = t + branch(attnOut(normOut(t)))
        t = t + branch(mlp(normMlp(t)))
        return (p, t)
    }

    private func branch(_ x: Tensor) -> Tensor { dropPath.map { $0(x) } ?? x }
}

/// TNT's `PixelEmbed` (non-legacy): the image cut into `patch × patch` tiles (timm's `Unfold`,
/// row-major over the grid, the remainder beyond whole tiles dropped), each tile through a
/// 7 × 7 stride-`stride` convolution (padding 3) to a small grid of `innerDim`-wide pixels.
public final class TNTPixelEmbed: Module {
    /// The convolution applied to each tile.
    public let proj: Conv2d
    /// Tile side in pixels.
    public let patchSize: Int

    /// Creates the layer with PyTorch's default convolution initialisation.
    public init(inputChannels: Int, innerDim: Int, patchSize: Int, stride: Int) {
        proj = Conv2d(inputChannels: inputChannels, outputChannels: innerDim, kernelSize: (7, 7), stride: (stride, stride),
                      padding: .symmetric(3))
        self.patchSize = patchSize
        super.init()
    }

    /// Images `[N, H, W, C]` to tiles `[N·(H/p)·(W/p), p, p, C]`.
    func tiles(_ x: Tensor) -> Tensor {
        let (b, c) = (x.shape[0], x.shape[3])
        let gh = x.shape[1] / patchSize, gw = x.shape[2] / patchSize
        var cropped = x
        if gh * patchSize != x.shape[1] { cropped = cropped.slice(axis: 1, 0..<gh * patchSize) }
        if gw * patchSize != x.shape[2] { cropped = cropped.slice(axis: 2, 0..<gw * patchSize) }
        return cropped.reshaped([b, gh, patchSize, gw, patchSize, c]).permuted([0, 1, 3, 2, 4, 5])
            .reshaped([b * gh * gw, patchSize, patchSize, c])
    }
}
