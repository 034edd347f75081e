import Foundation

/// Everything that decides what the teacher sees in a run, and so which logits it gives: a
/// store filled under one key serves only runs with the same key.
///
/// The batches are a function of (seed, epoch, position) given the data, the recipe's
/// transforms and mixing, the batch size and the shards; the distiller maps the student's
/// images (its size, channels and normalisation) to the teacher's input; and the teacher is
/// its architecture, its weights (by checksum) and the precision and form of its arithmetic. Students
/// of a comparison share all of it except the architecture — and the input size, when one
/// carries its own (`levit_128s@64`), which gives it another key and so the live teacher.
/// Each stored batch also records a checksum of its images, which a read verifies.
public struct TeacherLogitsKey: Codable, Hashable, Sendable {
    /// The teacher's architecture.
    public var teacher: String
    /// CRC-32 of the teacher's weights file (hex), or any string that identifies the weights.
    public var teacherWeights: String
    /// `fp32` or `bf16`, then the form of its convolutions (`fastest` or `direct`).
    public var teacherPrecision: String
    /// The training configuration (seed, epochs, batch size, …) as JSON.
    public var config: String
    /// The resolved recipe (transform strengths, mixing, sampler) as JSON.
    public var recipe: String
    /// The student's input: side, channels, mean, std, interpolation.
    public var studentInput: String
    /// The training split: dataset name, image count and class names.
    public var data: String
    /// Shards of every global batch (ranks × emulated ranks).
    public var shards: Int

    /// The key of a run of `student` under `config` and `recipe` on `data`, taught by
    /// `teacher` (weights identified by `teacherWeights`) at `precision`, its convolutions in
    /// the form `convolutions` (both change its logits' rounding).
    public init(teacher: BackboneConfig, teacherWeights: String, precision: InferencePrecision,
                convolutions: ConvolutionForm = .fastest, config: USIConfig,
                recipe: ResolvedRecipe, student: BackboneConfig, data: TrainingData, shards: Int = 1) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
        self.teacher = teacher.architecture
        self.teacherWeights = teacherWeights
        teacherPrecision = "\(precision.rawValue) \(convolutions.rawValue)"
        self.config = try json(config)
        self.recipe = try json(recipe)
        studentInput = try json(StudentInput(size: student.inputSize, channels: student.inputChannels, mean: student.mean,
                                             std: student.standardDeviation, interpolation: "\(student.interpolation)"))
        self.data = try json(DataIdentity(name: data.name, trainImages: data.train.count, classNames: data.classNames))
        self.shards = shards
    }

    private struct StudentInput: Encodable {
        var size: Int, channels: Int, mean: [Float], std: [Float], interpolation: String
    }

    private struct DataIdentity: Encodable {
        var name: String, trainImages: Int, classNames: [String]
    }

    /// The key as canonical JSON (what a store's header holds).
    public var json: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// A short name for the key's store file: FNV-1a 64 of ``json`` in hex. Two keys with the
    /// same name cannot be confused: the header holds the whole key and a read compares it.
    public var fileStem: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in json {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(format: "%016llx", hash)
    }
}

/// The key of a teacher's validation accuracy: the teacher, the validation split and the
/// student's evaluation transform (size, crop, interpolation, normalisation), which the
/// evaluator applies to the teacher's input too.
public struct TeacherEvaluationKey: Codable, Hashable, Sendable {
    /// The teacher's architecture, weights checksum, precision and convolution form.
    public var teacher: String
    /// Dataset name, validation image count, crop fraction override.
    public var validation: String
    /// The student's evaluation input.
    public var studentInput: String

    /// The key for `student` evaluated on `data`'s validation split.
    public init(teacher: BackboneConfig, teacherWeights: String, precision: InferencePrecision,
                convolutions: ConvolutionForm = .fastest, student: BackboneConfig, data: TrainingData) {
        self.teacher = "\(teacher.architecture) \(teacherWeights) \(precision.rawValue) \(convolutions.rawValue)"
        validation = "\(data.name) \(data.validation.count) \(data.evaluationCropFraction.map { "\($0)" } ?? "model")"
        studentInput = "\(student.inputSize) \(student.inputChannels) \(student.cropFraction) \(student.interpolation) \(student.mean) \(student.standardDeviation)"
    }

    /// The key as one string (the entry's name in `evaluations.json`).
    public var name: String { [teacher, validation, studentInput].joined(separator: " | ") }
}
