import CUSIKernels

/// Elementwise binary op with broadcasting, computed by one strided C kernel.
private func binary(_ a: Tensor, _ b: Tensor, _ op: usi_binary_op, _ name: String) -> Tensor {
    let shape = Broadcast.shape(a.shape, b.shape, op: name)
    let out = Tensor(uninitializedShape: shape)
    if shape.count > 8 {
        // Collapse is not needed in practice; ranks stay small.
        preconditionFailure("\(name): rank \(shape.count) exceeds the kernels' limit of 8")
    }
    let aStrides = Broadcast.strides(of: a.shape, broadcastTo: shape)
    let bStrides = Broadcast.strides(of: b.shape, broadcastTo: shape)
    let dims = shape.map(Int64.init)
    withExtendedLifetime((a, b)) {
        usi_binary_forward(Int32(op.rawValue), out.pointer, a.pointer, aStrides, b.pointer, bStrides,
                           dims, Int32(shape.count))
    }
    return out
}

/// Elementwise sum with broadcasting.
public func + (a: Tensor, b: Tensor) -> Tensor {
    let out = binary(a, b, USI_ADD, "add")
    GradientTape.record(out, [a, b]) { g in
        [Broadcast.reduce(g, to: a.shape), Broadcast.reduce(g, to: b.shape)]
    }
    return out
}

/// Elementwise difference with broadcasting.
public func - (a: Tensor, b: Tensor) -> Tensor {
    let out = binary(a, b, USI_SUB, "sub")
    GradientTape.record(out, [a, b]) { g in
        [Broadcast.reduce(g, to: a.shape), b.requiresGrad ? Broadcast.reduce(g, to: b.shape).scaledWithoutTape(-1) : nil]
    }
    return out
}

/// Elementwise product with broadcasting.
public func * (a: Tensor, b: Tensor) -> Tensor {
    let out = binary(a, b, USI_MUL, "mul")
    GradientTape.record(out, [a, b]) { g in
        [a.requiresGrad ? Broadcast.reduce(binary(g, b, USI_MUL, "mul"), to: a.shape) : nil,
         b.requiresGrad ? Broadcast.reduce(binary(g, a, USI_MUL, "mul"), to: b.shape) : nil]
    }
    return out
}

/// Elementwise quotient with broadcasting.
public func / (a: Tensor, b: Tensor) -> Tensor {
    let out = binary(a, b, USI_DIV, "div")
    GradientTape.record(out, [a, b]) { g in
        let ga = binary(g, b, USI_DIV, "div")  // g / b
        // d(a/b)/db = -a/b² = -out/b
        let gb = b.requiresGrad
            ? Broadcast.reduce(binary(ga, out, USI_MUL, "mul").scaledWithoutTape(-1), to: b.shape)
            : nil
        return [a.requiresGrad ? Broadcast.reduce(ga, to: a.shape) : nil, gb]
    }
    return out
}

extension Tensor {
    func scaledWithoutTape(_ factor: Float) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        usi_affine(out.pointer, pointer, factor, 0, count)
        return out
    }

    /// `a * x + b` elementwise (a scalar affine map), differentiable.
    public func affine(scale: Float, shift: Float) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        usi_affine(out.pointer, pointer, scale, shift, count)
        GradientTape.record(out, [self]) { g in [g.scaledWithoutTape(scale)] }
        return out
    }
}

/// Adds a scalar.
public func + (a: Tensor, b: Float) -> Tensor { a.affine(scale: 1, shift: b) }
/// Adds a scalar.
public func + (a: Float, b: Tensor) -> Tensor { b.affine(scale: 1, shift: a) }
/// Subtracts a scalar.
public func - (a: Tensor, b: Float) -> Tensor { a.affine(scale: 1, shift: -b) }
/// Subtracts from a scalar.
public func - (a: Float, b: Tensor) -> Tensor { b.affine(scale: -1, shift: a) }
/// Multiplies by a scalar.
public func * (a: Tensor, b: Float) -> Tensor { a.affine(scale: b, shift: 0) }
/// Multiplies by a scalar.
public func * (a: Float, b: Tensor) -> Tensor { b.affine(scale: a, shift: 0) }
/// Divides by a scalar.
public func / (a: Tensor, b: Float) -> Tensor { a.affine(scale: 1 / b, shift: 0) }
/// Negation.
public prefix func - (a: Tensor) -> Tensor { a.affine(scale: -1, shift: 0) }
