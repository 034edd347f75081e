import Foundation
import Synchronization

/// Trains a student backbone with the USI scheme (or the plain baseline):
/// epochs of sample → augment → mix → teacher → student → loss → backward → AdamW → EMA,
/// validating model and EMA after every epoch, keeping the better, checkpointing atomically.
///
/// ```swift
/// let student = try Models.create("mobilenetv3_small_050", classes: 10, inputChannels: 1, inputSize: 32)
/// let trainer = try USITrainer(student: student, distiller: Distiller(teacher: teacher),
///                              data: .fashionMNIST(), config: .usi(epochs: 5, batchSize: 128),
///                              outputDirectory: URL(fileURLWithPath: "runs/demo"))
/// let report = try trainer.fit()
/// ```
public final class USITrainer: @unchecked Sendable {
    /// The model being trained.
    public let student: any Backbone
    /// The teacher, or nil for no distillation.
    public let distiller: Distiller?
    /// Training and validation data.
    public let data: TrainingData
    /// The recipe.
    public let config: USIConfig
    /// The recipe's values for this run.
    public let recipe: ResolvedRecipe
    /// Where `config.json`, `metrics.jsonl`, checkpoints, `best.safetensors` and `report.html`
    /// go (nil = keep nothing on disk).
    public let outputDirectory: URL?
    /// Called for every event on the training thread (progress display, app UI).
    public var onEvent: (@Sendable (TrainingEvent) -> Void)?
    /// Steps between the interval lines of `metrics.jsonl` (the last step of an epoch always
    /// gets one).
    public var logInterval = 50

    private let cancelled = Atomic<Bool>(false)
    private let schedule: CosineLearningRateSchedule

    /// Prepares a run; throws for an invalid configuration or data that does not fit the model.
    public init(student: any Backbone, distiller: Distiller?, data: TrainingData, config: USIConfig,
                outputDirectory: URL? = nil) throws {
        try config.validate()
        guard student.config.classes == data.classNames.count else {
            throw TrainingError.invalidData("the model has \(student.config.classes) classes, the data \(data.classNames.count)")
        }
        if let distiller, distiller.teacher.config.classes != data.classNames.count {
            throw TrainingError.invalidData("the teacher has \(distiller.teacher.config.classes) classes, the data \(data.classNames.count)")
        }
        self.student = student
        self.distiller = config.usesTeacher ? distiller : nil
        self.data = data
        self.config = config
        self.recipe = config.resolved(trainingSamples: data.train.count, imageSize: student.config.inputSize)
        self.outputDirectory = outputDirectory
        schedule = CosineLearningRateSchedule(
            baseLearningRate: config.learningRate, epochs: config.epochs, warmupEpochs: Int(recipe.warmupEpochs.rounded()),
            warmupLearningRate: config.warmupLearningRate, minimumLearningRate: config.minimumLearningRate,
            cooldownEpochs: recipe.cooldownEpochs)
    }

    /// Asks a running ``fit(resume:)`` to stop after the current step (it throws
    /// ``TrainingError/cancelled``; the last epoch's checkpoint stays).
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    /// Epochs including cooldown.
    public var totalEpochs: Int { schedule.totalEpochs }

    /// The events of a run as an `AsyncStream`; start ``fit(resume:)`` after subscribing.
    public func events() -> AsyncStream<TrainingEvent> {
        let (stream, continuation) = AsyncStream<TrainingEvent>.makeStream()
        let previous = onEvent
        onEvent = { event in
            previous?(event)
            continuation.yield(event)
            if case .finished = event { continuation.finish() }
        }
        return stream
    }

    // MARK: - The loop

