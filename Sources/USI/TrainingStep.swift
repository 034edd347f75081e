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
    /// The processes this step averages gradients over (one process by default).
    public let communicator: any Communicator
    /// Bytes per gradient bucket of a data-parallel step (DDP's 25 MB; the first bucket is
    /// 1 MB). Set before the first step; smaller buckets start reducing earlier but make more
    /// collectives.
    public var gradientBucketBytes = GradientBuckets.defaultBucketBytes
    /// The gradient buckets of a data-parallel step, made at the first step with several ranks.
    public private(set) var gradientBuckets: GradientBuckets?
    private let stochasticLayers: StochasticLayers
    // The student's tensors that are not parameters (BatchNorm running statistics).
    private let buffers: [Tensor]

    /// Builds the optimiser, EMA and schedule of `recipe` for `student`. The distiller must
    /// have been made for the student's configuration.
    ///
    /// With a `communicator` of several ranks, every rank calls the step with its own shard of
    /// the global batch and the gradients are averaged over all shards before the update.
    public init(student: any Backbone, distiller: Distiller?, config: USIConfig, recipe: ResolvedRecipe,
                communicator: any Communicator = SingleProcessCommunicator()) throws {
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
        self.communicator = communicator
        if config.syncBatchNorm == true {
            for (_, module) in student.namedModules() {
                (module as? BatchNorm)?.synchronization = communicator
            }
        }
        let parameterNames = Set(student.namedParameters().map(\.name))
        buffers = student.namedTensors().filter { !parameterNames.contains($0.name) }.map(\.tensor)
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
        try self(shards: [Shard(images: images, targets: targets, teacherLogits: teacherLogits)], step: step)
    }

    /// One shard of a global batch: images, soft targets and optionally stored teacher logits
    /// (see ``callAsFunction(images:targets:step:teacherLogits:)``).
    public struct Shard {
        /// `[n, H, W, C]`, normalised.
        public var images: Tensor
        /// `[n, classes]` soft targets.
        public var targets: Tensor
        /// Stored teacher logits, or nil for the live teacher.
        public var teacherLogits: Tensor?

        /// Pairs them.
        public init(images: Tensor, targets: Tensor, teacherLogits: Tensor? = nil) {
            self.images = images
            self.targets = targets
            self.teacherLogits = teacherLogits
        }
    }

    /// One optimiser step over a global batch split into equal shards: this process's
    /// `shards` (one per rank normally; several to emulate ranks in one process) times
    /// ``communicator``'s ranks. Each shard runs forward and backward on its own — so
    /// BatchNorm's statistics are per shard, as in PyTorch DDP — and the gradients are summed
    /// over every shard of every rank and divided by their number before the update. The loss
    /// reported is the mean over all shards, the same on every rank.
    ///
    /// Emulated shards keep the BatchNorm running statistics of the first shard (what rank 0
    /// of a real run keeps), so an emulated run is the N-rank run's rank 0 exactly.
    @discardableResult
    public func callAsFunction(shards: [Shard], step: Int) throws -> TrainingStepResult {
        precondition(!shards.isEmpty, "a training step needs at least one shard")
        // Synchronised BatchNorm over emulated shards is BatchNorm over their union: one
        // forward and backward of the shards joined (each keeps its own mixing pairs).
        if config.syncBatchNorm == true && shards.count > 1 { return try self(shards: [Self.joined(shards)], step: step) }
        let learningRate = schedule.learningRate(step: step, stepsPerEpoch: recipe.stepsPerEpoch)
        optimizer.learningRate = Float(learningRate)
        if !student.isTraining { student.train() }  // after an evaluation; a tree walk, so only then
        let stepStart = ContinuousClock.now
        var communicationSeconds = 0.0
        var lossSum = 0.0
        var value = Double.nan
        var firstShardBuffers: [Tensor]?
        let shardCount = shards.count * communicator.size
        for (number, shard) in shards.enumerated() {
            let teacher = shard.teacherLogits ?? distiller?.logits(for: shard.images)
            // Every shard (every rank) draws the same dropout masks for a step, as DDP's ranks do.
            stochasticLayers.reseed(seed: config.seed, step: step)
            let loss = self.loss(logits: student(shard.images), teacherLogits: teacher, targets: shard.targets)
            lossSum += Double(loss.item)
            let isLast = number == shards.count - 1
            if isLast {
                // The loss goes round before the last backward, whose gradient buckets start
                // travelling during it: every rank agrees on stopping before any collective
                // of gradients has started.
                var totalLoss = [lossSum]
                communicationSeconds += try timed { try communicator.allReduceSum(&totalLoss) }
                value = totalLoss[0] / Double(shardCount)
                guard value.isFinite else {
                    GradientTape.current.reset()
                    optimizer.zeroGradients()
                    throw TrainingError.nonFiniteLoss(epoch: step / recipe.stepsPerEpoch, step: step % recipe.stepsPerEpoch,
                                                      lastCheckpoint: nil)
                }
            }
            if !loss.item.isFinite {
                GradientTape.current.reset()  // an earlier shard of a step that stops at the last one
            } else if isLast && communicator.size > 1 {
                let buckets = gradientBuckets ?? GradientBuckets(parameters: optimizer.parameters.map(\.tensor),
                                                                 communicator: communicator, bucketBytes: gradientBucketBytes)
                gradientBuckets = buckets
                buckets.begin()
                loss.backward(onGradientFinal: buckets.gradientIsFinal)
            } else {
                loss.backward()
            }
            if number == 0 && shards.count > 1 { firstShardBuffers = buffers.map { $0.copy() } }
        }
        if let firstShardBuffers {
            for (buffer, saved) in zip(buffers, firstShardBuffers) { buffer.assign(saved) }
        }
        if let gradientBuckets, communicator.size > 1 {
            communicationSeconds += try gradientBuckets.finish(scale: 1 / Float(shardCount))
        } else if shardCount > 1 {
            try communicator.allReduceGradients(of: optimizer.parameters.map(\.tensor), scale: 1 / Float(shardCount))
        }
        optimizer.step()
        optimizer.zeroGradients()
        // Rank 0's BatchNorm running statistics on every rank (as DDP's broadcast_buffers), so
        // that the ranks evaluate, and average into the EMA, one and the same model.
        if communicator.size > 1 { communicationSeconds += try timed { try broadcastBuffersFromRoot() } }
        ema?.update(step: step + 1)
        let images = shards.reduce(0) { $0 + $1.images.shape[0] } * communicator.size
        return TrainingStepResult(step: step, loss: value, learningRate: learningRate, images: images,
                                  seconds: Self.seconds(since: stepStart), communicationSeconds: communicationSeconds)
    }

    private func timed(_ body: () throws -> Void) throws -> Double {
        let start = ContinuousClock.now
        try body()
        return Self.seconds(since: start)
    }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    private func broadcastBuffersFromRoot() throws {
        var packed = [Float](repeating: 0, count: buffers.reduce(0) { $0 + $1.count })
        guard !packed.isEmpty else { return }
        try packed.withUnsafeMutableBufferPointer { packed in
            var offset = 0
            for buffer in buffers {
                (packed.baseAddress! + offset).update(from: buffer.pointer, count: buffer.count)
                offset += buffer.count
            }
            try communicator.broadcast(packed, root: 0)
            offset = 0
            for buffer in buffers {
                buffer.pointer.update(from: packed.baseAddress! + offset, count: buffer.count)
                offset += buffer.count
            }
        }
    }

    /// The configuration's loss: the USI loss with teacher logits, cross-entropy on the
    /// (mixed) targets without.
    func loss(logits: Tensor, teacherLogits: Tensor?, targets: Tensor) -> Tensor {
        teacherLogits.map {
            Distiller.loss(studentLogits: logits, teacherLogits: $0, targets: targets,
                           weight: Float(config.distillationWeight), distillationOnly: config.distillationOnly)
        } ?? crossEntropy(logits, softTargets: targets)
    }

    /// Trains on loader batches, one per shard (see ``callAsFunction(shards:step:)``).
    @discardableResult
    public func callAsFunction(_ batches: [Batch], step: Int) throws -> TrainingStepResult {
        try self(shards: batches.map { Shard(images: $0.tensor(), targets: $0.targetTensor()) }, step: step)
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
    /// Images in the global batch (every shard of every rank).
    public let images: Int
    /// Wall-clock seconds of the step on this rank.
    public var seconds: Double = 0
    /// Of ``seconds``, the time this rank was blocked in collectives: the loss's all-reduce,
    /// the wait for the gradient buckets still in flight after backward, and the broadcast of
    /// BatchNorm statistics (0 on one process).
    public var communicationSeconds: Double = 0
}
