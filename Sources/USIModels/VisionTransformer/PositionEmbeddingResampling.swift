import Foundation
import USICore

/// timm's `resample_abs_pos_embed` (bicubic, antialias on, `align_corners` off): resizes the
/// grid part of an absolute position embedding `[1, prefix + oldH·oldW, C]` to
/// `[1, prefix + newH·newW, C]`, keeping the `prefix` tokens (class token) unchanged.
///
/// The filter is PyTorch's antialiased bicubic (`F.interpolate(..., mode='bicubic',
/// antialias=True)`, Keys' cubic with a = −0.5, widened by the scale when shrinking and
/// normalised per output pixel), applied separably. This is a constant transform used when
/// building a model for another input size or loading weights trained at another size, so it
/// runs without the tape.
public func resampleAbsolutePositionEmbedding(_ posEmbed: Tensor, newSize: (height: Int, width: Int),
                                              oldSize: (height: Int, width: Int)? = nil,
                                              prefixTokens: Int = 1) -> Tensor {
    precondition(posEmbed.rank == 3 && posEmbed.shape[0] == 1, "resampleAbsolutePositionEmbedding: expects [1, T, C], got \(posEmbed.shape)")
    let tokens = posEmbed.shape[1], channels = posEmbed.shape[2]
    let old: (height: Int, width: Int)
    if let oldSize { old = oldSize } else {
        let side = Int(Double(tokens - prefixTokens).squareRoot())
        old = (side, side)
    }
    precondition(old.height * old.width + prefixTokens == tokens,
                 "resampleAbsolutePositionEmbedding: \(tokens) tokens do not fit a \(old.height)×\(old.width) grid + \(prefixTokens)")
    if old.height == newSize.height && old.width == newSize.width { return posEmbed.copy() }
    let rows = PositionEmbeddingFilter.weights(input: old.height, output: newSize.height)
    let cols = PositionEmbeddingFilter.weights(input: old.width, output: newSize.width)
    let src = posEmbed.toArray()
    var out = [Float](repeating: 0, count: (prefixTokens + newSize.height * newSize.width) * channels)
    for i in 0..<(prefixTokens * channels) { out[i] = src[i] }
    // Width pass: [oldH, oldW, C] → [oldH, newW, C]; then height pass → [newH, newW, C].
    var mid = [Double](repeating: 0, count: old.height * newSize.width * channels)
    for y in 0..<old.height {
        for x in 0..<newSize.width {
            for (j, w) in cols[x] {
                let s = (prefixTokens + y * old.width + j) * channels, d = (y * newSize.width + x) * channels
                for c in 0..<channels { mid[d + c] += w * Double(src[s + c]) }
            }
        }
    }
    for y in 0..<newSize.height {
        for x in 0..<newSize.width {
            let d = (prefixTokens + y * newSize.width + x) * channels
            var acc = [Double](repeating: 0, count: channels)
            for (i, w) in rows[y] {
                let s = (i * newSize.width + x) * channels
                for c in 0..<channels { acc[c] += w * mid[s + c] }
            }
            for c in 0..<channels { out[d + c] = Float(acc[c]) }
        }
    }
    return Tensor(shape: [1, prefixTokens + newSize.height * newSize.width, channels], values: out)
}

/// PyTorch's antialiased bicubic resampling weights (`_upsample_bicubic2d_aa`).
enum PositionEmbeddingFilter {
    static func cubic(_ v: Double, a: Double = -0.5) -> Double {
        let x = abs(v)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// For each output index, the (input index, weight) pairs.
    static func weights(input: Int, output: Int) -> [[(Int, Double)]] {
        let scale = Double(input) / Double(output)
        let support = 2 * max(scale, 1)
        let inverse = 1 / max(scale, 1)
        return (0..<output).map { i in
            let center = scale * (Double(i) + 0.5)
            let low = max(Int(center - support + 0.5), 0)
            let high = min(Int(center + support + 0.5), input)
            var taps = (low..<high).map { j in (j, cubic((Double(j) - center + 0.5) * inverse)) }
            let total = taps.reduce(0) { $0 + $1.1 }
            if total != 0 { taps = taps.map { ($0.0, $0.1 / total) } }
            return taps
        }
    }
}