    /// Runs the whole schedule (or its remainder with `resume` and a checkpoint in the output
    /// directory) and returns the report.
    public func fit(resume: Bool = false) throws -> TrainingReport {
        let clock = ContinuousClock.now
        cancelled.store(false, ordering: .relaxed)
        let output = try outputDirectory.map { try RunOutput(directory: $0) }
        let studentConfig = student.config
        let loader = try makeTrainingLoader()
        let optimizer = AdamW(parameters: student.namedParameters().map { ($0.name, $0.tensor) },
                              learningRate: Float(config.learningRate), weightDecay: Float(config.weightDecay),
                              noWeightDecay: student.noWeightDecay)
        let ema = recipe.emaDecay.map {
            ExponentialMovingAverage(student.namedTensors(), decay: $0, warmup: ExponentialMovingAverage.Warmup())
        }
        var history: [EpochMetrics] = []
        var startEpoch = 0
        var best = (top1: -1.0, top5: 0.0, epoch: -1, isEMA: false)
        if resume {
            guard let output, let state = try TrainingCheckpoint.load(from: output.checkpoints.lastURL, student: student,
                                                                         optimizer: optimizer, ema: ema) else {
                throw TrainingError.invalidConfiguration("--resume: no checkpoint in \(outputDirectory?.path ?? "(no output directory)")")
            }
            guard state.config == config else {
                throw TrainingError.invalidConfiguration("--resume: the checkpoint was written by a different configuration")
            }
            startEpoch = state.epoch + 1
            try output.truncateMetrics(after: state.epoch)
            history = output.readMetrics()
            if let b = history.max(by: { max($0.top1, $0.top1EMA ?? -1) < max($1.top1, $1.top1EMA ?? -1) }) {
                let emaBetter = (b.top1EMA ?? -1) > b.top1
                best = (emaBetter ? b.top1EMA! : b.top1, emaBetter ? b.top5EMA! : b.top5, b.epoch, emaBetter)
            }
        } else if let output {
            try output.start(config: config, recipe: recipe, student: studentConfig, teacher: distiller?.teacher.config,
                             data: data)
        }
        student.train()
        emit(.started(epoch: startEpoch, totalEpochs: totalEpochs, stepsPerEpoch: recipe.stepsPerEpoch, recipe: recipe))
        var teacherTop1: Double?
        if let distiller {
            let result = try Evaluator.evaluate(student, on: data.validation, workers: config.workers,
                                                cropFraction: data.evaluationCropFraction) { x in
                distiller.logits(for: x, studentConfig: studentConfig)
            }
            teacherTop1 = result.top1
            emit(.teacherEvaluated(result))
        }
        student.train()

        for epoch in startEpoch..<totalEpochs {
            let epochStart = ContinuousClock.now
            var lossSum = 0.0, lossCount = 0, images = 0, lr = 0.0
            let batches = loader.batches(epoch: epoch)
            defer { batches.cancel() }
            var stepInEpoch = 0
            while let batch = try batches.next() {
                if cancelled.load(ordering: .relaxed) { throw TrainingError.cancelled }
                let globalStep = epoch * recipe.stepsPerEpoch + stepInEpoch
                lr = schedule.learningRate(step: globalStep, stepsPerEpoch: recipe.stepsPerEpoch)
                optimizer.learningRate = Float(lr)
                let x = batch.tensor(), targets = batch.targetTensor()
                let teacherLogits = distiller?.logits(for: x, studentConfig: studentConfig)
                // Dropout and drop-path masks are a function of (seed, step, layer): resume-exact.
                student.reseedStochasticLayers(seed: config.seed, step: globalStep)
                let logits = student(x)
                let loss = teacherLogits.map {
                    Distiller.loss(studentLogits: logits, teacherLogits: $0, targets: targets,
                                   weight: Float(config.distillationWeight), distillationOnly: config.distillationOnly)
                } ?? crossEntropy(logits, softTargets: targets)
                let value = Double(loss.item)
                guard value.isFinite else {
                    GradientTape.current.reset()
                    throw TrainingError.nonFiniteLoss(epoch: epoch, step: stepInEpoch,
                                                      lastCheckpoint: output.flatMap { FileManager.default.fileExists(atPath: $0.checkpoints.lastURL.path) ? $0.checkpoints.lastURL.path : nil })
                }
                loss.backward()
                optimizer.step()
                optimizer.zeroGradients()
                ema?.update(step: globalStep + 1)
                stepInEpoch += 1
                lossSum += value; lossCount += 1; images += batch.count
                let elapsed = seconds(since: epochStart)
                let imagesPerSecond = Double(images) / max(elapsed, 1e-9)
                if let output, stepInEpoch % max(1, logInterval) == 0 || stepInEpoch == recipe.stepsPerEpoch {
                    try output.append(IntervalMetrics(epoch: epoch, step: stepInEpoch, stepsPerEpoch: recipe.stepsPerEpoch,
                                                      loss: value, lossAverage: lossSum / Double(lossCount), lr: lr,
                                                      imagesPerSecond: imagesPerSecond))
                }
                emit(.step(StepProgress(epoch: epoch, step: stepInEpoch, stepsPerEpoch: recipe.stepsPerEpoch, loss: value,
                                        learningRate: lr, imagesPerSecond: imagesPerSecond, elapsedSeconds: elapsed)))
            }
            let trainSeconds = seconds(since: epochStart)
            let modelResult = try evaluate()
            var emaResult: EvaluationResult?
            if let ema {
                emaResult = try withWeights(of: ema) { try evaluate() }
            }
            student.train()
            let emaBetter = (emaResult?.top1 ?? -1) > modelResult.top1
            let epochBest = emaBetter ? emaResult! : modelResult
            let improved = epochBest.top1 > best.top1
            if improved { best = (epochBest.top1, epochBest.top5, epoch, emaBetter) }
            let metrics = EpochMetrics(epoch: epoch, lr: lr, trainLoss: lossSum / Double(max(lossCount, 1)),
                                       top1: modelResult.top1, top5: modelResult.top5, top1EMA: emaResult?.top1,
                                       top5EMA: emaResult?.top5, seconds: seconds(since: epochStart),
                                       imagesPerSecond: Double(images) / max(trainSeconds, 1e-9), bestTop1: best.top1)
            history.append(metrics)
            if let output {
                let checkpoint = try TrainingCheckpoint.encode(student: student, optimizer: optimizer, ema: ema, epoch: epoch,
                                                               config: config, classNames: data.classNames)
                try output.checkpoints.save(checkpoint, epoch: epoch, metric: epochBest.top1)
                if improved {
                    let metadata = weightsMetadata(top1: epochBest.top1, epoch: epoch, isEMA: emaBetter)
                    if emaBetter, let ema {
                        try withWeights(of: ema) { try student.save(to: output.bestWeightsURL, metadata: metadata) }
                    } else {
                        try student.save(to: output.bestWeightsURL, metadata: metadata)
                    }
                }
                try output.append(metrics)
                try output.writeReport(history: history, teacherTop1: teacherTop1, config: config, recipe: recipe,
                                       student: studentConfig, data: data, totalEpochs: totalEpochs)
            }
            emit(.epochFinished(metrics))
        }
        let report = TrainingReport(bestTop1: best.top1, bestTop5: best.top5, bestEpoch: best.epoch, bestIsEMA: best.isEMA,
                                    teacherTop1: teacherTop1, epochs: history, seconds: seconds(since: clock),
                                    bestWeightsPath: output?.bestWeightsURL.path, reportPath: output?.reportURL.path)
        emit(.finished(report))
        return report
    }

