extension BuiltInModels {
    /// Registers timm's `convnext_atto`, `convnext_tiny` and `convnext_small` with their default
    /// configs (the first pretrained tag of each in timm 1.0.31: `d2_in1k`, `in12k_ft_in1k`,
    /// `in12k_ft_in1k`).
    static func registerConvNeXts() {
        let entries: [(String, ConvNeXt.Architecture, Double)] = [
            ("convnext_atto", .atto, 0.875),
            ("convnext_tiny", .tiny, 0.95),
            ("convnext_small", .small, 0.95),
        ]
        for (name, architecture, crop) in entries {
            Models.register(name, family: "cnn",
                            defaultConfig: BackboneConfig(architecture: name, inputSize: 224, cropFraction: crop,
                                                          interpolation: .bicubic)) { config in
                ConvNeXt(config: config, architecture: architecture)
            }
        }
    }
}
