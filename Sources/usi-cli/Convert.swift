import ArgumentParser
import Foundation
import USI

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite a safetensors file or a PyTorch checkpoint as safetensors, with another float dtype and extra metadata.",
        discussion: """
            The input is a safetensors file or a PyTorch checkpoint (.pth/.pt/.bin, zip or legacy format, told apart \
            by its first bytes), read without Python; its pickle may only build tensors and containers. From a \
            checkpoint the weights are taken from --key, else 'state_dict', else 'model', else the top-level dict; \
            other entries are ignored and a DDP 'module.' prefix is removed. Integer tensors (e.g. \
            num_batches_tracked) are kept; float tensors become --dtype ('keep' keeps every tensor as stored). \
            With --model, the result must load into that architecture exactly, and its metadata names the \
            architecture and classes; --keys renames another code base's parameter names to timm's first \
            (efficientnet-pytorch: the efficientnet_pytorch package's EfficientNet/EfficientNet-Lite names). \
            Writes atomically.
            """)

    @Argument(help: "Input safetensors file or PyTorch checkpoint.")
    var input: String
    @Argument(help: "Output safetensors file.")
    var output: String
    @Option(help: "f32, f16, bf16 or keep.")
    var dtype = "f16"
    @Option(help: "The checkpoint's nested dict holding the weights, e.g. state_dict_ema or model_ema (dots descend).")
    var key: String?
    @Option(help: "Architecture the weights are for (`usi models`): checked by loading, and written to the metadata.")
    var model: String?
    @Option(help: "Parameter names of the input: timm (default) or efficientnet-pytorch (needs --model).")
    var keys: WeightsNaming = .timm
    @Option(name: .customLong("metadata"), parsing: .singleValue, help: "key=value to add to the metadata (repeatable).")
    var metadata: [String] = []

    func run() throws {
        let target: SafeTensorsDType?
        switch dtype.lowercased() {
        case "f32": target = .float32
        case "f16": target = .float16
        case "bf16": target = .bfloat16
        case "keep": target = nil
        default: throw ValidationError("--dtype must be f32, f16, bf16 or keep, got \(dtype)")
        }
        let file = try SafeTensorsFile(weightsAt: URL(fileURLWithPath: input), key: key)
        var records: [String: SafeTensorsRecord] = [:]
        for name in file.names {
            let entry = file.entries[name]!
            switch (entry.dtype, target) {
            case (_, nil): records[name] = try file.record(name)
            case (.float32, let target?), (.float16, let target?), (.bfloat16, let target?), (.float64, let target?):
                records[name] = SafeTensorsRecord(try file.tensor(name), dtype: target)
            default: records[name] = SafeTensorsRecord(int64: try file.integers(name), shape: entry.shape)
            }
        }
        var meta = file.metadata
        if let model {
            (records, meta) = try renamedAndChecked(records, metadata: meta, model: model)
        } else if keys != .timm {
            throw ValidationError("--keys \(keys.rawValue) needs --model: the renaming follows the architecture's blocks")
        }
        for pair in metadata {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--metadata needs key=value, got '\(pair)'") }
            meta[parts[0]] = parts[1]
        }
        try SafeTensors.write(records, metadata: meta, to: URL(fileURLWithPath: output))
        let size = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output): \(records.count) tensors, \(String(format: "%.1f", Double(size) / 1e6)) MB")
    }

    /// `records` under timm's names for `model` (per --keys), proven to load into it exactly,
    /// with the architecture and its classes, channels and input side in the metadata.
    private func renamedAndChecked(_ records: [String: SafeTensorsRecord], metadata: [String: String],
                                   model name: String) throws -> ([String: SafeTensorsRecord], [String: String]) {
        // The renaming needs only the block structure, which does not depend on the class count.
        let probe = try Models.create(name)
        let renaming = try keys.timmNames(for: records.keys.sorted(), model: probe)
        let renamed = Dictionary(uniqueKeysWithValues: records.map { (renaming[$0.key]!, $0.value) })
        // Classes from the classifier's rows, channels from the stem (the first convolution).
        let classifier = probe.classifierKeyPrefixes.first.flatMap { renamed["\($0)weight"] }
        let stem = probe.namedTensors().first { $0.layout == .convolutionWeight }.flatMap { renamed[$0.name] }
        let channels = stem.map { $0.shape[1] }
        let model = try Models.create(name, classes: classifier?.shape.first ?? 1000, inputChannels: channels ?? 3)
        let check = try SafeTensorsFile(data: SafeTensors.encode(renamed), source: input)
        do { try model.load(check) } catch let error as StateDictError {
            throw ValidationError("\(input) does not load into \(name)\(keys == .timm ? " (other parameter names? see --keys)" : ""): \(error.report)")
        }
        var meta = metadata
        meta.merge(WeightsMetadata(describing: model.config).dictionary) { _, new in new }
        return (renamed, meta)
    }
}

extension WeightsNaming: ExpressibleByArgument {}
