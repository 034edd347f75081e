// Tests of the C kernels (CUSIKernels) on their own, without USICore:
// - every optimised kernel against its naive reference (direct loops, double accumulation);
// - finite-difference gradient checks of the backward kernels, as directional derivatives
//   along a random direction v: (L(x + h v) - L(x - h v)) / 2h  vs  <grad, v>, with
//   L = sum(r * f(x)) for a fixed random r;
// - backward kernels accumulate (+=): gradient buffers start non-zero everywhere;
// - results of reductions do not depend on the thread count.
// All data is generated from fixed seeds.

import CUSIKernels
import Foundation
import Testing

// MARK: - Helpers (file-private so they never clash with the other test files)

/// SplitMix64: a small deterministic generator for test data.
private struct KernelTestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in uniform() * scale }
    }
}

/// Largest |a - b| divided by max(1, max |b|): an error relative to the tensor's scale.
private func scaledError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var err = 0.0
    var scale = 1.0
    for i in 0..<a.count {
        let d = abs(Double(a[i]) - Double(b[i]))
        if d.isNaN { return .infinity }
        err = max(err, d)
        scale = max(scale, abs(Double(b[i])))
    }
    return err / scale
}

private func dot(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
}

/// Relative error of the directional derivative of L(x) = sum(r * f(x)) along a random v.
private func directionalError(
    x: [Float], gradient: [Float], h: Float = 1e-2, seed: UInt64,
    loss: ([Float]) -> Double
) -> Double {
    var rng = KernelTestRNG(seed)
    let v = rng.floats(x.count)
    let plus = zip(x, v).map { $0 + h * $1 }
    let minus = zip(x, v).map { $0 - h * $1 }
    let numeric = (loss(plus) - loss(minus)) / (2 * Double(h))
    let analytic = dot(gradient, v)
    return abs(numeric - analytic) / max(abs(analytic), 1e-3)
}

// MARK: - Convolution

/// One convolution configuration; bottom/right padding (pb, pr) only shape OH/OW.
struct KernelConvCase: Sendable, CustomTestStringConvertible {
    var n, h, w, c, oc, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, groups: Int

    var oh: Int { (h + pt + pb - dh * (kh - 1) - 1) / sh + 1 }
    var ow: Int { (w + pl + pr - dw * (kw - 1) - 1) / sw + 1 }
    var shape: usi_conv_shape {
        usi_conv_shape(
            N: Int32(n), H: Int32(h), W: Int32(w), C: Int32(c), OC: Int32(oc), KH: Int32(kh),
            KW: Int32(kw), SH: Int32(sh), SW: Int32(sw), PT: Int32(pt), PL: Int32(pl),
            DH: Int32(dh), DW: Int32(dw), OH: Int32(oh), OW: Int32(ow), groups: Int32(groups))
    }
    var inputCount: Int { n * h * w * c }
    var weightCount: Int { oc * kh * kw * (c / groups) }
    var outputCount: Int { n * oh * ow * oc }
    var testDescription: String {
        "N\(n) \(h)x\(w)x\(c)->\(oc) k\(kh)x\(kw) s\(sh)x\(sw) pad(\(pt),\(pb),\(pl),\(pr)) "
            + "d\(dh)x\(dw) g\(groups)"
    }

    init(n: Int = 2, h: Int, w: Int, c: Int, oc: Int, k: Int, kw: Int? = nil, s: Int = 1,
         sw: Int? = nil, pad: Int = 0, pb: Int? = nil, pl: Int? = nil, pr: Int? = nil,
         d: Int = 1, dw: Int? = nil, groups: Int = 1) {
        self.n = n; self.h = h; self.w = w; self.c = c; self.oc = oc
        self.kh = k; self.kw = kw ?? k; self.sh = s; self.sw = sw ?? s
        self.pt = pad; self.pb = pb ?? pad; self.pl = pl ?? pad; self.pr = pr ?? pad
        self.dh = d; self.dw = dw ?? d; self.groups = groups
    }
}

private let convCases: [KernelConvCase] = [
    KernelConvCase(h: 7, w: 6, c: 5, oc: 4, k: 3, pad: 1),                         // 3x3 same
    KernelConvCase(h: 8, w: 8, c: 4, oc: 6, k: 3, s: 2, pad: 0, pb: 1, pl: 0, pr: 1), // TF same
    KernelConvCase(n: 1, h: 9, w: 10, c: 3, oc: 5, k: 3, pad: 2, d: 2),            // dilated
    KernelConvCase(h: 9, w: 9, c: 4, oc: 4, k: 5, kw: 3, s: 3, sw: 2, pad: 1, pb: 2, pl: 2,
                   pr: 0, d: 1, dw: 2, groups: 2),                                  // mixed
    KernelConvCase(h: 6, w: 6, c: 6, oc: 4, k: 3, pad: 1, groups: 2),               // grouped
    KernelConvCase(n: 3, h: 10, w: 10, c: 12, oc: 24, k: 3, s: 2, pad: 1, groups: 3),
    KernelConvCase(h: 6, w: 7, c: 8, oc: 8, k: 3, pad: 1, groups: 8),               // depthwise
    KernelConvCase(h: 5, w: 5, c: 16, oc: 8, k: 1),                                 // 1x1 fast
    KernelConvCase(h: 5, w: 5, c: 16, oc: 8, k: 1, groups: 2),                      // 1x1 grouped
    KernelConvCase(h: 6, w: 6, c: 8, oc: 4, k: 1, s: 2),                            // 1x1 strided
    KernelConvCase(n: 1, h: 16, w: 16, c: 3, oc: 8, k: 7, s: 2, pad: 3),            // stem
    KernelConvCase(h: 3, w: 2, c: 4, oc: 3, k: 3, pad: 1),                          // kernel > W
    KernelConvCase(n: 5, h: 24, w: 24, c: 4, oc: 3, k: 3, pad: 1),                  // im2col chunks
    KernelConvCase(n: 40, h: 7, w: 7, c: 8, oc: 8, k: 3, pad: 1),                   // chunk tail
    // Network-sized layers: many row blocks, K past one packing block, wide outputs.
    KernelConvCase(n: 4, h: 16, w: 16, c: 64, oc: 64, k: 3, pad: 1),                // resnet 3x3
    KernelConvCase(n: 3, h: 16, w: 16, c: 64, oc: 128, k: 3, s: 2, pad: 1),         // resnet downsample
    KernelConvCase(n: 5, h: 16, w: 16, c: 256, oc: 64, k: 1),                       // 1x1 reduce, M > 1024
    KernelConvCase(n: 5, h: 16, w: 16, c: 64, oc: 256, k: 1),                       // 1x1 expand
    KernelConvCase(n: 2, h: 20, w: 20, c: 1, oc: 24, k: 3, s: 2, pad: 1),           // grey stem
    KernelConvCase(n: 2, h: 10, w: 10, c: 24, oc: 32, k: 3, pad: 1),                // tiered stem
    KernelConvCase(n: 2, h: 4, w: 4, c: 128, oc: 256, k: 3, s: 2, pad: 1),          // deep, few rows
    KernelConvCase(n: 2, h: 2, w: 2, c: 256, oc: 512, k: 3, pad: 1),                // K = 2304, M = 8
    KernelConvCase(n: 2, h: 32, w: 32, c: 3, oc: 24, k: 3, s: 2, pad: 1),           // stem, M = 512
    KernelConvCase(n: 2, h: 8, w: 8, c: 64, oc: 128, k: 1),                         // downsample 1x1
]

