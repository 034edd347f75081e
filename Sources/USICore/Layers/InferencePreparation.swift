import CUSIKernels
import Synchronization

/// The precision of a frozen layer's GEMM inputs at inference. Accumulation is FP32 either way.
public enum InferencePrecision: String, Sendable, CaseIterable, Codable {
    /// Exact FP32 products (the default; what an unprepared layer computes).
    case float32 = "fp32"
    /// Weights and activations rounded to BF16 (8 significant bits), products summed in FP32:
    /// `vdpbf16ps` on CPUs with AVX512-BF16, about twice the FP32 arithmetic rate.
    case bfloat16 = "bf16"

    var kernelPrecision: Int32 {
        switch self {
        case .float32: Int32(USI_PRECISION_FP32.rawValue)
        case .bfloat16: Int32(USI_PRECISION_BF16.rawValue)
        }
    }

    /// Whether this CPU (within `USI_CPU`) runs prepared layers of this precision: FP32 packed
    /// weights need AVX-512, BF16 needs AVX512-BF16. Where it does not, preparation leaves a
    /// layer unprepared and it keeps its FP32 path.
    public var isSupported: Bool { usi_precision_supported(kernelPrecision) != 0 }
}

/// How a module prepared for inference may compute its convolutions.
public enum ConvolutionForm: String, Sendable, CaseIterable, Codable {
    /// The direct form: a layer prepared at `.float32` gives the unprepared layer's bits.
    case direct
    /// The fewest multiplies: 3×3 stride-1 layers as Winograd F(2×2, 3×3) where the input size
    /// makes it pay, and, where a single output pixel's window covers the whole input (the
    /// 1×1 and 2×2 maps at the end of a CNN on small images), only the taps that reach the
    /// input instead of products with padding. The rounding differs from the direct form's:
    /// within about 1e-6 relative in FP32.
    case fastest
}

/// A layer's weight converted (FP32 or BF16) and packed once for its forward GEMMs.
///
/// It is a copy: if the layer's weight changes afterwards, prepare the module again.
public final class PackedWeights: @unchecked Sendable {
    let handle: OpaquePointer
    /// The precision the weights were packed for.
    public let precision: InferencePrecision

    /// Packs `weight` viewed as `[rows, weight.count / rows]`; nil where the precision does
    /// not run on this CPU.
    init?(_ weight: Tensor, rows: Int, precision: InferencePrecision) {
        let k = weight.count / rows
        guard let handle = withExtendedLifetime(weight, {
            usi_pack_weights(precision.kernelPrecision, Int32(rows), Int32(k), weight.pointer, Int32(k))
        }) else { return nil }
        self.handle = handle
        self.precision = precision
    }

    deinit { usi_packed_weights_free(handle) }
}

/// A 3×3 convolution's weight transformed for Winograd F(2×2, 3×3) and packed once: the 16
/// matrices `G g Gᵀ` of its 2×2 output tiles, FP32 or BF16.
///
/// It is a copy: if the layer's weight changes afterwards, prepare the module again.
public final class WinogradWeights: @unchecked Sendable {
    let handle: OpaquePointer
    /// The precision the transformed weights were packed for.
    public let precision: InferencePrecision

    /// Transforms and packs an OHWI `[out, 3, 3, in]` weight; nil for other kernel sizes or
    /// where the precision does not run on this CPU.
    init?(_ weight: Tensor, precision: InferencePrecision) {
        guard weight.rank == 4, weight.shape[1] == 3, weight.shape[2] == 3,
              let handle = withExtendedLifetime(weight, {
                  usi_winograd_pack(precision.kernelPrecision, Int32(weight.shape[0]), Int32(weight.shape[3]), weight.pointer)
              }) else { return nil }
        self.handle = handle
        self.precision = precision
    }

    deinit { usi_winograd_free(handle) }
}

