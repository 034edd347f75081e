import USICore

extension BuiltInModels {
    /// Registers DeiT-Tiny, DeiT-Small and ViT-Small (patch 16, 224 px) with timm's default
    /// configs. Other input sizes (multiples of 16) build a position embedding for that grid.
    static func registerVisionTransformers() {
        let variants: [(name: String, architecture: VisionTransformer.Architecture, mean: [Float]?, std: [Float]?)] = [
            ("deit_tiny_patch16_224", .tiny16, nil, nil),
            ("deit_small_patch16_224", .small16, nil, nil),
            ("vit_small_patch16_224", .small16, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
        for variant in variants {
            let config = BackboneConfig(architecture: variant.name, inputSize: 224, mean: variant.mean,
                                        standardDeviation: variant.std, cropFraction: 0.9, interpolation: .bicubic)
            let architecture = variant.architecture
            Models.register(variant.name, family: "transformer", defaultConfig: config, flexibleInputSize: true) { config in
                try VisionTransformer(config: config, architecture: architecture)
            }
        }
    }
}
