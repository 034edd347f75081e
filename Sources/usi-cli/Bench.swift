import ArgumentParser
import Foundation
import USI

/// `usi bench …`: the project's own performance measurements.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure kernels, models and the data pipeline on this machine.",
        subcommands: [BenchModels.self, BenchKernels.self, BenchData.self, BenchStep.self],
        defaultSubcommand: BenchModels.self)
}

extension InferencePrecision: ExpressibleByArgument {}
extension ConvolutionForm: ExpressibleByArgument {}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "SGEMM and convolution GFLOP/s (forward; backward = input + weight gradients).")

    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Option(help: "Size n of the n×n×n SGEMM that sets the reference figure.")
    var sgemmSize = 2048

    func run() throws {
        try threadOptions.apply()
        let report = KernelBenchmark.run(sgemmSize: sgemmSize)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        let capped = report.cpuLevel == report.detectedCPULevel ? "" : " (CPU: \(report.detectedCPULevel), capped by USI_CPU)"
        print("threads \(report.threads)   ISA \(report.cpuLevel)\(capped)   sgemm \(sgemmSize)³: \(format(report.sgemmGflops)) GFLOP/s")
        print("layer".padding(toLength: 30, withPad: " ", startingAt: 0) + "   fwd GFLOP/s  (of sgemm)   bwd GFLOP/s  (of sgemm)")
        for layer in report.layers {
            print(layer.name.padding(toLength: 30, withPad: " ", startingAt: 0)
                  + "   \(format(layer.fwdGflops).leftPadded(11))  \(percent(layer.fwdFraction).leftPadded(9))"
                  + "   \(format(layer.bwdGflops).leftPadded(11))  \(percent(layer.bwdFraction).leftPadded(9))")
        }
    }
}

struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Training-pipeline images/s (decode, RandomResizedCrop, flip, RandAugment, normalise) per worker count.",
        discussion: "DIR is any folder of JPEG images, searched recursively. Compare with Tools/data/bench_torch_data.py DIR.")

    @Argument(help: "Folder of JPEG images (searched recursively).")
    var directory: String
    @Option(help: "Output side in pixels.")
    var size = 224
    @Option(parsing: .upToNextOption, help: "Worker counts to measure.")
    var workers: [Int] = [1, 2]
    @Option(help: "Images per measurement (the folder is cycled through).")
    var samples = 512
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        let report = try DataBenchmark.run(directory: directory, size: size, workerCounts: workers, samples: samples)
        if json {
            print(report.json)
            return
        }
        print("\(report.images) images, \(report.size)×\(report.size) training transform")
        print("workers   img/s   img per CPU-second")
        for r in report.results {
            print("\(String(r.workers).leftPadded(7))  \(format(r.imagesPerSecond).leftPadded(6))   \(format(r.imagesPerCPUSecond).leftPadded(8))")
        }
    }
}

struct BenchModels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Inference (BatchNorm folded where supported) and training-step images/s per model.")

    @Option(help: "Comma-separated architectures.")
    var models: String
    @Option(help: "Batch size.")
    var batch = 32
    @Option(help: "Input side (default: each model's).")
    var inputSize: Int?
    @Flag(help: "Also measure a training step (forward, backward, AdamW).")
    var train = false
    @Option(help: "Inference GEMM inputs: fp32 or bf16 (FP32 accumulation; bf16 needs AVX512-BF16). The folded model is prepared for it, as a frozen teacher is.")
    var precision: InferencePrecision = .float32
    @Option(help: "Convolutions at inference: direct, or fastest (Winograd F(2×2, 3×3) and no products with padding, as a frozen teacher runs them).")
    var convolutions: ConvolutionForm = .direct
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard precision.isSupported else {
            throw ValidationError("--precision \(precision.rawValue) does not run on this CPU (bf16 needs AVX512-BF16)")
        }
    }

    struct Row: Codable {
        var name: String
        var batch: Int
        var inputSize: Int
        var inferImagesPerSecond: Double
        var trainImagesPerSecond: Double?
        enum CodingKeys: String, CodingKey {
            case name, batch, inputSize = "input_size", inferImagesPerSecond = "infer_img_s", trainImagesPerSecond = "train_img_s"
        }

        /// `train_img_s` is always present (null without `--train`), as the documented shape has it.
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(batch, forKey: .batch)
            try c.encode(inputSize, forKey: .inputSize)
            try c.encode(inferImagesPerSecond, forKey: .inferImagesPerSecond)
            try c.encode(trainImagesPerSecond, forKey: .trainImagesPerSecond)
        }
    }
    struct Report: Codable {
        var threads: Int
        var precision: String
        var convolutions: ConvolutionForm
        var models: [Row]
    }

    func run() throws {
        try threadOptions.apply()
        var rows: [Row] = []
        for name in models.split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces) }) {
            let model = try Models.create(name, classes: 1000, inputSize: inputSize)
            let c = model.config
            var generator = RandomGenerator(seed: 0)
            let count = batch * c.inputSize * c.inputSize * c.inputChannels
            let x = Tensor(shape: [batch, c.inputSize, c.inputSize, c.inputChannels],
                           values: (0..<count).map { _ in generator.nextFloat() - 0.5 })
            var trainRate: Double?
            if train {
                model.train()
                let optimizer = AdamW(parameters: model.namedParameters().map { ($0.name, $0.tensor) })
                let labels = (0..<batch).map { $0 % c.classes }
                let seconds = KernelBenchmark.medianSeconds(minimumRuns: 3, minimumSeconds: 2) {
                    crossEntropy(model(x), labels: labels).backward()
                    optimizer.step()
                    optimizer.zeroGradients()
                }
                trainRate = Double(batch) / seconds
            }
            model.eval()
            (model as? BatchNormFoldable)?.foldBatchNorms()
            model.prepareForInference(precision: precision, convolutions: convolutions)
            let seconds = KernelBenchmark.medianSeconds(minimumRuns: 3, minimumSeconds: 1) { _ = withoutGradients { model(x) } }
            rows.append(Row(name: name, batch: batch, inputSize: c.inputSize, inferImagesPerSecond: Double(batch) / seconds,
                            trainImagesPerSecond: trainRate))
        }
        if json { try printJSON(Report(threads: Threading.threadCount, precision: precision.rawValue, convolutions: convolutions, models: rows)); return }
        print("threads \(Threading.threadCount)   inference precision \(precision.rawValue)   convolutions \(convolutions.rawValue)")
        print("model".rightPadded(26) + "batch".leftPadded(6) + "size".leftPadded(6) + "infer img/s".leftPadded(13) + "train img/s".leftPadded(13))
        for r in rows {
            print(r.name.rightPadded(26) + String(r.batch).leftPadded(6) + String(r.inputSize).leftPadded(6)
                  + format(r.inferImagesPerSecond).leftPadded(13) + (r.trainImagesPerSecond.map { format($0) } ?? "–").leftPadded(13))
        }
    }
}
