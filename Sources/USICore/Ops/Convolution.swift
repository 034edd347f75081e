import CUSIKernels

/// How a convolution or pooling window is padded.
public enum Padding: Sendable, Hashable {
    /// Explicit zero padding per side.
    case explicit(top: Int, bottom: Int, left: Int, right: Int)
    /// TensorFlow "SAME": output `ceil(input / stride)`, padding split with the extra pixel at
    /// the bottom/right (as timm's `Conv2dSame` and the `tf_` models use).
    case same
    /// No padding.
    case valid

    /// The same padding on every side.
    public static func symmetric(_ amount: Int) -> Padding {
        .explicit(top: amount, bottom: amount, left: amount, right: amount)
    }

    /// Height/width padding pairs.
    public static func symmetric(height: Int, width: Int) -> Padding {
        .explicit(top: height, bottom: height, left: width, right: width)
    }

    /// `(before, after, output)` along one axis of `size` for a window of `kernel`.
    func resolve(size: Int, kernel: Int, stride: Int, dilation: Int, vertical: Bool,
                 ceilMode: Bool = false) -> (before: Int, after: Int, output: Int) {
        let span = (kernel - 1) * dilation + 1
        switch self {
        case .same:
            let output = (size + stride - 1) / stride
            let total = max((output - 1) * stride + span - size, 0)
            return (total / 2, total - total / 2, output)
        case .valid:
            return (0, 0, Padding.outputSize(size, 0, 0, span, stride, ceilMode))
        case let .explicit(top, bottom, left, right):
            let (b, a) = vertical ? (top, bottom) : (left, right)
            return (b, a, Padding.outputSize(size, b, a, span, stride, ceilMode))
        }
    }

    /// PyTorch's output size, including ceil mode's rule that the last window must start
    /// inside the input or the leading padding.
    static func outputSize(_ size: Int, _ before: Int, _ after: Int, _ span: Int, _ stride: Int,
                           _ ceilMode: Bool) -> Int {
        let padded = size + before + after - span
        precondition(padded >= 0, "window of extent \(span) is larger than the padded input \(size + before + after)")
        if !ceilMode { return padded / stride + 1 }
        var output = (padded + stride - 1) / stride + 1
        if (output - 1) * stride >= size + before { output -= 1 }
        return output
    }
}

/// The kernel's description of a windowed op over an `[N, H, W, C]` input.
func windowShape(input: [Int], outChannels: Int, kernel: (Int, Int), stride: (Int, Int), padding: Padding,
                 dilation: (Int, Int), groups: Int, ceilMode: Bool = false, op: String) -> usi_conv_shape {
    precondition(input.count == 4, "\(op): input must be [N, H, W, C], got \(input)")
    let v = padding.resolve(size: input[1], kernel: kernel.0, stride: stride.0, dilation: dilation.0,
                            vertical: true, ceilMode: ceilMode)
    let h = padding.resolve(size: input[2], kernel: kernel.1, stride: stride.1, dilation: dilation.1,
                            vertical: false, ceilMode: ceilMode)
    precondition(v.output > 0 && h.output > 0, "\(op): output would be empty for input \(input)")
    return usi_conv_shape(
        N: Int32(input[0]), H: Int32(input[1]), W: Int32(input[2]), C: Int32(input[3]), OC: Int32(outChannels),
        KH: Int32(kernel.0), KW: Int32(kernel.1), SH: Int32(stride.0), SW: Int32(stride.1),
        PT: Int32(v.before), PL: Int32(h.before), DH: Int32(dilation.0), DW: Int32(dilation.1),
        OH: Int32(v.output), OW: Int32(h.output), groups: Int32(groups))
}

/// 2-D convolution, channels-last.
///
/// - Parameters:
///   - x: `[N, H, W, C]`.
///   - weight: `[OC, KH, KW, C / groups]` (OHWI; PyTorch's OIHW is converted at the file boundary).
///   - bias: `[OC]` or `nil`.
/// - Returns: `[N, OH, OW, OC]`.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                   padding: Padding = .valid, dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
    precondition(weight.rank == 4, "conv2d: weight must be [OC, KH, KW, C/groups], got \(weight.shape)")
    let outChannels = weight.shape[0]
    precondition(x.rank == 4 && groups > 0 && x.shape[3] % groups == 0 && outChannels % groups == 0
                 && weight.shape[3] * groups == x.shape[3],
                 "conv2d: input \(x.shape) does not match weight \(weight.shape) with groups \(groups)")
    if let bias { precondition(bias.shape == [outChannels], "conv2d: bias \(bias.shape) for \(outChannels) channels") }
    var s = windowShape(input: x.shape, outChannels: outChannels, kernel: (weight.shape[1], weight.shape[2]),
                        stride: stride, padding: padding, dilation: dilation, groups: groups, op: "conv2d")
    let depthwise = groups == x.shape[3] && outChannels == groups
    let out = Tensor(uninitializedShape: [x.shape[0], Int(s.OH), Int(s.OW), outChannels])
    FlopCounter.add(multiplyAdds: out.count * weight.count / outChannels)
    let biasPointer = bias.map { UnsafePointer($0.pointer) }
    withExtendedLifetime((x, weight, bias)) {
        if depthwise {
            usi_dwconv2d_forward(out.pointer, x.pointer, weight.pointer, biasPointer, &s)
        } else {
            let workspace = Tensor(uninitializedShape: [usi_conv2d_workspace_size(&s)])
            usi_conv2d_forward(out.pointer, x.pointer, weight.pointer, biasPointer, &s, workspace.pointer)
        }
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    GradientTape.record(out, inputs) { g in
        let dx = x.requiresGrad ? Tensor.zeros(x.shape) : nil
        let dw = weight.requiresGrad ? Tensor.zeros(weight.shape) : nil
        let db = (bias?.requiresGrad ?? false) ? Tensor.zeros([outChannels]) : nil
        if depthwise {
            usi_dwconv2d_backward(dx?.pointer, dw?.pointer, db?.pointer, g.pointer, x.pointer, weight.pointer, &s)
        } else {
            let workspace = Tensor(uninitializedShape: [usi_conv2d_workspace_size(&s)])
            usi_conv2d_backward(dx?.pointer, dw?.pointer, db?.pointer, g.pointer, x.pointer, weight.pointer, &s,
                                workspace.pointer)
        }
        return Array([dx, dw, db].prefix(inputs.count))
    }
    return out
}
