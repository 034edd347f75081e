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

extension Tensor {
    /// `torch.roll(x, shift, axis)`: element `i` along `axis` moves to `(i + shift) mod n`
    /// (a negative shift moves towards the start). A copy.
    ///
    /// Swin's shifted windows roll the token grid by half a window before partitioning and
    /// back after. The pullback rolls the gradient by `-shift`.
    public func rolled(_ shift: Int, axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "rolled: axis \(axis) is out of range for shape \(shape)")
        let out = Tensor(uninitializedShape: shape)
        Tensor.rollCopy(into: out, from: self, shift: shift, axis: a)
        GradientTape.record(out, [self]) { g in
            let gx = Tensor(uninitializedShape: g.shape)
            Tensor.rollCopy(into: gx, from: g, shift: -shift, axis: a)
            return [gx]
        }
        return out
    }

    /// Writes `src` rolled by `shift` along `axis` into `dst` (same shape) with two strided copies.
    static func rollCopy(into dst: Tensor, from src: Tensor, shift: Int, axis: Int) {
        let n = src.shape[axis]
        let s = n == 0 ? 0 : ((shift % n) + n) % n
        let strides = src.strides
        withExtendedLifetime(src) {
            // src[0 ..< n-s] → dst[s ..< n]
            if n - s > 0 {
                var dims = src.shape
                dims[axis] = n - s
                stridedCopy(dst.pointer + s * strides[axis], strides, src.pointer, strides, dims)
            }
            // src[n-s ..< n] → dst[0 ..< s]
            if s > 0 {
                var dims = src.shape
                dims[axis] = s
                stridedCopy(dst.pointer, strides, src.pointer + (n - s) * strides[axis], strides, dims)
            }
        }
    }
}
