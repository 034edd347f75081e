import CUSIKernels

/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and (coupled, L2)
/// weight decay, with `torch.optim.SGD` semantics.
///
/// For each parameter `p` with gradient `g` (weight decay `wd` of its group, momentum `μ`,
/// dampening `τ`):
/// ```
/// d ← g + wd·p
/// b ← d                          at the parameter's first update (momentum_buffer)
/// b ← μ·b + (1 − τ)·d            afterwards
/// d ← d + μ·b  (Nesterov)   or   d ← b
/// p ← p − lr·d
/// ```
/// With `momentum == 0` there is no buffer and `d = g + wd·p`. The loop runs in C
/// (`usi_sgd_step`). A parameter with no gradient is skipped.
public final class SGD: Optimizer {
    /// The base learning rate (times each group's ``ParameterGroup/learningRateScale``).
    public var learningRate: Float
    /// The momentum factor μ (0 = plain SGD).
    public let momentum: Float
    /// The dampening τ of the momentum update.
    public let dampening: Float
    /// Whether the update uses Nesterov momentum.
    public let nesterov: Bool
    /// The parameters, grouped by weight decay.
    public let parameterGroups: [ParameterGroup]

    private var buffers: [String: Tensor] = [:]

    /// An SGD over explicit parameter groups.
    /// - Parameters:
    ///   - groups: The parameter groups (names must be unique across groups).
    ///   - learningRate: The base learning rate (≥ 0).
    ///   - momentum: μ (≥ 0).
    ///   - dampening: τ; must be 0 with Nesterov momentum.
    ///   - nesterov: Use Nesterov momentum (needs `momentum > 0`, as in PyTorch).
    public init(groups: [ParameterGroup], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                nesterov: Bool = false) {
        precondition(learningRate >= 0, "SGD: learning rate \(learningRate) is negative")
        precondition(momentum >= 0, "SGD: momentum \(momentum) is negative")
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires a momentum and zero dampening")
        ParameterGroup.validateUniqueNames(groups, "SGD")
        self.parameterGroups = groups
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    /// An SGD over named parameters with USI's weight-decay groups (see
    /// ``ParameterGroup/weightDecayGroups(_:weightDecay:noWeightDecay:excludeOneDimensional:)``).
    /// - Parameters:
    ///   - parameters: The named parameters (dotted timm names).
    ///   - learningRate: The base learning rate.
    ///   - momentum: μ (0 = plain SGD).
    ///   - dampening: τ.
    ///   - nesterov: Use Nesterov momentum.
    ///   - weightDecay: L2 weight decay of the decay group (added to the gradient).
    ///   - noWeightDecay: Names (or `*`/`?` patterns) that never decay.
    public convenience init(parameters: [(name: String, tensor: Tensor)], learningRate: Float, momentum: Float = 0,
                            dampening: Float = 0, nesterov: Bool = false, weightDecay: Float = 0,
                            noWeightDecay: Set<String> = []) {
        self.init(groups: ParameterGroup.weightDecayGroups(parameters, weightDecay: weightDecay, noWeightDecay: noWeightDecay),
                  learningRate: learningRate, momentum: momentum, dampening: dampening, nesterov: nesterov)
    }

    /// One SGD update of `parameter` (called by ``Optimizer/step()``).
    public func update(_ parameter: Tensor, gradient: Tensor, name: String, group: ParameterGroup) {
        precondition(gradient.count == parameter.count, "SGD: gradient \(gradient.shape) for parameter '\(name)' \(parameter.shape)")
        var buffer: Tensor?
        var first = false
        if momentum != 0 {
            if let existing = buffers[name] {
                buffer = existing
            } else {
                let created = Tensor(uninitializedShape: parameter.shape)
                buffers[name] = created
                buffer = created
                first = true
            }
        }
        withExtendedLifetime((parameter, gradient, buffer)) {
            usi_sgd_step(parameter.pointer, gradient.pointer, buffer?.pointer, parameter.count,
                         learningRate * group.learningRateScale, momentum, dampening, group.weightDecay,
                         nesterov ? 1 : 0, first ? 1 : 0)
        }
    }

    /// Copies of the momentum buffers, `<name>.momentum_buffer`, for every parameter updated
    /// at least once (empty without momentum).
    public func exportState() -> OptimizerState {
        OptimizerState(tensors: Dictionary(uniqueKeysWithValues: buffers.map { ("\($0.key).momentum_buffer", $0.value.copy()) }))
    }

    /// Restores momentum buffers from ``exportState()`` (values are copied).
    /// - Throws: ``OptimizerError`` for unknown names or slots or shape mismatches.
    public func importState(_ state: OptimizerState) throws {
        var restored: [String: Tensor] = [:]
        try importPerParameterState(state, optimizer: "SGD", groups: parameterGroups,
                                    tensorSlots: ["momentum_buffer"], counterSlots: []) { name, tensors, _ in
            restored[name] = tensors["momentum_buffer"]!.copy()
        }
        buffers = momentum != 0 ? restored : [:]
    }
}
