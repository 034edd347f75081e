extension BuiltInModels {
    /// Registers `efficientnet_b0`, `efficientnet_lite0` and `tf_efficientnet_lite0` with timm's
    /// default configs (224 px, crop 0.875, bicubic; ImageNet mean/std, 0.5/0.5 for the `tf_` port).
    static func registerEfficientNets() {
        let variants: [(String, EfficientNet.Architecture, [Float]?, [Float]?)] = [
            ("efficientnet_b0", .b0, nil, nil),
            ("efficientnet_lite0", .lite0, nil, nil),
            ("tf_efficientnet_lite0", .tfLite0, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
        for (name, architecture, mean, std) in variants {
            Models.register(name, family: "mobile",
                            defaultConfig: BackboneConfig(architecture: name, inputSize: 224, mean: mean, standardDeviation: std,
                                                          cropFraction: 0.875, interpolation: .bicubic)) { config in
                try EfficientNet(config: config, architecture: architecture)
            }
        }
    }
}
