import Foundation

/// One optimiser step of the USI scheme, the unit that ``USITrainer/fit(resume:)`` repeats:
/// the teacher's logits on the very batch the student sees, the loss, backward, AdamW at the
/// schedule's learning rate, the EMA update, and a restart of the student's dropout and
/// drop-path streams so that a step's randomness depends only on (seed, step, layer).
///
/// An app that runs its own loop (a UI, its own data source) calls it instead of copying
/// `fit()`:
///
/// ```swift
/// let config = USIConfig.usi(epochs: 5, batchSize: 128)
/// let recipe = config.resolved(trainingSamples: data.train.count, imageSize: student.config.inputSize)
/// let step = try TrainingStep(student: student, distiller: distiller, config: config, recipe: recipe)
/// let loader = try recipe.makeTrainingLoader(data: data.train, student: student.config, config: config)
/// var index = 0
/// for epoch in 0..<step.totalEpochs {
///     let batches = loader.batches(epoch: epoch)
///     while let batch = try batches.next() {
///         let result = try step(batch, step: index)
///         index += 1
///         print(result.loss)
///     }
/// }
/// ```
///
/// The step is deterministic: the same student, batch and step index give the same weights,
/// so a run can stop after any step and resume from a checkpoint of the optimiser and EMA.
public final class TrainingStep {
    /// The model being trained.
    public let student: any Backbone
    /// The teacher, or nil to train on the targets alone.
    public let distiller: Distiller?
    /// The configuration (learning rate, distillation weight, seed).
    public let config: USIConfig
    /// The run's concrete settings.
    public let recipe: ResolvedRecipe
    /// AdamW over the student's parameters (its state is part of a checkpoint).
    public let optimizer: AdamW
    /// The EMA of the student's tensors, or nil when the recipe has none.
    public let ema: ExponentialMovingAverage?
    /// The per-step learning rate.
    public let schedule: CosineLearningRateSchedule
    private let stochasticLayers: StochasticLayers

    /// Builds the optimiser, EMA and schedule of `recipe` for `student`. The distiller must
    /// have been made for the student's configuration.
    public init(student: any Backbone, distiller: Distiller?, config: USIConfig, recipe: ResolvedRecipe) throws {
        try config.validate()
        if let distiller, distiller.studentConfig != student.config {
            throw TrainingError.invalidConfiguration(
                "the distiller was made for \(distiller.studentConfig.architecture) (\(distiller.studentConfig.inputChannels) channels, \(distiller.studentConfig.inputSize) px), not for this student")
        }
        self.student = student
        self.distiller = distiller
        self.config = config
        self.recipe = recipe
        optimizer = recipe.makeOptimizer(for: student, config: config)
        ema = recipe.makeEMA(for: student)
        schedule = recipe.makeSchedule(config: config)
        stochasticLayers = StochasticLayers(of: student)
    }

    /// Epochs including cooldown.
    public var totalEpochs: Int { schedule.totalEpochs }

    /// Trains on one batch: `images` `[N, H, W, C]` normalised as the student's config says,
    /// `targets` `[N, classes]` soft (mixed) targets. `step` is the global step index (0-based),
    /// which sets the learning rate, the EMA warmup and the dropout masks. `teacherLogits`,
    /// when given, replace the live teacher's (logits stored from an earlier pass over the same
    /// batches); otherwise the distiller's teacher runs on `images`.
    ///
    /// Throws ``TrainingError/nonFiniteLoss(epoch:step:lastCheckpoint:)`` before updating any
    /// weight when the loss is NaN or infinite.
    @discardableResult
    public func callAsFunction(images: Tensor, targets: Tensor, step: Int, teacherLogits: Tensor? = nil) throws -> TrainingStepResult {
        let learningRate = schedule.learningRate(step: step, stepsPerEpoch: recipe.stepsPerEpoch)
        optimizer.learningRate = Float(learningRate)
        let teacher = teacherLogits ?? distiller?.logits(for: images)
        stochasticLayers.reseed(seed: config.seed, step: step)
        if !student.isTraining { student.train() }  // after an evaluation; a tree walk, so only then
        let loss = self.loss(logits: student(images), teacherLogits: teacher, targets: targets)
        let value = Double(loss.item)
        guard value.isFinite else {
            GradientTape.current.reset()
            throw TrainingError.nonFiniteLoss(epoch: step / recipe.stepsPerEpoch, step: step % recipe.stepsPerEpoch,
                                              lastCheckpoint: nil)
        }
        loss.backward()
        optimizer.step()
        optimizer.zeroGradients()
        ema?.update(step: step + 1)
        return TrainingStepResult(step: step, loss: value, learningRate: learningRate, images: images.shape[0])
    }

    /// The configuration's loss: the USI loss with teacher logits, cross-entropy on the
    /// (mixed) targets without.
    func loss(logits: Tensor, teacherLogits: Tensor?, targets: Tensor) -> Tensor {
        teacherLogits.map {
            Distiller.loss(studentLogits: logits, teacherLogits: $0, targets: targets,
                           weight: Float(config.distillationWeight), distillationOnly: config.distillationOnly)
        } ?? crossEntropy(logits, softTargets: targets)
    }

    /// Trains on a loader batch (see ``callAsFunction(images:targets:step:teacherLogits:)``).
    @discardableResult
    public func callAsFunction(_ batch: Batch, step: Int, teacherLogits: Tensor? = nil) throws -> TrainingStepResult {
        try self(images: batch.tensor(), targets: batch.targetTensor(), step: step, teacherLogits: teacherLogits)
    }
}

/// What one ``TrainingStep`` did.
public struct TrainingStepResult: Sendable, Hashable {
    /// The global step index.
    public let step: Int
    /// The loss before the update.
    public let loss: Double
    /// The learning rate used.
    public let learningRate: Double
    /// Images in the batch.
    public let images: Int
}
