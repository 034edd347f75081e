import CUSIKernels
import Foundation

/// An exponential moving average of named tensors (a model's parameters and float buffers),
/// with timm `ModelEmaV2`/`ModelEmaV3` semantics.
///
/// Call ``update()`` after every optimiser step: each average becomes
/// `ema = d·ema + (1 − d)·value` (computed as PyTorch's `ema.lerp_(value, 1 − d)`, in C).
/// Integer counters such as BatchNorm's `num_batches_tracked` are copied, not averaged.
/// Evaluate the averaged model by writing the averages into a second model with
/// `copy(into:)`.
///
/// ```swift
/// let ema = ExponentialMovingAverage(model.namedTensors(),
///                                    decay: ExponentialMovingAverage.decay(timeConstant: 10 * stepsPerEpoch))
/// // after each optimizer.step():
/// ema.update()
/// // to evaluate:
/// try ema.copy(into: evalModel.namedTensors())
/// ```
///
/// The decay `d`:
/// - by default it is ``decay`` at every update (timm `ModelEmaV2`, or V3 without `step`);
/// - with a ``Warmup`` (timm V3 `use_warmup`) or an ``updateAfterStep``, it follows
///   ``decay(atStep:)`` — timm V3's `get_decay(step)` — with `step` the number of updates so
///   far including this one (timm's train.py passes `num_updates`).
public final class ExponentialMovingAverage {
    /// timm ModelEmaV3's decay warmup: `d(step) = 1 − (1 + step/gamma)^(−power)`, capped by
    /// ``ExponentialMovingAverage/decay`` and floored by ``ExponentialMovingAverage/minimumDecay``.
    public struct Warmup: Sendable, Hashable {
        /// timm `warmup_gamma` (the inverse of the step scale).
        public var gamma: Double
        /// timm `warmup_power`: 2/3 suits runs of ~1M steps, 3/4 shorter runs.
        public var power: Double

        /// A warmup with timm's defaults (`gamma` 1, `power` 2/3).
        public init(gamma: Double = 1, power: Double = 2.0 / 3.0) {
            self.gamma = gamma
            self.power = power
        }
    }

    struct Entry {
        let name: String
        let source: Tensor
        let average: Tensor
        let copied: Bool
    }

    /// The decay per update (its cap during a warmup).
    public var decay: Double
    /// The floor of the warmed-up decay (timm `min_decay`).
    public var minimumDecay: Double
    /// Updates at or before this step (plus one) copy instead of averaging (timm
    /// `update_after_step`).
    public var updateAfterStep: Int
    /// The decay warmup, or `nil` for a constant decay.
    public var warmup: Warmup?
    /// The number of updates applied (the `step` of the last ``update(step:)``).
    public private(set) var stepCount: Int = 0
    /// The decay used by the last update (`nil` before the first).
    public private(set) var lastDecay: Double?

    private let entries: [Entry]
    private let index: [String: Int]

    /// Starts averages at the current values of `tensors`.
    /// - Parameters:
    ///   - tensors: The tensors to follow, by name; they are read at every ``update()``.
    ///   - decay: The decay per update, in [0, 1] (see ``decay(timeConstant:)``).
    ///   - copiedNames: Names of integer counters to copy rather than average; names ending
    ///     in `num_batches_tracked` are always copied.
    ///   - warmup: timm V3's decay warmup, or `nil`.
    ///   - minimumDecay: The floor of the warmed-up decay.
    ///   - updateAfterStep: Updates up to this step (plus one) copy the values.
    public init(_ tensors: [(name: String, tensor: Tensor)], decay: Double, copiedNames: Set<String> = [],
                warmup: Warmup? = nil, minimumDecay: Double = 0, updateAfterStep: Int = 0) {
        precondition((0...1).contains(decay), "ExponentialMovingAverage: decay \(decay) is outside [0, 1]")
        var index: [String: Int] = [:]
        self.entries = tensors.enumerated().map { i, t in
            precondition(index.updateValue(i, forKey: t.name) == nil, "ExponentialMovingAverage: name '\(t.name)' appears twice")
            let copied = copiedNames.contains(t.name) || t.name == "num_batches_tracked" || t.name.hasSuffix(".num_batches_tracked")
            return Entry(name: t.name, source: t.tensor, average: t.tensor.copy(), copied: copied)
        }
        self.index = index
        self.decay = decay
        self.minimumDecay = minimumDecay
        self.updateAfterStep = updateAfterStep
        self.warmup = warmup
    }

    /// Starts averages at the current values of a module's tensors (`namedTensors()`);
    /// tensors laid out as ``FileLayout/integerCounter`` are copied, not averaged.
    public convenience init(_ tensors: [NamedTensor], decay: Double, warmup: Warmup? = nil,
                            minimumDecay: Double = 0, updateAfterStep: Int = 0) {
        self.init(tensors.map { ($0.name, $0.tensor) }, decay: decay,
                  copiedNames: Set(tensors.filter { $0.layout == .integerCounter }.map(\.name)),
                  warmup: warmup, minimumDecay: minimumDecay, updateAfterStep: updateAfterStep)
    }

