// GEMMs and convolutions with packed weights, FP32 and BF16 (FP32 accumulation).
//
// Error model of the BF16 products. BF16 keeps 8 significant bits, so rounding to nearest
// gives a relative error of at most u = 2^-8 per input; a product of two rounded inputs is
// off by at most (2u + u²)|a b| and is itself exact in FP32 (8 + 8 bits). A K-term dot product
// is then within (2u + u²) Σ|a b| of the exact one from the rounding, plus FP32 summation
// error, at most about (K + 2) 2^-24 Σ|â b̂| (the bound for recursive summation of K terms
// plus a bias, and the final rounding). The tests check that bound elementwise against the
// double-precision FP32 reference, and the summation part alone against the reference that
// rounds its inputs the same way (usi_gemm_bf16_naive), which is far tighter and checks
// that the kernel rounds to nearest even (truncation would exceed it).

import CUSIKernels
import Foundation
import Testing

private struct PrecisionTestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in Float(next() >> 40) / Float(1 << 24) * 2 - 1 } }
    /// Multiples of 1/8 in [-1, 1]: exact in BF16, and their products and sums (K up to a few
    /// thousand) exact in FP32.
    mutating func eighths(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Int(next() % 17) - 8) / 8 } }
}

private let bf16 = Int32(USI_PRECISION_BF16.rawValue), fp32 = Int32(USI_PRECISION_FP32.rawValue)
private let hasBF16 = usi_precision_supported(Int32(USI_PRECISION_BF16.rawValue)) != 0
private let hasPackedFP32 = usi_precision_supported(Int32(USI_PRECISION_FP32.rawValue)) != 0

/// C = A W^T + bias through weights packed at `precision`, or nil when they do not run here.
private func packedProduct(_ precision: Int32, m: Int, n: Int, k: Int, _ a: [Float], _ w: [Float], _ bias: [Float]?) -> [Float]? {
    guard let packed = usi_pack_weights(precision, Int32(n), Int32(k), w, Int32(k)) else { return nil }
    defer { usi_packed_weights_free(packed) }
    var c = [Float](repeating: .nan, count: m * n)
    let ok = bias.withUnsafeBufferPointer { bp in
        usi_gemm_packed_weights(Int32(m), a, Int32(k), packed, &c, Int32(n), bias == nil ? nil : bp.baseAddress)
    }
    return ok == 1 ? c : nil
}

fileprivate extension Optional where Wrapped == [Float] {
    func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) -> R) -> R {
        switch self {
        case let .some(array): array.withUnsafeBufferPointer(body)
        case .none: body(UnsafeBufferPointer(start: nil, count: 0))
        }
    }
}

/// (M, N, K): row and column tails of the 12 x 32 tile, odd K (a zero-padded pair), K past one
/// BF16 K-slice (512) and past two.
private let shapes = [(1, 1, 1), (13, 33, 7), (37, 70, 300), (25, 5, 513), (100, 64, 1100), (200, 96, 64)]

struct PrecisionTests {
    @Test func bf16RoundingIsToNearestEven() {
        #expect(usi_bf16_round(1) == 1)
        #expect(usi_bf16_round(1 + 0x1p-8) == 1)                  // tie: down to the even 1
        #expect(usi_bf16_round(1 + 3 * 0x1p-8) == 1 + 0x1p-6)     // tie: up to the even neighbour
        #expect(usi_bf16_round(1 + 0x1p-8 + 0x1p-20) == 1 + 0x1p-7)
        #expect(usi_bf16_round(0x1.FEp127) == 0x1.FEp127)            // the largest BF16
        #expect(usi_bf16_round(-.greatestFiniteMagnitude) == -.infinity)  // rounds past it
        #expect(usi_bf16_round(.infinity) == .infinity)
        #expect(usi_bf16_round(.nan).isNaN)
        #expect(usi_bf16_round(-0.0).sign == .minus)
    }