struct KernelConvTests {
    /// Forward and backward against the direct 7-loop reference. Tolerance 1e-5 of the
    /// tensor's scale: GEMM sums <= 200 products of O(1) values in float.
    @Test(arguments: convCases)
    func conv2dMatchesNaive(_ cc: KernelConvCase) {
        var s = cc.shape
        var rng = KernelTestRNG(UInt64(cc.inputCount * 31 + cc.weightCount))
        let x = rng.floats(cc.inputCount)
        let w = rng.floats(cc.weightCount)
        let bias = rng.floats(cc.oc)
        var out = [Float](repeating: 0, count: cc.outputCount)
        var ref = out
        var workspace = [Float](repeating: 0, count: max(1, usi_conv2d_workspace_size(&s)))
        usi_conv2d_forward(&out, x, w, bias, &s, &workspace)
        usi_conv2d_forward_naive(&ref, x, w, bias, &s)
        #expect(scaledError(out, ref) < 1e-5, "forward")

        usi_conv2d_forward(&out, x, w, nil, &s, &workspace)
        usi_conv2d_forward_naive(&ref, x, w, nil, &s)
        #expect(scaledError(out, ref) < 1e-5, "forward without bias")

        // Backward accumulates: start from non-zero gradients.
        let dout = rng.floats(cc.outputCount)
        let dx0 = rng.floats(cc.inputCount), dw0 = rng.floats(cc.weightCount)
        let db0 = rng.floats(cc.oc)
        var dx = dx0, dw = dw0, db = db0
        var rdx = dx0, rdw = dw0, rdb = db0
        usi_conv2d_backward(&dx, &dw, &db, dout, x, w, &s, &workspace)
        usi_conv2d_backward_naive(&rdx, &rdw, &rdb, dout, x, w, &s)
        #expect(scaledError(dx, rdx) < 1e-5, "dx")
        #expect(scaledError(dw, rdw) < 1e-5, "dw")
        #expect(scaledError(db, rdb) < 1e-5, "dbias")

        // NULL gradients are skipped; the others are unchanged by that.
        var dxOnly = dx0
        usi_conv2d_backward(&dxOnly, nil, nil, dout, x, w, &s, &workspace)
        #expect(scaledError(dxOnly, rdx) < 1e-5, "dx alone")
        var dwOnly = dw0
        usi_conv2d_backward(nil, &dwOnly, nil, dout, x, w, &s, &workspace)
        #expect(scaledError(dwOnly, rdw) < 1e-5, "dw alone")

        // Depthwise convolutions also through the direct depthwise kernel.
        if cc.groups == cc.c && cc.c == cc.oc {
            var dwOut = [Float](repeating: 0, count: cc.outputCount)
            usi_conv2d_forward_naive(&ref, x, w, bias, &s)
            usi_dwconv2d_forward(&dwOut, x, w, bias, &s)
            #expect(scaledError(dwOut, ref) < 1e-5, "dwconv forward")
            var ddx = dx0, ddw = dw0, ddb = db0
            usi_dwconv2d_backward(&ddx, &ddw, &ddb, dout, x, w, &s)
            #expect(scaledError(ddx, rdx) < 1e-5, "dwconv dx")
            #expect(scaledError(ddw, rdw) < 1e-5, "dwconv dw")
            #expect(scaledError(ddb, rdb) < 1e-5, "dwconv dbias")
        }
    }

    /// im2col followed by col2im multiplies each input element by the number of windows
    /// that contain it; checked through the adjoint identity <im2col(x), c> = <x, col2im(c)>.
    @Test(arguments: [convCases[0], convCases[3], convCases[5]])
    func im2colAndCol2imAreAdjoint(_ cc: KernelConvCase) {
        var s = cc.shape
        var rng = KernelTestRNG(7)
        let x = rng.floats(cc.inputCount)
        let colCount = cc.n * cc.oh * cc.ow * cc.kh * cc.kw * cc.c
        var col = [Float](repeating: 0, count: colCount)
        usi_im2col(&col, x, &s)
        let c = rng.floats(colCount)
        var back = [Float](repeating: 0, count: cc.inputCount)
        usi_col2im(&back, c, &s)
        let lhs = dot(col, c), rhs = dot(x, back)
        #expect(abs(lhs - rhs) <= 1e-5 * max(1, abs(lhs)))
    }
}

private let depthwiseCases: [KernelConvCase] = [
    KernelConvCase(h: 9, w: 8, c: 17, oc: 17, k: 3, pad: 1, groups: 17),          // tail only
    KernelConvCase(h: 8, w: 8, c: 40, oc: 40, k: 3, pad: 1, groups: 40),          // block + tail
    KernelConvCase(h: 11, w: 11, c: 24, oc: 24, k: 5, s: 2, pad: 2, groups: 24),
    KernelConvCase(n: 1, h: 8, w: 8, c: 8, oc: 8, k: 3, s: 2, pad: 0, pb: 1, pl: 0, pr: 1,
                   groups: 8),                                                     // TF same
    KernelConvCase(h: 10, w: 10, c: 16, oc: 16, k: 3, pad: 2, d: 2, groups: 16),  // dilated
    KernelConvCase(n: 4, h: 16, w: 16, c: 96, oc: 96, k: 3, pad: 1, groups: 96),
    KernelConvCase(n: 1, h: 9, w: 9, c: 3, oc: 3, k: 7, s: 1, pad: 3, groups: 3),
]

