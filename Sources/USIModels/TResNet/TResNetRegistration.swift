extension BuiltInModels {
    /// Registers timm's `tresnet_m`, `tresnet_l` and `tresnet_v2_l` with their default config
    /// (timm 1.0.31: 224 px, crop 0.875, bilinear, mean 0 and std 1 — TResNet normalises inside
    /// its training pipeline, so its inputs are plain [0, 1] pixels).
    static func registerTResNets() {
        let entries: [(String, TResNet.Architecture)] = [("tresnet_m", .m), ("tresnet_l", .l), ("tresnet_v2_l", .v2L)]
        for (name, architecture) in entries {
            let config = BackboneConfig(architecture: name, inputSize: 224, mean: [0, 0, 0], standardDeviation: [1, 1, 1],
                                        cropFraction: 0.875, interpolation: .bilinear)
            Models.register(name, family: "cnn", defaultConfig: config) { config in
                guard config.inputSize % 4 == 0 else {
                    throw ModelError(description: "\(name) needs an input size divisible by 4 (space-to-depth), got \(config.inputSize)")
                }
                return TResNet(config: config, architecture: architecture)
            }
        }
    }
}
