import USICore

extension BuiltInModels {
    /// Registers Swin-T and Swin-S (patch 4, window 7, 224 px) with timm's default configs
    /// (crop 0.9, bicubic, ImageNet mean/std). Another input size builds the stages for its
    /// grid, as timm's `img_size` does.
    static func registerSwinTransformers() {
        let variants: [(String, SwinTransformer.Architecture)] = [
            ("swin_tiny_patch4_window7_224", .tiny), ("swin_small_patch4_window7_224", .small),
        ]
        for (name, architecture) in variants {
            let config = BackboneConfig(architecture: name, inputSize: 224, cropFraction: 0.9, interpolation: .bicubic)
            Models.register(name, family: "transformer", defaultConfig: config, flexibleInputSize: true) { config in
                try SwinTransformer(config: config, architecture: architecture)
            }
        }
    }
}
