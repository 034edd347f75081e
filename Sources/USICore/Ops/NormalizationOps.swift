import CUSIKernels

/// Batch normalisation over every axis but the last (channels-last BatchNorm1d/2d).
///
/// In training (`training: true`) it normalises with the batch statistics and, when running
/// statistics are given, updates them in place as PyTorch does: `running = (1 − momentum) ·
/// running + momentum · batch`, with the unbiased batch variance. In eval it uses the running
/// statistics. `weight`/`bias` (`[C]`) may be `nil` (no affine).
public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVariance: Tensor?,
                      training: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5) -> Tensor {
    let channels = x.shape.last ?? 0
    let rows = x.count / max(channels, 1)
    for (name, t) in [("weight", weight), ("bias", bias), ("running mean", runningMean), ("running variance", runningVariance)] {
        if let t { precondition(t.shape == [channels], "batchNorm: \(name) \(t.shape) for input \(x.shape)") }
    }
    let out = Tensor(uninitializedShape: x.shape)
    let w = weight.map { UnsafePointer($0.pointer) }, b = bias.map { UnsafePointer($0.pointer) }
    let inputs = [x] + [weight, bias].compactMap { $0 }
    if training {
        precondition(rows > 1 || runningMean == nil, "batchNorm: training needs more than one value per channel, input is \(x.shape)")
        let mean = Tensor(uninitializedShape: [channels]), invstd = Tensor(uninitializedShape: [channels])
        let variance = Tensor(uninitializedShape: [channels])
        withExtendedLifetime((x, weight, bias)) {
            usi_batchnorm_forward_train(out.pointer, mean.pointer, invstd.pointer, variance.pointer, x.pointer, w, b,
                                        Int64(rows), Int32(channels), epsilon)
        }
        if let runningMean, let runningVariance {
            let correction = Float(rows) / Float(max(rows - 1, 1))
            let rm = runningMean.pointer, rv = runningVariance.pointer
            for c in 0..<channels {  // C values per call: not a hot loop
                rm[c] = (1 - momentum) * rm[c] + momentum * mean.pointer[c]
                rv[c] = (1 - momentum) * rv[c] + momentum * variance.pointer[c] * correction
            }
        }
        GradientTape.record(out, inputs) { g in
            let dx = x.requiresGrad ? Tensor.zeros(x.shape) : nil
            let dw = (weight?.requiresGrad ?? false) ? Tensor.zeros([channels]) : nil
            let db = (bias?.requiresGrad ?? false) ? Tensor.zeros([channels]) : nil
            usi_batchnorm_backward(dx?.pointer, dw?.pointer, db?.pointer, g.pointer, x.pointer, mean.pointer,
                                   invstd.pointer, w, Int64(rows), Int32(channels))
            return affineGradients(dx, dw, db, weight: weight, bias: bias)
        }
    } else {
        guard let runningMean, let runningVariance else {
            preconditionFailure("batchNorm: eval mode needs running statistics")
        }
        withExtendedLifetime((x, weight, bias, runningMean, runningVariance)) {
            usi_batchnorm_forward_eval(out.pointer, x.pointer, runningMean.pointer, runningVariance.pointer, w, b,
                                       Int64(rows), Int32(channels), epsilon)
        }
        GradientTape.record(out, inputs) { g in
            let dx = x.requiresGrad ? Tensor.zeros(x.shape) : nil
            let dw = (weight?.requiresGrad ?? false) ? Tensor.zeros([channels]) : nil
            let db = (bias?.requiresGrad ?? false) ? Tensor.zeros([channels]) : nil
            usi_batchnorm_backward_eval(dx?.pointer, dw?.pointer, db?.pointer, g.pointer, x.pointer,
                                        runningMean.pointer, runningVariance.pointer, w, Int64(rows),
                                        Int32(channels), epsilon)
            return affineGradients(dx, dw, db, weight: weight, bias: bias)
        }
    }
    return out
}

/// Layer normalisation over the last axis (also ConvNeXt's channel LayerNorm, since images
/// are channels-last). `weight`/`bias` are `[C]` or `nil`.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float = 1e-5) -> Tensor {
    let channels = x.shape.last ?? 0
    let rows = x.count / max(channels, 1)
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let t { precondition(t.shape == [channels], "layerNorm: \(name) \(t.shape) for input \(x.shape)") }
    }
    let out = Tensor(uninitializedShape: x.shape)
    let mean = Tensor(uninitializedShape: [rows]), rstd = Tensor(uninitializedShape: [rows])
    let w = weight.map { UnsafePointer($0.pointer) }, b = bias.map { UnsafePointer($0.pointer) }
    withExtendedLifetime((x, weight, bias)) {
        usi_layernorm_forward(out.pointer, mean.pointer, rstd.pointer, x.pointer, w, b, Int64(rows), Int32(channels), epsilon)
    }
    let inputs = [x] + [weight, bias].compactMap { $0 }
    GradientTape.record(out, inputs) { g in
        let dx = x.requiresGrad ? Tensor.zeros(x.shape) : nil
        let dw = (weight?.requiresGrad ?? false) ? Tensor.zeros([channels]) : nil
        let db = (bias?.requiresGrad ?? false) ? Tensor.zeros([channels]) : nil
        usi_layernorm_backward(dx?.pointer, dw?.pointer, db?.pointer, g.pointer, x.pointer, mean.pointer,
                               rstd.pointer, w, Int64(rows), Int32(channels))
        return affineGradients(dx, dw, db, weight: weight, bias: bias)
    }
    return out
}

/// Gradients in the order of `[x] + [weight, bias].compactMap`.
func affineGradients(_ dx: Tensor?, _ dw: Tensor?, _ db: Tensor?, weight: Tensor?, bias: Tensor?) -> [Tensor?] {
    var grads: [Tensor?] = [dx]
    if weight != nil { grads.append(dw) }
    if bias != nil { grads.append(db) }
    return grads
}