    /// Inputs exact in BF16 whose products and sums are exact in FP32: the BF16 product must
    /// equal the reference exactly (any indexing, packing or pair-order mistake shows).
    @Test(.enabled(if: hasBF16)) func bf16ProductIsExactOnBF16Values() throws {
        var rng = PrecisionTestRNG(1)
        for (m, n, k) in shapes {
            let a = rng.eighths(m * k), w = rng.eighths(n * k), bias = rng.eighths(n)
            var ref = [Float](repeating: 0, count: m * n)
            usi_gemm_bf16_naive(Int32(m), Int32(n), Int32(k), a, Int32(k), w, Int32(k), &ref, Int32(n), bias)
            let got = try #require(packedProduct(bf16, m: m, n: n, k: k, a, w, bias))
            #expect(got == ref, "\(m)x\(n)x\(k)")
        }
    }

    /// Random inputs: within the FP32 summation bound of the reference that rounds its inputs
    /// the same way, and within the BF16 error bound of the FP32 reference (see the top).
    @Test(.enabled(if: hasBF16)) func bf16ProductIsWithinItsErrorBound() throws {
        var rng = PrecisionTestRNG(2)
        for (m, n, k) in shapes {
            let a = rng.floats(m * k), w = rng.floats(n * k), bias = rng.floats(n)
            var rounded = [Float](repeating: 0, count: m * n), exact = rounded
            usi_gemm_bf16_naive(Int32(m), Int32(n), Int32(k), a, Int32(k), w, Int32(k), &rounded, Int32(n), bias)
            usi_sgemm_naive(0, 1, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), w, Int32(k), 0, &exact, Int32(n))
            let got = try #require(packedProduct(bf16, m: m, n: n, k: k, a, w, bias))
            var worstSum = 0.0, worstRound = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var mass = abs(Double(bias[j]))  // Σ|a b| (+ |bias|)
                    for p in 0..<k { mass += abs(Double(a[i * k + p]) * Double(w[j * k + p])) }
                    let g = Double(got[i * n + j])
                    let summation = Double(k + 2) * 0x1p-24 * mass * (1 + 0x1p-7)
                    let input = (2 * 0x1p-8 + 0x1p-16) * mass
                    worstSum = max(worstSum, abs(g - Double(rounded[i * n + j])) / summation)
                    worstRound = max(worstRound, abs(g - Double(exact[i * n + j]) - Double(bias[j])) / (input + summation))
                }
            }
            print("  bf16 \(m)x\(n)x\(k): error / summation bound \(worstSum), vs FP32 / BF16 bound \(worstRound)")
            #expect(worstSum <= 1, "\(m)x\(n)x\(k) summation")
            #expect(worstRound <= 1, "\(m)x\(n)x\(k) input rounding")
        }
    }

    /// FP32 packed weights only move the per-call weight packing out of the call: the products
    /// are the packed SGEMM's to the bit.
    @Test(.enabled(if: hasPackedFP32)) func fp32PackedWeightsAreTheUnpackedProduct() throws {
        var rng = PrecisionTestRNG(3)
        for (m, n, k) in shapes {
            let a = rng.floats(m * k), w = rng.floats(n * k), bias = rng.floats(n)
            var want = [Float](repeating: .nan, count: m * n)
            usi_sgemm_packed(Int32(USI_GEMM_ISA_BEST.rawValue), 0, 1, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), w,
                             Int32(k), 0, &want, Int32(n), bias)
            #expect(try #require(packedProduct(fp32, m: m, n: n, k: k, a, w, bias)) == want, "\(m)x\(n)x\(k)")
        }
    }

    /// Convolutions with packed weights: FP32 is usi_conv2d_forward to the bit; BF16 matches
    /// the direct reference on BF16-rounded inputs within the summation bound (taken with the
    /// largest possible Σ|x w| of the layer, K · max|x| · max|w|, since the reference sums in
    /// double) — implicit im2col (3x3, stride 2, padding), pointwise, a K-slice tail.
    @Test(.enabled(if: hasBF16)) func packedConvolutions() throws {
        let cases = [KernelConvCase(n: 2, h: 9, w: 9, c: 40, oc: 70, k: 3, pad: 1),
                     KernelConvCase(n: 2, h: 9, w: 9, c: 24, oc: 36, k: 3, s: 2, pad: 1),
                     KernelConvCase(n: 3, h: 7, w: 7, c: 65, oc: 33, k: 1),
                     KernelConvCase(n: 1, h: 16, w: 16, c: 3, oc: 24, k: 7, s: 2, pad: 3)]
        var rng = PrecisionTestRNG(4)
        for cc in cases {
            var s = cc.shape
            let x = rng.floats(cc.inputCount), w = rng.floats(cc.weightCount), bias = rng.floats(cc.oc)
            let k = cc.weightCount / cc.oc
            var want = [Float](repeating: .nan, count: cc.outputCount)
            var workspace = [Float](repeating: 0, count: max(1, usi_conv2d_workspace_size(&s)))
            usi_conv2d_forward(&want, x, w, bias, &s, &workspace)
            for precision in [fp32, bf16] {
                let packed = try #require(usi_pack_weights(precision, Int32(cc.oc), Int32(k), w, Int32(k)))
                defer { usi_packed_weights_free(packed) }
                var got = [Float](repeating: .nan, count: cc.outputCount)
                #expect(usi_conv2d_forward_packed(&got, x, packed, bias, &s) == 1)
                if precision == fp32 {
                    #expect(got == want, "fp32 \(cc.testDescription)")
                } else {
                    var ref = [Float](repeating: 0, count: cc.outputCount)
                    usi_conv2d_forward_naive(&ref, x.map(usi_bf16_round), w.map(usi_bf16_round), bias, &s)
                    let bound = Double(k + 2) * 0x1p-24 * (Double(k) + 1) * 1.01
                    let worst = zip(got, ref).map { abs(Double($0) - Double($1)) }.max() ?? .infinity
                    print("  bf16 conv \(cc.testDescription): max |diff| \(worst), bound \(bound)")
                    #expect(worst <= bound, "bf16 \(cc.testDescription)")
                }
            }
        }
    }

    /// Below AVX512-BF16 (a thread cap, as USI_CPU gives a process) BF16 weights are not
    /// packed, and weights packed before the cap are refused (0, output untouched) so callers
    /// run FP32; below AVX-512 the same holds for FP32 packed weights.
    @Test(.enabled(if: hasBF16)) func capsFallBackCleanly() throws {
        var rng = PrecisionTestRNG(5)
        let m = 30, n = 40, k = 50
        let a = rng.floats(m * k), w = rng.floats(n * k)
        let packedBF16 = try #require(usi_pack_weights(bf16, Int32(n), Int32(k), w, Int32(k)))
        let packedFP32 = try #require(usi_pack_weights(fp32, Int32(n), Int32(k), w, Int32(k)))
        defer { usi_packed_weights_free(packedBF16); usi_packed_weights_free(packedFP32) }
        var s = KernelConvCase(n: 1, h: 5, w: 5, c: 10, oc: n, k: 1).shape
        for (cap, fp32Runs) in [(Int32(USI_CPU_AVX512.rawValue), true), (Int32(USI_CPU_AVX2.rawValue), false)] {
            usi_cpu_cap_thread(cap)
            defer { usi_cpu_cap_thread(-1) }
            #expect(usi_precision_supported(bf16) == 0)
            #expect(usi_pack_weights(bf16, Int32(n), Int32(k), w, Int32(k)) == nil)
            var c = [Float](repeating: 7, count: m * n)
            #expect(usi_gemm_packed_weights(Int32(m), a, Int32(k), packedBF16, &c, Int32(n), nil) == 0)
            #expect(c.allSatisfy { $0 == 7 })
            var out = [Float](repeating: 7, count: 25 * n)
            #expect(usi_conv2d_forward_packed(&out, a, packedBF16, nil, &s) == 0)
            #expect(out.allSatisfy { $0 == 7 })
            #expect((usi_gemm_packed_weights(Int32(m), a, Int32(k), packedFP32, &c, Int32(n), nil) == 1) == fp32Runs)
        }
    }
}
