import Foundation

/// Turning a pretrained model (ImageNet or any other class count) into a teacher for a data
/// set's classes: the pretrained backbone, a new classifier, and USI's recipe without a teacher
/// (its augmentation, mixing, EMA and schedule) at the student recipe's learning rate: a tenth
/// of it, the usual fine-tuning advice, lost 14.7 points of top-1 in a measured 4-epoch run
/// (`Docs/DECISIONS.md`). `usi teacher` runs it.
///
/// ```swift
/// let file = try SafeTensorsFile(weightsAt: URL(fileURLWithPath: "efficientnet_lite0.safetensors"))
/// let pretrained = try TeacherFineTuning.pretrainedModel(weights: file, classes: data.classNames.count, inputSize: 64)
/// let trainer = try USITrainer(student: pretrained.model, distiller: nil, data: data,
///                              config: TeacherFineTuning.config(), outputDirectory: URL(fileURLWithPath: "runs/teacher"))
/// _ = try trainer.fit()
/// try TeacherFineTuning.writeTeacher(from: trainer.outputDirectory!.appendingPathComponent("best.safetensors"),
///                                    to: URL(fileURLWithPath: "runs/teacher/teacher.safetensors"), fineTunedFrom: "efficientnet_lite0.safetensors")
/// ```
public enum TeacherFineTuning {
    /// Epochs of a fine-tuning run when none are given (before cooldown).
    public static let defaultEpochs = 10
    /// The fine-tuning learning rate relative to the student recipe's (``USIConfig/learningRate``,
    /// 2e-3): the peak of the same warmup + cosine schedule, for every parameter. Measured: 1
    /// (85.6 % top-1) against 0.1 (71.0 %) on Fashion-MNIST from ImageNet weights, Docs/DECISIONS.md.
    public static let learningRateScale = 1.0
    /// File name of the teacher weights `usi teacher` writes in its run directory.
    public static let teacherFileName = "teacher.safetensors"

    /// The fine-tuning recipe: ``USIConfig/usi(epochs:batchSize:)`` (the scaling rule sets the
    /// augmentation for the run's length and image side) with the learning rate scaled by
    /// ``learningRateScale`` (or set to `learningRate`); the warmup starts at most at a tenth of
    /// the peak.
    public static func config(epochs: Int = defaultEpochs, batchSize: Int = 128, learningRate: Double? = nil) -> USIConfig {
        var config = USIConfig.usi(epochs: epochs, batchSize: batchSize)
        config.learningRate = learningRate ?? config.learningRate * learningRateScale
        config.warmupLearningRate = min(config.warmupLearningRate, config.learningRate / 10)
        return config
    }

    /// A model built for the new classes with the pretrained backbone loaded.
    public struct PretrainedModel {
        /// The model: pretrained weights everywhere but the classifier, which is freshly initialised.
        public let model: any Backbone
        /// Tensors taken from the pretrained file.
        public let loadedTensors: Int
        /// The classifier's keys, initialised afresh for the new classes.
        public let newClassifierKeys: [String]
        /// What the pretrained file said about itself.
        public let pretrainedMetadata: WeightsMetadata
    }

