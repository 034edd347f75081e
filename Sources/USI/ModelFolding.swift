// The zoo's CNN teachers fold their BatchNorms when the distiller freezes them.
extension ResNet: BatchNormFoldable {}
extension TResNet: BatchNormFoldable {}
