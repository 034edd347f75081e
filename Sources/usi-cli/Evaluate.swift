import ArgumentParser
import Foundation
import USI

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1/top-5 accuracy of trained weights on a validation set.",
        discussion: "DATA is `fashion-mnist` (its test set), a folder with val/<class>/*.jpg, or a folder of class sub-folders.")

    @Argument(help: "fashion-mnist, or an image folder.")
    var data: String
    @Option(help: "Architecture of the weights.")
    var model: String
    @Option(help: "Weights (safetensors).")
    var weights: String
    @Option(help: "Batch size.")
    var batchSize = 256
    @Option(help: "Centre-crop fraction (default: the model's crop_pct; 1 for fashion-mnist).")
    var cropFraction: Double?
    @Option(help: "Fold BatchNorms and prepare the model for inference at fp32 or bf16 (as a frozen teacher); default: the model as loaded, unfolded FP32.")
    var precision: InferencePrecision?
    @Flag(help: "Print {\"top1\": x, \"top5\": x, \"count\": n}.")
    var json = false
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if let precision, !precision.isSupported {
            throw ValidationError("--precision \(precision.rawValue) does not run on this CPU (bf16 needs AVX512-BF16)")
        }
    }

    func run() throws {
        try threadOptions.apply()
        let dataset = try loadEvaluationData(data)
        let (backbone, _) = try loadModel(name: model, weights: weights, classes: dataset.classCount)
        if let precision {
            backbone.eval()
            (backbone as? BatchNormFoldable)?.foldBatchNorms()
            backbone.prepareForInference(precision: precision)
        }
        let crop = cropFraction ?? (data == "fashion-mnist" ? 1 : nil)
        let result = try Evaluator.evaluate(backbone, on: dataset, batchSize: batchSize, cropFraction: crop)
        if json {
            try printJSON(result)
        } else {
            print("\(model) on \(data): top-1 \(format(result.top1, digits: 2)) %, top-5 \(format(result.top5, digits: 2)) % over \(result.count) images")
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify JPEG images with trained weights.",
        discussion: "Class names come from the weights' metadata when present (as `usi train` writes them).")

    @Argument(help: "JPEG files.")
    var images: [String]
    @Option(help: "Architecture of the weights.")
    var model: String
    @Option(help: "Weights (safetensors).")
    var weights: String
    @Option(help: "Predictions per image.")
    var top = 5
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var threadOptions: ThreadOptions

    struct Prediction: Codable {
        var label: Int
        var name: String?
        var probability: Double
    }
    struct ImageResult: Codable {
        var image: String
        var predictions: [Prediction]
    }

    func validate() throws {
        if images.isEmpty { throw ValidationError("name at least one image") }
        if top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        try threadOptions.apply()
        let (backbone, file) = try loadModel(name: model, weights: weights, classes: nil)
        backbone.eval()
        let names = file.metadata["class_names"].flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }
        let transform = try Evaluator.transform(for: backbone.config)
        let workspace = try TransformWorkspace()
        var results: [ImageResult] = []
        for path in images {
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("image '\(path)' does not exist") }
            var generator = RandomGenerator(seed: 0)
            let pixels = try transform.apply(.file(path: path), generator: &generator, workspace: workspace)
            let c = backbone.config
            let x = Tensor(shape: [1, c.inputSize, c.inputSize, c.inputChannels], values: pixels)
            let probabilities = withoutGradients { softmax(backbone(x)) }.toArray()
            let ranked = probabilities.enumerated().sorted { $0.element > $1.element }.prefix(top)
            results.append(ImageResult(image: path, predictions: ranked.map { entry in
                Prediction(label: entry.offset, name: names.flatMap { entry.offset < $0.count ? $0[entry.offset] : nil },
                           probability: Double(entry.element))
            }))
        }
        if json { try printJSON(results); return }
        for result in results {
            print(result.image)
            for p in result.predictions {
                print("  \(format(100 * p.probability, digits: 2).leftPadded(6)) %  \(p.name ?? "class \(p.label)")")
            }
        }
    }
}
