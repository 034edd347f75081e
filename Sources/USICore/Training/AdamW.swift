import CUSIKernels

/// Adam with decoupled weight decay, with `torch.optim.AdamW` semantics (non-AMSGrad).
///
/// For each parameter `p` with gradient `g`, at its step count `t` (1 after its first update):
/// ```
/// p  ← p · (1 − lr·wd)                       decoupled decay (wd of the parameter's group)
/// m  ← β₁·m + (1 − β₁)·g                     exp_avg
/// v  ← β₂·v + (1 − β₂)·g²                    exp_avg_sq
/// p  ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
/// The loop runs in C (`usi_adamw_step`) over the parameter's flat storage. Moments are
/// allocated at a parameter's first update; a parameter with no gradient is skipped and
/// its step count does not advance (as in PyTorch, each parameter counts its own steps).
///
/// The defaults are USI's: learning rate 2e-3, betas (0.9, 0.999), ε 1e-8, weight decay 2e-2
/// with no decay on rank ≤ 1 parameters, `.bias` names and the model's `noWeightDecay` names.
public final class AdamW: Optimizer {
    /// The base learning rate (times each group's ``ParameterGroup/learningRateScale``).
    public var learningRate: Float
    /// The decay rates of the first and second moment estimates (β₁, β₂).
    public var betas: (Float, Float)
    /// Added to the denominator for numerical stability (ε).
    public var epsilon: Float
    /// The parameters, grouped by weight decay.
    public let parameterGroups: [ParameterGroup]

    final class Slot {
        let expAverage: Tensor
        let expAverageSquare: Tensor
        var step: Int64 = 0
        init(shape: [Int]) {
            expAverage = Tensor.zeros(shape)
            expAverageSquare = Tensor.zeros(shape)
        }
    }

    private var slots: [String: Slot] = [:]

    /// An AdamW over explicit parameter groups.
    /// - Parameters:
    ///   - groups: The parameter groups (names must be unique across groups).
    ///   - learningRate: The base learning rate (≥ 0).
    ///   - betas: (β₁, β₂), each in [0, 1).
    ///   - epsilon: ε (≥ 0).
    public init(groups: [ParameterGroup], learningRate: Float = 2e-3, betas: (Float, Float) = (0.9, 0.999),
                epsilon: Float = 1e-8) {
        precondition(learningRate >= 0, "AdamW: learning rate \(learningRate) is negative")
        precondition((0..<1).contains(betas.0) && (0..<1).contains(betas.1), "AdamW: betas \(betas) are outside [0, 1)")
        precondition(epsilon >= 0, "AdamW: epsilon \(epsilon) is negative")
        ParameterGroup.validateUniqueNames(groups, "AdamW")
        self.parameterGroups = groups
        self.learningRate = learningRate
        self.betas = betas
        self.epsilon = epsilon
    }

    /// An AdamW over named parameters with USI's weight-decay groups (see
    /// ``ParameterGroup/weightDecayGroups(_:weightDecay:noWeightDecay:excludeOneDimensional:)``).
    /// - Parameters:
    ///   - parameters: The named parameters (dotted timm names), e.g.
    ///     `model.namedParameters().map { ($0.name, $0.tensor) }`.
    ///   - learningRate: The base learning rate (USI: 2e-3).
    ///   - betas: (β₁, β₂) (USI: 0.9, 0.999).
    ///   - epsilon: ε (USI: 1e-8).
    ///   - weightDecay: Decoupled weight decay of the decay group (USI: 2e-2).
    ///   - noWeightDecay: Names (or `*`/`?` patterns) that never decay, e.g. `cls_token`.
    public convenience init(parameters: [(name: String, tensor: Tensor)], learningRate: Float = 2e-3,
                            betas: (Float, Float) = (0.9, 0.999), epsilon: Float = 1e-8, weightDecay: Float = 2e-2,
                            noWeightDecay: Set<String> = []) {
        self.init(groups: ParameterGroup.weightDecayGroups(parameters, weightDecay: weightDecay, noWeightDecay: noWeightDecay),
                  learningRate: learningRate, betas: betas, epsilon: epsilon)
    }

    /// The number of updates applied to the parameter `name` (0 before its first).
    public func stepCount(of name: String) -> Int { Int(slots[name]?.step ?? 0) }

    /// One AdamW update of `parameter` (called by ``Optimizer/step()``).
    public func update(_ parameter: Tensor, gradient: Tensor, name: String, group: ParameterGroup) {
        precondition(gradient.count == parameter.count, "AdamW: gradient \(gradient.shape) for parameter '\(name)' \(parameter.shape)")
        let slot: Slot
        if let existing = slots[name] {
            slot = existing
        } else {
            slot = Slot(shape: parameter.shape)
            slots[name] = slot
        }
        slot.step += 1
        withExtendedLifetime((parameter, gradient, slot)) {
            usi_adamw_step(parameter.pointer, gradient.pointer, slot.expAverage.pointer, slot.expAverageSquare.pointer,
                           parameter.count, learningRate * group.learningRateScale, betas.0, betas.1, epsilon,
                           group.weightDecay, slot.step)
        }
    }

    /// Copies of the moments and step counts: `<name>.exp_avg`, `<name>.exp_avg_sq`
    /// (tensors, the parameter's shape) and `<name>.step` (counter), for every parameter
    /// updated at least once.
    public func exportState() -> OptimizerState {
        var state = OptimizerState()
        for (name, slot) in slots {
            state.tensors["\(name).exp_avg"] = slot.expAverage.copy()
            state.tensors["\(name).exp_avg_sq"] = slot.expAverageSquare.copy()
            state.counters["\(name).step"] = slot.step
        }
        return state
    }

    /// Restores moments and step counts from ``exportState()`` (values are copied).
    /// Parameters absent from `state` start fresh.
    /// - Throws: ``OptimizerError`` for unknown names or slots, incomplete state or shape
    ///   mismatches; nothing is changed then.
    public func importState(_ state: OptimizerState) throws {
        var restored: [String: Slot] = [:]
        try importPerParameterState(state, optimizer: "AdamW", groups: parameterGroups,
                                    tensorSlots: ["exp_avg", "exp_avg_sq"], counterSlots: ["step"]) { name, tensors, counters in
            let shape = tensors["exp_avg"]!.shape
            let slot = Slot(shape: shape)
            slot.expAverage.assign(tensors["exp_avg"]!)
            slot.expAverageSquare.assign(tensors["exp_avg_sq"]!)
            slot.step = counters["step"]!
            restored[name] = slot
        }
        slots = restored
    }
}
