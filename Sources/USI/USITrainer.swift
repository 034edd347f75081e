import Foundation
import Logging
import Synchronization

/// Trains a student backbone with the USI scheme (or the plain baseline): epochs of
/// ``TrainingStep``s over the recipe's loader, validating model and EMA after every epoch,
/// keeping the better, checkpointing atomically. The step is the scheme; this class is the
/// policy around it (when to evaluate, what to save, how to resume).
///
/// ```swift
/// let student = try Models.create("mobilenetv3_small_050", classes: 10, inputChannels: 1, inputSize: 32)
/// let trainer = try USITrainer(student: student, distiller: Distiller(teacher: teacher, student: student.config),
///                              data: .fashionMNIST(), config: .usi(epochs: 5, batchSize: 128),
///                              outputDirectory: URL(fileURLWithPath: "runs/demo"))
/// let report = try trainer.fit()
/// ```
/// A teacher is used exactly when a distiller is given.
public final class USITrainer: @unchecked Sendable {
    /// The model being trained.
    public var student: any Backbone { step.student }
    /// The teacher, or nil for no distillation.
    public var distiller: Distiller? { step.distiller }
    /// Training and validation data.
    public let data: TrainingData
    /// The recipe.
    public var config: USIConfig { step.config }
    /// The recipe's values for this run.
    public var recipe: ResolvedRecipe { step.recipe }
    /// The training step (optimiser, EMA, schedule) this trainer repeats.
    public let step: TrainingStep
    /// Where `config.json`, `metrics.jsonl`, checkpoints, `best.safetensors` and `report.html`
    /// go (nil = keep nothing on disk).
    public let outputDirectory: URL?
    /// Called for every event on the training thread (progress display, app UI).
    public var onEvent: (@Sendable (TrainingEvent) -> Void)?
    /// Steps between the interval lines of `metrics.jsonl` (the last step of an epoch always
    /// gets one).
    public var logInterval = 50
    /// Where the trainer logs (epoch summaries at `info`, problems at `warning` and above).
    public var logger = Logger(label: "usi.trainer")
    /// Time between mid-epoch checkpoints (`partial.safetensors`), which a resumed run
    /// continues from exactly; nil = only at the end of each epoch. The default suits
    /// ImageNet-sized epochs, which take hours on a CPU.
    public var checkpointInterval: Duration? = .seconds(30 * 60)

    /// Where the teacher's logits come from when not from the live teacher: a store of an
    /// earlier student's pass over the same batches (``TeacherLogitsStore``); nil = live.
    public var teacherLogitsSource: (any TeacherLogitsSource)?

    private let cancelled = Atomic<Bool>(false)

    /// The processes of a data-parallel run (one by default). Every rank runs `fit()`; each
    /// trains on its shards of every global batch of `config.batchSize` images.
    public var communicator: any Communicator { step.communicator }
    /// Shards of the global batch this process trains on itself (1; N > 1 emulates N ranks in
    /// one process: the same BatchNorm statistics and mixing pairs per shard as N real ranks).
    public let emulatedRanks: Int
    /// Shards of every global batch, over all ranks.
    public var shards: Int { emulatedRanks * communicator.size }

