extension BuiltInModels {
    /// Registers this family (not written yet: registers nothing).
    static func registerResNets() {}
}
