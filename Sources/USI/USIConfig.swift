import Foundation

/// The training recipe. ``usi(epochs:batchSize:)`` is the USI scheme and
/// ``plain(epochs:batchSize:)`` the baseline it is compared with; only the number of epochs and
/// the batch size are free. Everything else is fixed here, or follows from the run's length by
/// the scaling rule of ``resolved(trainingSamples:imageSize:)``; `Recipe.swift` holds that rule
/// and assembles the run's transforms, sampler, mixing, optimiser, EMA and schedule from it.
///
/// Whether a teacher is used is not part of the configuration: it follows from whether the
/// trainer is given a ``Distiller``.
public struct USIConfig: Codable, Sendable, Hashable {
    /// Which recipe.
    public enum Recipe: String, Codable, Sendable, CaseIterable {
        /// Strong augmentation, mixing, repeated augmentation, EMA (and distillation when a
        /// teacher is given).
        case usi
        /// Light augmentation (padded random crop + flip), no mixing, no EMA.
        case plain
    }

    /// The recipe.
    public var recipe: Recipe
    /// Epochs of the cosine schedule (cooldown epochs come after).
    public var epochs: Int
    /// Images per optimiser step.
    public var batchSize: Int
    /// Peak learning rate (AdamW).
    public var learningRate: Double = 2e-3
    /// Decoupled weight decay on ≥ 2-D weights.
    public var weightDecay: Double = 2e-2
    /// Learning rate at the start of warmup.
    public var warmupLearningRate: Double = 1e-4
    /// Floor of the cosine and the cooldown learning rate.
    public var minimumLearningRate: Double = 1e-6
    /// Weight of the KL term: `CE + kdWeight · KL(p_teacher ‖ p_student)`.
    public var distillationWeight: Double = 5
    /// Use only the KL term (no cross-entropy on the mixed labels).
    public var distillationOnly = false
    /// Seed of every random choice (initialisation, sampling, augmentation).
    public var seed: UInt64 = 0
    /// Data-loading threads.
    public var workers: Int = 2
    /// Data-parallel: BatchNorm statistics over the whole global batch, every rank's and every
    /// emulated shard's rows together (`--sync-bn`, as PyTorch's `SyncBatchNorm`); nil or false
    /// = per rank, as DDP's default.
    public var syncBatchNorm: Bool?
    /// Research only: replaces settings of the scaling rule, for studying it (nil = none).
    public var research: ResearchOverrides?

    /// The USI scheme: the paper's constants at ImageNet scale (300 epochs), scaled for shorter runs.
    public static func usi(epochs: Int = 300, batchSize: Int = 128) -> USIConfig {
        USIConfig(recipe: .usi, epochs: epochs, batchSize: batchSize)
    }

    /// The baseline: padded random crop + flip, AdamW with the same schedule, no mixing, no EMA.
    /// It is compared with USI without a teacher.
    public static func plain(epochs: Int = 300, batchSize: Int = 128) -> USIConfig {
        USIConfig(recipe: .plain, epochs: epochs, batchSize: batchSize)
    }

    /// Checks the free knobs.
    public func validate() throws {
        guard epochs >= 1 else { throw TrainingError.invalidConfiguration("epochs must be >= 1, got \(epochs)") }
        guard epochs <= 100_000 else { throw TrainingError.invalidConfiguration("epochs must be <= 100000, got \(epochs)") }
        guard batchSize >= 2 else { throw TrainingError.invalidConfiguration("batch size must be >= 2, got \(batchSize)") }
        guard batchSize <= 65_536 else { throw TrainingError.invalidConfiguration("batch size must be <= 65536, got \(batchSize)") }
        guard workers >= 1 && workers <= 256 else {
            throw TrainingError.invalidConfiguration("workers must be in 1…256, got \(workers)")
        }
        try research?.validate()
    }
}

