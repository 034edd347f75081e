import Foundation

/// Linear warmup, cosine decay, then a cooldown at the minimum: timm's `CosineLRScheduler`
/// exactly as USI's train.py creates it (`create_scheduler_v2(sched: "cosine", …)` with
/// `warmup_prefix=False`, one cycle, no noise, `k_decay = 1`).
///
/// With `t` in epochs, `T = epochs`, `W = warmupEpochs`:
/// ```
/// t < W:       lr = warmupLearningRate + t · (baseLearningRate − warmupLearningRate) / W
/// W ≤ t < T:   lr = minimumLearningRate + ½ (baseLearningRate − minimumLearningRate)(1 + cos(π t / T))
/// t ≥ T:       lr = minimumLearningRate        (the cooldown epochs, and anything later)
/// ```
/// The warmup is not a prefix: the cosine is evaluated at the absolute `t`, so it starts
/// slightly below `baseLearningRate` at `t = W`, exactly as timm does. A run lasts
/// ``totalEpochs`` = `epochs + cooldownEpochs` epochs (timm's returned `num_epochs`).
///
/// USI: base 2e-3, warmup 5 epochs from 1e-4, minimum 1e-6, 300 epochs + 10 cooldown.
public struct CosineLearningRateSchedule: Sendable, Hashable, Codable {
    /// The peak learning rate the warmup climbs to (timm: the optimiser's initial lr).
    public var baseLearningRate: Double
    /// The length of the cosine (timm's `t_initial` = `num_epochs`), warmup included.
    public var epochs: Int
    /// Epochs of linear warmup (timm's `warmup_t`); 0 for none.
    public var warmupEpochs: Int
    /// The learning rate at epoch 0 (timm's `warmup_lr_init`).
    public var warmupLearningRate: Double
    /// The floor the cosine decays to and the cooldown holds (timm's `lr_min`).
    public var minimumLearningRate: Double
    /// Epochs at ``minimumLearningRate`` after ``epochs``.
    public var cooldownEpochs: Int

    /// A schedule; the defaults are USI's.
    /// - Parameters:
    ///   - baseLearningRate: Peak learning rate (> 0).
    ///   - epochs: Length of warmup + cosine (> 0).
    ///   - warmupEpochs: Linear warmup length (≥ 0).
    ///   - warmupLearningRate: Learning rate at epoch 0 of the warmup.
    ///   - minimumLearningRate: The cosine's floor (≥ 0).
    ///   - cooldownEpochs: Extra epochs at the floor (≥ 0).
    public init(baseLearningRate: Double = 2e-3, epochs: Int = 300, warmupEpochs: Int = 5,
                warmupLearningRate: Double = 1e-4, minimumLearningRate: Double = 1e-6, cooldownEpochs: Int = 10) {
        precondition(epochs > 0, "CosineLearningRateSchedule: epochs must be positive, got \(epochs)")
        precondition(warmupEpochs >= 0 && cooldownEpochs >= 0, "CosineLearningRateSchedule: negative warmup or cooldown")
        precondition(minimumLearningRate >= 0, "CosineLearningRateSchedule: negative minimum learning rate")
        self.baseLearningRate = baseLearningRate
        self.epochs = epochs
        self.warmupEpochs = warmupEpochs
        self.warmupLearningRate = warmupLearningRate
        self.minimumLearningRate = minimumLearningRate
        self.cooldownEpochs = cooldownEpochs
    }

    /// USI's schedule for a run of `epochs` cosine epochs (plus 10 cooldown epochs).
    public static func usi(epochs: Int, baseLearningRate: Double = 2e-3) -> CosineLearningRateSchedule {
        CosineLearningRateSchedule(baseLearningRate: baseLearningRate, epochs: epochs)
    }

    /// The number of epochs a run lasts: ``epochs`` + ``cooldownEpochs``.
    public var totalEpochs: Int { epochs + cooldownEpochs }

    /// The learning rate for epoch `epoch` (0-based), stepped per epoch as timm's
    /// `scheduler.step(epoch)` sets it: the value used for the whole of that epoch.
    public func learningRate(epoch: Int) -> Double {
        value(at: Double(epoch), length: Double(epochs), warmup: Double(warmupEpochs))
    }

    /// The learning rate at a fractional epoch, for per-step schedules: call it with
    /// `Double(update) / Double(updatesPerEpoch)` before each optimiser update.
    ///
    /// This is timm's per-update schedule (`sched_on_updates`, `t_in_epochs=False`), which
    /// measures warmup, cosine and cooldown in updates (`t = num_updates`, every length times
    /// `updates_per_epoch`); the two agree up to rounding. ``learningRate(step:stepsPerEpoch:)``
    /// evaluates timm's integer form exactly.
    public func learningRate(epoch: Double) -> Double {
        value(at: epoch, length: Double(epochs), warmup: Double(warmupEpochs))
    }

    /// The learning rate for optimiser update `step` (0-based, counted from the start of the
    /// run) when the schedule is stepped per update with `stepsPerEpoch` updates per epoch —
    /// exactly timm's `step_update(num_updates)` with `t_in_epochs=False` (timm sets this
    /// value after update `step` completes, so it is used by update `step`, 0-based, and the
    /// first update uses `learningRate(step: 0, …)` = ``warmupLearningRate``).
    public func learningRate(step: Int, stepsPerEpoch: Int) -> Double {
        precondition(stepsPerEpoch > 0, "learningRate(step:stepsPerEpoch:): stepsPerEpoch must be positive")
        return value(at: Double(step), length: Double(epochs * stepsPerEpoch), warmup: Double(warmupEpochs * stepsPerEpoch))
    }

    /// Sets `optimizer.learningRate` to the value for `epoch` and returns it.
    @discardableResult
    public func apply(to optimizer: Optimizer, epoch: Double) -> Double {
        let lr = learningRate(epoch: epoch)
        optimizer.learningRate = Float(lr)
        return lr
    }

    /// timm `CosineLRScheduler._get_lr(t)` with `warmup_prefix=False`, `cycle_mul = 1`,
    /// `cycle_limit = 1`, `k_decay = 1` (same order of floating-point operations).
    private func value(at t: Double, length: Double, warmup: Double) -> Double {
        if warmup > 0 && t < warmup {
            let warmupStep = (baseLearningRate - warmupLearningRate) / warmup
            return warmupLearningRate + t * warmupStep
        }
        let cycle = (t / length).rounded(.down)  // timm: i = t // t_initial
        if cycle >= 1 { return minimumLearningRate }  // i >= cycle_limit: cooldown
        let current = t - length * cycle
        return minimumLearningRate + 0.5 * (baseLearningRate - minimumLearningRate) * (1 + cos(Double.pi * current / length))
    }
}
