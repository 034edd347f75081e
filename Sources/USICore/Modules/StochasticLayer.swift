/// A layer whose training-mode output is random: dropout, stochastic depth.
///
/// The trainer restarts every such layer's stream before each step from the run's seed, the
/// step and the layer's path in the module tree, so masks are independent across layers and a
/// resumed run draws exactly the masks the uninterrupted run would have drawn.
public protocol StochasticLayer: AnyObject {
    /// Replaces the layer's random stream.
    func reseed(_ generator: RandomGenerator)
}

/// The stochastic layers of a module tree with their paths, collected once so that restarting
/// them every step does not walk the tree (``TrainingStep`` keeps one).
public struct StochasticLayers {
    private let layers: [(key: UInt64, layer: any StochasticLayer)]

    /// Collects every ``StochasticLayer`` under `module`.
    public init(of module: Module) {
        layers = module.namedModules().compactMap { path, child in
            (child as? any StochasticLayer).map { (Self.pathKey(path), $0) }
        }
    }

    /// The number of layers.
    public var count: Int { layers.count }

    /// Restarts every layer for training step `step` of a run seeded with `seed`; each layer's
    /// stream also depends on its dotted path.
    public func reseed(seed: UInt64, step: Int) {
        for (key, layer) in layers {
            layer.reseed(RandomGenerator(seed: seed, stream: [0x5354_4F43, UInt64(step), key]))
        }
    }

    /// FNV-1a of the path: stable across runs and processes, unlike `Hasher`.
    private static func pathKey(_ path: String) -> UInt64 {
        path.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }
}

extension Module {
    /// Restarts every ``StochasticLayer`` in the tree for training step `step` of a run seeded
    /// with `seed`; each layer's stream also depends on its dotted path. ``TrainingStep`` does
    /// this before every forward pass.
    public func reseedStochasticLayers(seed: UInt64, step: Int) {
        StochasticLayers(of: self).reseed(seed: seed, step: step)
    }
}
