import CUSIKernels

/// Max pooling over `[N, H, W, C]` (padding never wins, as PyTorch's −∞ padding).
public func maxPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: Padding = .valid,
                      ceilMode: Bool = false) -> Tensor {
    var s = windowShape(input: x.shape, outChannels: x.shape.last ?? 0, kernel: kernel, stride: stride ?? kernel,
                        padding: padding, dilation: (1, 1), groups: 1, ceilMode: ceilMode, op: "maxPool2d")
    let outShape = [x.shape[0], Int(s.OH), Int(s.OW), x.shape[3]]
    let out = Tensor(uninitializedShape: outShape)
    let count = outShape.reduce(1, *)
    let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
    let owner = IndexBuffer(argmax)
    withExtendedLifetime(x) { usi_maxpool2d_forward(out.pointer, argmax, x.pointer, &s) }
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(x.shape)
        withExtendedLifetime(owner) { usi_maxpool2d_backward(dx.pointer, g.pointer, owner.pointer, &s) }
        return [dx]
    }
    return out
}

/// Owns the argmax indices a max-pool pullback needs.
private final class IndexBuffer {
    let pointer: UnsafeMutablePointer<Int32>
    init(_ pointer: UnsafeMutablePointer<Int32>) { self.pointer = pointer }
    deinit { pointer.deallocate() }
}

/// Average pooling over `[N, H, W, C]`. `countIncludePad` selects PyTorch's divisor rule.
public func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: Padding = .valid,
                      ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor {
    var s = windowShape(input: x.shape, outChannels: x.shape.last ?? 0, kernel: kernel, stride: stride ?? kernel,
                        padding: padding, dilation: (1, 1), groups: 1, ceilMode: ceilMode, op: "avgPool2d")
    let include: Int32 = countIncludePad ? 1 : 0
    let out = Tensor(uninitializedShape: [x.shape[0], Int(s.OH), Int(s.OW), x.shape[3]])
    withExtendedLifetime(x) { usi_avgpool2d_forward(out.pointer, x.pointer, &s, include) }
    let inShape = x.shape
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(inShape)
        usi_avgpool2d_backward(dx.pointer, g.pointer, &s, include)
        return [dx]
    }
    return out
}

/// Adaptive average pooling to `outputSize` with PyTorch's bins.
public func adaptiveAvgPool2d(_ x: Tensor, outputSize: (Int, Int)) -> Tensor {
    precondition(x.rank == 4, "adaptiveAvgPool2d: input must be [N, H, W, C], got \(x.shape)")
    let (n, h, w, c) = (Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(x.shape[3]))
    let (oh, ow) = (Int32(outputSize.0), Int32(outputSize.1))
    let out = Tensor(uninitializedShape: [x.shape[0], outputSize.0, outputSize.1, x.shape[3]])
    withExtendedLifetime(x) { usi_adaptive_avgpool2d_forward(out.pointer, x.pointer, n, h, w, c, oh, ow) }
    let inShape = x.shape
    GradientTape.record(out, [x]) { g in
        let dx = Tensor.zeros(inShape)
        usi_adaptive_avgpool2d_backward(dx.pointer, g.pointer, n, h, w, c, oh, ow)
        return [dx]
    }
    return out
}

/// Mean over the spatial axes: `[N, H, W, C]` → `[N, C]` (timm's global average pool).
public func globalAvgPool2d(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "globalAvgPool2d: input must be [N, H, W, C], got \(x.shape)")
    return x.mean(axes: [1, 2])
}
