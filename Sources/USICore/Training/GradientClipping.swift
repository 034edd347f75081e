import CUSIKernels

/// The global L2 norm of the gradients of `tensors`: `sqrt(Σ‖grad‖²)` over every tensor
/// that has a gradient (accumulated in double, in C). `0` when none has one.
public func gradientNorm(_ tensors: [Tensor]) -> Float {
    var sumOfSquares = 0.0
    for tensor in tensors {
        guard let grad = tensor.grad else { continue }
        sumOfSquares += withExtendedLifetime(grad) { usi_optim_sum_squares(grad.pointer, grad.count) }
    }
    return Float(sumOfSquares.squareRoot())
}

/// Clips gradients by their global L2 norm, in place, like `torch.nn.utils.clip_grad_norm_`
/// (USI's recipe does not clip: this is off unless a trainer asks for it).
///
/// Computes the total norm over every tensor that has a gradient; when
/// `maxNorm / (total + 1e-6) < 1` every gradient is multiplied by that factor. A non-finite
/// total (NaN/∞ gradients) makes the factor NaN and so the gradients NaN, as in PyTorch with
/// `error_if_nonfinite=False`, so a NaN-loss check still sees them.
/// - Parameters:
///   - tensors: The parameters whose gradients are clipped (those without one are ignored).
///   - maxNorm: The largest total norm allowed (> 0).
/// - Returns: The total norm before clipping.
@discardableResult
public func clipGradientNorm(_ tensors: [Tensor], maxNorm: Float) -> Float {
    precondition(maxNorm > 0, "clipGradientNorm: maxNorm must be positive, got \(maxNorm)")
    let total = gradientNorm(tensors)
    let coefficient = maxNorm / (total + 1e-6)
    if !(coefficient >= 1) {  // also scales by NaN when the total is not finite
        for tensor in tensors {
            guard let grad = tensor.grad else { continue }
            withExtendedLifetime(grad) { usi_affine(grad.pointer, grad.pointer, coefficient, 0, grad.count) }
        }
    }
    return total
}

/// Clips the gradients of named parameters by their global L2 norm (see
/// the `[Tensor]` overload); returns the total norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [(name: String, tensor: Tensor)], maxNorm: Float) -> Float {
    clipGradientNorm(parameters.map { $0.tensor }, maxNorm: maxNorm)
}

extension Optimizer {
    /// Clips the gradients of this optimiser's parameters by their global L2 norm (call it
    /// between `backward()` and ``step()``); returns the total norm before clipping.
    @discardableResult
    public func clipGradientNorm(maxNorm: Float) -> Float {
        USICore.clipGradientNorm(parameters.map { $0.tensor }, maxNorm: maxNorm)
    }
}