    /// Prepares a run; throws for an invalid configuration, data that does not fit the model,
    /// or a distiller made for another student.
    ///
    /// Data-parallel: every rank makes a trainer with the same arguments and its
    /// `communicator`; only rank 0 should be given an `outputDirectory` (it owns the outputs).
    /// `emulatedRanks` > 1 splits each batch into that many shards in this process (see
    /// ``emulatedRanks``). The global batch must be a multiple of the number of shards.
    public init(student: any Backbone, distiller: Distiller?, data: TrainingData, config: USIConfig,
                outputDirectory: URL? = nil, communicator: any Communicator = SingleProcessCommunicator(),
                emulatedRanks: Int = 1) throws {
        try config.validate()
        guard emulatedRanks >= 1 else {
            throw TrainingError.invalidConfiguration("the number of emulated ranks must be at least 1, got \(emulatedRanks)")
        }
        let shards = emulatedRanks * communicator.size
        guard config.batchSize % shards == 0 else {
            throw TrainingError.invalidConfiguration(
                "the batch size \(config.batchSize) is the global batch of all \(shards) ranks and must be a multiple of \(shards); use --batch-size \(max(shards, config.batchSize / shards * shards))")
        }
        guard student.config.classes == data.classNames.count else {
            throw TrainingError.invalidData("the model has \(student.config.classes) classes, the data \(data.classNames.count)")
        }
        // The loader drops the last partial batch (as timm's), so a batch larger than the
        // training set would train zero steps.
        guard config.batchSize <= data.train.count else {
            throw TrainingError.invalidConfiguration(
                "the batch size \(config.batchSize) is larger than the training set (\(data.train.count) images); use --batch-size \(max(2, data.train.count)) or less")
        }
        self.data = data
        self.outputDirectory = outputDirectory
        self.emulatedRanks = emulatedRanks
        step = try TrainingStep(student: student, distiller: distiller, config: config,
                                recipe: config.resolved(trainingSamples: data.train.count, imageSize: student.config.inputSize),
                                communicator: communicator)
    }

