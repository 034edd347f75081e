import Foundation
import Testing
import USIModels

@Suite("EfficientNet")
struct EfficientNetTests {
    static let architectures = ["efficientnet_b0", "efficientnet_lite0", "tf_efficientnet_lite0"]

    @Test("eval-mode logits match timm", arguments: architectures)
    func evalParity(_ arch: String) throws {
        try MobileFamilyFixtures.checkEvalParity(arch)
    }

    @Test("state_dict keys and shapes equal timm's", arguments: architectures)
    func stateDictKeys(_ arch: String) throws {
        try MobileFamilyFixtures.checkStateDictKeys(arch)
    }

    @Test("a 1000-class state_dict loads non-strictly into a 10-class model", arguments: ["efficientnet_lite0"])
    func classifierSkip(_ arch: String) throws {
        try MobileFamilyFixtures.checkClassifierSkip(arch)
    }

    /// With deterministic-fill weights, EfficientNet in training mode (batch statistics through
    /// 16 blocks, maps of 1×1 at 32 px) is ill-conditioned: PyTorch's own float32 result differs
    /// from its float64 reference by 7e-5 (logits) and 5e-4 (gradients) on this very case, and
    /// more at other sizes (1.7e-2 for gradients at 64 px; efficientnet_lite0 is worse still).
    /// float32 cannot meet 1e-4/1e-3 here, so the bounds are set a few times above PyTorch's own
    /// float32 error — a real bug gives errors of order 1. Eval-mode parity is at 1e-4.
    @Test("efficientnet_b0 train-mode logits, gradients and running statistics match timm (32 px, grayscale)")
    func trainModeGradients() throws {
        try MobileFamilyFixtures.checkTrainMode("efficientnet_b0", logitsTolerance: 1e-3, gradientTolerance: 3e-3)
    }

    @Test("registry: default configs, features and head")
    func registry() throws {
        let tf = try Models.entry("tf_efficientnet_lite0")
        #expect(tf.defaultConfig.mean == [0.5, 0.5, 0.5] && tf.defaultConfig.standardDeviation == [0.5, 0.5, 0.5])
        let b0 = try Models.entry("efficientnet_b0")
        #expect(b0.defaultConfig.mean == BackboneConfig.imagenetMean && b0.defaultConfig.inputSize == 224)
        #expect(b0.defaultConfig.cropFraction == 0.875 && b0.defaultConfig.interpolation == .bicubic)
        let model = try #require(try Models.create("efficientnet_b0", classes: 10, inputChannels: 1, inputSize: 32) as? any HeadedBackbone)
        model.eval()
        let x = Tensor(shape: [1, 32, 32, 1], repeating: 0.25)
        let features = withoutGradients { model.forwardFeatures(x) }
        #expect(features.shape == [1, 1, 1, 1280])
        #expect(withoutGradients { model.forwardHead(features, preLogits: true) }.shape == [1, 1280])
        #expect(withoutGradients { model(x) }.shape == [1, 10])
    }
}