    /// The decay for an update at `step` (1-based), timm ModelEmaV3's `get_decay(step)`:
    /// `nil` gives ``decay``; otherwise with `s = max(0, step − updateAfterStep − 1)`, `0` when
    /// `s == 0` (the update copies), else ``decay`` or, with a ``warmup``,
    /// `max(min(1 − (1 + s/gamma)^(−power), decay), minimumDecay)`.
    public func decay(atStep step: Int?) -> Double {
        guard let step else { return decay }
        let s = max(0, step - updateAfterStep - 1)
        if s <= 0 { return 0 }
        guard let warmup else { return decay }
        let warmed = 1 - pow(1 + Double(s) / warmup.gamma, -warmup.power)
        return max(min(warmed, decay), minimumDecay)
    }

    /// Folds the current values into the averages (after an optimiser step). Uses ``decay``,
    /// or ``decay(atStep:)`` at the next step when a ``warmup`` or ``updateAfterStep`` is set.
    public func update() {
        let next = stepCount + 1
        apply(decay: (warmup != nil || updateAfterStep > 0) ? decay(atStep: next) : decay, step: next)
    }

    /// Folds the current values into the averages with the decay of timm V3's
    /// `update(model, step: step)`, i.e. ``decay(atStep:)``; sets ``stepCount`` to `step`.
    public func update(step: Int) {
        apply(decay: decay(atStep: step), step: step)
    }

    private func apply(decay d: Double, step: Int) {
        for entry in entries {
            withExtendedLifetime(entry) {
                precondition(entry.source.count == entry.average.count,
                             "ExponentialMovingAverage: '\(entry.name)' changed size from \(entry.average.shape) to \(entry.source.shape)")
                if entry.copied {
                    entry.average.assign(entry.source)
                } else {
                    usi_ema_update(entry.average.pointer, entry.source.pointer, entry.average.count, d)
                }
            }
        }
        stepCount = step
        lastDecay = d
    }

    /// Resets every average to the current value of its tensor (timm's `set`).
    public func reset() {
        for entry in entries { entry.average.assign(entry.source) }
    }

    /// The names followed, in the order given.
    public var names: [String] { entries.map(\.name) }

    /// The averaged tensors by name, in the order given (live tensors: copy before keeping
    /// them across updates). Use them for evaluation or a checkpoint.
    public var averages: [(name: String, tensor: Tensor)] { entries.map { ($0.name, $0.average) } }

    /// The average of the tensor named `name`, or `nil` when it is not followed.
    public subscript(name: String) -> Tensor? { index[name].map { entries[$0].average } }

    /// Writes the averages into `tensors` by name (e.g. an evaluation copy of the model).
    /// - Throws: ``OptimizerError`` when a name is not followed or a shape differs; nothing
    ///   is written then.
    public func copy(into tensors: [(name: String, tensor: Tensor)]) throws {
        var pairs: [(Tensor, Tensor)] = []
        for target in tensors {
            guard let i = index[target.name] else {
                throw OptimizerError("EMA: no average for '\(target.name)'")
            }
            let average = entries[i].average
            guard average.shape == target.tensor.shape else {
                throw OptimizerError("EMA: '\(target.name)' has shape \(target.tensor.shape), its average \(average.shape)")
            }
            pairs.append((target.tensor, average))
        }
        for (target, average) in pairs { target.assign(average) }
    }

    /// Writes the averages into a module's tensors (`namedTensors()`) by name.
    /// - Throws: ``OptimizerError`` when a name is not followed or a shape differs.
    public func copy(into tensors: [NamedTensor]) throws {
        try copy(into: tensors.map { ($0.name, $0.tensor) })
    }

    /// Copies of the averages by name, for a checkpoint (with ``stepCount``).
    public func exportState() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.average.copy()) })
    }

    /// Restores averages and the step count from a checkpoint. Every followed name must be
    /// present with its shape; extra names are an error.
    /// - Throws: ``OptimizerError`` naming missing, unexpected or mis-shaped entries; nothing
    ///   is changed then.
    public func importState(_ averages: [String: Tensor], stepCount: Int) throws {
        let missing = entries.map(\.name).filter { averages[$0] == nil }
        let unexpected = averages.keys.filter { index[$0] == nil }.sorted()
        guard missing.isEmpty && unexpected.isEmpty else {
            throw OptimizerError("EMA state does not match: missing [\(missing.joined(separator: ", "))], unexpected [\(unexpected.joined(separator: ", "))]")
        }
        for entry in entries where averages[entry.name]!.shape != entry.average.shape {
            throw OptimizerError("EMA state: '\(entry.name)' has shape \(averages[entry.name]!.shape), expected \(entry.average.shape)")
        }
        guard (0...(1 << 48)).contains(stepCount) else { throw OptimizerError("EMA state: step count \(stepCount) is out of range") }
        for entry in entries { entry.average.assign(averages[entry.name]!) }
        self.stepCount = stepCount
    }

    /// The decay whose average has a time constant of `steps` updates: `exp(−1/steps)`.
    ///
    /// An impulse then fades by a factor e over `steps` updates; `1 − 1/steps` agrees to
    /// O(1/steps²) (for USI's 0.99996, `steps` = 25 000). Use it to size the EMA to a run:
    /// e.g. a few epochs' worth of optimiser steps on a small dataset.
    public static func decay(timeConstant steps: Double) -> Double {
        precondition(steps > 0, "decay(timeConstant:): steps must be positive")
        return exp(-1 / steps)
    }

    /// The time constant, in updates, of `decay`: `−1/ln(decay)` (the inverse of
    /// ``decay(timeConstant:)``).
    public static func timeConstant(decay: Double) -> Double {
        -1 / log(decay)
    }
}
