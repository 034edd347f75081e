// The complete examples of Docs/CUSTOM_BACKBONE.md (the guide shows this file from `import`
// on, and a test checks that it still does); ModuleTests trains and uses both.
import USICore

/// A small CNN: two conv-BN-ReLU stages, global average pooling, a linear classifier.
final class TinyNet: Module, Backbone {
    let config: BackboneConfig
    // Every stored layer is a child under its property's name, so the state_dict keys are
    // `stem.weight`, `bn1.running_mean`, …, `fc.bias`.
    let stem: Conv2d
    let bn1: BatchNorm
    let conv2: Conv2d
    let bn2: BatchNorm
    let fc: Linear

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
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let features = relu(bn2(conv2(relu(bn1(stem(x))))))
        return fc(globalAvgPool2d(features))
    }
}

/// The same network split as timm's models are (features, head, a replaceable classifier), with
/// a learned per-channel scale, dropout under timm's name, and BatchNorm folding for a teacher.
final class TinyHeadedNet: Module, HeadedBackbone, BatchNormFoldable {
    private(set) var config: BackboneConfig
    let stem: Conv2d
    let bn1: BatchNorm
    let conv2: Conv2d
    let bn2: BatchNorm
    // A tensor of the module itself, trained and saved under its key (`layer_scale`).
    @Parameter(key: "layer_scale") var layerScale: Tensor
    // A child whose key differs from its property's name (`head_drop`, as timm calls it).
    @ModuleInfo(key: "head_drop") var headDropout: Dropout
    // `var`: resetClassifier replaces it, and the next state_dict sees the new one.
    private(set) var fc: Linear

    init(classes: Int = 10, inputChannels: Int = 1, inputSize: Int = 28) {
        config = BackboneConfig(architecture: "tinyheadednet", classes: classes, inputChannels: inputChannels,
                                inputSize: inputSize, mean: [0.286], standardDeviation: [0.353],
                                cropFraction: 1, interpolation: .bilinear)
        stem = Conv2d(inputChannels: inputChannels, outputChannels: 16, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
        bn1 = BatchNorm(16)
        conv2 = Conv2d(inputChannels: 16, outputChannels: 32, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
        bn2 = BatchNorm(32)
        // Wrappers declared with arguments and no initial value are set through their backing
        // storage before super.init() (Swift does not allow `layerScale = …` here).
        _layerScale.wrappedValue = Tensor(shape: [32], repeating: 1)
        _headDropout.wrappedValue = Dropout(probability: 0.1)
        fc = Linear(inputFeatures: 32, outputFeatures: classes)
        super.init()
    }

    func forwardFeatures(_ x: Tensor) -> Tensor {
        relu(bn2(conv2(relu(bn1(stem(x)))))) * layerScale
    }

    func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        let pooled = globalAvgPool2d(features)
        return preLogits ? pooled : fc(headDropout(pooled))
    }

    func resetClassifier(classes: Int) {
        fc = Linear(inputFeatures: 32, outputFeatures: classes)
        fc.train(isTraining)
        config.classes = classes
    }

    var classifierPrefixes: [String] { ["fc."] }

    /// Inference: fold each BatchNorm into the convolution before it.
    func foldBatchNorms() {
        stem.foldBatchNorm(bn1)
        conv2.foldBatchNorm(bn2)
    }
}
