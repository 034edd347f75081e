import CUSIKernels

extension Communicator {
    /// Sums the gradients of `parameters` over every rank and multiplies them by `scale`
    /// (1 / number of shards, to average): the data-parallel step between backward and the
    /// optimiser update. The gradients travel packed in one buffer (one collective per step,
    /// not one per tensor); a parameter without a gradient counts as zeros, and gets one,
    /// because another rank may have one for it. On one process only the scaling remains.
    public func allReduceGradients(of parameters: [Tensor], scale: Float) throws {
        if size == 1 {
            guard scale != 1 else { return }
            for parameter in parameters {
                guard let gradient = parameter.grad else { continue }
                usi_affine(gradient.pointer, gradient.pointer, scale, 0, gradient.count)
            }
            return
        }
        let total = parameters.reduce(0) { $0 + $1.count }
        var packed = [Float](repeating: 0, count: total)
        try packed.withUnsafeMutableBufferPointer { buffer in
            var offset = 0
            for parameter in parameters {
                if let gradient = parameter.grad {
                    (buffer.baseAddress! + offset).update(from: gradient.pointer, count: parameter.count)
                }
                offset += parameter.count
            }
            try allReduceSum(buffer)
            offset = 0
            for parameter in parameters {
                let gradient = parameter.grad ?? Tensor(uninitializedShape: parameter.shape)
                usi_affine(gradient.pointer, buffer.baseAddress! + offset, scale, 0, parameter.count)
                if parameter.grad == nil { parameter.grad = gradient }
                offset += parameter.count
            }
        }
    }
}
