/// Registers every architecture this package ships; each family file adds one function.
enum BuiltInModels {
    static func registerAll() {
        registerResNets()
        registerConvNeXts()
        registerRegNets()
        registerTResNets()
        registerMobileNetV3s()
        registerEfficientNets()
        registerEdgeNeXts()
        registerVisionTransformers()
        registerLeViTs()
        registerSwinTransformers()
        registerTNTs()
        registerMLPModels()
    }
}