/// Packed copies of the taps that a single output pixel reads when the whole input lies inside
/// its window, one per input size met: the convolution is then one GEMM of the input viewed as
/// `[N, H·W·C]` by those taps, with none of the direct form's products with padding (a 3×3
/// convolution of a 1×1 map reads 1 tap of 9).
final class WholeInputTaps: Sendable {
    private let weight: Tensor
    private let precision: InferencePrecision
    private let packed = Mutex<[Int: PackedWeights]>([:])

    init(_ weight: Tensor, precision: InferencePrecision) {
        self.weight = weight.copy()
        self.precision = precision
    }

    /// The packed taps for an input of `h × w` starting at kernel row `top`, column `left`.
    func taps(h: Int, w: Int, top: Int, left: Int) -> PackedWeights? {
        let (oc, kh, kw, c) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        let key = ((h * 64 + w) * 64 + top) * 64 + left
        return packed.withLock { cache in
            if let hit = cache[key] { return hit }
            let sub = Tensor(uninitializedShape: [oc, h, w, c])
            withExtendedLifetime((weight, sub)) {
                for o in 0..<oc {
                    for r in 0..<h {
                        (sub.pointer + ((o * h + r) * w) * c).update(from: weight.pointer + ((o * kh + top + r) * kw + left) * c,
                                                                      count: w * c)
                    }
                }
            }
            let made = PackedWeights(sub, rows: oc, precision: precision)
            cache[key] = made
            return made
        }
    }
}

/// Whether a forward pass over these tensors may take a prepared path: nothing would be
/// recorded for a backward pass (prepared weights carry no gradients).
@inline(__always)
private func inferenceOnly(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Bool {
    !GradientTape.current.isRecording || !(x.requiresGrad || weight.requiresGrad || (bias?.requiresGrad ?? false))
}

extension Conv2d {
    /// Whether Winograd F(2×2, 3×3) can compute this layer at some input size: a 3×3 kernel,
    /// stride 1, no dilation, no groups, at least 16 channels in and out.
    var admitsWinograd: Bool {
        weight.shape[1] == 3 && weight.shape[2] == 3 && stride == (1, 1) && dilation == (1, 1) && groups == 1
            && inputChannels >= 16 && outputChannels >= 16
    }

    /// The convolution with prepared weights, or nil when the unprepared path must run
    /// (gradients to record, a grouped convolution, or a CPU level that cannot run them).
    func preparedForward(_ x: Tensor, _ packed: PackedWeights) -> Tensor? {
        guard groups == 1, inferenceOnly(x, weight, bias), x.rank == 4, x.shape[3] == inputChannels else { return nil }
        var s = windowShape(input: x.shape, outChannels: outputChannels, kernel: (weight.shape[1], weight.shape[2]),
                            stride: stride, padding: padding, dilation: dilation, groups: 1, op: "conv2d")
        let out = Tensor(uninitializedShape: [x.shape[0], Int(s.OH), Int(s.OW), outputChannels])
        let (h, w, top, left) = (Int(s.H), Int(s.W), Int(s.PT), Int(s.PL))
        let wholeInput = s.OH == 1 && s.OW == 1 && dilation == (1, 1) && top >= 0 && left >= 0
            && top + h <= Int(s.KH) && left + w <= Int(s.KW) && h * w < Int(s.KH * s.KW)
        let done = withExtendedLifetime((x, bias, packed, winogradWeights)) {
            let b = bias.map { UnsafePointer($0.pointer) }
            // One output pixel whose window holds the whole input: only the taps that reach it.
            if wholeInput, let taps = wholeInputTaps?.taps(h: h, w: w, top: top, left: left),
               withExtendedLifetime(taps, { usi_gemm_packed_weights(s.N, x.pointer, Int32(h * w * inputChannels), taps.handle,
                                                                    out.pointer, Int32(outputChannels), b) }) != 0 {
                return Int32(1)
            }
            // The Winograd form where it applies to this input's size, the direct one otherwise.
            if let winogradWeights, usi_conv2d_forward_winograd(out.pointer, x.pointer, winogradWeights.handle, b, &s) != 0 {
                return Int32(1)
            }
            return usi_conv2d_forward_packed(out.pointer, x.pointer, packed.handle, b, &s)
        }
        guard done != 0 else { return nil }
        FlopCounter.add(multiplyAdds: out.count * weight.count / outputChannels)
        return out
    }
}

extension Linear {
    /// The layer with prepared weights, or nil when the unprepared path must run.
    func preparedForward(_ x: Tensor, _ packed: PackedWeights) -> Tensor? {
        guard inferenceOnly(x, weight, bias), x.shape.last == inputFeatures else { return nil }
        let rows = x.count / max(inputFeatures, 1)
        let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outputFeatures])
        let done = withExtendedLifetime((x, bias, packed)) {
            usi_gemm_packed_weights(Int32(rows), x.pointer, Int32(inputFeatures), packed.handle, out.pointer,
                                    Int32(outputFeatures), bias.map { UnsafePointer($0.pointer) })
        }
        guard done != 0 else { return nil }
        FlopCounter.add(multiplyAdds: rows * inputFeatures * outputFeatures)
        return out
    }
}

