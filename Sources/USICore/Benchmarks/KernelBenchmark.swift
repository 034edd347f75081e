import CUSIKernels

/// Measures the compute kernels: a large square SGEMM (the machine's practical peak) and the
/// convolution layers that dominate CNN training, forward and backward (input and weight
/// gradients together), each as GFLOP/s and as a fraction of the SGEMM figure.
public enum KernelBenchmark {
    /// One convolution layer to measure.
    public struct Layer: Sendable {
        /// A name a reader can tell apart: kind, kernel, channels, spatial size, batch.
        public let name: String
        let batch: Int, size: Int, inChannels: Int, outChannels: Int, kernel: Int, stride: Int, groups: Int

        var shape: usi_conv_shape {
            let pad = kernel / 2
            let out = (size + 2 * pad - kernel) / stride + 1
            return usi_conv_shape(N: Int32(batch), H: Int32(size), W: Int32(size), C: Int32(inChannels),
                                  OC: Int32(outChannels), KH: Int32(kernel), KW: Int32(kernel), SH: Int32(stride),
                                  SW: Int32(stride), PT: Int32(pad), PL: Int32(pad), DH: 1, DW: 1, OH: Int32(out),
                                  OW: Int32(out), groups: Int32(groups))
        }

        /// Multiply-adds × 2 of the forward pass.
        var forwardFlops: Double {
            let s = shape
            return 2 * Double(s.N) * Double(s.OH) * Double(s.OW) * Double(s.OC) * Double(s.KH * s.KW)
                * Double(inChannels / groups)
        }
    }

    /// ResNet- and MobileNet-like layers at batch 32.
    public static let standardLayers: [Layer] = [
        Layer(name: "conv3x3_64to64_32x32_n32", batch: 32, size: 32, inChannels: 64, outChannels: 64, kernel: 3, stride: 1, groups: 1),
        Layer(name: "conv3x3_128to128_16x16_n32", batch: 32, size: 16, inChannels: 128, outChannels: 128, kernel: 3, stride: 1, groups: 1),
        Layer(name: "conv3x3s2_64to128_32x32_n32", batch: 32, size: 32, inChannels: 64, outChannels: 128, kernel: 3, stride: 2, groups: 1),
        Layer(name: "conv1x1_256to64_32x32_n32", batch: 32, size: 32, inChannels: 256, outChannels: 64, kernel: 1, stride: 1, groups: 1),
        Layer(name: "conv1x1_64to256_32x32_n32", batch: 32, size: 32, inChannels: 64, outChannels: 256, kernel: 1, stride: 1, groups: 1),
        Layer(name: "dw3x3_96_32x32_n32", batch: 32, size: 32, inChannels: 96, outChannels: 96, kernel: 3, stride: 1, groups: 96),
    ]

    /// One layer's result.
    public struct LayerResult: Sendable, Codable {
        public let name: String
        public let fwdGflops: Double, bwdGflops: Double, fwdFraction: Double, bwdFraction: Double
        enum CodingKeys: String, CodingKey {
            case name, fwdGflops = "fwd_gflops", bwdGflops = "bwd_gflops", fwdFraction = "fwd_fraction", bwdFraction = "bwd_fraction"
        }
    }

    /// The whole measurement.
    public struct Report: Sendable, Codable {
        public let threads: Int
        /// The instruction-set level the kernels dispatched to (`baseline`, `avx2`, `avx512`,
        /// `avx512bf16`; lowered by `USI_CPU`).
        public let cpuLevel: String
        /// The CPU's own level, ignoring `USI_CPU`.
        public let detectedCPULevel: String
        public let sgemmGflops: Double
        public let layers: [LayerResult]
        enum CodingKeys: String, CodingKey {
            case threads, cpuLevel = "cpu_level", detectedCPULevel = "detected_cpu_level"
            case sgemmGflops = "sgemm_gflops", layers
        }
    }

    /// Median seconds of `body` over timed runs after one warm-up run (at least `minimumRuns`
    /// runs and at least `minimumSeconds` in total).
    public static func medianSeconds(minimumRuns: Int = 5, minimumSeconds: Double = 0.5, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        let clock = ContinuousClock()
        var total = 0.0
        while times.count < minimumRuns || total < minimumSeconds {
            let elapsed = clock.measure(body)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            times.append(seconds)
            total += seconds
            if times.count >= 200 { break }
        }
        times.sort()
        return times[times.count / 2]
    }

    /// SGEMM GFLOP/s on an n×n×n product.
    public static func sgemmGflops(size n: Int = 2048) -> Double {
        let a = Tensor(shape: [n, n], repeating: 0.5), b = Tensor(shape: [n, n], repeating: 0.25)
        let c = Tensor(uninitializedShape: [n, n])
        let seconds = medianSeconds(minimumRuns: 5) {
            usi_sgemm(0, 0, Int32(n), Int32(n), Int32(n), 1, a.pointer, Int32(n), b.pointer, Int32(n), 0, c.pointer, Int32(n))
        }
        return 2 * Double(n) * Double(n) * Double(n) / seconds / 1e9
    }

    /// Measures `layers` with the current thread budget.
    public static func run(layers: [Layer] = standardLayers, sgemmSize: Int = 2048) -> Report {
        let peak = sgemmGflops(size: sgemmSize)
        var generator = RandomGenerator(seed: 0)
        func filled(_ shape: [Int]) -> Tensor {
            let n = shape.reduce(1, *)
            return Tensor(shape: shape, values: (0..<n).map { _ in generator.nextFloat() - 0.5 })
        }
        let results = layers.map { layer -> LayerResult in
            var s = layer.shape
            let x = filled([layer.batch, layer.size, layer.size, layer.inChannels])
            let w = filled([layer.outChannels, layer.kernel, layer.kernel, layer.inChannels / layer.groups])
            let bias = filled([layer.outChannels])
            let out = Tensor(uninitializedShape: [layer.batch, Int(s.OH), Int(s.OW), layer.outChannels])
            let dout = filled(out.shape)
            let dx = Tensor(uninitializedShape: x.shape), dw = Tensor(uninitializedShape: w.shape)
            let depthwise = layer.groups == layer.inChannels && layer.groups == layer.outChannels
            let workspace = Tensor(uninitializedShape: [usi_conv2d_workspace_size(&s)])
            let forward = medianSeconds {
                if depthwise {
                    usi_dwconv2d_forward(out.pointer, x.pointer, w.pointer, bias.pointer, &s)
                } else {
                    usi_conv2d_forward(out.pointer, x.pointer, w.pointer, bias.pointer, &s, workspace.pointer)
                }
            }
            let backward = medianSeconds {
                dx.fill(0); dw.fill(0)
                if depthwise {
                    usi_dwconv2d_backward(dx.pointer, dw.pointer, nil, dout.pointer, x.pointer, w.pointer, &s)
                } else {
                    usi_conv2d_backward(dx.pointer, dw.pointer, nil, dout.pointer, x.pointer, w.pointer, &s, workspace.pointer)
                }
            }
            let fwd = layer.forwardFlops / forward / 1e9, bwd = 2 * layer.forwardFlops / backward / 1e9
            return LayerResult(name: layer.name, fwdGflops: fwd, bwdGflops: bwd, fwdFraction: fwd / peak, bwdFraction: bwd / peak)
        }
        return Report(threads: Threading.threadCount, cpuLevel: String(cString: usi_cpu_level_name(usi_cpu_level())),
                      detectedCPULevel: String(cString: usi_cpu_level_name(usi_cpu_detected_level())),
                      sgemmGflops: peak, layers: results)
    }
}
