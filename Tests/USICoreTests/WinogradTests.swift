// Winograd F(2×2, 3×3) for frozen 3×3 stride-1 convolutions (Sources/CUSIKernels/winograd.c).
//
// Tolerances. The transforms only add and subtract (B, A) or halve (G), so in FP32 the result
// differs from the direct form by rounding alone: measured 3e-7 to 4e-6 of the output's largest
// value on the shapes below, checked at 2e-5. In BF16 the transformed inputs and weights are
// rounded to 8 bits, as the direct BF16 form rounds its inputs: measured 1.4–1.8 % of the
// output's RMS at most (the direct BF16 form: 0.8–1.2 %), checked at 4 %; the RMS of the error
// is checked at 0.5 % of the output's.

import CUSIKernels
import Foundation
import Testing
@testable import USICore

private let hasPackedFP32 = usi_precision_supported(Int32(USI_PRECISION_FP32.rawValue)) != 0
private let hasBF16 = usi_precision_supported(Int32(USI_PRECISION_BF16.rawValue)) != 0

/// Odd and even sizes (a partial last tile), padding 0/1 and asymmetric, 2×2 outputs, channel
/// counts off the 32-wide panels, a batch of several chunks.
private let winogradCases = [
    KernelConvCase(n: 1, h: 4, w: 4, c: 16, oc: 16, k: 3, pad: 1),
    KernelConvCase(n: 2, h: 5, w: 7, c: 16, oc: 33, k: 3, pad: 1),
    KernelConvCase(n: 3, h: 9, w: 6, c: 17, oc: 19, k: 3),
    KernelConvCase(n: 2, h: 2, w: 2, c: 40, oc: 24, k: 3, pad: 1),
    KernelConvCase(n: 2, h: 8, w: 8, c: 24, oc: 48, k: 3, pad: 0, pb: 2, pl: 1, pr: 1),
    KernelConvCase(n: 9, h: 14, w: 14, c: 64, oc: 70, k: 3, pad: 1),
]

private func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
    var rng = RandomGenerator(seed: seed)
    return (0..<n).map { _ in rng.nextFloat() * 2 - 1 }
}

/// out = Winograd conv at `precision`, or nil when the kernel declines.
private func winograd(_ cc: KernelConvCase, _ x: [Float], _ w: [Float], _ bias: [Float], precision: InferencePrecision) throws -> [Float]? {
    var s = cc.shape
    let packed = try #require(usi_winograd_pack(precision.kernelPrecision, Int32(cc.oc), Int32(cc.c), w))
    defer { usi_winograd_free(packed) }
    var out = [Float](repeating: .nan, count: cc.outputCount)
    return usi_conv2d_forward_winograd(&out, x, packed, bias, &s) == 1 ? out : nil
}

@Suite("Winograd F(2x2, 3x3) convolutions")
struct WinogradTests {
    @Test(.enabled(if: hasPackedFP32), arguments: winogradCases)
    func fp32MatchesTheDirectForm(_ cc: KernelConvCase) throws {
        var s = cc.shape
        #expect(usi_winograd_applies(&s) == 1, "\(cc.testDescription)")
        let x = randomFloats(cc.inputCount, seed: 1), w = randomFloats(cc.weightCount, seed: 2), bias = randomFloats(cc.oc, seed: 3)
        var want = [Float](repeating: 0, count: cc.outputCount)
        usi_conv2d_forward_naive(&want, x, w, bias, &s)
        let got = try #require(try winograd(cc, x, w, bias, precision: .float32))
        let scale = Double(want.map { abs($0) }.max() ?? 1)
        let worst = zip(got, want).map { abs(Double($0) - Double($1)) }.max() ?? .infinity
        #expect(worst <= 2e-5 * scale, "\(cc.testDescription): max |diff| \(worst) of \(scale)")
    }