    private func emit(_ event: TrainingEvent) { onEvent?(event) }

    /// The student's accuracy on the validation split.
    private func evaluate() throws -> EvaluationResult {
        try Evaluator.evaluate(student, on: data.validation, workers: config.workers, cropFraction: data.evaluationCropFraction)
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Runs `body` with the EMA weights loaded into the student, then restores its own.
    private func withWeights<R>(of ema: ExponentialMovingAverage, _ body: () throws -> R) throws -> R {
        let tensors = student.namedTensors()
        let saved = tensors.map { $0.tensor.copy() }
        try ema.copy(into: tensors)
        defer { for (entry, value) in zip(tensors, saved) { entry.tensor.assign(value) } }
        return try body()
    }

    private func weightsMetadata(top1: Double, epoch: Int, isEMA: Bool) -> [String: String] {
        let c = student.config
        return ["architecture": c.architecture, "classes": String(c.classes), "in_chans": String(c.inputChannels),
                "input_size": String(c.inputSize), "top1": String(format: "%.2f", top1), "epoch": String(epoch),
                "weights": isEMA ? "ema" : "model", "dataset": data.name,
                "class_names": String(decoding: (try? JSONEncoder().encode(data.classNames)) ?? Data(), as: UTF8.self),
                "format": "pt"]
    }

    /// The loader of the recipe's training pipeline.
    func makeTrainingLoader() throws -> DataLoader {
        let c = student.config
        let transform: any SampleTransform
        // The resolved recipe, not the recipe's name, picks the transform: a research override
        // can give the USI recipe the plain recipe's padded crop.
        if recipe.paddedCropFraction > 0 {
            transform = try PaddedCropTransform(size: c.inputSize, padding: Int((Double(c.inputSize) * recipe.paddedCropFraction).rounded()),
                                                interpolation: c.interpolation, mean: c.mean, std: c.standardDeviation)
        } else {
            let randAugment = recipe.randAugmentMagnitude > 0
                ? RandAugment(magnitude: Double(recipe.randAugmentMagnitude), interpolation: c.interpolation) : nil
            transform = try TrainTransform(size: c.inputSize, crop: RandomResizedCrop(scale: recipe.cropScaleFloor...1.0),
                                           interpolation: c.interpolation, randAugment: randAugment, mean: c.mean,
                                           std: c.standardDeviation)
        }
        let sampler: any Sampler = recipe.repeatedAugmentations > 1
            ? try RepeatAugmentSampler(count: data.train.count, repeats: recipe.repeatedAugmentations, seed: config.seed)
            : try ShuffledSampler(count: data.train.count, seed: config.seed)
        let mixing = recipe.mixingProbability > 0 ? MixupCutmix(probability: recipe.mixingProbability) : nil
        return try DataLoader(dataset: data.train, transform: transform, sampler: sampler, batchSize: config.batchSize,
                              workers: config.workers, mixing: mixing, seed: config.seed)
    }
}
