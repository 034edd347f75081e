import Foundation
import USIModels

/// What a freshly built zoo model's `state_dict` is: every key with its kind (parameter or
/// buffer), file layout, shape and a digest of its initial values, plus a digest of the key
/// order.
///
/// It uses only the public API that existed before modules were declared by reflection, so the
/// committed fixture (`Fixtures/state_dict_fingerprints.json`) was produced by the code that
/// registered everything by hand (commit dc3f9b0), and the converted zoo must reproduce it bit
/// for bit: same keys, same shapes, same initialisation order for the same seed.
enum StateDictFingerprint {
    /// Classes of every fingerprinted model (a small head keeps the work small).
    static let classes = 10
    /// Input size of every fingerprinted model (only position embeddings and attention biases
    /// depend on it).
    static let inputSize = 64
    /// Seed of the initialisation.
    static let seed: UInt64 = 0

    /// One model's fingerprint.
    struct Model: Codable, Equatable, Sendable {
        /// `key kind layout shape digest`, sorted by key.
        var tensors: [String]
        /// Digest of the keys in the model's own order (parameters, then buffers), which
        /// decides the order of optimiser updates and of the global gradient norm's sum.
        var order: String
    }

    /// FNV-1a (64-bit) over bytes; stable across runs and platforms.
    static func fnv1a(_ bytes: some Sequence<UInt8>, _ start: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
        bytes.reduce(start) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }

    /// Digest of a tensor's exact float bits, folded to 32 bits (8 hex digits).
    static func digest(_ tensor: Tensor) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        let p = tensor.pointer
        for i in 0..<tensor.count {
            let bits = p[i].bitPattern
            for shift in stride(from: 0, to: 32, by: 8) { h = (h ^ UInt64((bits >> UInt32(shift)) & 0xFF)) &* 0x100_0000_01B3 }
        }
        return String(format: "%08x", UInt32(truncatingIfNeeded: h ^ (h >> 32)))
    }

    static func layoutCode(_ layout: FileLayout) -> String {
        switch layout {
        case .identical: "i"
        case .convolutionWeight: "c"
        case .integerCounter: "n"
        }
    }

    /// The fingerprint of `module`.
    static func fingerprint(_ module: Module) -> Model {
        let parameters = module.namedParameters(), buffers = module.namedBuffers()
        let lines = parameters.map { line($0, kind: "p") } + buffers.map { line($0, kind: "b") }
        let order = fnv1a((parameters + buffers).map(\.name).joined(separator: "\n").utf8)
        return Model(tensors: lines.sorted(), order: String(format: "%016llx", order))
    }

    static func line(_ t: NamedTensor, kind: String) -> String {
        "\(t.name) \(kind) \(layoutCode(t.layout)) \(t.tensor.shape.isEmpty ? "scalar" : t.tensor.shape.map(String.init).joined(separator: "x")) \(digest(t.tensor))"
    }

    /// Builds `name` as the fixture does.
    static func build(_ name: String) throws -> any Backbone {
        try Models.create(name, classes: classes, inputSize: inputSize, seed: seed)
    }

    /// Every registered model's fingerprint, as the fixture file stores it: JSON with one
    /// tensor per line, models in name order (so a change shows as a readable diff).
    static func encodeAll() throws -> String {
        var models: [String] = []
        for name in Models.available {
            let model = fingerprint(try build(name))
            let tensors = model.tensors.map { "      \"\($0)\"" }.joined(separator: ",\n")
            models.append("  \"\(name)\": {\n    \"order\": \"\(model.order)\",\n    \"tensors\": [\n\(tensors)\n    ]\n  }")
        }
        return "{\n" + models.joined(separator: ",\n") + "\n}\n"
    }

    /// The committed fixture.
    static func load(_ url: URL) throws -> [String: Model] {
        try JSONDecoder().decode([String: Model].self, from: Data(contentsOf: url))
    }
}
