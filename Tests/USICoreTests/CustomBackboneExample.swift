// The complete example of Docs/CUSTOM_BACKBONE.md; the test below keeps it compiling and working.
import USICore

/// A small CNN: two conv-BN-ReLU stages, global average pooling, a linear classifier.
final class TinyNet: Module, Backbone {
    private(set) var config: BackboneConfig
    let stem: Conv2d, bn1: BatchNorm
    let conv2: Conv2d, bn2: BatchNorm
    private(set) var fc: Linear

    init(classes: Int = 10, inputChannels: Int = 1, inputSize: Int = 28) {
        config = BackboneConfig(architecture: "tinynet", classes: classes, inputChannels: inputChannels,
                                inputSize: inputSize, mean: [0.286], standardDeviation: [0.353],
                                cropFraction: 1, interpolation: .bilinear)
        stem = Conv2d(inputChannels: inputChannels, outputChannels: 16, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
        bn1 = BatchNorm(16)
        conv2 = Conv2d(inputChannels: 16, outputChannels: 32, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
        bn2 = BatchNorm(32)
        fc = Linear(inputFeatures: 32, outputFeatures: classes)
        super.init()
        // Names are the state_dict keys: `stem.weight`, `bn1.running_mean`, `fc.bias`, …
        register("stem", stem)
        register("bn1", bn1)
        register("conv2", conv2)
        register("bn2", bn2)
        register("fc", fc)
    }

    func forwardFeatures(_ x: Tensor) -> Tensor {
        relu(bn2(conv2(relu(bn1(stem(x))))))
    }

    func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        let pooled = globalAvgPool2d(features)
        return preLogits ? pooled : fc(pooled)
    }

    func resetClassifier(classes: Int) {
        fc = Linear(inputFeatures: 32, outputFeatures: classes)
        register("fc", fc)
        config.classes = classes
    }

    var classifierPrefixes: [String] { ["fc."] }

    /// Inference: fold each BatchNorm into the convolution before it.
    func foldBatchNorms() {
        stem.foldBatchNorm(bn1)
        conv2.foldBatchNorm(bn2)
    }
}