struct KernelDepthwiseTests {
    /// Direct depthwise kernel vs the naive grouped convolution (tolerance as for conv).
    @Test(arguments: depthwiseCases)
    func dwconvMatchesNaive(_ cc: KernelConvCase) {
        var s = cc.shape
        var rng = KernelTestRNG(UInt64(cc.c * 1000 + cc.h))
        let x = rng.floats(cc.inputCount)
        let w = rng.floats(cc.weightCount)
        let bias = rng.floats(cc.c)
        var out = [Float](repeating: 0, count: cc.outputCount)
        var ref = out
        usi_dwconv2d_forward(&out, x, w, bias, &s)
        usi_conv2d_forward_naive(&ref, x, w, bias, &s)
        #expect(scaledError(out, ref) < 1e-5)
        usi_dwconv2d_forward(&out, x, w, nil, &s)
        usi_conv2d_forward_naive(&ref, x, w, nil, &s)
        #expect(scaledError(out, ref) < 1e-5)

        let dout = rng.floats(cc.outputCount)
        let dx0 = rng.floats(cc.inputCount), dw0 = rng.floats(cc.weightCount)
        let db0 = rng.floats(cc.c)
        var dx = dx0, dw = dw0, db = db0
        var rdx = dx0, rdw = dw0, rdb = db0
        usi_dwconv2d_backward(&dx, &dw, &db, dout, x, w, &s)
        usi_conv2d_backward_naive(&rdx, &rdw, &rdb, dout, x, w, &s)
        #expect(scaledError(dx, rdx) < 1e-5, "dx")
        #expect(scaledError(dw, rdw) < 1e-5, "dw")
        #expect(scaledError(db, rdb) < 1e-5, "dbias")
        // The GEMM path (groups == C) agrees too.
        var workspace = [Float](repeating: 0, count: max(1, usi_conv2d_workspace_size(&s)))
        usi_conv2d_forward(&out, x, w, bias, &s, &workspace)
        usi_conv2d_forward_naive(&ref, x, w, bias, &s)
        #expect(scaledError(out, ref) < 1e-5, "GEMM path")
    }
}

// MARK: - Activations

private let activationNames = [
    "relu", "relu6", "leaky_relu", "gelu", "gelu_tanh", "silu", "hardswish", "hardsigmoid",
    "sigmoid", "tanh",
]

struct KernelActivationTests {
    /// Fast kernels (vectorised exp/tanh/erfc) vs libm in double over [-20, 20], including
    /// the kinks. Tolerance |ours - ref| <= 1e-6 + 1e-5 |ref| (float rounding and the ~1e-7
    /// relative error of the polynomial approximations; gelu_tanh's PyTorch formula loses
    /// absolute precision ~1e-7 where 1 + tanh cancels).
    @Test(arguments: 0..<10)
    func activationMatchesNaive(_ kind: Int) {
        let n = 40_001
        var x = (0..<n).map { -20 + 40 * Float($0) / Float(n - 1) }
        x += [0, -3, 3, 6, -0.0, 1e-30, -1e-30]
        let alpha: Float = 0.1
        var y = [Float](repeating: 0, count: x.count), ref = y
        usi_activation_forward(Int32(kind), &y, x, x.count, alpha)
        usi_activation_forward_naive(Int32(kind), &ref, x, x.count, alpha)
        var worst = 0.0
        for i in 0..<x.count {
            worst = max(worst, abs(Double(y[i]) - Double(ref[i])) / (1e-6 + 1e-5 * abs(Double(ref[i]))))
        }
        #expect(worst <= 1, "\(activationNames[kind]) forward")

        var rng = KernelTestRNG(UInt64(kind))
        let dy = rng.floats(x.count)
        let dx0 = rng.floats(x.count)
        var dx = dx0, rdx = dx0
        usi_activation_backward(Int32(kind), &dx, dy, x, y, x.count, alpha)
        usi_activation_backward_naive(Int32(kind), &rdx, dy, x, y, x.count, alpha)
        worst = 0
        for i in 0..<x.count {
            worst = max(worst, abs(Double(dx[i]) - Double(rdx[i])) / (1e-6 + 1e-5 * abs(Double(rdx[i]))))
        }
        #expect(worst <= 1, "\(activationNames[kind]) backward")
    }

    /// PyTorch's gradient conventions at the kinks.
    @Test func activationKinkGradients() {
        let x: [Float] = [0, 6, -3, 3, -3.5, 3.5]
        let dy = [Float](repeating: 1, count: x.count)
        func grad(_ kind: Int32) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            usi_activation_forward(kind, &y, x, x.count, 0.1)
            var dx = [Float](repeating: 0, count: x.count)
            usi_activation_backward(kind, &dx, dy, x, y, x.count, 0.1)
            return dx
        }
        #expect(grad(0)[0] == 0)                                  // relu'(0) = 0
        #expect(grad(1)[0] == 0 && grad(1)[1] == 0)               // relu6: 0 < x < 6 only
        #expect(grad(2)[0] == 0.1)                                // leaky: x > 0 only
        // hardswish (torch's hardswish_backward): x <= -3 -> 0, x < 3 -> x/3 + 1/2, else 1
        let hs = grad(6)
        #expect(hs[0] == 0.5 && hs[2] == 0 && hs[3] == 1 && hs[4] == 0 && hs[5] == 1)
        let hsig = grad(7)                                        // hardsigmoid
        #expect(hsig[2] == 0 && hsig[3] == 0 && abs(hsig[0] - 1.0 / 6) < 1e-7)
    }

    /// Directional finite differences away from kinks (inputs at least 0.03 from them,
    /// h = 1e-2, so no element crosses one). Tolerance 1e-2 relative (float32 FD).
    @Test(arguments: 0..<10)
    func activationFiniteDifferences(_ kind: Int) {
        var rng = KernelTestRNG(UInt64(100 + kind))
        var x: [Float] = []
        let kinks: [Float] = [0, -3, 3, 6]
        while x.count < 1000 {
            let v = rng.uniform() * 6.5 + 1.5  // [-5, 8)
            if kinks.allSatisfy({ abs(v - $0) > 0.03 }) { x.append(v) }
        }
        let r = rng.floats(x.count)
        var y = [Float](repeating: 0, count: x.count)
        usi_activation_forward(Int32(kind), &y, x, x.count, 0.1)
        var dx = [Float](repeating: 0, count: x.count)
        usi_activation_backward(Int32(kind), &dx, r, x, y, x.count, 0.1)
        let err = directionalError(x: x, gradient: dx, seed: UInt64(kind)) { xs in
            var ys = [Float](repeating: 0, count: xs.count)
            usi_activation_forward(Int32(kind), &ys, xs, xs.count, 0.1)
            return dot(r, ys)
        }
        #expect(err < 1e-2, "\(activationNames[kind])")
    }
}

// MARK: - Pooling

