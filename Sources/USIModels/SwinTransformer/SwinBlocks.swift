import USICore

/// timm's Swin `WindowAttention`: multi-head self-attention inside each window with a learned
/// relative-position bias per head (`relative_position_bias_table`, `[(2w−1)², heads]`),
/// plus the shifted-window mask when given. Tokens `[B·windows, w², C]`.
public final class SwinWindowAttention: Module {
    /// `[(2w − 1)², heads]` biases, indexed by the relative position of query and key.
    @Parameter(key: "relative_position_bias_table") public private(set) var relativePositionBiasTable: Tensor
    /// `[3·C, C]` projection to queries, keys and values.
    public let qkv: Linear
    /// `[C, C]` output projection.
    public let proj: Linear
    /// Number of heads.
    public let heads: Int
    /// Window side in tokens.
    public let window: Int
    let relativeIndex: [Int]

    /// Creates the layer (timm's init: the bias table truncated normal σ 0.02).
    public init(dim: Int, heads: Int, window: Int) {
        precondition(dim % heads == 0, "SwinWindowAttention: dim \(dim) is not divisible by \(heads) heads")
        self.heads = heads
        self.window = window
        _relativePositionBiasTable.wrappedValue = Initialization.truncatedNormal([(2 * window - 1) * (2 * window - 1), heads],
                                                                                 standardDeviation: 0.02)
        qkv = Linear(inputFeatures: dim, outputFeatures: 3 * dim)
        proj = Linear(inputFeatures: dim, outputFeatures: dim)
        relativeIndex = SwinWindows.relativePositionIndex(window: window)
        super.init()
    }

    /// `[heads, w², w²]`: the table gathered through the index (differentiable in the table).
    func relativePositionBias() -> Tensor {
        let area = window * window
        return gatherLastAxis(relativePositionBiasTable.permuted([1, 0]), indices: relativeIndex).reshaped([heads, area, area])
    }

    /// Attends within each window of `[B·windows, N, C]`; `mask` is `[windows, N, N]`.
    public func callAsFunction(_ x: Tensor, mask: Tensor?) -> Tensor {
        let (b, n, c) = (x.shape[0], x.shape[1], x.shape[2])
        let headDim = c / heads
        let parts = qkv(x).reshaped([b, n, 3, heads, headDim]).permuted([2, 0, 3, 1, 4]).split(sizes: [1, 1, 1], axis: 0)
        let q = parts[0].reshaped([b, heads, n, headDim]) * (1 / Float(headDim).squareRoot())
        let k = parts[1].reshaped([b, heads, n, headDim])
        let v = parts[2].reshaped([b, heads, n, headDim])
        var scores = matmul(q, k, transposeB: true) + relativePositionBias()
        if let mask {
            let windows = mask.shape[0]
            scores = (scores.reshaped([b / windows, windows, heads, n, n]) + mask.reshaped([windows, 1, n, n]))
                .reshaped([b, heads, n, n])
        }
        let out = matmul(softmax(scores), v).permuted([0, 2, 1, 3]).reshaped([b, n, c])
        return proj(out)
    }
}

/// timm's `SwinTransformerBlock` on `[B, H, W, C]`: `x + attn(norm1(x))` over (shifted)
/// windows, then `x + mlp(norm2(x))`.
///
/// The window and shift come from the block's nominal resolution (timm's `input_resolution`);
/// a grid not divisible by the window is zero-padded at the bottom and right after the
/// cyclic shift, as timm does.
public final class SwinTransformerBlock: Module, UnaryLayer {
    /// LayerNorm before attention.
    public let norm1: LayerNorm
    /// Window attention.
    public let attn: SwinWindowAttention
    /// LayerNorm before the MLP.
    public let norm2: LayerNorm
    /// The MLP.
    public let mlp: TransformerMlp
    @ModuleInfo(key: "drop_path1") var dropPath1: DropPath? = nil
    @ModuleInfo(key: "drop_path2") var dropPath2: DropPath? = nil
    /// Window side and cyclic shift in tokens.
    public let window: Int, shift: Int
    let resolution: Int
    /// The shifted-window mask `[windows, w², w²]` (nil without a shift).
    @Constant var mask: Tensor?

    /// Creates the block for a `resolution × resolution` grid.
    public init(dim: Int, heads: Int, resolution: Int, targetWindow: Int, shifted: Bool, mlpRatio: Double = 4,
                dropPath: Float = 0, seed: UInt64 = 0) {
        let (window, shift) = SwinWindows.windowAndShift(resolution: resolution, targetWindow: targetWindow,
                                                         targetShift: shifted ? targetWindow / 2 : 0)
        self.window = window
        self.shift = shift
        self.resolution = resolution
        norm1 = LayerNorm(dim)
        attn = SwinWindowAttention(dim: dim, heads: heads, window: window)
        norm2 = LayerNorm(dim)
        mlp = TransformerMlp(inputFeatures: dim, hiddenFeatures: Int(Double(dim) * mlpRatio))
        let padded = (resolution + window - 1) / window * window
        _mask = Constant(wrappedValue: shift > 0 ? SwinWindows.attentionMask(padded: padded, window: window, shift: shift) : nil)
        self.dropPath1 = dropPath > 0 ? DropPath(probability: dropPath, seed: seed) : nil
        self.dropPath2 = dropPath > 0 ? DropPath(probability: dropPath, seed: seed &+ 0x5157) : nil
        super.init()
    }

