import Foundation
import Testing
import USICore

/// Loads a committed PyTorch fixture (see Tools/fixtures/README.md).
func fixture(_ name: String) throws -> SafeTensorsFile {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"),
                           "missing fixture \(name).safetensors")
    return try SafeTensorsFile(contentsOf: url)
}

/// The JSON config a fixture stores for `case` in its metadata.
func caseConfig(_ file: SafeTensorsFile, _ name: String) throws -> [String: Any] {
    let text = try #require(file.metadata[name], "fixture has no metadata for \(name)")
    return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

extension SafeTensorsFile {
    /// A PyTorch NCHW tensor as channels-last NHWC (OIHW weights become OHWI the same way).
    func channelsLast(_ name: String) throws -> Tensor {
        let t = try tensor(name)
        return t.rank == 4 ? withoutGradients { t.permuted([0, 2, 3, 1]) } : t
    }
}

/// Channels-last back to PyTorch's channels-first layout (for comparison).
func channelsFirst(_ t: Tensor) -> Tensor {
    t.rank == 4 ? withoutGradients { t.permuted([0, 3, 1, 2]) } : t
}

/// Tolerances of the parity protocol: |ours − theirs| ≤ atol + rtol·|theirs| elementwise.
struct Tolerance {
    let relative: Float, absolute: Float
    static let forward = Tolerance(relative: 1e-4, absolute: 1e-5)
    static let gradient = Tolerance(relative: 1e-3, absolute: 1e-4)
}

/// Checks two tensors elementwise and prints the largest difference (as llm.c's tests do).
func expectClose(_ ours: Tensor?, _ reference: Tensor, _ tolerance: Tolerance, _ label: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard let ours else {
        Issue.record("\(label): missing (nil)", sourceLocation: sourceLocation)
        return
    }
    #expect(ours.count == reference.count, "\(label): \(ours.shape) vs \(reference.shape)", sourceLocation: sourceLocation)
    guard ours.count == reference.count else { return }
    let a = ours.toArray(), b = reference.toArray()
    var worst: Float = 0, worstExcess: Float = -1, worstIndex = 0
    for i in 0..<a.count {
        let diff = abs(a[i] - b[i])
        worst = max(worst, diff)
        let excess = diff - (tolerance.absolute + tolerance.relative * abs(b[i]))
        if excess > worstExcess || a[i].isNaN { worstExcess = a[i].isNaN ? .infinity : excess; worstIndex = i }
    }
    print("  \(label): max |diff| \(worst)")
    #expect(worstExcess <= 0, "\(label): element \(worstIndex) is \(a[worstIndex]), expected \(b[worstIndex])",
            sourceLocation: sourceLocation)
}

/// A deterministic random tensor with values in [-1, 1).
func randomTensor(_ shape: [Int], seed: UInt64, requiresGrad: Bool = true, scale: Float = 1) -> Tensor {
    var g = RandomGenerator(seed: seed)
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, values: (0..<n).map { _ in (g.nextFloat() * 2 - 1) * scale }, requiresGrad: requiresGrad)
}

/// Finite-difference check of reverse-mode gradients.
///
/// Projects the output on a fixed random direction `r` (loss = Σ r·f(x)) and compares, for
/// each input, the directional derivative along a random direction `v` computed two ways:
/// `⟨∇x, v⟩` from `backward()` and `(L(x + εv) − L(x − εv)) / 2ε` evaluated in double from
/// float32 forward passes. Float32 forward noise limits agreement to about 1e-2 relative.
func checkGradients(_ label: String, inputs: [Tensor], epsilon: Float = 1e-2, tolerance: Double = 2e-2,
                    sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) -> Tensor) {
    let probe = withoutGradients { f(inputs) }
    let r = randomTensor(probe.shape, seed: 99, requiresGrad: false)
    func loss(_ xs: [Tensor]) -> Double {
        withoutGradients {
            let y = f(xs).toArray(), rv = r.toArray()
            return zip(y, rv).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
    }
    for x in inputs { x.zeroGrad() }
    (f(inputs) * r).sum().backward()
    for (index, x) in inputs.enumerated() where x.requiresGrad {
        let v = randomTensor(x.shape, seed: 1000 + UInt64(index), requiresGrad: false)
        let analytic = zip(x.grad?.toArray() ?? [], v.toArray()).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        func shifted(_ sign: Float) -> [Tensor] {
            inputs.enumerated().map { j, t in
                j == index ? withoutGradients { (t + v * (sign * epsilon)).detached() } : t.detached()
            }
        }
        let numeric = (loss(shifted(1)) - loss(shifted(-1))) / (2 * Double(epsilon))
        let scale = max(abs(numeric), abs(analytic), 1e-3)
        print("  \(label) input \(index): analytic \(analytic), numeric \(numeric)")
        #expect(abs(analytic - numeric) / scale <= tolerance,
                "\(label) input \(index): analytic \(analytic) vs numeric \(numeric)", sourceLocation: sourceLocation)
    }
}
