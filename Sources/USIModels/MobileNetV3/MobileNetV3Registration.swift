extension BuiltInModels {
    /// Registers `mobilenetv3_small_050`, `mobilenetv3_small_100` and `mobilenetv3_large_100`
    /// with timm's default configs (224 px, ImageNet mean/std, crop 0.875, bicubic).
    static func registerMobileNetV3s() {
        let variants: [(String, MobileNetV3.Architecture)] = [
            ("mobilenetv3_small_050", .small050),
            ("mobilenetv3_small_100", .small100),
            ("mobilenetv3_large_100", .large100),
        ]
        for (name, architecture) in variants {
            Models.register(name, family: "mobile",
                            defaultConfig: BackboneConfig(architecture: name, inputSize: 224, cropFraction: 0.875,
                                                          interpolation: .bicubic)) { config in
                try MobileNetV3(config: config, architecture: architecture)
            }
        }
    }
}
