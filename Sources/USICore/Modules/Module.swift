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
/// Registration is explicit — a subclass calls ``register(_:_:)``,
/// ``registerParameter(_:_:layout:)`` and ``registerBuffer(_:_:layout:)`` in its initialiser —
/// so collecting parameters walks a small list, never reflects over properties.
///
/// ```swift
/// final class Block: Module, UnaryLayer {
///     let conv: Conv2d, norm: BatchNorm
///     init(channels: Int) {
///         conv = Conv2d(inputChannels: channels, outputChannels: channels, kernelSize: 3, padding: .symmetric(1))
///         norm = BatchNorm(channels)
///         super.init()
///         register("conv", conv)
///         register("norm", norm)
///     }
///     func callAsFunction(_ x: Tensor) -> Tensor { relu(norm(conv(x))) + x }
/// }
/// ```
open class Module {
    /// `true` in training mode (batch statistics, dropout); see ``train(_:)``.
    public private(set) var isTraining = true
    private var childModules: [(name: String, module: Module)] = []
    private var ownParameters: [(name: String, tensor: Tensor, layout: FileLayout)] = []
    private var ownBuffers: [(name: String, tensor: Tensor, layout: FileLayout)] = []

    /// Creates an empty module.
    public init() {}

    /// Adds (or replaces) a child module under `name`.
    public func register(_ name: String, _ module: Module) {
        if let i = childModules.firstIndex(where: { $0.name == name }) {
            childModules[i].module = module
        } else {
            childModules.append((name, module))
        }
    }

    /// Adds a trainable parameter under `name` (it is marked `requiresGrad`).
    public func registerParameter(_ name: String, _ tensor: Tensor, layout: FileLayout = .identical) {
        tensor.requiresGrad = true
        ownParameters.removeAll { $0.name == name }
        ownParameters.append((name, tensor, layout))
    }

    /// Adds a non-trainable buffer (running statistics, counters) under `name`.
    public func registerBuffer(_ name: String, _ tensor: Tensor, layout: FileLayout = .identical) {
        ownBuffers.removeAll { $0.name == name }
        ownBuffers.append((name, tensor, layout))
    }

    /// Direct children, in registration order.
    public var children: [(name: String, module: Module)] { childModules }

    /// Every module in the tree with its dotted path (`""` for this one), parents first.
    public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
        var result = [(prefix, self)]
        for (name, child) in childModules {
            result += child.namedModules(prefix: prefix.isEmpty ? name : "\(prefix).\(name)")
        }
        return result
    }

    /// Every parameter in the tree under its dotted name, in registration order.
    public func namedParameters() -> [NamedTensor] {
        namedModules().flatMap { path, module in
            module.ownParameters.map { NamedTensor(name: Module.join(path, $0.name), tensor: $0.tensor, layout: $0.layout) }
        }
    }

    /// Every buffer in the tree under its dotted name.
    public func namedBuffers() -> [NamedTensor] {
        namedModules().flatMap { path, module in
            module.ownBuffers.map { NamedTensor(name: Module.join(path, $0.name), tensor: $0.tensor, layout: $0.layout) }
        }
    }

    /// Parameters then buffers: everything a `state_dict` holds.
    public func namedTensors() -> [NamedTensor] { namedParameters() + namedBuffers() }

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

    static func join(_ prefix: String, _ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
}

/// A module with one tensor in and one tensor out.
public protocol UnaryLayer: Module {
    /// Runs the layer.
    func callAsFunction(_ x: Tensor) -> Tensor
}
