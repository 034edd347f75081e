import Foundation
import USICore

/// The deterministic weight rule of Tools/fixtures/model_fill.py, so parity tests of large
/// models commit only inputs and expected outputs. Values are computed in double, stored as
/// float, in PyTorch layout, then loaded through the normal state-dict path.
enum DeterministicFill {
    static func fnv1a32(_ text: String) -> UInt32 {
        var h: UInt32 = 0x811C_9DC5
        for b in text.utf8 { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return h
    }

    /// The fill rules of model_fill.py: `plain`, or `chirp` (rank ≥ 2 tensors get the extra
    /// phase 2π·((i·i) mod 9973)/9973, which makes the filled matrices full rank; the plain
    /// rule's matrices have rank 2, under which deep pre-norm transformers lose the input).
    enum Rule: String, Sendable { case plain, chirp }

    static let chirpModulus = 9973

    static func values(name: String, shape: [Int], rule: Rule = .plain) -> [Float] {
        let n = shape.reduce(1, *)
        let s = Double(fnv1a32(name) % 10000) / 1000
        let chirp = rule == .chirp && shape.count >= 2 && !name.hasSuffix("running_var") && !name.hasSuffix("running_mean")
        return (0..<n).map { i in
            let phase = chirp ? Double((i * i) % chirpModulus) * (2 * Double.pi / Double(chirpModulus)) : 0
            let wave = sin(0.731 * Double(i) + s + phase)
            let v: Double
            if name.hasSuffix("running_var") { v = 0.75 + 0.25 * wave }
            else if name.hasSuffix("running_mean") { v = 0.1 * wave }
            else if shape.count >= 2 { v = (3.0 / Double(n / shape[0])).squareRoot() * wave }
            else if name.hasSuffix(".weight") || name == "weight" { v = 1 + 0.1 * wave }
            else { v = 0.1 * wave }
            return Float(v)
        }
    }

    /// Fills every tensor of `module` by the rule (counters are left alone).
    static func fill(_ module: Module, rule: Rule = .plain) throws {
        var records: [String: SafeTensorsRecord] = [:]
        for (name, record) in module.stateDict() {
            if name.hasSuffix("num_batches_tracked") { records[name] = record; continue }
            records[name] = SafeTensorsRecord(Tensor(shape: record.shape, values: values(name: name, shape: record.shape, rule: rule)))
        }
        try module.load(SafeTensorsFile(data: SafeTensors.encode(records), source: "deterministic fill"))
    }
}
