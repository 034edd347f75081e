import CUSIKernels

/// Copies `src` (read with `srcStrides`) into `dst` (written with `dstStrides`) over `dims`.
func stridedCopy(_ dst: UnsafeMutablePointer<Float>, _ dstStrides: [Int], _ src: UnsafePointer<Float>,
                 _ srcStrides: [Int], _ dims: [Int], accumulate: Bool = false) {
    precondition(dims.count <= 8, "strided copy: rank \(dims.count) exceeds the kernels' limit of 8")
    usi_copy_strided(dst, dstStrides.map(Int64.init), src, srcStrides.map(Int64.init),
                     dims.map(Int64.init), Int32(dims.count), accumulate ? 1 : 0)
}

extension Tensor {
    private func normalized(axis: Int, op: String) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "\(op): axis \(axis) is out of range for shape \(shape)")
        return a
    }

    /// The same elements in another shape; one extent may be -1 (inferred). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let inferred = target.firstIndex(of: -1) {
            let known = target.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "reshape: \(shape) cannot become \(newShape)")
            target[inferred] = count / known
        }
        let out = reshapedWithoutTape(target)
        let original = shape
        GradientTape.record(out, [self]) { g in [g.reshapedWithoutTape(original)] }
        return out
    }

    /// Flattens axes `startAxis...` into one (`[N, H, W, C]` → `[N, H·W·C]` by default).
    public func flattened(from startAxis: Int = 1) -> Tensor {
        let a = normalized(axis: startAxis, op: "flatten")
        return reshaped(Array(shape[..<a]) + [shape[a...].reduce(1, *)])
    }

    /// Reorders the axes: result axis `i` is input axis `axes[i]`.
    public func permuted(_ axes: [Int]) -> Tensor {
        precondition(axes.sorted() == Array(0..<rank), "permute: \(axes) is not a permutation of \(rank) axes")
        let outShape = axes.map { shape[$0] }
        let out = Tensor(uninitializedShape: outShape)
        let inStrides = strides
        stridedCopy(out.pointer, out.strides, pointer, axes.map { inStrides[$0] }, outShape)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in axes.enumerated() { inverse[a] = i }
        GradientTape.record(out, [self]) { g in [g.permutedWithoutTape(inverse)] }
        return out
    }

    func permutedWithoutTape(_ axes: [Int]) -> Tensor {
        withoutGradients { permuted(axes) }
    }

    /// Swaps two axes.
    public func transposed(_ axis0: Int, _ axis1: Int) -> Tensor {
        var axes = Array(0..<rank)
        axes.swapAt(normalized(axis: axis0, op: "transpose"), normalized(axis: axis1, op: "transpose"))
        return permuted(axes)
    }

    /// Elements `range` along `axis` (a copy).
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let a = normalized(axis: axis, op: "slice")
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[a],
                     "slice: range \(range) is out of bounds for axis \(a) of \(shape)")
        var outShape = shape
        outShape[a] = range.count
        let out = Tensor(uninitializedShape: outShape)
        let offset = range.lowerBound * strides[a]
        stridedCopy(out.pointer, out.strides, pointer + offset, strides, outShape)
        let inShape = shape
        GradientTape.record(out, [self]) { g in
            let gx = Tensor.zeros(inShape)
            stridedCopy(gx.pointer + offset, gx.strides, g.pointer, g.strides, g.shape)
            return [gx]
        }
        return out
    }

    /// Splits along `axis` into pieces of the given sizes.
    public func split(sizes: [Int], axis: Int) -> [Tensor] {
        let a = normalized(axis: axis, op: "split")
        precondition(sizes.reduce(0, +) == shape[a], "split: sizes \(sizes) do not add up to \(shape[a])")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(axis: a, start..<start + size)
        }
    }

    /// Pads with a constant; `padding[i]` is `(before, after)` for axis `i` (missing trailing
    /// entries mean no padding).
    public func padded(_ padding: [(before: Int, after: Int)], value: Float = 0) -> Tensor {
        precondition(padding.count <= rank, "pad: \(padding.count) pairs for rank \(rank)")
        let pads = padding + Array(repeating: (before: 0, after: 0), count: rank - padding.count)
        precondition(pads.allSatisfy { $0.before >= 0 && $0.after >= 0 }, "pad: negative padding")
        let outShape = zip(shape, pads).map { $0 + $1.before + $1.after }
        let out = Tensor(shape: outShape, repeating: value)
        let outStrides = out.strides
        let offset = zip(pads, outStrides).map { $0.before * $1 }.reduce(0, +)
        stridedCopy(out.pointer + offset, outStrides, pointer, strides, shape)
        let inShape = shape
        GradientTape.record(out, [self]) { g in
            let gx = Tensor(uninitializedShape: inShape)
            stridedCopy(gx.pointer, gx.strides, g.pointer + offset, outStrides, inShape)
            return [gx]
        }
        return out
    }
}

/// Joins tensors along `axis`; all other extents must agree.
public func concatenate(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concatenate: no tensors")
    let first = tensors[0]
    let a = axis < 0 ? axis + first.rank : axis
    for t in tensors {
        precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == a || t.shape[$0] == first.shape[$0] },
                     "concatenate: shapes \(tensors.map(\.shape)) differ outside axis \(a)")
    }
    var outShape = first.shape
    outShape[a] = tensors.map { $0.shape[a] }.reduce(0, +)
    let out = Tensor(uninitializedShape: outShape)
    let outStrides = out.strides
    var offsets: [Int] = []
    var start = 0
    for t in tensors {
        offsets.append(start * outStrides[a])
        withExtendedLifetime(t) { stridedCopy(out.pointer + start * outStrides[a], outStrides, t.pointer, t.strides, t.shape) }
        start += t.shape[a]
    }
    GradientTape.record(out, tensors) { g in
        zip(tensors, offsets).map { t, offset in
            guard t.requiresGrad else { return nil }
            let gx = Tensor(uninitializedShape: t.shape)
            stridedCopy(gx.pointer, gx.strides, g.pointer + offset, outStrides, t.shape)
            return gx
        }
    }
    return out
}