/// Research-only replacements of the scaling rule's settings, for studying it; each nil field
/// keeps the rule's value. Not part of the USI recipe.
public struct ResearchOverrides: Codable, Sendable, Hashable {
    /// The run-length knob r in (0, 1] instead of √(epochs/300).
    public var runScale: Double?
    /// RandomResizedCrop's scale floor.
    public var cropScaleFloor: Double?
    /// RandAugment magnitude (0 = off).
    public var randAugmentMagnitude: Int?
    /// Probability that a batch is mixed.
    public var mixingProbability: Double?
    /// Views per image per epoch.
    public var repeatedAugmentations: Int?
    /// The plain recipe's padded crop, as a fraction of the side (0 = off).
    public var paddedCropFraction: Double?
    /// Warmup epochs.
    public var warmupEpochs: Double?
    /// Cooldown epochs.
    public var cooldownEpochs: Int?
    /// EMA time constant in steps (0 = no EMA).
    public var emaTimeConstant: Double?

    /// No overrides.
    public init() {}

    /// The names ``set(_:to:)`` accepts.
    public static let names = ["runScale", "cropScaleFloor", "randAugmentMagnitude", "mixingProbability",
                               "repeatedAugmentations", "paddedCropFraction", "warmupEpochs", "cooldownEpochs",
                               "emaTimeConstant"]

    /// Sets the field called `name` (a command line's `NAME=VALUE`).
    public mutating func set(_ name: String, to value: Double) throws {
        guard value.isFinite else { throw TrainingError.invalidConfiguration("override \(name) must be finite") }
        func whole() throws -> Int {
            guard value == value.rounded(), abs(value) < 1e6 else {
                throw TrainingError.invalidConfiguration("override \(name) must be a whole number, got \(value)")
            }
            return Int(value)
        }
        switch name {
        case "runScale": runScale = value
        case "cropScaleFloor": cropScaleFloor = value
        case "randAugmentMagnitude": randAugmentMagnitude = try whole()
        case "mixingProbability": mixingProbability = value
        case "repeatedAugmentations": repeatedAugmentations = try whole()
        case "paddedCropFraction": paddedCropFraction = value
        case "warmupEpochs": warmupEpochs = value
        case "cooldownEpochs": cooldownEpochs = try whole()
        case "emaTimeConstant": emaTimeConstant = value
        default:
            throw TrainingError.invalidConfiguration("unknown override \(name); known: \(Self.names.joined(separator: ", "))")
        }
    }

    /// Checks the ranges.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws {
            if !ok { throw TrainingError.invalidConfiguration("research override: \(message)") }
        }
        if let r = runScale { try check(r > 0 && r <= 1, "run scale must be in (0, 1], got \(r)") }
        if let v = cropScaleFloor { try check(v > 0 && v <= 1, "cropScaleFloor must be in (0, 1], got \(v)") }
        if let v = randAugmentMagnitude { try check((0...30).contains(v), "randAugmentMagnitude must be in 0…30, got \(v)") }
        if let v = mixingProbability { try check((0...1).contains(v), "mixingProbability must be in [0, 1], got \(v)") }
        if let v = repeatedAugmentations { try check((1...16).contains(v), "repeatedAugmentations must be in 1…16, got \(v)") }
        if let v = paddedCropFraction { try check((0...0.5).contains(v), "paddedCropFraction must be in [0, 0.5], got \(v)") }
        if let v = warmupEpochs { try check(v >= 0, "warmupEpochs must be >= 0, got \(v)") }
        if let v = cooldownEpochs { try check(v >= 0, "cooldownEpochs must be >= 0, got \(v)") }
        if let v = emaTimeConstant { try check(v == 0 || v >= 1, "emaTimeConstant must be 0 or >= 1, got \(v)") }
    }
}

/// Why training stopped early or could not start.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// A setting is out of range.
    case invalidConfiguration(String)
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    case nonFiniteLoss(epoch: Int, step: Int, lastCheckpoint: String?)
    /// The data cannot be used (empty split, class count mismatch, …).
    case invalidData(String)
    /// `cancel()` was called.
    case cancelled

    /// The message.
    public var description: String {
        switch self {
        case let .invalidConfiguration(message): "invalid configuration: \(message)"
        case let .nonFiniteLoss(epoch, step, checkpoint):
            "loss became NaN/Inf at epoch \(epoch), step \(step); training stopped"
                + (checkpoint.map { ". The last good checkpoint is \($0)" } ?? " before any checkpoint was written")
        case let .invalidData(message): "invalid data: \(message)"
        case .cancelled: "training was cancelled"
        }
    }
}
