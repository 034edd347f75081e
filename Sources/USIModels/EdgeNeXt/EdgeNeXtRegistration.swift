extension BuiltInModels {
    /// Registers `edgenext_small` with timm's default config (256 px, crop 0.95, bicubic,
    /// ImageNet mean/std — the USI-trained `edgenext_small.usi_in1k` weights).
    static func registerEdgeNeXts() {
        Models.register("edgenext_small", family: "mobile",
                        defaultConfig: BackboneConfig(architecture: "edgenext_small", inputSize: 256, cropFraction: 0.95,
                                                      interpolation: .bicubic)) { config in
            try EdgeNeXt(config: config, architecture: .small)
        }
    }
}
