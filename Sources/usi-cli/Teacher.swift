import ArgumentParser
import Foundation
import USI

struct Teacher: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a pretrained model (any class count) into a teacher for DATA's classes.",
        discussion: """
        Starts from the pretrained backbone in --weights (safetensors or a PyTorch .pth with timm names, e.g. ImageNet \
        weights), puts a new classifier for DATA's classes on it and trains with USI's recipe without distillation \
        (its augmentation, mixing, EMA, schedule and learning rate, which measured best for fine-tuning too: \
        Docs/DECISIONS.md). The run directory \
        is a normal `usi train` one; the result is DIR/teacher.safetensors, whose metadata names the architecture, \
        classes, class names and input size, so that `usi train DATA --teacher-weights DIR/teacher.safetensors` \
        needs nothing else.
        """)

    @Argument(help: "Image folder (train/ and val/), or fashion-mnist for the embedded data.")
    var data: String
    @Option(help: "Architecture of the pretrained weights (`usi models` lists them). Default: the file's metadata.")
    var model: String?
    @Option(help: "Pretrained weights: safetensors or a PyTorch .pth checkpoint with timm names.")
    var weights: String
    @Option(help: "The checkpoint's nested dict holding the weights, e.g. state_dict_ema (dots descend).")
    var key: String?
    @Option(help: "Epochs (before cooldown).")
    var epochs = TeacherFineTuning.defaultEpochs
    @Option(help: "Images per step.")
    var batchSize = 128
    @Option(help: "Input side in pixels. Default: the weights' metadata, else the model's.")
    var inputSize: Int?
    @Option(help: "Run directory; the teacher is DIR/teacher.safetensors.")
    var output = "runs/teacher"
    @Flag(help: "Continue the run in --output from its last committed checkpoint.")
    var resume = false
    @Option(help: "Random seed (the new classifier's initialisation, sampling, augmentation).")
    var seed: UInt64 = 0
    @Option(help: ArgumentHelp("Research only: the peak learning rate instead of the fine-tuning recipe's.", visibility: .hidden))
    var learningRate: Double?
    @Option(help: "Data-loading threads.")
    var workers = 2
    @Option(help: ArgumentHelp("Use only the first N training images (short trials, tests).", visibility: .hidden))
    var trainImages: Int?
    @Option(help: ArgumentHelp("Use only the first N validation images (short trials, tests).", visibility: .hidden))
    var validationImages: Int?
    @Option(help: "Steps between the progress lines of metrics.jsonl.")
    var logInterval = 50
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if batchSize < 2 { throw ValidationError("--batch-size must be at least 2") }
        if let inputSize, inputSize < 8 { throw ValidationError("--input-size must be at least 8") }
        if workers < 1 { throw ValidationError("--workers must be at least 1") }
        if logInterval < 1 { throw ValidationError("--log-interval must be at least 1") }
        if let learningRate, !(learningRate > 0 && learningRate < 1) { throw ValidationError("--learning-rate must be in (0, 1)") }
        if let trainImages, trainImages < 2 { throw ValidationError("--train-images must be at least 2") }
        if let validationImages, validationImages < 1 { throw ValidationError("--validation-images must be at least 1") }
    }

    func run() throws {
        try threadOptions.apply()
        var trainingData = try loadTrainingData(data)
        if trainImages != nil || validationImages != nil {
            let train = try trainImages.map { try DatasetSubset(trainingData.train, first: min($0, trainingData.train.count)) }
            let validation = try validationImages.map {
                try DatasetSubset(trainingData.validation, first: min($0, trainingData.validation.count))
            }
            trainingData = try TrainingData(train: train ?? trainingData.train, validation: validation ?? trainingData.validation,
                                            name: trainingData.name, evaluationCropFraction: trainingData.evaluationCropFraction)
        }
        let file = try SafeTensorsFile(weightsAt: URL(fileURLWithPath: weights), key: key)
        let pretrained = try TeacherFineTuning.pretrainedModel(
            architecture: model, weights: file, classes: trainingData.classNames.count,
            inputSize: inputSize, seed: seed)
        let config = pretrained.model.config
        print("pretrained \(config.architecture) from \(weights): \(pretrained.loadedTensors) tensors loaded, new classifier (\(pretrained.newClassifierKeys.joined(separator: ", "))) for \(config.classes) classes, \(config.inputSize)×\(config.inputSize)×\(config.inputChannels) input")

        var recipe = TeacherFineTuning.config(epochs: epochs, batchSize: batchSize, learningRate: learningRate)
        recipe.seed = seed
        recipe.workers = workers
        let trainer = try USITrainer(student: pretrained.model, distiller: nil, data: trainingData, config: recipe,
                                     outputDirectory: URL(fileURLWithPath: output))
        trainer.logInterval = logInterval
        let display = ProgressDisplay(totalEpochs: trainer.totalEpochs)
        trainer.onEvent = { display.handle($0) }
        let report = try trainer.fit(resume: resume)
        print("")
        print("teacher \(config.architecture): best top-1 \(format(report.bestTop1, digits: 2)) % (top-5 \(format(report.bestTop5, digits: 2)) %, epoch \(report.bestEpoch)\(report.bestIsEMA ? ", EMA weights" : ""))")
        guard let best = report.bestWeightsPath else { return }
        let destination = URL(fileURLWithPath: output).appendingPathComponent(TeacherFineTuning.teacherFileName)
        try TeacherFineTuning.writeTeacher(from: URL(fileURLWithPath: best), to: destination,
                                           fineTunedFrom: URL(fileURLWithPath: weights).lastPathComponent)
        print("teacher weights: \(destination.path)")
        print("next: \(TeacherFineTuning.commands(data: data, architecture: config.architecture, weights: weights, output: output).train)")
    }
}

/// The error `usi train` gives for a teacher trained on another number of classes: which
/// `usi teacher` command makes one for DATA, with the user's paths filled in.
func teacherClassMismatch(data: String?, architecture: String, weights: String, teacherClasses: Int,
                          dataClasses: Int) -> ValidationError {
    let dataName = data ?? "fashion-mnist"
    let commands = TeacherFineTuning.commands(data: dataName, architecture: architecture, weights: weights)
    return ValidationError("""
        the teacher \(architecture) in \(weights) predicts \(teacherClasses) classes and \(dataName) has \(dataClasses). \
        Fine-tune it on these classes first, then train with the result:
          \(commands.teacher)
          \(commands.train)
        """)
}