private let poolCases: [KernelConvCase] = [
    KernelConvCase(h: 7, w: 7, c: 5, oc: 5, k: 3, s: 2, pad: 1),
    KernelConvCase(h: 8, w: 9, c: 70, oc: 70, k: 2, s: 2),                         // > 1 c-block
    KernelConvCase(n: 1, h: 9, w: 9, c: 3, oc: 3, k: 3, s: 2, pad: 1, pb: 2, pl: 1, pr: 2), // ceil
    KernelConvCase(h: 6, w: 6, c: 4, oc: 4, k: 3, s: 1, pad: 1),
    KernelConvCase(n: 1, h: 10, w: 11, c: 4, oc: 4, k: 3, s: 1, pad: 2, d: 2),    // dilated max
]

struct KernelPoolingTests {
    /// Values are a shuffled grid with spacing >= 1e-3 so the arg-max is unique.
    private func distinctInput(_ count: Int, seed: UInt64) -> [Float] {
        var rng = KernelTestRNG(seed)
        var x = (0..<count).map { Float($0) / Float(count) * 2 - 1 }
        for i in stride(from: count - 1, to: 0, by: -1) {
            x.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        return x
    }

    @Test(arguments: poolCases)
    func maxPoolMatchesNaive(_ cc: KernelConvCase) {
        var s = cc.shape
        let x = distinctInput(cc.inputCount, seed: 11)
        let no = cc.n * cc.oh * cc.ow * cc.c
        var out = [Float](repeating: 0, count: no), ref = out
        var am = [Int32](repeating: 0, count: no), ram = am
        usi_maxpool2d_forward(&out, &am, x, &s)
        usi_maxpool2d_forward_naive(&ref, &ram, x, &s)
        #expect(out == ref)
        #expect(am == ram)

        // Backward is the scatter through argmax; checked by finite differences
        // (h = 1e-4 keeps every window's winner: grid spacing is >= 1e-3).
        var rng = KernelTestRNG(12)
        let r = rng.floats(no)
        var dx = [Float](repeating: 0, count: cc.inputCount)
        usi_maxpool2d_backward(&dx, r, am, &s)
        let err = directionalError(x: x, gradient: dx, h: 1e-4, seed: 13) { xs in
            var ys = [Float](repeating: 0, count: no)
            var a = [Int32](repeating: 0, count: no)
            usi_maxpool2d_forward(&ys, &a, xs, &s)
            return dot(r, ys)
        }
        #expect(err < 1e-2)
    }

    @Test(arguments: poolCases.filter { $0.dh == 1 }, [false, true])
    func avgPoolMatchesNaive(_ cc: KernelConvCase, _ countIncludePad: Bool) {
        var s = cc.shape
        var rng = KernelTestRNG(21)
        let x = rng.floats(cc.inputCount)
        let no = cc.n * cc.oh * cc.ow * cc.c
        let cip: Int32 = countIncludePad ? 1 : 0
        var out = [Float](repeating: 0, count: no), ref = out
        usi_avgpool2d_forward(&out, x, &s, cip)
        usi_avgpool2d_forward_naive(&ref, x, &s, cip)
        #expect(scaledError(out, ref) < 1e-6)
        let r = rng.floats(no)
        let dx0 = rng.floats(cc.inputCount)
        var dx = dx0, rdx = dx0
        usi_avgpool2d_backward(&dx, r, &s, cip)
        usi_avgpool2d_backward_naive(&rdx, r, &s, cip)
        #expect(scaledError(dx, rdx) < 1e-6)
        // Linear op: the FD check is exact up to rounding.
        let grad = zip(dx, dx0).map { $0 - $1 }
        let err = directionalError(x: x, gradient: grad, seed: 22) { xs in
            var ys = [Float](repeating: 0, count: no)
            usi_avgpool2d_forward(&ys, xs, &s, cip)
            return dot(r, ys)
        }
        #expect(err < 1e-2)
    }

    /// PyTorch's divisor for a window hanging over the padding: 3x3, stride 2, pad 1 on a
    /// 4x4 input, output 2x2. Window (0,0) covers rows/cols -1...1: 9 with padding, 4 without.
    @Test func avgPoolDivisors() {
        var s = usi_conv_shape(N: 1, H: 4, W: 4, C: 1, OC: 1, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1,
                               PL: 1, DH: 1, DW: 1, OH: 2, OW: 2, groups: 1)
        let x = [Float](repeating: 1, count: 16)
        var out = [Float](repeating: 0, count: 4)
        usi_avgpool2d_forward(&out, x, &s, 1)
        #expect(abs(out[0] - 4.0 / 9) < 1e-6)
        #expect(abs(out[3] - 9.0 / 9) < 1e-6)  // rows 1...3: inside
        usi_avgpool2d_forward(&out, x, &s, 0)
        #expect(out == [1, 1, 1, 1])
    }

    @Test(arguments: [(7, 7, 1, 1), (7, 9, 3, 4), (10, 10, 4, 3), (5, 5, 7, 7), (6, 6, 6, 6)])
    func adaptiveAvgPool(_ shape: (Int, Int, Int, Int)) {
        let (h, w, oh, ow) = shape
        let n = 2, c = 70
        var rng = KernelTestRNG(31)
        let x = rng.floats(n * h * w * c)
        let no = n * oh * ow * c
        var out = [Float](repeating: 0, count: no), ref = out
        usi_adaptive_avgpool2d_forward(&out, x, Int32(n), Int32(h), Int32(w), Int32(c), Int32(oh), Int32(ow))
        usi_adaptive_avgpool2d_forward_naive(&ref, x, Int32(n), Int32(h), Int32(w), Int32(c), Int32(oh), Int32(ow))
        #expect(scaledError(out, ref) < 1e-6)
        let r = rng.floats(no)
        var dx = [Float](repeating: 0, count: x.count)
        usi_adaptive_avgpool2d_backward(&dx, r, Int32(n), Int32(h), Int32(w), Int32(c), Int32(oh), Int32(ow))
        let err = directionalError(x: x, gradient: dx, seed: 32) { xs in
            var ys = [Float](repeating: 0, count: no)
            usi_adaptive_avgpool2d_forward(&ys, xs, Int32(n), Int32(h), Int32(w), Int32(c), Int32(oh), Int32(ow))
            return dot(r, ys)
        }
        #expect(err < 1e-2)
    }
}

// MARK: - Normalisation, softmax, cross-entropy (finite differences, tolerance 1e-2)

struct KernelNormTests {
    @Test(arguments: [(300, 13, true), (64, 40, false), (1000, 3, true)])
    func batchNormTrain(_ shape: (Int, Int, Bool)) {
        let (m, c, affine) = shape
        var rng = KernelTestRNG(UInt64(m * c))
        let x = rng.floats(m * c, scale: 2).map { $0 + 3 }  // non-zero mean
        let gamma = affine ? rng.floats(c) : nil
        let beta = affine ? rng.floats(c) : nil
        var y = [Float](repeating: 0, count: m * c)
        var mean = [Float](repeating: 0, count: c), invstd = mean, variance = mean
        usi_batchnorm_forward_train(&y, &mean, &invstd, &variance, x, gamma, beta, Int64(m), Int32(c), 1e-5)
        for j in 0..<c {  // statistics against a two-pass double reference
            var mu = 0.0
            for i in 0..<m { mu += Double(x[i * c + j]) }
            mu /= Double(m)
            var v = 0.0
            for i in 0..<m { v += (Double(x[i * c + j]) - mu) * (Double(x[i * c + j]) - mu) }
            v /= Double(m)
            #expect(abs(Double(mean[j]) - mu) < 1e-5 && abs(Double(variance[j]) - v) < 1e-5 * v)
            #expect(abs(Double(invstd[j]) - 1 / (v + 1e-5).squareRoot()) < 1e-5 * Double(invstd[j]))
        }
        let r = rng.floats(m * c)
        var dx = [Float](repeating: 0, count: m * c)
        var dgamma = [Float](repeating: 0, count: c), dbeta = dgamma
        usi_batchnorm_backward(&dx, &dgamma, &dbeta, r, x, mean, invstd, gamma, Int64(m), Int32(c))
        func loss(_ xs: [Float], _ g: [Float]?) -> Double {
            var ys = [Float](repeating: 0, count: xs.count)
            var mu = [Float](repeating: 0, count: c), istd = mu
            usi_batchnorm_forward_train(&ys, &mu, &istd, nil, xs, g, beta, Int64(m), Int32(c), 1e-5)
            return dot(r, ys)
        }
        #expect(directionalError(x: x, gradient: dx, seed: 1) { loss($0, gamma) } < 1e-2, "dx")
        if let gamma {
            #expect(directionalError(x: gamma, gradient: dgamma, seed: 2) { loss(x, $0) } < 1e-2, "dgamma")
            for j in 0..<c {
                var s = 0.0
                for i in 0..<m { s += Double(r[i * c + j]) }
                #expect(abs(Double(dbeta[j]) - s) < 1e-4 * max(1, abs(s)), "dbeta")
            }
        }
    }

