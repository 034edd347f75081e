import Foundation

/// The training recipe. ``usi(epochs:batchSize:)`` is the USI scheme and
/// ``plain(epochs:batchSize:)`` the baseline it is compared with; only the number of epochs and
/// the batch size are free. Everything else is fixed, or follows from the run's length by the
/// scaling rule of ``resolved(trainingSamples:imageSize:)`` (see `Docs/DECISIONS.md`).
public struct USIConfig: Codable, Sendable, Hashable {
    /// Which recipe.
    public enum Recipe: String, Codable, Sendable, CaseIterable {
        /// Knowledge distillation, strong augmentation, mixing, repeated augmentation, EMA.
        case usi
        /// Cross-entropy, light augmentation (padded random crop + flip), no mixing, no EMA.
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
    /// Whether a teacher is used (the CLI's `--no-kd` turns it off).
    public var usesTeacher: Bool
    /// Seed of every random choice (initialisation, sampling, augmentation).
    public var seed: UInt64 = 0
    /// Data-loading threads.
    public var workers: Int = 2
    /// Overrides the run-length knob r (research only: for studying the scaling rule; nil =
    /// derived from `epochs`).
    public var runScaleOverride: Double?
    /// Research only: replaces resolved settings by name (`cropScaleFloor`, `randAugmentMagnitude`,
    /// `mixingProbability`, `repeatedAugmentations`, `paddedCropFraction`, `warmupEpochs`,
    /// `cooldownEpochs`, `emaTimeConstant` in steps, 0 = no EMA) for studying the scaling rule.
    public var researchOverrides: [String: Double]?

    /// The USI scheme: the paper's constants at ImageNet scale (300 epochs), scaled for shorter runs.
    public static func usi(epochs: Int = 300, batchSize: Int = 128) -> USIConfig {
        USIConfig(recipe: .usi, epochs: epochs, batchSize: batchSize, usesTeacher: true)
    }

    /// The baseline: cross-entropy, padded random crop + flip, AdamW with the same schedule,
    /// no mixing, no EMA, no teacher.
    public static func plain(epochs: Int = 300, batchSize: Int = 128) -> USIConfig {
        USIConfig(recipe: .plain, epochs: epochs, batchSize: batchSize, usesTeacher: false)
    }

    /// Checks the free knobs.
    public func validate() throws {
        guard epochs >= 1 else { throw TrainingError.invalidConfiguration("epochs must be >= 1, got \(epochs)") }
        guard batchSize >= 2 else { throw TrainingError.invalidConfiguration("batch size must be >= 2, got \(batchSize)") }
        guard workers >= 1 else { throw TrainingError.invalidConfiguration("workers must be >= 1, got \(workers)") }
        if let r = runScaleOverride, !(r > 0 && r <= 1) {
            throw TrainingError.invalidConfiguration("run scale must be in (0, 1], got \(r)")
        }
        if let unknown = researchOverrides?.keys.first(where: { ResearchSetting(rawValue: $0) == nil }) {
            let known = ResearchSetting.allCases.map(\.rawValue).joined(separator: ", ")
            throw TrainingError.invalidConfiguration("unknown override \(unknown); known: \(known)")
        }
    }

    /// The run-length knob r = min(1, √(epochs / 300)): 1 at the paper's 300 epochs.
    public var runScale: Double { runScaleOverride ?? min(1, (Double(epochs) / 300).squareRoot()) }

    /// The augmentation knob a = min(r, side / 224): the run-length knob, capped by the input's
    /// side relative to the paper's 224 px. A crop that keeps 8 % of a 224-px image still has
    /// 63-px sides; the same crop of a 32-px image keeps 9 px, so small images take the paper's
    /// augmentation only in proportion to their side, however long the run.
    public func augmentationScale(imageSize: Int) -> Double {
        min(runScale, Double(imageSize) / 224)
    }

