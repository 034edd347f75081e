import Foundation

/// An optimiser: updates named parameters in place from their gradients.
///
/// Conforming types implement only the per-parameter update (``update(_:gradient:name:group:)``)
/// and their state export/import; ``step()`` walks the ``parameterGroups`` and calls the
/// update for every parameter that has a gradient. As in PyTorch, a parameter whose
/// ``Tensor/grad`` is `nil` is skipped: neither it nor its state (moments, step count)
/// changes.
///
/// ```swift
/// let optimizer = AdamW(parameters: model.namedParameters().map { ($0.name, $0.tensor) },
///                       noWeightDecay: ["cls_token", "pos_embed"])
/// for epoch in 0..<schedule.totalEpochs {
///     optimizer.learningRate = Float(schedule.learningRate(epoch: epoch))
///     for batch in batches {
///         optimizer.zeroGradients()
///         crossEntropy(model(batch.images), labels: batch.labels).backward()
///         optimizer.step()
///     }
/// }
/// ```
public protocol Optimizer: AnyObject {
    /// The base learning rate; each group uses it times its ``ParameterGroup/learningRateScale``.
    /// Set it from a schedule before each epoch or step.
    var learningRate: Float { get set }

    /// The parameters this optimiser updates, grouped by their hyper-parameters.
    var parameterGroups: [ParameterGroup] { get }

    /// Updates one parameter in place from `gradient` (called by ``step()`` for each
    /// parameter whose gradient is not `nil`).
    /// - Parameters:
    ///   - parameter: The parameter tensor, updated in place.
    ///   - gradient: Its gradient (same shape).
    ///   - name: The parameter's dotted name (the key of its state).
    ///   - group: The group the parameter belongs to (weight decay, learning-rate scale).
    func update(_ parameter: Tensor, gradient: Tensor, name: String, group: ParameterGroup)

    /// Applies one optimisation step to every parameter that has a gradient.
    func step()

    /// Drops the gradient of every parameter (the next backward pass starts from zero).
    func zeroGradients()

    /// The optimiser's per-parameter state for a checkpoint, keyed `<parameter name>.<slot>`
    /// with PyTorch's slot names (`exp_avg`, `exp_avg_sq`, `step`, `momentum_buffer`).
    /// The tensors are copies.
    func exportState() -> OptimizerState

    /// Restores state written by ``exportState()``. Parameters absent from `state` start
    /// fresh (as parameters that never had a gradient).
    /// - Throws: ``OptimizerError`` when a key names no parameter of this optimiser, a slot
    ///   is unknown or incomplete, or a tensor's shape differs from its parameter's.
    func importState(_ state: OptimizerState) throws
}

extension Optimizer {
    /// Applies one optimisation step to every parameter that has a gradient.
    public func step() {
        for group in parameterGroups {
            for parameter in group.parameters {
                guard let gradient = parameter.tensor.grad else { continue }
                update(parameter.tensor, gradient: gradient, name: parameter.name, group: group)
            }
        }
    }

    /// Drops the gradient of every parameter.
    public func zeroGradients() {
        for group in parameterGroups {
            for parameter in group.parameters { parameter.tensor.zeroGrad() }
        }
    }

    /// Every parameter of every group, in group order.
    public var parameters: [(name: String, tensor: Tensor)] {
        parameterGroups.flatMap(\.parameters)
    }
}

/// Parameters that share hyper-parameters (PyTorch's `param_groups`).
public struct ParameterGroup {
    /// The parameters, under their dotted names.
    public var parameters: [(name: String, tensor: Tensor)]
    /// The weight-decay coefficient for this group (`0` for no decay).
    public var weightDecay: Float
    /// Multiplies the optimiser's ``Optimizer/learningRate`` for this group (timm's
    /// `lr_scale`, used for layer-wise learning-rate decay). `1` by default.
    public var learningRateScale: Float

    /// A group of parameters with the given weight decay and learning-rate scale.
    public init(parameters: [(name: String, tensor: Tensor)], weightDecay: Float, learningRateScale: Float = 1) {
        self.parameters = parameters
        self.weightDecay = weightDecay
        self.learningRateScale = learningRateScale
    }