    @Test func batchNormEval() {
        let m = 50, c = 7
        var rng = KernelTestRNG(5)
        let x = rng.floats(m * c), gamma = rng.floats(c), beta = rng.floats(c)
        let rmean = rng.floats(c), rvar = rng.floats(c).map { abs($0) + 0.5 }
        var y = [Float](repeating: 0, count: m * c)
        usi_batchnorm_forward_eval(&y, x, rmean, rvar, gamma, beta, Int64(m), Int32(c), 1e-5)
        var ref = y
        for i in 0..<m {
            for j in 0..<c {
                let v = (Double(x[i * c + j]) - Double(rmean[j])) / (Double(rvar[j]) + 1e-5).squareRoot()
                ref[i * c + j] = Float(v * Double(gamma[j]) + Double(beta[j]))
            }
        }
        #expect(scaledError(y, ref) < 1e-6)
        let r = rng.floats(m * c)
        var dx = [Float](repeating: 0, count: m * c)
        var dgamma = [Float](repeating: 0, count: c), dbeta = dgamma
        usi_batchnorm_backward_eval(&dx, &dgamma, &dbeta, r, x, rmean, rvar, gamma, Int64(m), Int32(c), 1e-5)
        let err = directionalError(x: x, gradient: dx, seed: 6) { xs in
            var ys = [Float](repeating: 0, count: xs.count)
            usi_batchnorm_forward_eval(&ys, xs, rmean, rvar, gamma, beta, Int64(m), Int32(c), 1e-5)
            return dot(r, ys)
        }
        #expect(err < 1e-2)
        let errGamma = directionalError(x: gamma, gradient: dgamma, seed: 7) { g in
            var ys = [Float](repeating: 0, count: x.count)
            usi_batchnorm_forward_eval(&ys, x, rmean, rvar, g, beta, Int64(m), Int32(c), 1e-5)
            return dot(r, ys)
        }
        #expect(errGamma < 1e-2)
    }