    /// Applies the block to `[B, H, W, C]` with H = W = the block's resolution.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.shape[1] == resolution && x.shape[2] == resolution,
                     "SwinTransformerBlock: input \(x.shape) does not match the block's \(resolution)×\(resolution) grid")
        let a = windowAttention(norm1(x))
        let y = x + (dropPath1.map { $0(a) } ?? a)
        let m = mlp(norm2(y))
        return y + (dropPath2.map { $0(m) } ?? m)
    }

    /// timm's `_attn`: roll by −shift, pad to whole windows, attend per window, merge, crop,
    /// roll back.
    func windowAttention(_ x: Tensor) -> Tensor {
        let (h, w) = (x.shape[1], x.shape[2])
        var shifted = shift > 0 ? x.rolled(-shift, axis: 1).rolled(-shift, axis: 2) : x
        let padH = (window - h % window) % window, padW = (window - w % window) % window
        if padH > 0 || padW > 0 { shifted = shifted.padded([(0, 0), (0, padH), (0, padW), (0, 0)]) }
        let windows = SwinWindows.partition(shifted, window: window)
        let attended = attn(windows, mask: mask)
        var merged = SwinWindows.merge(attended, window: window, height: h + padH, width: w + padW)
        if padH > 0 || padW > 0 { merged = merged.slice(axis: 1, 0..<h).slice(axis: 2, 0..<w) }
        return shift > 0 ? merged.rolled(shift, axis: 1).rolled(shift, axis: 2) : merged
    }
}

/// timm's Swin `PatchMerging`: pads odd sides at the bottom/right, concatenates each 2 × 2
/// neighbourhood into 4·C channels (timm's order: column offset major, then row offset), then
/// `norm` and a bias-free `reduction` to `outDim`.
public final class SwinPatchMerging: Module, UnaryLayer {
    /// LayerNorm over the 4·C merged channels.
    public let norm: LayerNorm
    /// `[outDim, 4·C]` projection without bias.
    public let reduction: Linear

    /// Creates the layer.
    public init(dim: Int, outDim: Int) {
        norm = LayerNorm(4 * dim)
        reduction = Linear(inputFeatures: 4 * dim, outputFeatures: outDim, bias: false)
        super.init()
    }

    /// `[B, H, W, C]` to `[B, ⌈H/2⌉, ⌈W/2⌉, outDim]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let padded = (h % 2 == 0 && w % 2 == 0) ? x : x.padded([(0, 0), (0, h % 2), (0, w % 2), (0, 0)])
        let (ho, wo) = ((h + 1) / 2, (w + 1) / 2)
        // reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        let merged = padded.reshaped([b, ho, 2, wo, 2, c]).permuted([0, 1, 3, 4, 2, 5]).reshaped([b, ho, wo, 4 * c])
        return reduction(norm(merged))
    }
}

/// One Swin stage (`layers.i`): an optional `downsample` (patch merging) then `blocks`.
public final class SwinTransformerStage: Module, UnaryLayer {
    /// Patch merging at the start of every stage but the first.
    public let downsample: SwinPatchMerging?
    /// The blocks, unshifted and shifted alternately.
    public let blocks: [SwinTransformerBlock]

    init(downsample: SwinPatchMerging?, blocks: [SwinTransformerBlock]) {
        self.downsample = downsample
        self.blocks = blocks
        super.init()
    }

    /// Applies the stage to `[B, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = downsample.map { $0(x) } ?? x
        for block in blocks { h = block(h) }
        return h
    }
}

/// A module with only an `fc` child (timm's `ClassifierHead` with average pooling, whose pool
/// and dropout have no parameters).
public final class SwinClassifierHead: Module {
    /// The classifier.
    public let fc: Linear

    init(_ fc: Linear) {
        self.fc = fc
        super.init()
    }
}

/// timm's `PatchEmbed` with `output_fmt='NHWC'` and a LayerNorm: a `patch × patch` stride-
/// `patch` convolution, then `norm`, keeping the `[B, H', W', C]` grid.
public final class SwinPatchEmbed: Module, UnaryLayer {
    /// The projection convolution.
    public let proj: Conv2d
    /// LayerNorm over the embedding.
    public let norm: LayerNorm

    /// Creates the layer with PyTorch's default convolution initialisation.
    public init(inputChannels: Int, embedDim: Int, patchSize: Int) {
        proj = Conv2d(inputChannels: inputChannels, outputChannels: embedDim, kernelSize: patchSize, stride: patchSize)
        norm = LayerNorm(embedDim)
        super.init()
    }

    /// Images `[B, H, W, C]` to `[B, ⌊H/p⌋, ⌊W/p⌋, embedDim]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { norm(proj(x)) }
}
