import Foundation

// The USI recipe in one place: the scaling rule that turns a `USIConfig` into concrete settings
// for one run, and the assembly of the run's transform, sampler, mixing, optimiser groups, EMA
// and schedule from them. The constants themselves are `USIConfig`'s defaults and the paper's
// values in the table below; `Docs/DECISIONS.md` has the evidence for the rule.

extension USIConfig {
    /// The run-length knob r = min(1, √(epochs / 300)): 1 at the paper's 300 epochs.
    public var runScale: Double { research?.runScale ?? min(1, (Double(epochs) / 300).squareRoot()) }

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
        if let research { resolved.apply(research) }
        return resolved
    }
}

/// A recipe's concrete values for one run (logged in `config.json`), and the parts of the run
/// built from them.
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

    mutating func apply(_ research: ResearchOverrides) {
        if let v = research.cropScaleFloor { cropScaleFloor = v }
        if let v = research.randAugmentMagnitude { randAugmentMagnitude = v }
        if let v = research.mixingProbability { mixingProbability = v }
        if let v = research.repeatedAugmentations { repeatedAugmentations = v }
        if let v = research.paddedCropFraction { paddedCropFraction = v }
        if let v = research.warmupEpochs { warmupEpochs = v }
        if let v = research.cooldownEpochs { cooldownEpochs = v }
        if let v = research.emaTimeConstant { emaDecay = v > 0 ? 1 - 1 / v : nil }
    }

    // MARK: - Assembly

    /// The training transform: RandomResizedCrop (+ RandAugment) for USI, the padded crop for
    /// plain. The resolved values, not the recipe's name, decide: a research override can give
    /// the USI recipe the plain recipe's crop.
    public func makeTrainingTransform(for student: BackboneConfig) throws -> any SampleTransform {
        if paddedCropFraction > 0 {
            return try PaddedCropTransform(size: student.inputSize,
                                           padding: Int((Double(student.inputSize) * paddedCropFraction).rounded()),
                                           interpolation: student.interpolation, mean: student.mean,
                                           std: student.standardDeviation)
        }
        let randAugment = randAugmentMagnitude > 0
            ? RandAugment(magnitude: Double(randAugmentMagnitude), interpolation: student.interpolation) : nil
        return try TrainTransform(size: student.inputSize, crop: RandomResizedCrop(scale: cropScaleFloor...1.0),
                                  interpolation: student.interpolation, randAugment: randAugment, mean: student.mean,
                                  std: student.standardDeviation)
    }

    /// The epoch order: repeated augmentation's sampler (views of an image together, as timm's
    /// `RepeatAugSampler`), or a plain shuffle; shard `rank` of `shards` for data-parallel runs
    /// (the one-process order dealt round-robin, see ``Sampler``).
    public func makeSampler(trainingSamples: Int, seed: UInt64, rank: Int = 0, shards: Int = 1) throws -> any Sampler {
        repeatedAugmentations > 1
            ? try RepeatAugmentSampler(count: trainingSamples, repeats: repeatedAugmentations, seed: seed,
                                       rank: rank, worldSize: shards)
            : try ShuffledSampler(count: trainingSamples, seed: seed, rank: rank, worldSize: shards)
    }

    /// Mixup/CutMix at the recipe's probability (nil = off).
    public var mixing: MixupCutmix? { mixingProbability > 0 ? MixupCutmix(probability: mixingProbability) : nil }

    /// The training loader: sampler, transform and mixing over `data`, `config.batchSize`
    /// images a batch — or, for shard `rank` of `shards`, `config.batchSize / shards` images of
    /// each global batch (the batch size must be a multiple of `shards`).
    public func makeTrainingLoader(data: any ImageDataset, student: BackboneConfig, config: USIConfig,
                                   rank: Int = 0, shards: Int = 1) throws -> DataLoader {
        guard shards >= 1, config.batchSize % shards == 0 else {
            throw TrainingError.invalidConfiguration(
                "the batch size \(config.batchSize) is the global batch of all \(shards) ranks and must be a multiple of \(shards); use --batch-size \(max(shards, config.batchSize / shards * shards))")
        }
        return try DataLoader(dataset: data, transform: makeTrainingTransform(for: student),
                              sampler: makeSampler(trainingSamples: data.count, seed: config.seed, rank: rank, shards: shards),
                              batchSize: config.batchSize / shards, workers: config.workers, mixing: mixing, seed: config.seed)
    }

    /// AdamW over the student's parameters with timm's weight-decay groups: no decay on 1-D
    /// tensors, biases and the backbone's `noWeightDecay` names.
    public func makeOptimizer(for student: any Backbone, config: USIConfig) -> AdamW {
        AdamW(parameters: student.namedParameters().map { ($0.name, $0.tensor) },
              learningRate: Float(config.learningRate), weightDecay: Float(config.weightDecay),
              noWeightDecay: student.noWeightDecay)
    }

    /// The EMA of every student tensor at the recipe's decay, with timm's V3 warmup (nil = no EMA).
    public func makeEMA(for student: any Backbone) -> ExponentialMovingAverage? {
        emaDecay.map { ExponentialMovingAverage(student.namedTensors(), decay: $0, warmup: ExponentialMovingAverage.Warmup()) }
    }

    /// Warmup, cosine and cooldown, per step.
    public func makeSchedule(config: USIConfig) -> CosineLearningRateSchedule {
        CosineLearningRateSchedule(
            baseLearningRate: config.learningRate, epochs: config.epochs, warmupEpochs: Int(warmupEpochs.rounded()),
            warmupLearningRate: config.warmupLearningRate, minimumLearningRate: config.minimumLearningRate,
            cooldownEpochs: cooldownEpochs)
    }
}
