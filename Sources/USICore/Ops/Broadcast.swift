import CUSIKernels

/// Shape arithmetic shared by the broadcasting ops (NumPy/PyTorch rules).
enum Broadcast {
    /// The broadcast shape of `a` and `b`, aligned at the trailing axis.
    static func shape(_ a: [Int], _ b: [Int], op: String) -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            precondition(da == db || da == 1 || db == 1,
                         "\(op): shapes \(a) and \(b) cannot be broadcast together")
            out[i] = da == 1 ? db : da
        }
        return out
    }

    /// Element strides that read a tensor of `shape` as if it had `target` shape (0 = repeat).
    static func strides(of shape: [Int], broadcastTo target: [Int]) -> [Int64] {
        let offset = target.count - shape.count
        let own = Tensor.contiguousStrides(shape)
        return (0..<target.count).map { i in
            i < offset || shape[i - offset] == 1 ? 0 : Int64(own[i - offset])
        }
    }

    /// Sums `gradient` (of the broadcast shape) down to `shape`: the pullback of a broadcast.
    static func reduce(_ gradient: Tensor, to shape: [Int]) -> Tensor {
        if gradient.shape == shape { return gradient }
        let offset = gradient.rank - shape.count
        var current = gradient
        // Sum each broadcast axis (leading extra axes, and axes of extent 1 in `shape`).
        var axis = gradient.rank - 1
        while axis >= 0 {
            let wanted = axis < offset ? 1 : shape[axis - offset]
            if current.shape[axis] != wanted {
                current = current.summedWithoutTape(axis: axis)
            }
            axis -= 1
        }
        return current.reshapedWithoutTape(shape)
    }
}

extension Tensor {
    /// Sum over one axis, keeping it with extent 1; no tape.
    func summedWithoutTape(axis: Int) -> Tensor {
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        var outShape = shape
        outShape[axis] = 1
        let out = Tensor(uninitializedShape: outShape)
        usi_reduce_sum(out.pointer, pointer, Int64(outer), Int64(n), Int64(inner))
        return out
    }

    /// A view with another shape of the same element count; no tape.
    func reshapedWithoutTape(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "reshape: \(shape) cannot become \(newShape)")
        return Tensor(shape: newShape, storage: storage)
    }

    /// Materialises this tensor broadcast to `target`; no tape.
    func broadcastedWithoutTape(to target: [Int]) -> Tensor {
        if shape == target { return self }
        let out = Tensor(uninitializedShape: target)
        let src = Broadcast.strides(of: shape, broadcastTo: target)
        let dst = Tensor.contiguousStrides(target).map(Int64.init)
        let dims = target.map(Int64.init)
        usi_copy_strided(out.pointer, dst, pointer, src, dims, Int32(target.count), 0)
        return out
    }
}