    @Test(.enabled(if: hasBF16), arguments: winogradCases)
    func bf16IsWithinItsRounding(_ cc: KernelConvCase) throws {
        var s = cc.shape
        let x = randomFloats(cc.inputCount, seed: 4), w = randomFloats(cc.weightCount, seed: 5), bias = randomFloats(cc.oc, seed: 6)
        var want = [Float](repeating: 0, count: cc.outputCount)
        usi_conv2d_forward_naive(&want, x, w, bias, &s)
        let got = try #require(try winograd(cc, x, w, bias, precision: .bfloat16))
        let rms = (want.reduce(0) { $0 + Double($1) * Double($1) } / Double(want.count)).squareRoot()
        let errors = zip(got, want).map { abs(Double($0) - Double($1)) }
        let errorRMS = (errors.reduce(0) { $0 + $1 * $1 } / Double(errors.count)).squareRoot()
        #expect(errors.max()! <= 0.04 * rms && errorRMS <= 0.005 * rms,
                "\(cc.testDescription): max |diff| \(errors.max()!), rms diff \(errorRMS), rms \(rms)")
    }

    /// Chunks of tiles are sized by the shape, so 1 and 2 threads give the same bits.
    @Test(.enabled(if: hasPackedFP32)) func independentOfTheThreadCount() throws {
        let budget = usi_get_num_threads()
        defer { usi_set_num_threads(budget) }
        let cc = winogradCases.last!
        let x = randomFloats(cc.inputCount, seed: 7), w = randomFloats(cc.weightCount, seed: 8), bias = randomFloats(cc.oc, seed: 9)
        usi_set_num_threads(1)
        let one = try #require(try winograd(cc, x, w, bias, precision: .float32))
        usi_set_num_threads(2)
        let two = try #require(try winograd(cc, x, w, bias, precision: .float32))
        #expect(one == two)
    }

    /// Where it does not pay (a 1×1 or 3×3 output, narrow layers) or cannot apply (stride 2,
    /// dilation, groups) the kernel declines and leaves the output untouched.
    @Test(.enabled(if: hasPackedFP32)) func declinesWhereItDoesNotApply() throws {
        let declined = [
            KernelConvCase(n: 2, h: 1, w: 1, c: 32, oc: 32, k: 3, pad: 1),
            KernelConvCase(n: 2, h: 3, w: 3, c: 32, oc: 32, k: 3, pad: 1),
            KernelConvCase(n: 2, h: 8, w: 8, c: 8, oc: 32, k: 3, pad: 1),
            KernelConvCase(n: 2, h: 8, w: 8, c: 32, oc: 32, k: 3, s: 2, pad: 1),
            KernelConvCase(n: 2, h: 8, w: 8, c: 32, oc: 32, k: 3, pad: 2, d: 2),
            KernelConvCase(n: 2, h: 8, w: 8, c: 32, oc: 32, k: 3, pad: 1, groups: 2),
        ]
        let packed = try #require(usi_winograd_pack(Int32(USI_PRECISION_FP32.rawValue), 32, 32, randomFloats(32 * 9 * 32, seed: 10)))
        defer { usi_winograd_free(packed) }
        for cc in declined {
            var s = cc.shape
            #expect(usi_winograd_applies(&s) == 0, "\(cc.testDescription)")
            var out = [Float](repeating: 7, count: cc.outputCount)
            #expect(usi_conv2d_forward_winograd(&out, randomFloats(cc.inputCount, seed: 11), packed, nil, &s) == 0)
            #expect(out.allSatisfy { $0 == 7 })
        }
    }

    /// A prepared Conv2d takes the Winograd form where the input size lets it, only the taps
    /// that reach the input where one output pixel's window holds all of it, and the direct
    /// packed form elsewhere; prepared in the direct form it is the unprepared layer to the bit.
    @Test(.enabled(if: hasPackedFP32)) func preparedLayersChooseByInputSize() throws {
        let conv = Initialization.withSeed(3) {
            Conv2d(inputChannels: 32, outputChannels: 48, kernelSize: 3, padding: .same)
        }
        let strided = Initialization.withSeed(4) {
            Conv2d(inputChannels: 32, outputChannels: 40, kernelSize: 3, stride: 2, padding: .symmetric(1))
        }
        let inputs = [(conv, [2, 8, 8, 32]), (conv, [2, 1, 1, 32]), (conv, [2, 3, 3, 32]),
                      (strided, [3, 2, 2, 32]), (strided, [3, 6, 6, 32])]
        var seed: UInt64 = 12
        let cases = inputs.map { layer, shape in
            seed += 1
            let x = Tensor(shape: shape, values: randomFloats(shape.reduce(1, *), seed: seed))
            return (layer, x, withoutGradients { layer(x) }.toArray())
        }
        for layer in [conv, strided] { layer.prepareForInference(precision: .float32) }
        for (layer, x, want) in cases { #expect(withoutGradients { layer(x) }.toArray() == want, "direct \(x.shape)") }
        for layer in [conv, strided] { layer.prepareForInference(precision: .float32, convolutions: .fastest) }
        #expect(conv.winogradWeights != nil && strided.winogradWeights == nil)
        // 8×8 (Winograd) changes the rounding; a 3×3 output (neither form applies: the direct
        // packed one) and the 6×6 strided input keep the bits. The whole-input taps of 1×1 and
        // 2×2-stride-2 inputs drop only products with zero padding, so they may keep the bits too
        // (adding +0 is exact) or not (the GEMM's K-blocking of the shorter sum differs).
        for ((layer, x, want), changes) in zip(cases, [true, nil, false, nil, false] as [Bool?]) {
            let got = withoutGradients { layer(x) }.toArray()
            let scale = Double(want.map { abs($0) }.max()!)
            #expect(zip(got, want).allSatisfy { abs(Double($0) - Double($1)) <= 2e-5 * scale }, "fastest \(x.shape)")
            if let changes { #expect((got != want) == changes, "fastest \(x.shape): expected \(changes ? "another" : "the direct") rounding") }
        }
        conv.removeInferencePreparation()
        #expect(conv.winogradWeights == nil && conv.wholeInputTaps == nil)
    }
}
