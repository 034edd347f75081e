/// How a tensor is laid out in a PyTorch `state_dict` relative to its layout here.
public enum FileLayout: Sendable, Hashable {
    /// The same in memory and in the file.
    case identical
    /// A convolution weight: OHWI here, OIHW in the file.
    case convolutionWeight
    /// An integer counter kept as a float here and stored as I64 (`num_batches_tracked`).
    case integerCounter
}

/// A named tensor a module owns: a trainable parameter or a buffer (running statistics).
public struct NamedTensor {
    /// The dotted PyTorch/timm key, e.g. `layer1.0.bn1.running_mean`.
    public let name: String
    /// The tensor (updated in place by optimisers and loaders).
    public let tensor: Tensor
    /// Its layout at the file boundary.
    public let layout: FileLayout
}

/// The base class of layers and models: owns parameters, buffers and child modules under
/// PyTorch/timm names, and switches between training and evaluation.
///
/// Everything is declared once, where it is stored; the module finds it by reflection:
/// - a stored property holding a `Module` (or an optional one, or an array of them) is a
///   child under the property's name, or under the key of ``ModuleInfo`` when the name differs
///   (arrays add `.0`, `.1`, … as PyTorch's `ModuleList`);
/// - a tensor is a trainable ``Parameter``, a ``Buffer`` (running statistics), or a
///   ``Constant`` that is neither trained nor saved. A stored `Tensor` with none of the three
///   stops the program with its type and property name, so a weight cannot be silently left
///   out of training and of the `state_dict`.
///
/// ```swift
/// final class Block: Module, UnaryLayer {
///     let conv: Conv2d
///     @ModuleInfo(key: "bn") var norm: BatchNorm
///     @Parameter var gamma: Tensor
///     init(channels: Int) {
///         conv = Conv2d(inputChannels: channels, outputChannels: channels, kernelSize: 3, padding: .symmetric(1))
///         norm = BatchNorm(channels)
///         gamma = Tensor(shape: [channels], repeating: 1e-6)
///     }
///     func callAsFunction(_ x: Tensor) -> Tensor { relu(norm(conv(x))) * gamma + x }
/// }
/// ```
/// Its `state_dict` keys are `conv.weight`, `conv.bias`, `bn.weight`, …, `gamma`.
open class Module {
    /// `true` in training mode (batch statistics, dropout); see ``train(_:)``.
    public private(set) var isTraining = true

    /// Creates an empty module.
    public init() {}

    /// Children that are not stored properties, for containers such as ``Sequential`` whose
    /// keys are positions or names given at run time. Stored properties need no entry here.
    open var containedModules: [(name: String, module: Module)] { [] }

    /// Direct children: stored module properties in declaration order (a superclass's first),
    /// then ``containedModules``.
    public var children: [(name: String, module: Module)] {
        declaredState().compactMap { if case let .module(module) = $0.value { ($0.key, module) } else { nil } }
    }

