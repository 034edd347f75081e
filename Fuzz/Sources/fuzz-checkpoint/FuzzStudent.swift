import USICore

/// The student whose checkpoints the fuzzer feeds: a conv, a BatchNorm and a classifier, small
/// enough that a whole checkpoint (state dict, AdamW moments, EMA, metadata) is ~4 KB. The
/// replay test in USITests builds the same network under the same keys.
final class FuzzStudent: Module, Backbone {
    let config = BackboneConfig(architecture: "fuzz_student", classes: 3, inputChannels: 1, inputSize: 8,
                                mean: [0.5], standardDeviation: [0.5], cropFraction: 1, interpolation: .bilinear)
    let conv: Conv2d
    let bn: BatchNorm
    let fc: Linear

    override init() {
        conv = Conv2d(inputChannels: 1, outputChannels: 2, kernelSize: 3, stride: 1, padding: .symmetric(1), bias: false)
        bn = BatchNorm(2)
        fc = Linear(inputFeatures: 2, outputFeatures: 3)
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor { fc(globalAvgPool2d(relu(bn(conv(x))))) }
}