    /// Asks a running ``fit(resume:)`` to stop after the current step (it throws
    /// ``TrainingError/cancelled``; the last epoch's checkpoint stays).
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    /// Epochs including cooldown.
    public var totalEpochs: Int { step.totalEpochs }

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
    /// directory) and returns the report. With `resume` and nothing committed yet, the run
    /// starts from scratch (and logs that it does).
    public func fit(resume: Bool = false) throws -> TrainingReport {
        let clock = ContinuousClock.now
        cancelled.store(false, ordering: .relaxed)
        let output = try outputDirectory.map { try RunOutput(directory: $0) }
        let studentConfig = student.config
        let stepsPerEpoch = recipe.stepsPerEpoch
        // This process's shards of every global batch: rank r's emulated shard e is shard
        // r·emulatedRanks + e, so an emulated run and a real one deal the same shards.
        let loaders = try (0..<emulatedRanks).map {
            try recipe.makeTrainingLoader(data: data.train, student: studentConfig, config: config,
                                          rank: communicator.rank * emulatedRanks + $0, shards: shards)
        }
        for loader in loaders {
            loader.onSkippedImage = { [logger] skipped in
                logger.warning("skipped an unreadable training image (replaced by another): \(skipped.reason)")
            }
        }
        // The one-process loader's batch count: sharded samplers may pad an epoch (to a
        // multiple of the shards), and every rank must take the same number of steps.
        let singleSampler = try recipe.makeSampler(trainingSamples: data.train.count, seed: config.seed)
        func steps(in epoch: Int) -> Int {
            shards == 1 ? loaders[0].batchCount(epoch: epoch) : singleSampler.indices(epoch: epoch).count / config.batchSize
        }
        var history: [EpochMetrics] = []
        var best = (top1: -1.0, top5: 0.0, epoch: -1, isEMA: false)
        var resumed: (epoch: Int, progress: TrainingCheckpoint.Progress?)?
        if resume {
            // Under MPI only rank 0 has the run directory; it shares the checkpoint.
            guard output != nil || !communicator.isRoot else {
                throw TrainingError.invalidConfiguration("--resume needs an output directory")
            }
            resumed = try restore(from: output)
            if let output, let resumed {
                try output.truncateMetrics(after: resumed.epoch, partialStep: resumed.progress?.step)
                history = output.readMetrics()
                if let b = history.max(by: { max($0.top1, $0.top1EMA ?? -1) < max($1.top1, $1.top1EMA ?? -1) }) {
                    let emaBetter = (b.top1EMA ?? -1) > b.top1
                    best = (emaBetter ? b.top1EMA! : b.top1, emaBetter ? b.top5EMA! : b.top5, b.epoch, emaBetter)
                }
                logger.info("resuming after epoch \(resumed.epoch)\(resumed.progress.map { ", step \($0.step) of the next" } ?? "")",
                            metadata: ["directory": "\(output.directory.path)"])
            } else if let output, resumed == nil {
                logger.warning("--resume: nothing committed in \(output.directory.path) yet; starting from scratch")
            }
        }
        if let output, resumed == nil {
            try output.start(config: config, recipe: recipe, student: studentConfig, teacher: distiller?.teacher.config,
                             teacherPrecision: distiller?.precision, data: data)
        }
        let startEpoch = (resumed?.epoch ?? -1) + 1
        var manifest = try output?.manifest()
        emit(.started(epoch: startEpoch, totalEpochs: totalEpochs, stepsPerEpoch: stepsPerEpoch, recipe: recipe))
        var teacherTop1: Double?
        if let distiller {
            let result = try teacherEvaluation {
                try Evaluator.evaluate(student, on: data.validation, workers: config.workers,
                                       cropFraction: data.evaluationCropFraction, communicator: communicator) { x in
                    distiller.logits(for: x)
                }
            }
            teacherTop1 = result.top1
            logger.info("teacher \(distiller.teacher.config.architecture): top-1 \(String(format: "%.2f", result.top1)) %")
            emit(.teacherEvaluated(result))
        }
        student.train()

        for epoch in startEpoch..<totalEpochs {
            // A mid-epoch checkpoint restores the epoch's running sums and its position.
            let progress = epoch == startEpoch ? resumed?.progress : nil
            let epochStart = ContinuousClock.now - .seconds(progress?.seconds ?? 0)
            var lossSum = progress?.lossSum ?? 0, lossCount = progress?.lossCount ?? 0, images = progress?.images ?? 0
            var lr = progress?.learningRate ?? 0
            let skippedBefore = progress?.skippedImages ?? 0
            var stepInEpoch = progress?.step ?? 0
            var lastCheckpoint = ContinuousClock.now
            var interval = (stepSeconds: 0.0, communicationSeconds: 0.0)  // since the last metrics line
            var epochWait = (stepSeconds: 0.0, communicationSeconds: 0.0)
            let epochBatches = loaders.map { $0.batches(epoch: epoch, startingAt: stepInEpoch) }
            defer { for batches in epochBatches { batches.cancel() } }
            let stepsThisEpoch = steps(in: epoch)
            var skippedSamples: Int { epochBatches.reduce(0) { $0 + $1.skippedSamples } }
            while stepInEpoch < stepsThisEpoch {
                var shardBatches: [Batch] = []
                for batches in epochBatches {
                    guard let batch = try batches.next() else { break }
                    shardBatches.append(batch)
                }
                guard shardBatches.count == epochBatches.count else { break }
                if cancelled.load(ordering: .relaxed) { throw TrainingError.cancelled }
                let result: TrainingStepResult
                do {
                    result = try trainingStep(shardBatches, step: epoch * stepsPerEpoch + stepInEpoch)
                } catch TrainingError.nonFiniteLoss {
                    let checkpoint = output.map(\.lastCheckpointURL.path).flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
                    logger.error("loss became NaN/Inf at epoch \(epoch), step \(stepInEpoch)")
                    throw TrainingError.nonFiniteLoss(epoch: epoch, step: stepInEpoch, lastCheckpoint: checkpoint)
                }
                stepInEpoch += 1
                lr = result.learningRate
                lossSum += result.loss; lossCount += 1; images += result.images
                let elapsed = seconds(since: epochStart)
                let imagesPerSecond = Double(images) / max(elapsed, 1e-9)
                interval.stepSeconds += result.seconds
                interval.communicationSeconds += result.communicationSeconds
                epochWait.stepSeconds += result.seconds
                epochWait.communicationSeconds += result.communicationSeconds
                if let output, stepInEpoch % max(1, logInterval) == 0 || stepInEpoch == stepsPerEpoch {
                    let waitShare = communicator.size > 1 ? interval.communicationSeconds / max(interval.stepSeconds, 1e-9) : nil
                    try output.append(IntervalMetrics(epoch: epoch, step: stepInEpoch, stepsPerEpoch: stepsPerEpoch,
                                                      loss: result.loss, lossAverage: lossSum / Double(lossCount), lr: lr,
                                                      imagesPerSecond: imagesPerSecond, communicationWaitShare: waitShare))
                    interval = (0, 0)
                }
                emit(.step(StepProgress(epoch: epoch, step: stepInEpoch, stepsPerEpoch: stepsPerEpoch, loss: result.loss,
                                        learningRate: lr, imagesPerSecond: imagesPerSecond, elapsedSeconds: elapsed)))
                if let output, let interval = checkpointInterval, stepInEpoch < stepsPerEpoch,
                   ContinuousClock.now - lastCheckpoint >= interval {
                    let position = TrainingCheckpoint.Progress(step: stepInEpoch, lossSum: lossSum, lossCount: lossCount,
                                                               images: images, seconds: elapsed, learningRate: lr,
                                                               skippedImages: skippedBefore + skippedSamples)
                    manifest = try commitPartial(position, epoch: epoch, to: output, after: manifest)
                    lastCheckpoint = ContinuousClock.now
                }
            }
            let trainSeconds = seconds(since: epochStart)
            let modelResult = try evaluate()
            var emaResult: EvaluationResult?
            if let ema = step.ema {
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
                                       imagesPerSecond: Double(images) / max(trainSeconds, 1e-9), bestTop1: best.top1,
                                       skippedImages: skippedBefore + skippedSamples,
                                       communicationWaitShare: communicator.size > 1
                                           ? epochWait.communicationSeconds / max(epochWait.stepSeconds, 1e-9) : nil)
            history.append(metrics)
            if let output {
                manifest = try commitEpoch(epoch, metrics: metrics, improved: improved, emaBetter: emaBetter,
                                           top1: epochBest.top1, to: output, after: manifest)
                try output.writeReport(history: history, teacherTop1: teacherTop1, config: config, recipe: recipe,
                                       student: studentConfig, teacher: distiller?.teacher.config, data: data,
                                       totalEpochs: totalEpochs)
            }
            logger.info("epoch \(epoch): top-1 \(String(format: "%.2f", modelResult.top1)) %, best \(String(format: "%.2f", best.top1)) %")
            emit(.epochFinished(metrics))
        }
        let report = TrainingReport(bestTop1: best.top1, bestTop5: best.top5, bestEpoch: best.epoch, bestIsEMA: best.isEMA,
                                    teacherTop1: teacherTop1, epochs: history, seconds: seconds(since: clock),
                                    bestWeightsPath: output?.bestWeightsURL.path, reportPath: output?.reportURL.path)
        emit(.finished(report))
        return report
    }

