/// Progress of one optimiser step.
public struct StepProgress: Sendable {
    /// 0-based epoch.
    public var epoch: Int
    /// Steps done in this epoch (1-based).
    public var step: Int
    /// Steps per epoch.
    public var stepsPerEpoch: Int
    /// Loss of this step.
    public var loss: Double
    /// Learning rate used by this step.
    public var learningRate: Double
    /// Training images per second over the epoch so far.
    public var imagesPerSecond: Double
    /// Seconds since the epoch started.
    public var elapsedSeconds: Double
}

/// One epoch's results (a line of `metrics.jsonl`).
public struct EpochMetrics: Codable, Sendable {
    /// 0-based epoch.
    public var epoch: Int
    /// Learning rate at the end of the epoch.
    public var lr: Double
    /// Mean training loss.
    public var trainLoss: Double
    /// Top-1 of the model (percent).
    public var top1: Double
    /// Top-5 of the model.
    public var top5: Double
    /// Top-1 of the EMA weights (nil without EMA).
    public var top1EMA: Double?
    /// Top-5 of the EMA weights.
    public var top5EMA: Double?
    /// Wall-clock seconds of the epoch (training and validation).
    public var seconds: Double
    /// Training images per second.
    public var imagesPerSecond: Double
    /// Best top-1 so far (model or EMA).
    public var bestTop1: Double
    /// Training images that could not be decoded and were replaced by others this epoch.
    public var skippedImages: Int = 0
    /// Data-parallel runs: the share (0…1) of the epoch's step time that rank 0 spent blocked
    /// in collectives (see ``IntervalMetrics/communicationWaitShare``); nil on one process.
    public var communicationWaitShare: Double? = nil

    enum CodingKeys: String, CodingKey {
        case epoch, lr, trainLoss = "train_loss", top1, top5, top1EMA = "top1_ema", top5EMA = "top5_ema", seconds,
             imagesPerSecond = "img_s", bestTop1 = "best_top1", skippedImages = "skipped_images",
             communicationWaitShare = "comm_wait"
    }
}

/// Training progress at a log interval (a line of `metrics.jsonl` between the epoch lines).
public struct IntervalMetrics: Codable, Sendable, Equatable {
    /// 0-based epoch.
    public var epoch: Int
    /// Steps done in this epoch (1-based).
    public var step: Int
    /// Steps per epoch.
    public var stepsPerEpoch: Int
    /// Loss of the last step.
    public var loss: Double
    /// Mean loss over the epoch so far.
    public var lossAverage: Double
    /// Learning rate of the last step.
    public var lr: Double
    /// Training images per second over the epoch so far.
    public var imagesPerSecond: Double
    /// Data-parallel runs: the share (0…1) of the interval's step time that rank 0 spent
    /// blocked in collectives (the gradient reductions backward could not hide, the loss's
    /// all-reduce, the BatchNorm broadcast); nil on one process.
    public var communicationWaitShare: Double? = nil

    enum CodingKeys: String, CodingKey {
        case epoch, step, stepsPerEpoch = "steps_per_epoch", loss, lossAverage = "loss_avg", lr,
             imagesPerSecond = "img_s", communicationWaitShare = "comm_wait"
    }
}

/// What a finished run produced.
public struct TrainingReport: Codable, Sendable {
    /// Best validation top-1 (percent) over model and EMA.
    public var bestTop1: Double
    /// Its top-5.
    public var bestTop5: Double
    /// Epoch of the best result.
    public var bestEpoch: Int
    /// Whether the best came from the EMA weights.
    public var bestIsEMA: Bool
    /// The teacher's top-1 on the validation set (nil without a teacher).
    public var teacherTop1: Double?
    /// Every epoch.
    public var epochs: [EpochMetrics]
    /// Total wall-clock seconds.
    public var seconds: Double
    /// `best.safetensors` (timm-loadable weights of the better of model and EMA), when written.
    public var bestWeightsPath: String?
    /// `report.html`, when written.
    public var reportPath: String?
}

/// Events a running ``USITrainer`` emits, for progress displays and embedding apps.
public enum TrainingEvent: Sendable {
    /// Training starts (or resumes) at `epoch` of `totalEpochs`.
    case started(epoch: Int, totalEpochs: Int, stepsPerEpoch: Int, recipe: ResolvedRecipe)
    /// The teacher's accuracy was measured.
    case teacherEvaluated(EvaluationResult)
    /// An optimiser step finished.
    case step(StepProgress)
    /// An epoch finished and was validated and checkpointed.
    case epochFinished(EpochMetrics)
    /// The run finished.
    case finished(TrainingReport)
}