    /// Splits parameters into a no-decay and a decay group as USI (timm's
    /// `param_groups_weight_decay`) does.
    ///
    /// A parameter gets no weight decay when it is one-dimensional or a scalar (rank ≤ 1:
    /// norm weights and biases), when its name ends in `.bias`, or when its name matches an
    /// entry of `noWeightDecay` (a model's `no_weight_decay()` names such as `cls_token`,
    /// `pos_embed`; entries may use the shell wildcards `*` and `?`, as timm's `fnmatch`).
    /// Every other parameter decays by `weightDecay`. Parameters that do not require a
    /// gradient (frozen) are left out, as timm does, so build the optimiser after freezing.
    ///
    /// The result holds the no-decay group first, then the decay group, omitting an empty
    /// one (timm's order). With `weightDecay == 0` everything lands in one no-decay group.
    /// - Parameters:
    ///   - parameters: The named parameters, e.g. `model.namedParameters()` as pairs.
    ///   - weightDecay: The decay coefficient of the decay group (USI: 2e-2).
    ///   - noWeightDecay: Names (or wildcard patterns) that never decay.
    ///   - excludeOneDimensional: Whether rank ≤ 1 parameters and `.bias` names are
    ///     excluded from decay (timm's `weight_decay_exclude_1d`, default `true`).
    public static func weightDecayGroups(_ parameters: [(name: String, tensor: Tensor)], weightDecay: Float,
                                         noWeightDecay: Set<String> = [],
                                         excludeOneDimensional: Bool = true) -> [ParameterGroup] {
        var decay: [(name: String, tensor: Tensor)] = []
        var noDecay: [(name: String, tensor: Tensor)] = []
        for parameter in parameters where parameter.tensor.requiresGrad {
            if weightDecay != 0 && appliesWeightDecay(name: parameter.name, shape: parameter.tensor.shape,
                                                      noWeightDecay: noWeightDecay,
                                                      excludeOneDimensional: excludeOneDimensional) {
                decay.append(parameter)
            } else {
                noDecay.append(parameter)
            }
        }
        var groups: [ParameterGroup] = []
        if !noDecay.isEmpty { groups.append(ParameterGroup(parameters: noDecay, weightDecay: 0)) }
        if !decay.isEmpty { groups.append(ParameterGroup(parameters: decay, weightDecay: weightDecay)) }
        return groups
    }

    /// Whether USI's grouping (``weightDecayGroups(_:weightDecay:noWeightDecay:excludeOneDimensional:)``)
    /// decays a parameter with this name and shape.
    public static func appliesWeightDecay(name: String, shape: [Int], noWeightDecay: Set<String> = [],
                                          excludeOneDimensional: Bool = true) -> Bool {
        if excludeOneDimensional && (shape.count <= 1 || name.hasSuffix(".bias")) { return false }
        if noWeightDecay.contains(name) { return false }
        return !noWeightDecay.contains { wildcardMatch(pattern: Array($0.utf8), text: Array(name.utf8)) }
    }

