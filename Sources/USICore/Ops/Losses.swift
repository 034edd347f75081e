import CUSIKernels

/// Mean cross-entropy of `logits [M, C]` against integer class labels (`[M]`).
public func crossEntropy(_ logits: Tensor, labels: [Int]) -> Tensor {
    let (rows, columns) = rowsAndColumns(logits, "crossEntropy")
    precondition(labels.count == Int(rows), "crossEntropy: \(labels.count) labels for \(rows) rows")
    precondition(labels.allSatisfy { $0 >= 0 && $0 < Int(columns) }, "crossEntropy: a label is outside 0..<\(columns)")
    let labels32 = labels.map(Int32.init)
    let probabilities = Tensor(uninitializedShape: logits.shape)
    let loss = withExtendedLifetime(logits) {
        usi_cross_entropy_forward(probabilities.pointer, logits.pointer, nil, labels32, rows, columns)
    }
    let out = Tensor(Float(loss))
    GradientTape.record(out, [logits]) { g in
        let dx = Tensor.zeros(logits.shape)
        usi_cross_entropy_backward(dx.pointer, probabilities.pointer, nil, labels32, rows, columns, g.item)
        return [dx]
    }
    return out
}

/// Mean over rows of `−Σ t·log softmax(logits)` for soft targets `t [M, C]` (Mixup/CutMix
/// labels). Targets are constants (no gradient flows to them).
public func crossEntropy(_ logits: Tensor, softTargets targets: Tensor) -> Tensor {
    let (rows, columns) = rowsAndColumns(logits, "crossEntropy")
    precondition(targets.shape == logits.shape, "crossEntropy: targets \(targets.shape) for logits \(logits.shape)")
    let probabilities = Tensor(uninitializedShape: logits.shape)
    let loss = withExtendedLifetime((logits, targets)) {
        usi_cross_entropy_forward(probabilities.pointer, logits.pointer, targets.pointer, nil, rows, columns)
    }
    let out = Tensor(Float(loss))
    GradientTape.record(out, [logits]) { g in
        let dx = Tensor.zeros(logits.shape)
        usi_cross_entropy_backward(dx.pointer, probabilities.pointer, targets.pointer, nil, rows, columns, g.item)
        return [dx]
    }
    return out
}

/// `KL(softmax(teacher) ‖ softmax(student))` averaged over rows — PyTorch's
/// `F.kl_div(log_softmax(student), softmax(teacher), reduction: "batchmean")` at temperature 1.
/// Gradients flow to both arguments (detach the teacher to freeze it).
public func klDivergence(student: Tensor, teacher: Tensor) -> Tensor {
    precondition(student.shape == teacher.shape, "klDivergence: student \(student.shape) vs teacher \(teacher.shape)")
    let rows = student.count / max(student.shape.last ?? 1, 1)
    let teacherLog = logSoftmax(teacher)
    let teacherProbabilities = softmax(teacher)
    return (teacherProbabilities * (teacherLog - logSoftmax(student))).sum() * (1 / Float(rows))
}