extension Module {
    /// Prepares a frozen module for inference at `precision`: every `Conv2d` (groups 1) and
    /// `Linear` in the tree gets its weight converted and packed once, and its forward passes
    /// use that copy whenever they record no gradients. Call it when the weights are final —
    /// after loading and after BatchNorm folding (a later change to a weight is not seen
    /// until the module is prepared again).
    ///
    /// `.float32` gives exactly the unprepared results (it only saves the per-call weight
    /// packing); `.bfloat16` rounds weights and activations to BF16 inside the GEMMs, with FP32
    /// accumulation. Where the CPU cannot run `precision` (``InferencePrecision/isSupported``),
    /// layers stay unprepared and compute in FP32; a prepared layer run on a thread whose
    /// level is capped below it (`usi_cpu_cap_thread`) also falls back to FP32.
    ///
    /// - Parameter convolutions: `.fastest` also transforms 3×3 stride-1 weights for Winograd
    ///   F(2×2, 3×3), used wherever the input size makes it pay (at least 16 channels in and out,
    ///   outputs of 2×2 and up: 2.25× fewer multiplies), and skips the products with padding of
    ///   a single output pixel whose window holds the whole input; results are within about 1e-6
    ///   relative of the direct form in FP32, but no longer its bits (see ``ConvolutionForm``).
    ///   The teacher of a `Distiller` uses it; evaluation does not.
    /// - Returns: how many layers were prepared.
    @discardableResult
    public func prepareForInference(precision: InferencePrecision, convolutions: ConvolutionForm = .direct) -> Int {
        var prepared = 0
        for (_, module) in namedModules() {
            if let conv = module as? Conv2d {
                conv.packedWeights = conv.groups == 1 ? PackedWeights(conv.weight, rows: conv.outputChannels, precision: precision) : nil
                let fastest = convolutions == .fastest && conv.packedWeights != nil
                conv.winogradWeights = fastest && conv.admitsWinograd ? WinogradWeights(conv.weight, precision: precision) : nil
                conv.wholeInputTaps = fastest ? WholeInputTaps(conv.weight, precision: precision) : nil
                if conv.packedWeights != nil { prepared += 1 }
            } else if let linear = module as? Linear {
                linear.packedWeights = PackedWeights(linear.weight, rows: linear.outputFeatures, precision: precision)
                if linear.packedWeights != nil { prepared += 1 }
            }
        }
        return prepared
    }

    /// Drops every prepared weight in the tree: all layers compute unprepared FP32 again.
    public func removeInferencePreparation() {
        for (_, module) in namedModules() {
            (module as? Conv2d)?.packedWeights = nil
            (module as? Conv2d)?.winogradWeights = nil
            (module as? Conv2d)?.wholeInputTaps = nil
            (module as? Linear)?.packedWeights = nil
        }
    }
}
