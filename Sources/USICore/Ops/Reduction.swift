import CUSIKernels

extension Tensor {
    /// Sum of all elements (a scalar, shape `[]`).
    public func sum() -> Tensor {
        let out = Tensor(Float(usi_sum_all(pointer, count)))
        let inShape = shape
        GradientTape.record(out, [self]) { g in [Tensor(shape: inShape, repeating: g.item)] }
        return out
    }

    /// Mean of all elements (a scalar, shape `[]`).
    public func mean() -> Tensor { sum() * (1 / Float(count)) }

    /// Sum over `axes`; reduced axes are kept with extent 1 when `keepingAxes` is true.
    public func sum(axes: [Int], keepingAxes: Bool = false) -> Tensor {
        let normalizedAxes = Set(axes.map { $0 < 0 ? $0 + rank : $0 })
        precondition(normalizedAxes.allSatisfy { $0 >= 0 && $0 < rank }, "sum: axes \(axes) out of range for \(shape)")
        var out = self.detached()
        for a in normalizedAxes.sorted(by: >) { out = out.summedWithoutTape(axis: a) }
        let kept = out.shape
        let finalShape = keepingAxes ? kept : shape.enumerated().filter { !normalizedAxes.contains($0.offset) }.map(\.element)
        out = out.reshapedWithoutTape(finalShape)
        let inShape = shape
        GradientTape.record(out, [self]) { g in [g.reshapedWithoutTape(kept).broadcastedWithoutTape(to: inShape)] }
        return out
    }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepingAxes: Bool = false) -> Tensor {
        let n = Set(axes.map { $0 < 0 ? $0 + rank : $0 }).map { shape[$0] }.reduce(1, *)
        return sum(axes: axes, keepingAxes: keepingAxes) * (1 / Float(n))
    }
}
