extension BuiltInModels {
    /// Registers timm's `resnet10t`, `resnet18`, `resnet26`, `resnet34` and `resnet50` with their
    /// default configs (the first pretrained tag of each in timm 1.0.31).
    static func registerResNets() {
        let entries: [(String, ResNet.Architecture, Int, Double)] = [
            ("resnet10t", .resnet10t, 176, 0.875),  // c3_in1k
            ("resnet18", .resnet18, 224, 0.95),     // a1_in1k
            ("resnet26", .resnet26, 224, 0.875),    // bt_in1k
            ("resnet34", .resnet34, 224, 0.95),     // a1_in1k
            ("resnet50", .resnet50, 224, 0.95),     // a1_in1k
        ]
        for (name, architecture, size, crop) in entries {
            Models.register(name, family: "cnn",
                            defaultConfig: BackboneConfig(architecture: name, inputSize: size, cropFraction: crop,
                                                          interpolation: .bicubic)) { config in
                ResNet(config: config, architecture: architecture)
            }
        }
    }
}
