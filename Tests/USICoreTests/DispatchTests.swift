// The kernels' run-time instruction-set dispatch, forced down to each level.
//
// usi_cpu_cap_thread lowers the level the library's own dispatch uses on this thread (what
// $USI_CPU does for a whole process): the AVX-512 GEMM and depthwise kernels, the AVX2
// packing of transposed GEMM operands. Every level must give the naive reference's results.
// A level above this CPU's is clamped to it, so on a smaller CPU those arguments re-test the
// highest level it has. The x86-64-v3 / baseline copies of the plain C (target_clones) are
// chosen by the loader and cannot be forced here: Scripts/test-baseline-cpu runs these tests
// under an emulated CPU without AVX2.

import CUSIKernels
import Foundation
import Testing

/// Deterministic data in [-1, 1) (SplitMix64).
private struct DispatchTestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func floats(_ n: Int) -> [Float] {
        (0..<n).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) * 2 - 1
        }
    }
}

/// Largest |a - b| over max(1, max |b|).
private func scaledError(_ a: [Float], _ b: [Float]) -> Double {
    var err = 0.0, scale = 1.0
    for (x, y) in zip(a, b) {
        let d = abs(Double(x) - Double(y))
        if d.isNaN { return .infinity }
        err = max(err, d)
        scale = max(scale, abs(Double(y)))
    }
    return err / scale
}

/// Runs `body` with the dispatch of this thread capped at `level`.
private func atLevel<T>(_ level: Int32, _ body: () throws -> T) rethrows -> T {
    usi_cpu_cap_thread(level)
    defer { usi_cpu_cap_thread(-1) }
    return try body()
}

private let levels: [Int32] = [Int32(USI_CPU_BASELINE.rawValue), Int32(USI_CPU_AVX2.rawValue),
                               Int32(USI_CPU_AVX512.rawValue)]

/// Convolutions that reach every dispatched path: implicit-im2col 3x3 (K past one slice),
/// stride 2, 1x1 (plain GEMM), grouped (explicit im2col), depthwise 3x3 and 5x5 stride 2 with
/// TF-same padding (the AVX-512 row kernel and the per-pixel edges), channel tails.
private let dispatchConvCases: [KernelConvCase] = [
    KernelConvCase(n: 2, h: 10, w: 10, c: 40, oc: 70, k: 3, pad: 1),
    KernelConvCase(n: 2, h: 9, w: 9, c: 24, oc: 36, k: 3, s: 2, pad: 1),
    KernelConvCase(n: 3, h: 7, w: 7, c: 33, oc: 65, k: 1),
    KernelConvCase(n: 2, h: 8, w: 8, c: 12, oc: 24, k: 3, pad: 1, groups: 3),
    KernelConvCase(n: 2, h: 12, w: 12, c: 40, oc: 40, k: 3, pad: 1, groups: 40),
    KernelConvCase(n: 2, h: 11, w: 11, c: 19, oc: 19, k: 5, s: 2, pad: 1, pb: 2, pl: 1, pr: 2, groups: 19),
]

/// The level this CPU should have, from the flags Linux reports in /proc/cpuinfo, or from
/// $USI_TEST_EXPECT_CPU where that is set (Scripts/test-baseline-cpu sets it: under qemu-user
/// /proc/cpuinfo is the host's, not the emulated CPU's). nil when neither is available.
private func expectedCPULevel() -> Int32? {
    if let name = ProcessInfo.processInfo.environment["USI_TEST_EXPECT_CPU"] {
        return usi_cpu_parse_level(name)
    }
    #if arch(x86_64)
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let flags = Set(line.split(separator: " ").map(String.init))
    // x86-64-v3 as the psABI defines it (abm = LZCNT).
    let v3 = ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]
    guard flags.isSuperset(of: v3) else { return Int32(USI_CPU_BASELINE.rawValue) }
    guard flags.contains("avx512f") else { return Int32(USI_CPU_AVX2.rawValue) }
    guard flags.isSuperset(of: ["avx512bw", "avx512vl", "avx512_bf16"]) else { return Int32(USI_CPU_AVX512.rawValue) }
    return Int32(USI_CPU_AVX512_BF16.rawValue)
    #else
    return Int32(USI_CPU_BASELINE.rawValue)
    #endif
}

struct DispatchTests {
    /// cpuid-based detection agrees with the kernel's view of the CPU (or with the emulated
    /// CPU the baseline script runs under).
    @Test func detectsTheCPUsLevel() throws {
        let expected = try #require(expectedCPULevel(), "no /proc/cpuinfo flags and no USI_TEST_EXPECT_CPU")
        #expect(usi_cpu_detected_level() == expected)
    }

