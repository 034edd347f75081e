import USICore

extension BuiltInModels {
    /// Registers LeViT-128S, -256 and -384 (timm's distilled `LevitDistilled` models, two heads)
    /// with timm's default configs. Another input size changes the attention-bias tables.
    static func registerLeViTs() {
        let variants: [(String, LeViT.Architecture)] = [
            ("levit_128s", .levit128s), ("levit_256", .levit256), ("levit_384", .levit384),
        ]
        for (name, architecture) in variants {
            let config = BackboneConfig(architecture: name, inputSize: 224, cropFraction: 0.9, interpolation: .bicubic)
            Models.register(name, family: "transformer", defaultConfig: config, flexibleInputSize: true) { config in
                try LeViT(config: config, architecture: architecture)
            }
        }
    }
}