    /// Every module in the tree with its dotted path (`""` for this one), parents first.
    public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
        var result = [(prefix, self)]
        for (name, child) in children {
            result += child.namedModules(prefix: Module.join(prefix, name))
        }
        return result
    }

    /// Every parameter in the tree under its dotted name, in declaration order.
    public func namedParameters() -> [NamedTensor] { namedState().parameters }

    /// Every buffer in the tree under its dotted name.
    public func namedBuffers() -> [NamedTensor] { namedState().buffers }

    /// Parameters then buffers: everything a `state_dict` holds.
    public func namedTensors() -> [NamedTensor] {
        let state = namedState()
        return state.parameters + state.buffers
    }

    /// The number of parameter elements.
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Switches this module and its children to training (`true`) or evaluation mode.
    public func train(_ training: Bool = true) {
        for (_, module) in namedModules() { module.isTraining = training }
    }

    /// Switches to evaluation mode.
    public func eval() { train(false) }

    /// Stops gradients to every parameter (for a frozen teacher or a frozen trunk).
    public func freeze() { for p in namedParameters() { p.tensor.requiresGrad = false } }

    /// Lets gradients flow to every parameter again.
    public func unfreeze() { for p in namedParameters() { p.tensor.requiresGrad = true } }

    /// Drops every parameter's gradient.
    public func zeroGradients() { for p in namedParameters() { p.tensor.zeroGrad() } }

    /// `prefix.name`; an empty side adds no dot (a wrapper's own entry has suffix `""`, and key
    /// `""` puts a child's state directly under its parent).
    static func join(_ prefix: String, _ name: String) -> String {
        prefix.isEmpty ? name : name.isEmpty ? prefix : "\(prefix).\(name)"
    }

    // MARK: - Discovery

    /// Parameters and buffers of the tree, each module's own before its children's (as
    /// PyTorch's `named_parameters`), modules parents first. One walk reflects each module once
    /// (reflection is the cost here, so parameters and buffers are gathered together).
    private func namedState() -> (parameters: [NamedTensor], buffers: [NamedTensor]) {
        var parameters: [NamedTensor] = [], buffers: [NamedTensor] = []
        func visit(_ module: Module, _ path: String) {
            let entries = module.declaredState()
            for entry in entries {
                switch entry.value {
                case let .parameter(tensor, layout):
                    parameters.append(NamedTensor(name: Module.join(path, entry.key), tensor: tensor, layout: layout))
                case let .buffer(tensor, layout):
                    buffers.append(NamedTensor(name: Module.join(path, entry.key), tensor: tensor, layout: layout))
                case .module: break
                }
            }
            for entry in entries { if case let .module(child) = entry.value { visit(child, Module.join(path, entry.key)) } }
        }
        visit(self, "")
        return (parameters, buffers)
    }

    /// This module's own state and children, read from its stored properties.
    ///
    /// Reflection runs on every call, so a replaced child (a new classifier) or a tensor added
    /// later (the bias a folded BatchNorm gives a convolution) is always seen; callers on a hot
    /// path (the training step) collect what they need once.
    func declaredState() -> [(key: String, value: DeclaredValue)] {
        var entries: [(key: String, value: DeclaredValue)] = []
        var mirrors: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let m = mirror, m.subjectType != Module.self {
            mirrors.append(m)
            mirror = m.superclassMirror
        }
        for m in mirrors.reversed() {
            for child in m.children {
                guard let label = child.label else { continue }
                collect(label: label, value: child.value, into: &entries)
            }
        }
        for (name, module) in containedModules { entries.append((name, .module(module))) }
        return entries
    }

    private func collect(label: String, value: Any, into entries: inout [(key: String, value: DeclaredValue)]) {
        if let slot = value as? any DeclaredSlot {
            let key = slot.key ?? (label.hasPrefix("_") ? String(label.dropFirst()) : label)
            entries += slot.declaredValues().map { ($0.suffix.isEmpty ? key : Module.join(key, $0.suffix), $0.value) }
        } else if let module = value as? Module {
            entries.append((label, .module(module)))
        } else if let modules = value as? [Module] {
            entries += modules.enumerated().map { (Module.join(label, String($0.offset)), .module($0.element)) }
        } else if value is Tensor || value is Tensor? || value is [Tensor] {
            if case .some(.none) = value as? Tensor? { return }  // an absent optional tensor
            // fatalError, not preconditionFailure: an optimised build drops a precondition's
            // message and leaves a bare "Illegal instruction", which names nothing.
            fatalError("""
                \(type(of: self)).\(label) stores a Tensor that is not declared: mark it @Parameter (trained and \
                saved), @Buffer (saved, not trained) or @Constant (neither)
                """)
        }
    }
}

/// What a stored property contributes to its module.
enum DeclaredValue {
    case module(Module)
    case parameter(Tensor, FileLayout)
    case buffer(Tensor, FileLayout)
}

/// A property wrapper that contributes declared state under a key.
protocol DeclaredSlot {
    /// The state-dict key, or nil for the property's name.
    var key: String? { get }
    /// Entries relative to the key (`""` for the key itself, `"0"`, `"1"`, … for arrays).
    func declaredValues() -> [(suffix: String, value: DeclaredValue)]
}

/// A value that a ``Parameter`` or ``Buffer`` can hold: a tensor or an optional tensor.
public protocol TensorSlotValue {
    /// The tensor, if there is one.
    var slotTensor: Tensor? { get }
}

extension Tensor: TensorSlotValue {
    /// The tensor itself.
    public var slotTensor: Tensor? { self }
}

extension Optional: TensorSlotValue where Wrapped == Tensor {
    /// The wrapped tensor, if any.
    public var slotTensor: Tensor? { self }
}

/// A trainable tensor of a module, saved under its key (the property's name unless given).
/// Assigning a tensor marks it `requiresGrad`.
///
/// ```swift
/// @Parameter var bias: Tensor?
/// @Parameter(key: "cls_token") var classToken: Tensor
///
/// init(…) {
///     bias = Tensor(shape: [channels], repeating: 0)
///     _classToken.wrappedValue = Tensor(shape: [1, 1, width], repeating: 0)  // a keyed one, as mlx-swift
/// }
/// ```
/// A wrapper with arguments is created empty, so a designated initialiser sets it through
/// `_name.wrappedValue` before `super.init()`; reading it before that stops the program.
@propertyWrapper
public struct Parameter<Value: TensorSlotValue>: DeclaredSlot {
    /// The state-dict key (nil = the property's name).
    public let key: String?
    /// The layout at the file boundary.
    public let layout: FileLayout
    private var value: Value?