    /// The cap lowers the level on the calling thread only, and never raises it.
    @Test func capLowersTheLevelOnThisThreadOnly() throws {
        let uncapped = usi_cpu_level()
        #expect(uncapped <= usi_cpu_detected_level())
        for level in levels {
            atLevel(level) {
                #expect(usi_cpu_level() == min(level, uncapped))
                let wantISA = min(level, uncapped) >= Int32(USI_CPU_AVX512.rawValue) ? USI_GEMM_ISA_AVX512 : USI_GEMM_ISA_PORTABLE
                #expect(usi_sgemm_packed_best_isa() == Int32(wantISA.rawValue))
            }
        }
        atLevel(Int32(USI_CPU_AVX512_BF16.rawValue) + 5) { #expect(usi_cpu_level() == uncapped) }
        // Another thread is not capped by this one's cap.
        final class Box: @unchecked Sendable { var level: Int32 = -1 }
        let other = Box()
        atLevel(Int32(USI_CPU_BASELINE.rawValue)) {
            let done = DispatchSemaphore(value: 0)
            Thread { other.level = usi_cpu_level(); done.signal() }.start()
            done.wait()
        }
        #expect(other.level == uncapped)
        #expect(usi_cpu_level() == uncapped)
        for name in ["baseline", "avx2", "avx512", "avx512bf16"] {
            let level = usi_cpu_parse_level(name)
            #expect(level >= 0 && String(cString: usi_cpu_level_name(level)) == name)
        }
        #expect(usi_cpu_parse_level("avx3") == -1)
    }

    /// Convolutions forward and backward (dense, grouped, depthwise) at each level against the
    /// direct-loop reference (double accumulation), tolerance 1e-5 of the tensor's scale as in
    /// KernelConvTests (sums of <= 400 products of O(1) values in float).
    @Test(arguments: levels)
    func convolutionsMatchNaive(_ level: Int32) {
        for cc in dispatchConvCases {
            var s = cc.shape
            var rng = DispatchTestRNG(UInt64(cc.inputCount + 17 * cc.oc))
            let x = rng.floats(cc.inputCount), w = rng.floats(cc.weightCount), bias = rng.floats(cc.oc)
            let dout = rng.floats(cc.outputCount)
            let dx0 = rng.floats(cc.inputCount), dw0 = rng.floats(cc.weightCount), db0 = rng.floats(cc.oc)
            var ref = [Float](repeating: 0, count: cc.outputCount)
            usi_conv2d_forward_naive(&ref, x, w, bias, &s)
            var rdx = dx0, rdw = dw0, rdb = db0
            usi_conv2d_backward_naive(&rdx, &rdw, &rdb, dout, x, w, &s)
            let depthwise = cc.groups == cc.c && cc.c == cc.oc
            atLevel(level) {
                var out = [Float](repeating: .nan, count: cc.outputCount)
                var dx = dx0, dw = dw0, db = db0
                if depthwise {
                    usi_dwconv2d_forward(&out, x, w, bias, &s)
                    usi_dwconv2d_backward(&dx, &dw, &db, dout, x, w, &s)
                } else {
                    var workspace = [Float](repeating: 0, count: max(1, usi_conv2d_workspace_size(&s)))
                    usi_conv2d_forward(&out, x, w, bias, &s, &workspace)
                    usi_conv2d_backward(&dx, &dw, &db, dout, x, w, &s, &workspace)
                }
                let label = "level \(level) \(cc.testDescription)"
                #expect(scaledError(out, ref) < 1e-5, "forward, \(label)")
                #expect(scaledError(dx, rdx) < 1e-5, "dx, \(label)")
                #expect(scaledError(dw, rdw) < 1e-5, "dw, \(label)")
                #expect(scaledError(db, rdb) < 1e-5, "dbias, \(label)")
            }
        }
    }

    /// usi_sgemm (BLAS or our packed kernel, by level) and usi_sgemm_packed's best kernel, all
    /// transposes, column counts that leave 8x8-transpose and panel tails, K past one slice.
    /// Tolerance 2e-5 of the scale (K up to 300 products).
    @Test(arguments: levels)
    func gemmsMatchNaive(_ level: Int32) {
        var rng = DispatchTestRNG(UInt64(40 + level))
        for (m, n, k) in [(37, 70, 300), (5, 9, 7), (64, 33, 19)] {
            for (ta, tb) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let lda = ta == 0 ? k : m, ldb = tb == 0 ? n : k
                let a = rng.floats(m * k), b = rng.floats(k * n), c0 = rng.floats(m * n), bias = rng.floats(n)
                var ref = c0
                usi_sgemm_naive(Int32(ta), Int32(tb), Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda), b,
                                Int32(ldb), 1, &ref, Int32(n))
                atLevel(level) {
                    var c = c0
                    usi_sgemm(Int32(ta), Int32(tb), Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda), b,
                              Int32(ldb), 1, &c, Int32(n))
                    #expect(scaledError(c, ref) < 2e-5, "usi_sgemm level \(level) trans \(ta)\(tb) \(m)x\(n)x\(k)")
                    var p = c0
                    usi_sgemm_packed(Int32(USI_GEMM_ISA_BEST.rawValue), Int32(ta), Int32(tb), Int32(m), Int32(n),
                                     Int32(k), 0.5, a, Int32(lda), b, Int32(ldb), 1, &p, Int32(n), bias)
                    let withBias = (0..<(m * n)).map { ref[$0] + bias[$0 % n] }
                    #expect(scaledError(p, withBias) < 2e-5, "packed level \(level) trans \(ta)\(tb) \(m)x\(n)x\(k)")
                }
            }
        }
    }

    /// Packing a transposed operand with AVX2 8x8 register transposes or with scalar copies
    /// moves the same floats: the products are bit-identical.
    @Test func avx2PackingIsTheScalarPacking() {
        var rng = DispatchTestRNG(3)
        let m = 50, n = 77, k = 530  // 77 = 9 blocks of 8 + a tail; K past two slices
        let a = rng.floats(m * k), b = rng.floats(n * k)
        var results: [[Float]] = []
        for level in [Int32(USI_CPU_BASELINE.rawValue), Int32(USI_CPU_AVX2.rawValue)] {
            var c = [Float](repeating: .nan, count: m * n)
            atLevel(level) {
                usi_sgemm_packed(Int32(USI_GEMM_ISA_PORTABLE.rawValue), 0, 1, Int32(m), Int32(n), Int32(k), 1, a,
                                 Int32(k), b, Int32(k), 0, &c, Int32(n), nil)
            }
            results.append(c)
        }
        #expect(results[0] == results[1])
    }
}
