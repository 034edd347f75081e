import CUSIKernels

private func unary(_ x: Tensor, _ kind: usi_unary) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    withExtendedLifetime(x) { usi_unary_forward(Int32(kind.rawValue), out.pointer, x.pointer, x.count) }
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(x.shape)
        usi_unary_backward(Int32(kind.rawValue), dx.pointer, g.pointer, x.pointer, out.pointer, x.count)
        return [dx]
    }
    return out
}

/// eˣ elementwise.
public func exp(_ x: Tensor) -> Tensor { unary(x, USI_EXP) }
/// Natural logarithm elementwise.
public func log(_ x: Tensor) -> Tensor { unary(x, USI_LOG) }
/// Square root elementwise.
public func sqrt(_ x: Tensor) -> Tensor { unary(x, USI_SQRT) }
/// x² elementwise.
public func square(_ x: Tensor) -> Tensor { unary(x, USI_SQUARE) }
/// |x| elementwise.
public func abs(_ x: Tensor) -> Tensor { unary(x, USI_ABS) }

/// Clamps elementwise to [lower, upper] (PyTorch's `clamp`, gradient 1 inside the bounds).
public func clamp(_ x: Tensor, lower: Float = -.infinity, upper: Float = .infinity) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    withExtendedLifetime(x) { usi_clamp_forward(out.pointer, x.pointer, x.count, lower, upper) }
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(x.shape)
        usi_clamp_backward(dx.pointer, g.pointer, x.pointer, x.count, lower, upper)
        return [dx]
    }
    return out
}