    @Test(arguments: [(37, 50, true), (5, 768, true), (20, 9, false)])
    func layerNorm(_ shape: (Int, Int, Bool)) {
        let (m, c, affine) = shape
        var rng = KernelTestRNG(UInt64(m + c))
        let x = rng.floats(m * c, scale: 2).map { $0 + 1 }
        let weight = affine ? rng.floats(c) : nil
        let bias = affine ? rng.floats(c) : nil
        var y = [Float](repeating: 0, count: m * c)
        var mean = [Float](repeating: 0, count: m), rstd = mean
        usi_layernorm_forward(&y, &mean, &rstd, x, weight, bias, Int64(m), Int32(c), 1e-5)
        let r = rng.floats(m * c)
        var dx = [Float](repeating: 0, count: m * c)
        var dweight = [Float](repeating: 0, count: c), dbias = dweight
        usi_layernorm_backward(&dx, &dweight, &dbias, r, x, mean, rstd, weight, Int64(m), Int32(c))
        func loss(_ xs: [Float], _ w: [Float]?) -> Double {
            var ys = [Float](repeating: 0, count: xs.count)
            usi_layernorm_forward(&ys, nil, nil, xs, w, bias, Int64(m), Int32(c), 1e-5)
            return dot(r, ys)
        }
        #expect(directionalError(x: x, gradient: dx, seed: 3) { loss($0, weight) } < 1e-2, "dx")
        if let weight {
            #expect(directionalError(x: weight, gradient: dweight, seed: 4) { loss(x, $0) } < 1e-2, "dweight")
        }
    }
}

struct KernelSoftmaxTests {
    @Test(arguments: [(9, 33), (4, 1000), (3, 1)])
    func softmaxAndLogSoftmax(_ shape: (Int, Int)) {
        let (m, c) = shape
        var rng = KernelTestRNG(UInt64(m * c))
        let x = rng.floats(m * c, scale: 3)
        let r = rng.floats(m * c)
        var y = [Float](repeating: 0, count: m * c)
        usi_softmax_forward(&y, x, Int64(m), Int32(c))
        for i in 0..<m {  // against a double reference
            let row = x[(i * c)..<((i + 1) * c)].map(Double.init)
            let mx = row.max()!
            let z = row.reduce(0) { $0 + exp($1 - mx) }
            for j in 0..<c { #expect(abs(Double(y[i * c + j]) - exp(row[j] - mx) / z) < 1e-6) }
        }
        var dx = [Float](repeating: 0, count: m * c)
        usi_softmax_backward(&dx, r, y, Int64(m), Int32(c))
        let err = directionalError(x: x, gradient: dx, seed: 8) { xs in
            var ys = [Float](repeating: 0, count: xs.count)
            usi_softmax_forward(&ys, xs, Int64(m), Int32(c))
            return dot(r, ys)
        }
        #expect(c == 1 || err < 1e-2, "softmax")

        var ly = [Float](repeating: 0, count: m * c)
        usi_log_softmax_forward(&ly, x, Int64(m), Int32(c))
        #expect(scaledError(ly.map { exp($0) }, y) < 1e-6)
        var ldx = [Float](repeating: 0, count: m * c)
        usi_log_softmax_backward(&ldx, r, ly, Int64(m), Int32(c))
        let lerr = directionalError(x: x, gradient: ldx, seed: 9) { xs in
            var ys = [Float](repeating: 0, count: xs.count)
            usi_log_softmax_forward(&ys, xs, Int64(m), Int32(c))
            return dot(r, ys)
        }
        #expect(c == 1 || lerr < 1e-2, "log_softmax")
    }

    /// Large logits must not overflow (the row max is subtracted).
    @Test func softmaxIsStable() {
        let x: [Float] = [1000, 1001, 999, -1000]
        var y = [Float](repeating: 0, count: 4)
        usi_softmax_forward(&y, x, 1, 4)
        #expect(y.allSatisfy { $0.isFinite })
        #expect(abs(y.reduce(0, +) - 1) < 1e-6)
        var ly = y
        usi_log_softmax_forward(&ly, x, 1, 4)
        #expect(abs(ly[1] - (-log(1 + exp(-1) + exp(-2)))) < 1e-5)
    }

    @Test(arguments: [false, true])
    func crossEntropy(_ soft: Bool) {
        let m = 9, c = 17
        var rng = KernelTestRNG(soft ? 41 : 42)
        let x = rng.floats(m * c, scale: 3)
        let targets: [Float]? = soft ? rng.floats(m * c).map { abs($0) } : nil
        let labels: [Int32]? = soft ? nil : (0..<m).map { Int32(($0 * 7) % c) }
        var probs = [Float](repeating: 0, count: m * c)
        func ce(_ xs: [Float]) -> Double {
            var p = [Float](repeating: 0, count: m * c)
            return usi_cross_entropy_forward(&p, xs, targets, labels, Int64(m), Int32(c))
        }
        let loss = usi_cross_entropy_forward(&probs, x, targets, labels, Int64(m), Int32(c))
        var ref = 0.0  // -sum t log softmax, mean over rows, in double
        for i in 0..<m {
            let row = x[(i * c)..<((i + 1) * c)].map(Double.init)
            let mx = row.max()!
            let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
            if let targets {
                for j in 0..<c { ref -= Double(targets[i * c + j]) * (row[j] - lse) }
            } else {
                ref -= row[Int(labels![i])] - lse
            }
        }
        ref /= Double(m)
        #expect(abs(loss - ref) < 1e-6 * abs(ref))
        let scale: Float = 2
        var dl = rng.floats(m * c)
        let dl0 = dl
        usi_cross_entropy_backward(&dl, probs, targets, labels, Int64(m), Int32(c), scale)
        let grad = zip(dl, dl0).map { $0 - $1 }
        let err = directionalError(x: x, gradient: grad, seed: 43) { Double(scale) * ce($0) }
        #expect(err < 1e-2)
    }
}

// MARK: - Copies, broadcasting, reductions, AdamW, determinism

struct KernelElementwiseTests {
    @Test func stridedCopies() {
        let shape: [Int64] = [3, 40, 50, 70]
        let n = 3 * 40 * 50 * 70
        var rng = KernelTestRNG(51)
        let src = rng.floats(n)
        let contiguous: [Int64] = [40 * 50 * 70, 50 * 70, 70, 1]
        // permute: src stored as [70, 3, 50, 40]
        let permuted: [Int64] = [50 * 40, 1, 40, 3 * 50 * 40]
        var dst = [Float](repeating: 0, count: n)
        usi_copy_strided(&dst, contiguous, src, permuted, shape, 4, 0)
        var ok = true
        for a in 0..<3 { for b in 0..<40 { for c in 0..<50 { for d in 0..<70 {
            let s = a * 2000 + b + c * 40 + d * 6000
            if dst[((a * 40 + b) * 50 + c) * 70 + d] != src[s] { ok = false }
        } } } }
        #expect(ok, "permute")
        // broadcast accumulate of a row vector
        var acc = dst
        usi_copy_strided(&acc, contiguous, src, [0, 0, 0, 1], shape, 4, 1)
        #expect((0..<n).allSatisfy { acc[$0] == dst[$0] + src[$0 % 70] }, "broadcast accumulate")
        // reduction through a zero destination stride
        var red = [Float](repeating: 0, count: 70)
        usi_copy_strided(&red, [0, 0, 0, 1], src, contiguous, shape, 4, 1)
        var redRef = [Double](repeating: 0, count: 70)
        for i in 0..<n { redRef[i % 70] += Double(src[i]) }
        #expect(scaledError(red, redRef.map { Float($0) }) < 1e-5, "reduce")
        // slice of columns 10..<30
        var slice = [Float](repeating: 0, count: 3 * 40 * 20 * 70)
        usi_copy_strided(&slice, [40 * 20 * 70, 20 * 70, 70, 1], Array(src[(10 * 70)...]), contiguous,
                         [3, 40, 20, 70], 4, 0)
        ok = true
        for a in 0..<3 { for b in 0..<40 { for c in 0..<20 { for d in 0..<70 {
            if slice[((a * 40 + b) * 20 + c) * 70 + d] != src[((a * 40 + b) * 50 + c + 10) * 70 + d] { ok = false }
        } } } }
        #expect(ok, "slice")
    }

    @Test(arguments: 0..<4)
    func binaryBroadcast(_ op: Int) {
        let shape: [Int64] = [3, 40, 50, 70]
        let n = 3 * 40 * 50 * 70
        var rng = KernelTestRNG(61)
        let a = rng.floats(n)
        let b = rng.floats(50 * 70).map { $0 + 2 }  // away from 0 for division
        func f(_ x: Float, _ y: Float) -> Float {
            switch op { case 0: x + y; case 1: x - y; case 2: x * y; default: x / y }
        }
        var out = [Float](repeating: 0, count: n)
        usi_binary_forward(Int32(op), &out, a, [40 * 50 * 70, 50 * 70, 70, 1], b, [0, 0, 70, 1], shape, 4)
        #expect((0..<n).allSatisfy { out[$0] == f(a[$0], b[$0 % 3500]) }, "row broadcast")
        usi_binary_forward(Int32(op), &out, b, [0, 0, 0, 0], a, [40 * 50 * 70, 50 * 70, 70, 1], shape, 4)
        #expect((0..<n).allSatisfy { out[$0] == f(b[0], a[$0]) }, "scalar left")
        // transposed operand
        var t = [Float](repeating: 0, count: 300 * 500)
        usi_binary_forward(Int32(op), &t, a, [1, 300], a, [500, 1], [300, 500], 2)
        var ok = true
        for i in 0..<300 { for j in 0..<500 where t[i * 500 + j] != f(a[j * 300 + i], a[i * 500 + j]) { ok = false } }
        #expect(ok, "transposed")
    }

