extension BuiltInModels {
    /// Registers timm's `regnety_008` and `regnety_032` with their default configs (the first
    /// pretrained tag of each in timm 1.0.31: `pycls_in1k` crop 0.875, `ra_in1k` crop 0.95).
    static func registerRegNets() {
        let entries: [(String, RegNet.Architecture, Double)] = [
            ("regnety_008", .regnety008, 0.875),
            ("regnety_032", .regnety032, 0.95),
        ]
        for (name, architecture, crop) in entries {
            Models.register(name, family: "cnn",
                            defaultConfig: BackboneConfig(architecture: name, inputSize: 224, cropFraction: crop,
                                                          interpolation: .bicubic)) { config in
                RegNet(config: config, architecture: architecture)
            }
        }
    }
}