    // MARK: - Commits and resume

    /// Loads the last committed state (a mid-epoch checkpoint when it is newer than the last
    /// epoch's), verifying its checksum; nil when nothing was committed.
    /// Data-parallel: rank 0 (`output`) reads it and every rank loads rank 0's bytes.
    private func restore(from output: RunOutput?) throws -> (epoch: Int, progress: TrainingCheckpoint.Progress?)? {
        let found = try CheckpointSharing.share(over: communicator) { () -> CheckpointSharing.Found? in
            guard let output, let manifest = try output.manifest() else { return nil }
            try output.apply(manifest)  // finishes a commit that a kill interrupted
            let url = manifest.partialStep != nil ? output.partialCheckpointURL : output.lastCheckpointURL
            return (try output.verifiedContents(of: url.lastPathComponent, in: manifest), url)
        }
        guard let (bytes, url) = found else { return nil }
        let state = try TrainingCheckpoint.load(bytes, source: url, student: student, optimizer: step.optimizer, ema: step.ema)
        try CheckpointSharing.checkShards(recorded: state.shards, ranks: communicator.size, emulatedRanks: emulatedRanks)
        try TrainingCheckpoint.validate(state, totalEpochs: totalEpochs, stepsPerEpoch: recipe.stepsPerEpoch)
        guard state.config == config else {
            throw TrainingError.invalidConfiguration("--resume: the checkpoint was written by a different configuration")
        }
        if case let .some(teacher) = state.teacher, teacher != teacherName {
            throw TrainingError.invalidConfiguration(
                "--resume: the checkpoint was trained \(teacher.map { "with the teacher \($0)" } ?? "without a teacher"), this run \(teacherName.map { "has the teacher \($0)" } ?? "has none")")
        }
        return (state.epoch, state.progress)
    }