    /// Concrete settings for a run over `trainingSamples` images of side `imageSize` (the
    /// student's input) — the scaling rule, with r = ``runScale`` and
    /// a = ``augmentationScale(imageSize:)``:
    ///
    /// | setting | value | at 300 epochs, 224 px |
    /// |---|---|---|
    /// | RandomResizedCrop scale floor | 1 − 0.92·a | 0.08 |
    /// | RandAugment magnitude | round(7·a) (off at 0) | 7 |
    /// | Mixup/CutMix probability | a | 1 |
    /// | repeated augmentation | 1 + round(2·a²) views | 3 |
    /// | warmup epochs | round(5·r) | 5 |
    /// | cooldown epochs | round(10 · epochs/300): the same share of the run | 10 |
    /// | EMA time constant | min(25 000, total steps / 15) steps | 0.99996 at ImageNet's ~375k steps |
    ///
    /// The plain recipe shares the schedule and uses none of the rest.
    public func resolved(trainingSamples: Int, imageSize: Int) -> ResolvedRecipe {
        let r = runScale
        let a = augmentationScale(imageSize: imageSize)
        let usi = recipe == .usi
        let repeats = usi ? 1 + Int((2 * a * a).rounded()) : 1
        let stepsPerEpoch = max(1, trainingSamples / batchSize)  // RA keeps the epoch length (timm)
        let totalSteps = stepsPerEpoch * epochs
        let timeConstant = min(25_000, Double(totalSteps) / 15)
        var resolved = ResolvedRecipe(
            runScale: r,
            augmentationScale: usi ? a : 0,
            cropScaleFloor: usi ? 1 - 0.92 * a : 1,
            randAugmentMagnitude: usi ? Int((7 * a).rounded()) : 0,
            mixingProbability: usi ? a : 0,
            repeatedAugmentations: repeats,
            paddedCropFraction: usi ? 0 : 0.125,
            warmupEpochs: (5 * r).rounded(),
            cooldownEpochs: Int((10 * Double(epochs) / 300).rounded()),
            stepsPerEpoch: stepsPerEpoch,
            emaDecay: usi ? 1 - 1 / max(timeConstant, 1) : nil)
        applyResearchOverrides(to: &resolved)
        return resolved
    }

    /// The resolved settings that ``researchOverrides`` may replace, by name.
    private enum ResearchSetting: String, CaseIterable {
        case cropScaleFloor, randAugmentMagnitude, mixingProbability, repeatedAugmentations, paddedCropFraction,
             warmupEpochs, cooldownEpochs, emaTimeConstant
    }

    private func applyResearchOverrides(to recipe: inout ResolvedRecipe) {
        for (key, value) in researchOverrides ?? [:] {
            switch ResearchSetting(rawValue: key) {
            case .cropScaleFloor: recipe.cropScaleFloor = value
            case .randAugmentMagnitude: recipe.randAugmentMagnitude = Int(value)
            case .mixingProbability: recipe.mixingProbability = value
            case .repeatedAugmentations: recipe.repeatedAugmentations = Int(value)
            case .paddedCropFraction: recipe.paddedCropFraction = value
            case .warmupEpochs: recipe.warmupEpochs = value
            case .cooldownEpochs: recipe.cooldownEpochs = Int(value)
            case .emaTimeConstant: recipe.emaDecay = value > 0 ? 1 - 1 / value : nil
            case nil: break  // refused by validate()
            }
        }
    }
}

/// A recipe's concrete values for one run (logged in `config.json`).
public struct ResolvedRecipe: Codable, Sendable, Hashable {
    /// r = min(1, √(epochs/300)).
    public var runScale: Double
    /// a = min(r, side/224) (0 for the plain recipe).
    public var augmentationScale: Double
    /// Lower bound of RandomResizedCrop's area fraction (1 = no random resized crop).
    public var cropScaleFloor: Double
    /// RandAugment magnitude (0 = off); std 0.5, 2 ops, increasing variants.
    public var randAugmentMagnitude: Int
    /// Probability that a batch is mixed (Mixup α 0.8 or CutMix α 1.0, switch 0.5).
    public var mixingProbability: Double
    /// Views per image in an epoch (repeated augmentation).
    public var repeatedAugmentations: Int
    /// Padding of the plain recipe's random crop, as a fraction of the image side (0 = off).
    public var paddedCropFraction: Double
    /// Linear warmup length.
    public var warmupEpochs: Double
    /// Epochs at the minimum learning rate after the cosine.
    public var cooldownEpochs: Int
    /// Optimiser steps per epoch.
    public var stepsPerEpoch: Int
    /// EMA decay per step (nil = no EMA).
    public var emaDecay: Double?
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