    /// The tensor.
    public var wrappedValue: Value {
        get { if let value { return value }; unset(Self.self) }
        set {
            newValue.slotTensor?.requiresGrad = true
            value = newValue
        }
    }

    /// Declares the parameter with an initial value.
    public init(wrappedValue: Value, key: String? = nil, layout: FileLayout = .identical) {
        wrappedValue.slotTensor?.requiresGrad = true
        self.value = wrappedValue
        self.key = key
        self.layout = layout
    }

    /// Declares the parameter; the initialiser sets it through `_name.wrappedValue`.
    public init(key: String? = nil, layout: FileLayout = .identical) {
        self.key = key
        self.layout = layout
    }

    func declaredValues() -> [(suffix: String, value: DeclaredValue)] {
        value?.slotTensor.map { [("", .parameter($0, layout))] } ?? []
    }
}

/// A tensor a module saves but does not train (running statistics, counters), under its key.
@propertyWrapper
public struct Buffer<Value: TensorSlotValue>: DeclaredSlot {
    /// The state-dict key (nil = the property's name).
    public let key: String?
    /// The layout at the file boundary.
    public let layout: FileLayout
    private var value: Value?

    /// The tensor.
    public var wrappedValue: Value {
        get { if let value { return value }; unset(Self.self) }
        set { value = newValue }
    }

    /// Declares the buffer with an initial value.
    public init(wrappedValue: Value, key: String? = nil, layout: FileLayout = .identical) {
        self.value = wrappedValue
        self.key = key
        self.layout = layout
    }

    /// Declares the buffer; the initialiser sets it through `_name.wrappedValue`.
    public init(key: String? = nil, layout: FileLayout = .identical) {
        self.key = key
        self.layout = layout
    }

    func declaredValues() -> [(suffix: String, value: DeclaredValue)] {
        value?.slotTensor.map { [("", .buffer($0, layout))] } ?? []
    }
}

/// A tensor a module keeps that is neither trained nor saved: a fixed filter, a cached index.
@propertyWrapper
public struct Constant<Value> {
    /// The value.
    public var wrappedValue: Value

    /// Declares the constant.
    public init(wrappedValue: Value) { self.wrappedValue = wrappedValue }
}

/// A child module (or an optional one, or an array of them) saved under a key other than the
/// property's name, e.g. timm's `drop_path` for a property `dropPath`. The key `""` puts an
/// array's elements directly under the module (`0`, `1`, … as `nn.Sequential`).
///
/// ```swift
/// @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil
/// @ModuleInfo(key: "blocks") var layers: [Block]   // blocks.0, blocks.1, …
///
/// init(…) {
///     _layers.wrappedValue = (0..<depth).map { _ in Block() }
///     dropPath = rate > 0 ? DropPath(probability: rate) : nil
/// }
/// ```
@propertyWrapper
public struct ModuleInfo<Value>: DeclaredSlot {
    /// The state-dict key.
    public let key: String?
    private var value: Value?

    /// The module(s).
    public var wrappedValue: Value {
        get { if let value { return value }; unset(Self.self) }
        set { value = newValue }
    }

    /// Declares the child under `key` with an initial value.
    public init(wrappedValue: Value, key: String) {
        self.value = wrappedValue
        self.key = key
    }

    /// Declares the child under `key`; the initialiser sets it through `_name.wrappedValue`.
    public init(key: String) { self.key = key }

    func declaredValues() -> [(suffix: String, value: DeclaredValue)] {
        guard let value else { return [] }
        if let module = value as? Module { return [("", .module(module))] }
        if let modules = value as? [Module] {
            return modules.enumerated().map { (String($0.offset), .module($0.element)) }
        }
        return []
    }
}

/// Reading a declared property that its initialiser never set is a bug in the module (a
/// fatalError, so the message survives optimised builds).
private func unset<W>(_ wrapper: W.Type) -> Never {
    fatalError("\(W.self) read before the module's initialiser set it (assign `_name.wrappedValue` before super.init())")
}

/// A module with one tensor in and one tensor out.
public protocol UnaryLayer: Module {
    /// Runs the layer.
    func callAsFunction(_ x: Tensor) -> Tensor
}
