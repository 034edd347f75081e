import ArgumentParser
import Foundation
import USI

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite a safetensors file with another float dtype and extra metadata.",
        discussion: "Integer tensors (e.g. num_batches_tracked) are kept; float tensors become --dtype. Writes atomically.")

    @Argument(help: "Input safetensors file.")
    var input: String
    @Argument(help: "Output safetensors file.")
    var output: String
    @Option(help: "f32, f16 or bf16.")
    var dtype = "f16"
    @Option(name: .customLong("metadata"), parsing: .singleValue, help: "key=value to add to the metadata (repeatable).")
    var metadata: [String] = []

    func run() throws {
        let target: SafeTensorsDType
        switch dtype.lowercased() {
        case "f32": target = .float32
        case "f16": target = .float16
        case "bf16": target = .bfloat16
        default: throw ValidationError("--dtype must be f32, f16 or bf16, got \(dtype)")
        }
        let file = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: input))
        var records: [String: SafeTensorsRecord] = [:]
        for name in file.names {
            let entry = file.entries[name]!
            switch entry.dtype {
            case .float32, .float16, .bfloat16, .float64: records[name] = SafeTensorsRecord(try file.tensor(name), dtype: target)
            default: records[name] = SafeTensorsRecord(int64: try file.integers(name), shape: entry.shape)
            }
        }
        var meta = file.metadata
        for pair in metadata {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--metadata needs key=value, got '\(pair)'") }
            meta[parts[0]] = parts[1]
        }
        try SafeTensors.write(records, metadata: meta, to: URL(fileURLWithPath: output))
        let size = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output): \(records.count) tensors, \(String(format: "%.1f", Double(size) / 1e6)) MB")
    }
}
