import ArgumentParser
import Foundation
import USI

struct ListModels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the architectures with parameters, GFLOPs at their default input size and default config.")

    @Flag(help: "Print JSON.")
    var json = false

    struct Row: Codable {
        var name: String
        var family: String
        var parameters: Int
        var gflops: Double
        var inputSize: Int
        var cropFraction: Double
        var interpolation: String
        var mean: [Float]
        var std: [Float]
        enum CodingKeys: String, CodingKey {
            case name, family, parameters, gflops, inputSize = "input_size", cropFraction = "crop_pct", interpolation, mean, std
        }
    }

    func run() throws {
        Threading.setThreadCount(ProcessInfo.processInfo.activeProcessorCount)
        var rows: [Row] = []
        for name in Models.available {
            let entry = try Models.entry(name)
            let model = try Models.create(name)
            model.eval()
            let c = entry.defaultConfig
            let x = Tensor(shape: [1, c.inputSize, c.inputSize, c.inputChannels], repeating: 0)
            let flops = withoutGradients { FlopCounter.count { model(x) }.flops }
            rows.append(Row(name: name, family: entry.family, parameters: model.parameterCount, gflops: Double(flops) / 1e9,
                            inputSize: c.inputSize, cropFraction: c.cropFraction, interpolation: c.interpolation.rawValue,
                            mean: c.mean, std: c.standardDeviation))
        }
        if json { try printJSON(rows); return }
        // The name column fits the longest name (swin_small_patch4_window7_224 is 29 characters).
        let nameWidth = max(26, (rows.map(\.name.count).max() ?? 0) + 1)
        print("model".rightPadded(nameWidth) + "family".rightPadded(13) + "params (M)".leftPadded(11) + "GFLOPs".leftPadded(9)
              + "  input  crop  interpolation")
        for r in rows {
            print(r.name.rightPadded(nameWidth) + r.family.rightPadded(13) + format(Double(r.parameters) / 1e6, digits: 2).leftPadded(11)
                  + format(r.gflops, digits: 3).leftPadded(9) + "  \(String(r.inputSize).leftPadded(5))  \(format(r.cropFraction, digits: 3))  \(r.interpolation)")
        }
    }
}

struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on a raw input tensor (parity debugging).",
        discussion: """
        INPUT holds key `input`, PyTorch layout [N, C, H, W]; OUTPUT gets key `output` (the logits). WEIGHTS is a \
        state_dict as safetensors.torch.save_file(timm_model.state_dict(), ...) writes it.
        """)

    @Option(help: "Architecture.")
    var model: String
    @Option(help: "Classifier outputs.")
    var classes = 1000
    @Option(help: "Input channels.")
    var inChans = 3
    @Option(help: "Input side (default: the model's).")
    var inputSize: Int?
    @Option(help: "Weights (safetensors or PyTorch .pth state_dict). Without it the model keeps its seeded initialisation.")
    var weights: String?
    @Option(help: "Also write the model's weights (PyTorch layout, timm names) here, e.g. to load them into timm.")
    var saveWeights: String?
    @Option(help: "Input tensor file.")
    var input: String
    @Option(help: "Output tensor file.")
    var output: String
    @Flag(help: "Run in training mode (batch statistics) instead of eval mode.")
    var trainMode = false

    func run() throws {
        Threading.setThreadCount(ProcessInfo.processInfo.activeProcessorCount)
        let inputFile = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: input))
        let x = try inputFile.tensor("input")
        guard x.rank == 4, x.shape[1] == inChans else {
            throw ValidationError("input must be [N, \(inChans), H, W], got \(x.shape)")
        }
        let backbone = try Models.create(model, classes: classes, inputChannels: inChans, inputSize: inputSize ?? x.shape[2])
        if let weights {
            do {
                try backbone.load(contentsOf: URL(fileURLWithPath: weights))
            } catch let error as StateDictError {
                throw ValidationError(error.description)
            }
        }
        if let saveWeights {
            try backbone.save(to: URL(fileURLWithPath: saveWeights), metadata: ["architecture": model, "format": "pt"])
        }
        backbone.train(trainMode)
        let logits = withoutGradients { backbone(x.permuted([0, 2, 3, 1])) }
        try SafeTensors.write(["output": SafeTensorsRecord(logits)], to: URL(fileURLWithPath: output))
    }
}