    /// Builds `architecture` (default: the file's metadata) with `classes` outputs and loads
    /// every tensor of `file` except the classifier, which keeps its fresh initialisation
    /// (seeded by `seed`) whatever its shape in the file: the old head's classes are not the
    /// new ones, even when their number agrees. Input channels and side come from the file's
    /// metadata unless given (3 channels and the architecture's side when it has none).
    ///
    /// Throws when the architecture is unknown or unnamed, or when the file does not hold the
    /// backbone: a key of the model missing from the file, or a file key the model lacks,
    /// outside the classifier, means the weights belong to another architecture (or another
    /// naming, see `usi convert --keys`).
    public static func pretrainedModel(architecture: String? = nil, weights file: SafeTensorsFile, classes: Int,
                                       inputChannels: Int? = nil, inputSize: Int? = nil,
                                       seed: UInt64 = 0) throws -> PretrainedModel {
        let metadata = try WeightsMetadata(file.metadata, source: file.source)
        guard let name = architecture ?? metadata.architecture else {
            throw TrainingError.invalidConfiguration("\(file.source) does not name its architecture in its metadata; name the model (--model)")
        }
        let model = try Models.create(name, classes: classes, inputChannels: inputChannels ?? metadata.inputChannels ?? 3,
                                      inputSize: inputSize ?? metadata.inputSize, seed: seed)
        let headPrefixes = model.classifierKeyPrefixes
        func isHead(_ key: String) -> Bool { headPrefixes.contains { key.hasPrefix($0) } }
        // Kept aside so that a head of the same shape is not overwritten by the old classes' weights.
        let freshHead = model.namedTensors().filter { isHead($0.name) }.map { ($0.tensor, $0.tensor.copy()) }
        let report: LoadReport
        do {
            report = try model.load(file, strict: false, skippingMismatchedPrefixes: headPrefixes)
        } catch let error as StateDictError {
            throw TrainingError.invalidConfiguration("\(file.source) does not hold the backbone of \(name): \(error.report)")
        }
        let missing = report.missing.filter { !isHead($0) }, unexpected = report.unexpected.filter { !isHead($0) }
        guard missing.isEmpty && unexpected.isEmpty else {
            var problems: [String] = []
            if !missing.isEmpty { problems.append("\(missing.count) backbone keys missing (e.g. \(missing.prefix(3).joined(separator: ", ")))") }
            if !unexpected.isEmpty { problems.append("\(unexpected.count) unknown keys (e.g. \(unexpected.prefix(3).joined(separator: ", ")))") }
            throw TrainingError.invalidConfiguration("\(file.source) does not hold the backbone of \(name): \(problems.joined(separator: "; ")); is it another architecture, or another naming (usi convert --keys)?")
        }
        for (tensor, fresh) in freshHead { tensor.assign(fresh) }
        let headKeys = model.namedTensors().map(\.name).filter(isHead)
        return PretrainedModel(model: model, loadedTensors: model.namedTensors().count - headKeys.count,
                               newClassifierKeys: headKeys, pretrainedMetadata: metadata)
    }

    /// Copies a fine-tuning run's `best.safetensors` to `destination` (atomically), adding
    /// `fine_tuned_from` and `role: teacher` to its metadata, which already names the
    /// architecture, classes, class names, channels and input size.
    public static func writeTeacher(from best: URL, to destination: URL, fineTunedFrom source: String) throws {
        let file = try SafeTensorsFile(contentsOf: best)
        var records: [String: SafeTensorsRecord] = [:]
        for name in file.names { records[name] = try file.record(name) }
        var metadata = file.metadata
        metadata["role"] = "teacher"
        metadata["fine_tuned_from"] = source
        try SafeTensors.write(records, metadata: metadata, to: destination)
    }

    /// The command that fine-tunes `weights` (a model named `architecture`) on `data`, then
    /// the `usi train` that uses the result — what to run when a teacher's classes are not the
    /// data's. `data` is the user's DATA argument (`fashion-mnist` for the embedded default).
    public static func commands(data: String, architecture: String, weights: String, output: String = "runs/teacher") -> (teacher: String, train: String) {
        let teacher = ["usi", "teacher", data, "--model", architecture, "--weights", weights, "--output", output]
        let train = ["usi", "train", data, "--teacher-weights", "\(output)/\(teacherFileName)"]
        return (teacher.map(shellQuoted).joined(separator: " "), train.map(shellQuoted).joined(separator: " "))
    }

    /// `word` as a POSIX shell reads it back: unchanged when it is plain, else in single quotes.
    static func shellQuoted(_ word: String) -> String {
        let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:+,@%")
        if !word.isEmpty && word.allSatisfy({ plain.contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
