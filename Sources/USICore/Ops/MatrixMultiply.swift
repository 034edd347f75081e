import CUSIKernels

/// `C = op(A) · op(B)` on row-major matrices, with the leading dimensions of A, B, C.
@inline(__always)
func gemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int,
          _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
          _ c: UnsafeMutablePointer<Float>, _ ldc: Int, beta: Float = 0) {
    usi_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda),
              b, Int32(ldb), beta, c, Int32(ldc))
}

/// Matrix product over the last two axes, batched over the leading ones.
///
/// Shapes: `a [..., M, K]` (or `[..., K, M]` with `transposeA`), `b [..., K, N]` (or
/// `[..., N, K]` with `transposeB`), with equal leading axes; a rank-2 `b` is shared by every
/// batch. Attention's `q·kᵀ` is `matmul(q, k, transposeB: true)`.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul: operands need rank >= 2, got \(a.shape) and \(b.shape)")
    let m = transposeA ? a.shape[a.rank - 1] : a.shape[a.rank - 2]
    let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
    let kb = transposeB ? b.shape[b.rank - 1] : b.shape[b.rank - 2]
    let n = transposeB ? b.shape[b.rank - 2] : b.shape[b.rank - 1]
    precondition(k == kb, "matmul: inner extents differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
    let batchShape = Array(a.shape.dropLast(2))
    let sharedB = b.rank == 2
    precondition(sharedB || Array(b.shape.dropLast(2)) == batchShape,
                 "matmul: batch axes differ: \(a.shape) · \(b.shape)")
    let batch = batchShape.reduce(1, *)
    let out = Tensor(uninitializedShape: batchShape + [m, n])
    FlopCounter.add(multiplyAdds: batch * m * n * k)
    let (aRows, aCols) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
    let (bRows, bCols) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
    withExtendedLifetime((a, b)) {
        if sharedB && !transposeA {
            // One GEMM over all batches: [batch·M, K] · B.
            gemm(false, transposeB, batch * m, n, k, a.pointer, aCols, b.pointer, bCols, out.pointer, n)
        } else {
            for i in 0..<batch {
                gemm(transposeA, transposeB, m, n, k, a.pointer + i * aRows * aCols, aCols,
                     b.pointer + (sharedB ? 0 : i * bRows * bCols), bCols, out.pointer + i * m * n, n)
            }
        }
    }
    GradientTape.record(out, [a, b]) { g in
        var ga: Tensor?, gb: Tensor?
        if a.requiresGrad {
            // dA = dC · op(B)ᵀ (or its transpose when A was transposed).
            let da = Tensor(uninitializedShape: a.shape)
            for i in 0..<batch {
                let gp = g.pointer + i * m * n, bp = b.pointer + (sharedB ? 0 : i * bRows * bCols)
                let dap = da.pointer + i * aRows * aCols
                if transposeA {  // A is [K, M]: dA = op(B) · dCᵀ
                    gemm(transposeB, true, k, m, n, bp, bCols, gp, n, dap, aCols)
                } else {         // A is [M, K]: dA = dC · op(B)ᵀ
                    gemm(false, !transposeB, m, k, n, gp, n, bp, bCols, dap, aCols)
                }
            }
            ga = da
        }
        if b.requiresGrad {
            let db = Tensor.zeros(b.shape)
            for i in 0..<batch {
                let gp = g.pointer + i * m * n, ap = a.pointer + i * aRows * aCols
                let dbp = db.pointer + (sharedB ? 0 : i * bRows * bCols)
                let beta: Float = sharedB ? 1 : 0
                if transposeB {  // B is [N, K]: dB = dCᵀ · op(A)
                    gemm(true, transposeA, n, k, m, gp, n, ap, aCols, dbp, bCols, beta: beta)
                } else {         // B is [K, N]: dB = op(A)ᵀ · dC
                    gemm(!transposeA, false, k, n, m, ap, aCols, gp, n, dbp, bCols, beta: beta)
                }
            }
            gb = db
        }
        return [ga, gb]
    }
    return out
}

/// `x · weightᵀ + bias` over the last axis: `x [..., in]`, `weight [out, in]` (PyTorch layout),
/// `bias [out]`.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    precondition(weight.rank == 2 && x.shape.last == weight.shape[1],
                 "linear: input \(x.shape) does not match weight \(weight.shape) ([out, in])")
    let inFeatures = weight.shape[1], outFeatures = weight.shape[0]
    let rows = x.count / max(inFeatures, 1)
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
    FlopCounter.add(multiplyAdds: rows * inFeatures * outFeatures)
    withExtendedLifetime((x, weight, bias)) {
        if let bias {
            precondition(bias.shape == [outFeatures], "linear: bias \(bias.shape) does not match \(outFeatures) outputs")
            stridedCopy(out.pointer, [outFeatures, 1], bias.pointer, [0, 1], [rows, outFeatures])
        }
        gemm(false, true, rows, outFeatures, inFeatures, x.pointer, inFeatures, weight.pointer, inFeatures,
             out.pointer, outFeatures, beta: bias == nil ? 0 : 1)
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    GradientTape.record(out, inputs) { g in
        var grads: [Tensor?] = [nil, nil, nil]
        if x.requiresGrad {
            let dx = Tensor(uninitializedShape: x.shape)
            gemm(false, false, rows, inFeatures, outFeatures, g.pointer, outFeatures, weight.pointer, inFeatures,
                 dx.pointer, inFeatures)
            grads[0] = dx
        }
        if weight.requiresGrad {
            let dw = Tensor(uninitializedShape: weight.shape)
            gemm(true, false, outFeatures, inFeatures, rows, g.pointer, outFeatures, x.pointer, inFeatures,
                 dw.pointer, inFeatures)
            grads[1] = dw
        }
        if let bias, bias.requiresGrad {
            let db = Tensor(uninitializedShape: bias.shape)
            usi_reduce_sum(db.pointer, g.pointer, 1, Int64(rows), Int64(outFeatures))
            grads[2] = db
        }
        return Array(grads.prefix(inputs.count))
    }
    return out
}