    @Test func reductions() {
        var rng = KernelTestRNG(71)
        let x = rng.floats(3 * 2000 * 70)
        for (outer, n, inner) in [(3, 2000, 70), (1, 6000, 35), (7, 1000, 1), (1, 4, 5000)] {
            var out = [Float](repeating: 0, count: outer * inner)
            usi_reduce_sum(&out, x, Int64(outer), Int64(n), Int64(inner))
            var ref = [Float](repeating: 0, count: outer * inner)
            for o in 0..<outer { for j in 0..<inner {
                var s = 0.0
                for k in 0..<n { s += Double(x[(o * n + k) * inner + j]) }
                ref[o * inner + j] = Float(s)
            } }
            #expect(scaledError(out, ref) < 1e-6, "reduce_sum \(outer)x\(n)x\(inner)")
        }
        let total = usi_sum_all(x, x.count)
        #expect(abs(total - x.reduce(0.0) { $0 + Double($1) }) < 1e-6)
        var y = x
        #expect(usi_has_nonfinite(y, y.count) == 0)
        y[y.count - 3] = .infinity
        #expect(usi_has_nonfinite(y, y.count) == 1)
        y[y.count - 3] = .nan
        #expect(usi_has_nonfinite(y, y.count) == 1)
        var z = [Float](repeating: 0, count: x.count)
        usi_affine(&z, x, 2, 1, x.count)
        #expect((0..<x.count).allSatisfy { z[$0] == 2 * x[$0] + 1 })
        usi_accumulate(&z, x, x.count)
        #expect((0..<x.count).allSatisfy { z[$0] == (2 * x[$0] + 1) + x[$0] })
        usi_mul(&z, x, x, x.count)
        #expect((0..<x.count).allSatisfy { z[$0] == x[$0] * x[$0] })
    }

    /// AdamW against torch.optim.AdamW's single-tensor update, written out in float.
    @Test func adamWMatchesPyTorchFormula() {
        let n = 50_000
        var rng = KernelTestRNG(81)
        var p = rng.floats(n), m = [Float](repeating: 0, count: n), v = m
        var rp = p, rm = m, rv = v
        let lr: Float = 2e-3, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8, wd: Float = 2e-2
        for step in 1...3 {
            let g = rng.floats(n)
            usi_adamw_step(&p, g, &m, &v, n, lr, b1, b2, eps, wd, Int64(step))
            let bc1 = 1 - pow(Double(b1), Double(step)), bc2 = 1 - pow(Double(b2), Double(step))
            let stepSize = Float(Double(lr) / bc1), bc2Sqrt = Float(bc2.squareRoot())
            for i in 0..<n {
                rp[i] *= Float(1 - Double(lr) * Double(wd))
                rm[i] = rm[i] + Float(1 - Double(b1)) * (g[i] - rm[i])
                rv[i] = rv[i] * b2 + Float(1 - Double(b2)) * g[i] * g[i]
                rp[i] = rp[i] + (-stepSize) * (rm[i] / (rv[i].squareRoot() / bc2Sqrt + eps))
            }
        }
        #expect(scaledError(p, rp) < 1e-6)
        #expect(scaledError(m, rm) < 1e-6)
        #expect(scaledError(v, rv) < 1e-6)
    }

