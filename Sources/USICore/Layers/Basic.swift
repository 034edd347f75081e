/// Passes its input through.
public final class Identity: Module, UnaryLayer {
    /// Creates the layer.
    public override init() { super.init() }
    /// Returns `x`.
    public func callAsFunction(_ x: Tensor) -> Tensor { x }
}

/// Runs layers in order; children are named `0`, `1`, … as PyTorch's `nn.Sequential`.
public final class Sequential: Module, UnaryLayer {
    /// The layers, in order (keys `0`, `1`, … directly under the container's own).
    @ModuleInfo(key: "") public private(set) var layers: [any UnaryLayer]

    /// Creates the container.
    public init(_ layers: [any UnaryLayer]) {
        _layers.wrappedValue = layers
        super.init()
    }

    /// Applies every layer in turn.
    public func callAsFunction(_ x: Tensor) -> Tensor { layers.reduce(x) { $1($0) } }
}

/// Layers applied in order under names given at run time (`b1`, `b2`, … as timm's
/// `add_module` names them), where ``Sequential`` would key them by position.
public final class NamedSequential: Module, UnaryLayer {
    /// Held in a struct so that reflection does not also see them as an array child.
    private struct Entries { var list: [(name: String, layer: any UnaryLayer)] }
    private let entries: Entries

    /// The layers, in order.
    public var layers: [any UnaryLayer] { entries.list.map(\.layer) }

    /// Creates the container; names must be unique.
    public init(_ layers: [(name: String, layer: any UnaryLayer)]) {
        precondition(Set(layers.map(\.name)).count == layers.count, "NamedSequential: names must be unique")
        entries = Entries(list: layers)
        super.init()
    }

    /// Each layer under its name.
    public override var containedModules: [(name: String, module: Module)] {
        entries.list.map { ($0.name, $0.layer) }
    }

    /// Applies every layer in turn.
    public func callAsFunction(_ x: Tensor) -> Tensor { entries.list.reduce(x) { $1.layer($0) } }
}

/// A pointwise nonlinearity as a layer.
public final class ActivationLayer: Module, UnaryLayer {
    /// The function applied.
    public let activation: Activation
    /// Creates the layer.
    public init(_ activation: Activation) {
        self.activation = activation
        super.init()
    }
    /// Applies the activation.
    public func callAsFunction(_ x: Tensor) -> Tensor { activation(x) }
}

/// Inverted dropout in training mode; identity in eval mode.
public final class Dropout: Module, UnaryLayer, StochasticLayer {
    /// Probability of zeroing an element.
    public let probability: Float
    private var generator: RandomGenerator

    /// Creates the layer; its random stream is seeded by `seed` until
    /// ``Module/reseedStochasticLayers(seed:step:)`` restarts it.
    public init(probability: Float, seed: UInt64 = 0) {
        self.probability = probability
        generator = RandomGenerator(seed: seed, stream: [0xD20])
        super.init()
    }

    /// Restarts the layer's random stream.
    public func reseed(_ generator: RandomGenerator) { self.generator = generator }

    /// Applies dropout when training.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        dropout(x, probability: probability, training: isTraining, generator: &generator)
    }
}

/// Stochastic depth for residual branches (timm's `DropPath`).
public final class DropPath: Module, UnaryLayer, StochasticLayer {
    /// Probability of dropping a sample's branch.
    public let probability: Float
    private var generator: RandomGenerator

    /// Creates the layer; its random stream is seeded by `seed` until
    /// ``Module/reseedStochasticLayers(seed:step:)`` restarts it.
    public init(probability: Float, seed: UInt64 = 0) {
        self.probability = probability
        generator = RandomGenerator(seed: seed, stream: [0xD1A7])
        super.init()
    }

    /// Restarts the layer's random stream.
    public func reseed(_ generator: RandomGenerator) { self.generator = generator }

    /// Drops whole samples when training.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        dropPath(x, probability: probability, training: isTraining, generator: &generator)
    }

    /// timm's stochastic-depth schedule, `torch.linspace(0, rate, count)`: the rate grows
    /// linearly from 0 at the first block to `rate` at the last.
    public static func linearRates(_ rate: Float, count: Int) -> [Float] {
        (0..<count).map { count > 1 ? rate * Float($0) / Float(count - 1) : 0 }
    }
}

/// Max pooling as a layer.
public final class MaxPool2d: Module, UnaryLayer {
    let kernel: (Int, Int), stride: (Int, Int), padding: Padding, ceilMode: Bool
    /// Creates the layer (stride defaults to the kernel size).
    public init(kernelSize: Int, stride: Int? = nil, padding: Padding = .valid, ceilMode: Bool = false) {
        kernel = (kernelSize, kernelSize)
        self.stride = (stride ?? kernelSize, stride ?? kernelSize)
        self.padding = padding
        self.ceilMode = ceilMode
        super.init()
    }
    /// Pools `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        maxPool2d(x, kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)
    }
}

/// Average pooling as a layer.
public final class AvgPool2d: Module, UnaryLayer {
    let kernel: (Int, Int), stride: (Int, Int), padding: Padding, ceilMode: Bool, countIncludePad: Bool
    /// Creates the layer (stride defaults to the kernel size).
    public init(kernelSize: Int, stride: Int? = nil, padding: Padding = .valid, ceilMode: Bool = false,
                countIncludePad: Bool = true) {
        kernel = (kernelSize, kernelSize)
        self.stride = (stride ?? kernelSize, stride ?? kernelSize)
        self.padding = padding
        self.ceilMode = ceilMode
        self.countIncludePad = countIncludePad
        super.init()
    }
    /// Pools `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        avgPool2d(x, kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode, countIncludePad: countIncludePad)
    }
}

/// Global average pooling `[N, H, W, C]` → `[N, C]`.
public final class GlobalAvgPool: Module, UnaryLayer {
    /// Creates the layer.
    public override init() { super.init() }
    /// Averages over the spatial axes.
    public func callAsFunction(_ x: Tensor) -> Tensor { globalAvgPool2d(x) }
}
