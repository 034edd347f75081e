import CUSIKernels

/// The pointwise nonlinearities, with PyTorch's definitions and gradient conventions.
public enum Activation: Sendable, Hashable {
    case relu, relu6, leakyReLU(negativeSlope: Float), gelu, geluTanh, silu, hardSwish, hardSigmoid, sigmoid, tanh
    /// No-op.
    case identity

    var kernel: (kind: usi_activation, alpha: Float)? {
        switch self {
        case .relu: (USI_RELU, 0)
        case .relu6: (USI_RELU6, 0)
        case let .leakyReLU(slope): (USI_LEAKY_RELU, slope)
        case .gelu: (USI_GELU, 0)
        case .geluTanh: (USI_GELU_TANH, 0)
        case .silu: (USI_SILU, 0)
        case .hardSwish: (USI_HARDSWISH, 0)
        case .hardSigmoid: (USI_HARDSIGMOID, 0)
        case .sigmoid: (USI_SIGMOID, 0)
        case .tanh: (USI_TANH, 0)
        case .identity: nil
        }
    }

    /// Applies the activation elementwise.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard let (kind, alpha) = kernel else { return x }
        let out = Tensor(uninitializedShape: x.shape)
        withExtendedLifetime(x) {
            usi_activation_forward(Int32(kind.rawValue), out.pointer, x.pointer, x.count, alpha)
        }
        GradientTape.record(out, [x]) { g in
            let dx = Tensor.zeros(x.shape)
            usi_activation_backward(Int32(kind.rawValue), dx.pointer, g.pointer, x.pointer, out.pointer, x.count, alpha)
            return [dx]
        }
        return out
    }
}

/// max(x, 0)
public func relu(_ x: Tensor) -> Tensor { Activation.relu(x) }
/// min(max(x, 0), 6)
public func relu6(_ x: Tensor) -> Tensor { Activation.relu6(x) }
/// x for x ≥ 0, slope·x otherwise.
public func leakyReLU(_ x: Tensor, negativeSlope: Float = 0.01) -> Tensor { Activation.leakyReLU(negativeSlope: negativeSlope)(x) }
/// GELU, exact (erf) form, or the tanh approximation when `approximateTanh` is true.
public func gelu(_ x: Tensor, approximateTanh: Bool = false) -> Tensor { (approximateTanh ? Activation.geluTanh : .gelu)(x) }
/// x·sigmoid(x)
public func silu(_ x: Tensor) -> Tensor { Activation.silu(x) }
/// x·relu6(x + 3)/6
public func hardSwish(_ x: Tensor) -> Tensor { Activation.hardSwish(x) }
/// relu6(x + 3)/6
public func hardSigmoid(_ x: Tensor) -> Tensor { Activation.hardSigmoid(x) }
/// 1/(1 + e⁻ˣ)
public func sigmoid(_ x: Tensor) -> Tensor { Activation.sigmoid(x) }
/// Hyperbolic tangent.
public func tanh(_ x: Tensor) -> Tensor { Activation.tanh(x) }
