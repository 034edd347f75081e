import CUSIKernels

/// Training-mode BatchNorm whose statistics are those of the whole global batch, every rank's
/// rows together (PyTorch's `SyncBatchNorm`): each rank sums (x − shift) and (x − shift)² per
/// channel, the sums and the row count are all-reduced, and every rank normalises with the
/// global mean and biased variance and updates its running statistics with them (unbiased
/// with the global count). Backward all-reduces Σ dy and Σ dy·(x − mean) per channel for the
/// input gradient; the weight and bias gradients stay this rank's own sums, which the
/// data-parallel gradient average then combines. With every rank's loss the mean over its own
/// rows and gradients averaged over the ranks, this is plain BatchNorm over the global batch,
/// forward and backward.
///
/// `shift` must be the same on every rank (the running mean, which rank 0 broadcasts after each
/// step); it only keeps the sums well-conditioned. A failed collective ends the process with
/// its error: a forward or backward cannot throw, and a rank left behind would hang the others.
func synchronizedBatchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVariance: Tensor?,
                           momentum: Float, epsilon: Float, communicator: any Communicator) -> Tensor {
    let channels = x.shape.last ?? 0
    let rows = x.count / max(channels, 1)
    let shift = runningMean.map { $0.toArray() } ?? [Float](repeating: 0, count: channels)
    // [Σ(x − shift) per channel, Σ(x − shift)² per channel, rows]
    var sums = [Double](repeating: 0, count: 2 * channels + 1)
    sums.withUnsafeMutableBufferPointer { s in
        withExtendedLifetime(x) { usi_batchnorm_sums(s.baseAddress!, s.baseAddress! + channels, x.pointer, nil, shift, Int64(rows), Int32(channels)) }
    }
    sums[2 * channels] = Double(rows)
    collective("forward") { try communicator.allReduceSum(&sums) }
    let count = sums[2 * channels]
    precondition(count > 1 || runningMean == nil, "synchronized batchNorm: training needs more than one value per channel")
    let mean = Tensor(uninitializedShape: [channels]), invstd = Tensor(uninitializedShape: [channels])
    for c in 0..<channels {  // C values: not a hot loop
        let shifted = sums[c] / count
        let variance = max(0, sums[channels + c] / count - shifted * shifted)
        mean.pointer[c] = Float(Double(shift[c]) + shifted)
        invstd.pointer[c] = Float(1 / (variance + Double(epsilon)).squareRoot())
        if let runningMean, let runningVariance {
            runningMean.pointer[c] = (1 - momentum) * runningMean.pointer[c] + momentum * mean.pointer[c]
            runningVariance.pointer[c] = (1 - momentum) * runningVariance.pointer[c]
                + momentum * Float(variance * count / max(count - 1, 1))
        }
    }
    let out = Tensor(uninitializedShape: x.shape)
    let w = weight.map { UnsafePointer($0.pointer) }, b = bias.map { UnsafePointer($0.pointer) }
    withExtendedLifetime((x, weight, bias)) {
        usi_batchnorm_normalize(out.pointer, x.pointer, mean.pointer, invstd.pointer, w, b, Int64(rows), Int32(channels))
    }
    let inputs = [x] + [weight, bias].compactMap { $0 }
    GradientTape.record(out, inputs) { g in
        // [Σ dy, Σ dy·(x − mean)] per channel, this rank's rows.
        var local = [Double](repeating: 0, count: 2 * channels)
        local.withUnsafeMutableBufferPointer { s in
            withExtendedLifetime((x, g)) {
                usi_batchnorm_sums(s.baseAddress!, s.baseAddress! + channels, x.pointer, g.pointer, mean.pointer,
                                   Int64(rows), Int32(channels))
            }
        }
        let dw = (weight?.requiresGrad ?? false) ? Tensor(shape: [channels], values: (0..<channels).map { Float(local[channels + $0] * Double(invstd.pointer[$0])) }) : nil
        let db = (bias?.requiresGrad ?? false) ? Tensor(shape: [channels], values: (0..<channels).map { Float(local[$0]) }) : nil
        var dx: Tensor?
        if x.requiresGrad {
            var global = local
            collective("backward") { try communicator.allReduceSum(&global) }
            let gradient = Tensor.zeros(x.shape)
            global.withUnsafeBufferPointer { s in
                withExtendedLifetime((x, g, weight)) {
                    usi_batchnorm_backward_input(gradient.pointer, g.pointer, x.pointer, mean.pointer, invstd.pointer, w,
                                                 s.baseAddress!, s.baseAddress! + channels, count, Int64(rows), Int32(channels))
                }
            }
            dx = gradient
        }
        return affineGradients(dx, dw, db, weight: weight, bias: bias)
    }
    return out
}

private func collective(_ pass: String, _ body: () throws -> Void) {
    do {
        try body()
    } catch {
        fatalError("synchronized BatchNorm: the all-reduce of the \(pass) pass failed: \(error)")
    }
}
