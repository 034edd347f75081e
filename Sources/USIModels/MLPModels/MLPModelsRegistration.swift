import USICore

extension BuiltInModels {
    /// Registers MLP-Mixer S/16 and B/16 and ResMLP-12 with timm's default configs. Another
    /// input size (a multiple of 16) changes the token-mixing widths (they equal the number of
    /// patches), so 224-px weights do not load into such a model.
    static func registerMLPModels() {
        let half: [Float] = [0.5, 0.5, 0.5]
        let variants: [(name: String, architecture: MlpMixer.Architecture, mean: [Float]?, std: [Float]?)] = [
            ("mixer_s16_224", .init(patchSize: 16, embedDim: 512, depth: 8, kind: .mixer), half, half),
            ("mixer_b16_224", .init(patchSize: 16, embedDim: 768, depth: 12, kind: .mixer), half, half),
            ("resmlp_12_224", .init(patchSize: 16, embedDim: 384, depth: 12, kind: .resMLP(initValues: 1e-4)), nil, nil),
        ]
        for variant in variants {
            let config = BackboneConfig(architecture: variant.name, inputSize: 224, mean: variant.mean,
                                        standardDeviation: variant.std, cropFraction: 0.875, interpolation: .bicubic)
            let architecture = variant.architecture
            Models.register(variant.name, family: "mlp", defaultConfig: config, flexibleInputSize: true) { config in
                try MlpMixer(config: config, architecture: architecture)
            }
        }
    }
}
