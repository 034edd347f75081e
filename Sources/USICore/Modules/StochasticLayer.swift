/// A layer whose training-mode output is random: dropout, stochastic depth.
///
/// The trainer restarts every such layer's stream before each step from the run's seed, the
/// step and the layer's path in the module tree, so masks are independent across layers and a
/// resumed run draws exactly the masks the uninterrupted run would have drawn.
public protocol StochasticLayer: AnyObject {
    /// Replaces the layer's random stream.
    func reseed(_ generator: RandomGenerator)
}

extension Module {
    /// Restarts every ``StochasticLayer`` in the tree for training step `step` of a run seeded
    /// with `seed`; each layer's stream also depends on its dotted path. Call it before each
    /// training forward pass when you drive training yourself.
    public func reseedStochasticLayers(seed: UInt64, step: Int) {
        for (path, module) in namedModules() {
            guard let layer = module as? StochasticLayer else { continue }
            layer.reseed(RandomGenerator(seed: seed, stream: [0x5354_4F43, UInt64(step), Self.pathKey(path)]))
        }
    }

    /// FNV-1a of the path: stable across runs and processes, unlike `Hasher`.
    private static func pathKey(_ path: String) -> UInt64 {
        path.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }
}
