import CUSIKernels

/// Softmax over the last axis.
public func softmax(_ x: Tensor) -> Tensor {
    let (rows, columns) = rowsAndColumns(x, "softmax")
    let out = Tensor(uninitializedShape: x.shape)
    withExtendedLifetime(x) { usi_softmax_forward(out.pointer, x.pointer, rows, columns) }
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(x.shape)
        usi_softmax_backward(dx.pointer, g.pointer, out.pointer, rows, columns)
        return [dx]
    }
    return out
}

/// Log-softmax over the last axis.
public func logSoftmax(_ x: Tensor) -> Tensor {
    let (rows, columns) = rowsAndColumns(x, "logSoftmax")
    let out = Tensor(uninitializedShape: x.shape)
    withExtendedLifetime(x) { usi_log_softmax_forward(out.pointer, x.pointer, rows, columns) }
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(x.shape)
        usi_log_softmax_backward(dx.pointer, g.pointer, out.pointer, rows, columns)
        return [dx]
    }
    return out
}

func rowsAndColumns(_ x: Tensor, _ op: String) -> (Int64, Int32) {
    precondition(x.rank >= 1 && x.shape.last! > 0, "\(op): needs a non-empty last axis, got \(x.shape)")
    return (Int64(x.count / x.shape.last!), Int32(x.shape.last!))
}