    @Test func gemmMatchesNaive() {
        var rng = KernelTestRNG(91)
        for (ta, tb) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let m = 37, n = 29, k = 53
            let a = rng.floats(m * k), b = rng.floats(k * n)
            let lda = ta == 0 ? k : m, ldb = tb == 0 ? n : k
            var c = rng.floats(m * n)
            var r = c
            usi_sgemm(Int32(ta), Int32(tb), Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda), b, Int32(ldb), 2, &c, Int32(n))
            usi_sgemm_naive(Int32(ta), Int32(tb), Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda), b, Int32(ldb), 2, &r, Int32(n))
            #expect(scaledError(c, r) < 1e-5, "trans \(ta)\(tb)")
        }
    }

    /// Our packed SGEMM (portable and, where the CPU has it, AVX-512 kernel) against the
    /// naive reference: every transpose, ragged row/column tails, K past one K-slice (256),
    /// padded leading dimensions, alpha, beta = 0 / 1 / 2 and a bias.
    @Test(arguments: [Int32(USI_GEMM_ISA_PORTABLE.rawValue), Int32(USI_GEMM_ISA_AVX512.rawValue)])
    func packedGemmMatchesNaive(_ isa: Int32) {
        var rng = KernelTestRNG(UInt64(7 + isa))
        let sizes = [(1, 1, 1), (5, 7, 3), (12, 32, 17), (13, 33, 300), (37, 29, 53),
                     (100, 64, 576), (257, 96, 513), (64, 70, 700), (3, 100, 2), (500, 17, 64)]
        for (ta, tb) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            for (m, n, k) in sizes {
                for (alpha, beta, useBias) in [(Float(1), Float(0), false), (0.5, 1, true), (1, 2, false)] {
                    let lda = (ta == 0 ? k : m) + 1, ldb = (tb == 0 ? n : k) + 2, ldc = n + 3
                    let a = rng.floats((ta == 0 ? m : k) * lda), b = rng.floats((tb == 0 ? k : n) * ldb)
                    let bias = rng.floats(n)
                    var c = rng.floats(m * ldc)
                    var r = c
                    bias.withUnsafeBufferPointer { bp in
                        usi_sgemm_packed(isa, Int32(ta), Int32(tb), Int32(m), Int32(n), Int32(k), alpha, a,
                                         Int32(lda), b, Int32(ldb), beta, &c, Int32(ldc),
                                         useBias ? bp.baseAddress : nil)
                    }
                    usi_sgemm_naive(Int32(ta), Int32(tb), Int32(m), Int32(n), Int32(k), alpha, a,
                                    Int32(lda), b, Int32(ldb), beta, &r, Int32(ldc))
                    var worst = 0.0, scale = 1.0, padOK = true
                    for i in 0..<m {
                        for j in 0..<ldc {
                            let got = Double(c[i * ldc + j])
                            if j >= n { padOK = padOK && c[i * ldc + j] == r[i * ldc + j]; continue }
                            let want = Double(r[i * ldc + j]) + (useBias ? Double(bias[j]) : 0)
                            let d = abs(got - want)
                            worst = d.isNaN ? .infinity : max(worst, d)
                            scale = max(scale, abs(want))
                        }
                    }
                    #expect(worst / scale < 2e-5, "isa \(isa) trans \(ta)\(tb) \(m)x\(n)x\(k) beta \(beta)")
                    #expect(padOK, "wrote outside the \(m)x\(n) block of C")
                }
            }
        }
    }

    /// The implicit-A product (A filled block by block by a callback, as the convolutions' im2col
    /// is) is the materialised product to the bit: same K-slices, kernels and order. Ragged
    /// row tails, K past one slice, a bias, 1 and 2 threads.
    @Test(arguments: [Int32(USI_GEMM_ISA_PORTABLE.rawValue), Int32(USI_GEMM_ISA_AVX512.rawValue)])
    func packedGemmWithFilledAIsBitIdentical(_ isa: Int32) {
        let budget = usi_get_num_threads()
        defer { usi_set_num_threads(budget) }
        var rng = KernelTestRNG(UInt64(11 + isa))
        for (m, n, k) in [(1, 1, 1), (13, 33, 300), (257, 96, 513), (1000, 64, 576), (37, 200, 27)] {
            let a = rng.floats(m * k), b = rng.floats(n * k), bias = rng.floats(n)
            var want = [Float](repeating: .nan, count: m * n)
            usi_sgemm_packed(isa, 0, 1, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 0, &want, Int32(n), bias)
            for threads in [1, 2] {
                usi_set_num_threads(Int32(threads))
                var got = [Float](repeating: .nan, count: m * n)
                let ok = a.withUnsafeBufferPointer { ap in
                    withUnsafePointer(to: (ap.baseAddress!, k)) { ctx in
                        usi_sgemm_packed_fill_a(isa, Int32(m), Int32(n), Int32(k), { ctx, dst, ldd, i0, rows, k0, kb in
                            let (a, k) = ctx!.assumingMemoryBound(to: (UnsafePointer<Float>, Int).self).pointee
                            for r in 0..<Int(rows) {
                                (dst! + r * Int(ldd)).update(from: a + (Int(i0) + r) * k + Int(k0), count: Int(kb))
                            }
                        }, ctx, b, Int32(k), &got, Int32(n), bias)
                    }
                }
                #expect(ok == 1)
                #expect(got == want, "isa \(isa) \(m)x\(n)x\(k), \(threads) threads")
            }
        }
    }

    /// Where convolutions run on the packed kernel, a groups-1 convolution (its im2col filled
    /// inside the GEMM) equals im2col + the packed GEMM bit for bit.
    @Test(arguments: convCases.filter { $0.groups == 1 && $0.kh * $0.kw * $0.sh * $0.sw > 1 })
    func convolutionIsTheMaterialisedProduct(_ cc: KernelConvCase) {
        guard usi_sgemm_packed_best_isa() == Int32(USI_GEMM_ISA_AVX512.rawValue) else { return }
        var s = cc.shape
        var rng = KernelTestRNG(UInt64(cc.inputCount))
        let x = rng.floats(cc.inputCount), w = rng.floats(cc.weightCount), bias = rng.floats(cc.oc)
        let m = cc.n * cc.oh * cc.ow, k = cc.kh * cc.kw * cc.c
        var col = [Float](repeating: 0, count: m * k)
        usi_im2col(&col, x, &s)
        var want = [Float](repeating: .nan, count: cc.outputCount), got = want
        usi_sgemm_packed(0, 0, 1, Int32(m), Int32(cc.oc), Int32(k), 1, col, Int32(k), w, Int32(k), 0, &want, Int32(cc.oc), bias)
        var workspace = [Float](repeating: 0, count: max(1, usi_conv2d_workspace_size(&s)))
        usi_conv2d_forward(&got, x, w, bias, &s, &workspace)
        #expect(got == want)
    }

    /// The packed SGEMM partitions C by thread count, but every element is summed by one task
    /// in a fixed order: bit-identical results for 1 and 2 threads.
    @Test func packedGemmDoesNotDependOnThreadCount() {
        let budget = usi_get_num_threads()
        defer { usi_set_num_threads(budget) }
        var rng = KernelTestRNG(5)
        let m = 1000, n = 70, k = 600
        let a = rng.floats(m * k), b = rng.floats(n * k), c0 = rng.floats(m * n)
        var results: [[Float]] = []
        for threads in [1, 2] {
            usi_set_num_threads(Int32(threads))
            var c = c0, d = [Float](repeating: 0, count: n * k)
            usi_sgemm_packed(0, 0, 1, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 1, &c, Int32(n), nil)
            usi_sgemm_packed(0, 1, 0, Int32(n), Int32(k), Int32(m), 1, c0, Int32(n), a, Int32(k), 0, &d, Int32(k), nil)
            results.append(c + d)
        }
        #expect(results[0] == results[1])
    }

    /// Reductions use a row partition that depends only on the problem size, so their
    /// results are bit-identical for any thread count.
    @Test func resultsDoNotDependOnThreadCount() {
        let budget = usi_get_num_threads()
        defer { usi_set_num_threads(budget) }
        let cc = KernelConvCase(n: 8, h: 32, w: 32, c: 32, oc: 32, k: 3, pad: 1, groups: 32)
        var s = cc.shape
        var rng = KernelTestRNG(101)
        let x = rng.floats(cc.inputCount), w = rng.floats(cc.weightCount), d = rng.floats(cc.inputCount)
        let rows = Int64(cc.inputCount / 32)
        var results: [[[Float]]] = []
        for threads in [1, 2] {
            usi_set_num_threads(Int32(threads))
            var dw = [Float](repeating: 0, count: cc.weightCount), db = [Float](repeating: 0, count: 32)
            usi_dwconv2d_backward(nil, &dw, &db, d, x, w, &s)
            var y = [Float](repeating: 0, count: x.count)
            var mean = [Float](repeating: 0, count: 32), invstd = mean
            usi_batchnorm_forward_train(&y, &mean, &invstd, nil, x, nil, nil, rows, 32, 1e-5)
            var dx = [Float](repeating: 0, count: x.count)
            usi_batchnorm_backward(&dx, nil, nil, d, x, mean, invstd, nil, rows, 32)
            var probs = [Float](repeating: 0, count: x.count)
            let loss = usi_cross_entropy_forward(&probs, x, nil, [Int32](repeating: 3, count: Int(rows)), rows, 32)
            results.append([dw, db, y, dx, [Float(loss)]])
        }
        #expect(results[0] == results[1])
    }
}
