/// Ops used by the transformer model families (ViT/DeiT, MLP-Mixer/ResMLP, LeViT).

/// Gathers along the last axis: `out[..., j] = x[..., indices[j]]`.
///
/// Shapes: `x [..., K]` → `[..., indices.count]`. The pullback scatter-adds the gradient back
/// (an index may appear many times). LeViT uses it to expand its per-head relative-position
/// attention biases `[heads, K]` through an index table into `[heads, Nq·Nk]`.
public func gatherLastAxis(_ x: Tensor, indices: [Int]) -> Tensor {
    precondition(x.rank >= 1, "gatherLastAxis: needs rank >= 1, got \(x.shape)")
    let k = x.shape[x.rank - 1]
    precondition(indices.allSatisfy { $0 >= 0 && $0 < k }, "gatherLastAxis: an index is out of range for extent \(k)")
    let rows = x.count / max(k, 1), n = indices.count
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [n])
    withExtendedLifetime(x) {
        let src = x.pointer, dst = out.pointer
        indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let s = src + r * k, d = dst + r * n
                for j in 0..<n { d[j] = s[idx[j]] }
            }
        }
    }
    let inShape = x.shape
    GradientTape.record(out, [x]) { g in
        let gx = Tensor.zeros(inShape)
        withExtendedLifetime(g) {
            let src = g.pointer, dst = gx.pointer
            indices.withUnsafeBufferPointer { idx in
                for r in 0..<rows {
                    let s = src + r * n, d = dst + r * k
                    for j in 0..<n { d[idx[j]] += s[j] }
                }
            }
        }
        return [gx]
    }
    return out
}
