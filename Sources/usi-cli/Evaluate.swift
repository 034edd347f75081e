import ArgumentParser
import Foundation
import USI

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1/top-5 accuracy of trained weights on a validation set.",
        discussion: """
        DATA is `fashion-mnist` (its test set), a folder with val/<class>/*.jpg, or a folder of class sub-folders.
        Weights or logits that are NaN or infinite are an error (they would otherwise rank every label first).
        Images above --max-image-pixels (or $USI_MAX_IMAGE_PIXELS) are refused before decoding.
        """)

    @Argument(help: "fashion-mnist, or an image folder.")
    var data: String
    @Option(help: "Architecture of the weights.")
    var model: String
    @Option(help: "Weights (safetensors, or a PyTorch .pth/.pt/.bin checkpoint).")
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
    @OptionGroup var imageLimitOptions: ImageLimitOptions

    /// Set by the `logits` hook (which runs on the evaluating thread and cannot throw) when a
    /// batch's logits are not finite.
    final class NonFiniteFlag: @unchecked Sendable { var seen = false }

    func validate() throws {
        if let precision, !precision.isSupported {
            throw ValidationError("--precision \(precision.rawValue) does not run on this CPU (bf16 needs AVX512-BF16)")
        }
    }

    func run() throws {
        try threadOptions.apply()
        try imageLimitOptions.apply()
        let dataset = try loadEvaluationData(data)
        let (backbone, _, file) = try loadModel(name: model, weights: weights, classes: dataset.classCount)
        try requireFiniteWeights(file)
        if let precision {
            backbone.eval()
            (backbone as? BatchNormFoldable)?.foldBatchNorms()
            backbone.prepareForInference(precision: precision)
        }
        let crop = cropFraction ?? (data == "fashion-mnist" ? 1 : nil)
        let nonFinite = NonFiniteFlag()
        let result = try Evaluator.evaluate(backbone, on: dataset, batchSize: batchSize, cropFraction: crop, logits: { x in
            let out = backbone(x)
            if out.hasNonFinite { nonFinite.seen = true }
            return out
        })
        if nonFinite.seen {
            throw CommandFailure(description: "the model's logits on \(data) are NaN or infinite (weights '\(weights)'); no accuracy can be reported")
        }
        if json {
            try printJSON(result)
        } else {
            print("\(model) on \(data): top-1 \(format(result.top1, digits: 2)) %, top-5 \(format(result.top5, digits: 2)) % over \(result.count) images")
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images (JPEG, PNG, WebP) with trained weights.",
        discussion: """
        Class names come from the weights' metadata when present (as `usi train` writes them); control characters in them and in file names are removed from text output.
        An image that cannot be read or decoded is reported on standard error and the others are still classified; the exit status is then 1.
        Images above --max-image-pixels (or $USI_MAX_IMAGE_PIXELS) are refused before decoding. NaN or infinite weights or logits are an error.
        """)

    @Argument(help: "Image files (JPEG, PNG or WebP).")
    var images: [String]
    @Option(help: "Architecture of the weights.")
    var model: String
    @Option(help: "Weights (safetensors, or a PyTorch .pth/.pt/.bin checkpoint).")
    var weights: String
    @Option(help: "Predictions per image.")
    var top = 5
    @Flag(help: "Print JSON: one object per image, with `predictions`, or `error` when it failed.")
    var json = false
    @OptionGroup var threadOptions: ThreadOptions
    @OptionGroup var imageLimitOptions: ImageLimitOptions

    struct Prediction: Codable {
        var label: Int
        var name: String?
        var probability: Double
    }
    struct ImageResult: Codable {
        var image: String
        var predictions: [Prediction]
        /// Why this image has no predictions (absent when it has).
        var error: String?
    }

    func validate() throws {
        if images.isEmpty { throw ValidationError("name at least one image") }
        if top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        try threadOptions.apply()
        try imageLimitOptions.apply()
        let (backbone, metadata, file) = try loadModel(name: model, weights: weights, classes: nil)
        try requireFiniteWeights(file)
        backbone.eval()
        let names = metadata.classNames
        let transform = try Evaluator.transform(for: backbone.config)
        let workspace = try TransformWorkspace()
        let c = backbone.config

        /// One image's predictions; any error is this image's alone.
        func classify(_ path: String) throws -> [Prediction] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw CommandFailure(description: "image '\(path)' does not exist")
            }
            guard !isDirectory.boolValue else { throw CommandFailure(description: "image '\(path)' is a directory") }
            var generator = RandomGenerator(seed: 0)
            let pixels = try transform.apply(.file(path: path), generator: &generator, workspace: workspace)
            let x = Tensor(shape: [1, c.inputSize, c.inputSize, c.inputChannels], values: pixels)
            let logits = withoutGradients { backbone(x) }
            guard !logits.hasNonFinite else {
                throw CommandFailure(description: "the model's logits for '\(path)' are NaN or infinite")
            }
            let probabilities = softmax(logits).toArray()
            let ranked = probabilities.enumerated().sorted { $0.element > $1.element }.prefix(top)
            return ranked.map { entry in
                Prediction(label: entry.offset, name: names.flatMap { entry.offset < $0.count ? $0[entry.offset] : nil },
                           probability: Double(entry.element))
            }
        }

        var results: [ImageResult] = []
        var failures = 0
        for path in images {
            do {
                let predictions = try classify(path)
                results.append(ImageResult(image: path, predictions: predictions))
                guard !json else { continue }
                print(terminalSafe(path))
                for p in predictions {
                    print("  \(format(100 * p.probability, digits: 2).leftPadded(6)) %  \(terminalSafe(p.name ?? "class \(p.label)"))")
                }
            } catch {
                failures += 1
                results.append(ImageResult(image: path, predictions: [], error: "\(error)"))
                printError("Error: \(terminalSafe("\(error)"))")
            }
        }
        if json { try printJSON(results) }
        if failures > 0 {
            printError("\(failures) of \(images.count) images failed")
            throw ExitCode(1)
        }
    }
}
