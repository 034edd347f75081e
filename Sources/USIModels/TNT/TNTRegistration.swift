import USICore

extension BuiltInModels {
    /// Registers TNT-S (patch 16, 224 px) with timm's default config: crop 0.9, bicubic,
    /// Inception mean/std (0.5). Another input size builds `patch_pos` for its grid.
    static func registerTNTs() {
        let name = "tnt_s_patch16_224"
        let config = BackboneConfig(architecture: name, inputSize: 224, mean: [0.5, 0.5, 0.5], standardDeviation: [0.5, 0.5, 0.5],
                                    cropFraction: 0.9, interpolation: .bicubic)
        Models.register(name, family: "transformer", defaultConfig: config, flexibleInputSize: true) { config in
            try TNT(config: config, architecture: .small)
        }
    }
}