    /// Shell-style match of `*` (any run) and `?` (one character); other characters literal.
    static func wildcardMatch(pattern: [UInt8], text: [UInt8]) -> Bool {
        var p = 0, t = 0, starP = -1, starT = 0
        while t < text.count {
            if p < pattern.count && (pattern[p] == UInt8(ascii: "?") || pattern[p] == text[t]) {
                p += 1; t += 1
            } else if p < pattern.count && pattern[p] == UInt8(ascii: "*") {
                starP = p; starT = t; p += 1
            } else if starP >= 0 {
                p = starP + 1; starT += 1; t = starT
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }

    /// Checks that parameter names are unique across `groups` (state is keyed by name).
    static func validateUniqueNames(_ groups: [ParameterGroup], _ optimizer: String) {
        var seen = Set<String>()
        for group in groups {
            for parameter in group.parameters {
                precondition(seen.insert(parameter.name).inserted,
                             "\(optimizer): parameter name '\(parameter.name)' appears twice")
            }
        }
    }
}

/// An optimiser's state for checkpoints: per-parameter tensors and integer counters, keyed
/// `<parameter name>.<slot>` with PyTorch's slot names.
public struct OptimizerState: Sendable {
    /// Float state, e.g. `layer1.0.conv1.weight.exp_avg`.
    public var tensors: [String: Tensor]
    /// Integer state, e.g. `layer1.0.conv1.weight.step`.
    public var counters: [String: Int64]

    /// A state holding the given tensors and counters.
    public init(tensors: [String: Tensor] = [:], counters: [String: Int64] = [:]) {
        self.tensors = tensors
        self.counters = counters
    }

    /// Records for ``SafeTensors/write(_:metadata:to:)``: tensors as F32, counters as I64
    /// (shape `[]`), every key prefixed with `prefix`.
    public func safeTensorsRecords(prefix: String = "optimizer.") -> [String: SafeTensorsRecord] {
        var records: [String: SafeTensorsRecord] = [:]
        for (key, tensor) in tensors { records[prefix + key] = SafeTensorsRecord(tensor) }
        for (key, value) in counters { records[prefix + key] = SafeTensorsRecord(int64: [value], shape: []) }
        return records
    }

    /// Reads back the entries of `file` whose names start with `prefix` (written by
    /// ``safeTensorsRecords(prefix:)``): integer entries become counters, the rest tensors.
    /// - Throws: ``SafeTensorsError`` when an entry cannot be read, ``OptimizerError`` when an
    ///   integer entry does not hold exactly one value.
    public init(file: SafeTensorsFile, prefix: String = "optimizer.") throws {
        var tensors: [String: Tensor] = [:], counters: [String: Int64] = [:]
        for (name, entry) in file.entries where name.hasPrefix(prefix) {
            let key = String(name.dropFirst(prefix.count))
            switch entry.dtype {
            case .int64, .int32, .int16, .int8, .uint8:
                let values = try file.integers(name)
                guard values.count == 1 else {
                    throw OptimizerError("\(file.source): optimizer counter '\(name)' holds \(values.count) values, expected 1")
                }
                counters[key] = values[0]
            default:
                tensors[key] = try file.tensor(name)
            }
        }
        self.init(tensors: tensors, counters: counters)
    }
}

/// A failure restoring optimiser or EMA state (a checkpoint that does not fit the model).
public struct OptimizerError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, naming the offending key.
    public let description: String

    /// An error with the given message.
    public init(_ description: String) { self.description = description }
}

/// Shared import logic: splits `state` by parameter, checks names, slots and shapes, and
/// hands each parameter's slots to `restore`.
func importPerParameterState(_ state: OptimizerState, optimizer: String, groups: [ParameterGroup],
                             tensorSlots: [String], counterSlots: [String],
                             restore: (_ name: String, _ tensors: [String: Tensor], _ counters: [String: Int64]) -> Void) throws {
    var shapes: [String: [Int]] = [:]
    for group in groups { for p in group.parameters { shapes[p.name] = p.tensor.shape } }
    func split(_ key: String, _ slots: [String]) -> (name: String, slot: String)? {
        for slot in slots where key.hasSuffix("." + slot) {
            return (String(key.dropLast(slot.count + 1)), slot)
        }
        return nil
    }
    var tensorsByName: [String: [String: Tensor]] = [:]
    var countersByName: [String: [String: Int64]] = [:]
    for (key, tensor) in state.tensors {
        guard let (name, slot) = split(key, tensorSlots) else {
            throw OptimizerError("\(optimizer) state: '\(key)' is not a known state tensor (slots: \(tensorSlots.joined(separator: ", ")))")
        }
        guard let shape = shapes[name] else { throw OptimizerError("\(optimizer) state: '\(key)' names no parameter of this optimizer") }
        guard tensor.shape == shape else {
            throw OptimizerError("\(optimizer) state: '\(key)' has shape \(tensor.shape), parameter '\(name)' has \(shape)")
        }
        tensorsByName[name, default: [:]][slot] = tensor
    }
    for (key, value) in state.counters {
        guard let (name, slot) = split(key, counterSlots) else {
            throw OptimizerError("\(optimizer) state: '\(key)' is not a known counter (slots: \(counterSlots.joined(separator: ", ")))")
        }
        guard shapes[name] != nil else { throw OptimizerError("\(optimizer) state: '\(key)' names no parameter of this optimizer") }
        // A counter past 2^48 steps is no run's; bounding it keeps the next `+= 1` from trapping.
        guard (0...(Int64(1) << 48)).contains(value) else { throw OptimizerError("\(optimizer) state: '\(key)' is out of range (\(value))") }
        countersByName[name, default: [:]][slot] = value
    }
    for name in Set(tensorsByName.keys).union(countersByName.keys).sorted() {
        let tensors = tensorsByName[name] ?? [:], counters = countersByName[name] ?? [:]
        let missing = tensorSlots.filter { tensors[$0] == nil } + counterSlots.filter { counters[$0] == nil }
        guard missing.isEmpty else {
            throw OptimizerError("\(optimizer) state for '\(name)' is incomplete: missing \(missing.map { "\(name).\($0)" }.joined(separator: ", "))")
        }
    }
    for name in Set(tensorsByName.keys).union(countersByName.keys).sorted() {
        restore(name, tensorsByName[name] ?? [:], countersByName[name] ?? [:])
    }
}