    /// The teacher as checkpoints record it: its architecture, and its precision unless FP32
    /// (so a resumed run cannot silently switch the teacher's arithmetic).
    private var teacherName: String? {
        distiller.map { $0.precision == .float32 ? $0.teacher.config.architecture : "\($0.teacher.config.architecture) (\($0.precision.rawValue))" }
    }

    /// Commits an epoch: `last.safetensors`, and when the epoch is the best so far
    /// `checkpoint-best.safetensors` and `best.safetensors`, with the epoch's metrics line.
    private func commitEpoch(_ epoch: Int, metrics: EpochMetrics, improved: Bool, emaBetter: Bool, top1: Double,
                             to output: RunOutput, after previous: RunOutput.Manifest?) throws -> RunOutput.Manifest? {
        let checkpoint = try TrainingCheckpoint.encode(student: student, optimizer: step.optimizer, ema: step.ema,
                                                       epoch: epoch, config: config, classNames: data.classNames,
                                                       teacher: teacherName, ranks: communicator.size, shards: shards)
        var files = [(name: output.lastCheckpointURL.lastPathComponent, data: checkpoint)]
        if improved {
            let metadata = weightsMetadata(top1: top1, epoch: epoch, isEMA: emaBetter).dictionary
            let weights = emaBetter && step.ema != nil
                ? try withWeights(of: step.ema!) { try SafeTensors.encode(student.stateDict(), metadata: metadata) }
                : try SafeTensors.encode(student.stateDict(), metadata: metadata)
            files.append((output.bestCheckpointURL.lastPathComponent, checkpoint))
            files.append((output.bestWeightsURL.lastPathComponent, weights))
        }
        return try output.commit(epoch: epoch, files: files, metricsLine: RunOutput.line(metrics), partialStep: nil,
                                 carrying: previous)
    }

    /// Commits a mid-epoch checkpoint of epoch `epoch` at `position`.
    private func commitPartial(_ position: TrainingCheckpoint.Progress, epoch: Int, to output: RunOutput,
                               after previous: RunOutput.Manifest?) throws -> RunOutput.Manifest? {
        let checkpoint = try TrainingCheckpoint.encode(student: student, optimizer: step.optimizer, ema: step.ema,
                                                       epoch: epoch - 1, config: config, classNames: data.classNames,
                                                       teacher: teacherName, progress: position,
                                                       ranks: communicator.size, shards: shards)
        logger.debug("mid-epoch checkpoint at epoch \(epoch), step \(position.step)")
        return try output.commit(epoch: epoch - 1, files: [(output.partialCheckpointURL.lastPathComponent, checkpoint)],
                                 metricsLine: previous?.metricsLine, partialStep: position.step, carrying: previous)
    }

    private func emit(_ event: TrainingEvent) { onEvent?(event) }

    /// The student's accuracy on the validation split.
    private func evaluate() throws -> EvaluationResult {
        try Evaluator.evaluate(student, on: data.validation, workers: config.workers, cropFraction: data.evaluationCropFraction,
                               communicator: communicator)
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

    private func weightsMetadata(top1: Double, epoch: Int, isEMA: Bool) -> WeightsMetadata {
        var metadata = WeightsMetadata(describing: student.config)
        metadata.top1 = top1
        metadata.epoch = epoch
        metadata.isEMA = isEMA
        metadata.dataset = data.name
        metadata.classNames = data.classNames
        return metadata
    }
}
