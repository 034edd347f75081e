import Foundation
import Testing
import USIModels

@Suite("EdgeNeXt")
struct EdgeNeXtTests {
    @Test("eval-mode logits match timm (64 px RGB, 1000 classes; 32 px grayscale, 10 classes)")
    func evalParity() throws {
        try MobileFamilyFixtures.checkEvalParity("edgenext_small")
    }

    @Test("state_dict keys and shapes equal timm's")
    func stateDictKeys() throws {
        try MobileFamilyFixtures.checkStateDictKeys("edgenext_small")
    }

    @Test("a 1000-class state_dict loads non-strictly into a 10-class model")
    func classifierSkip() throws {
        try MobileFamilyFixtures.checkClassifierSkip("edgenext_small")
    }

    @Test("edgenext_small train-mode logits and gradients match timm (32 px, grayscale)")
    func trainModeGradients() throws {
        try MobileFamilyFixtures.checkTrainMode("edgenext_small")
    }

    @Test("registry: default config, features, head and classifier reset")
    func registry() throws {
        let entry = try Models.entry("edgenext_small")
        #expect(entry.defaultConfig.inputSize == 256 && entry.defaultConfig.cropFraction == 0.95)
        #expect(entry.defaultConfig.interpolation == .bicubic && entry.defaultConfig.mean == BackboneConfig.imagenetMean)
        #expect(throws: ModelError.self) { try Models.create("edgenext_small", inputSize: 16) }
        let model = try #require(try Models.create("edgenext_small", classes: 10, inputChannels: 1, inputSize: 32) as? any HeadedBackbone)
        #expect(model.classifierPrefixes == ["head.fc."])
        model.eval()
        let x = Tensor(shape: [1, 32, 32, 1], repeating: 0.25)
        let features = withoutGradients { model.forwardFeatures(x) }
        #expect(features.shape == [1, 1, 1, 304])
        #expect(withoutGradients { model.forwardHead(features, preLogits: true) }.shape == [1, 304])
        model.resetClassifier(classes: 4)
        #expect(withoutGradients { model(x) }.shape == [1, 4])
        #expect(model.stateDict()["head.fc.weight"]?.shape == [4, 304])
    }

    @Test("gradients reach every parameter in training mode")
    func trains() throws {
        let model = try Models.create("edgenext_small", classes: 3, inputChannels: 1, inputSize: 32)
        try DeterministicFill.fill(model)
        model.train()
        let x = try MobileFamilyFixtures.input("gray32")
        let loss = square(model(x)).sum()
        loss.backward()
        let missing = model.namedParameters().filter { $0.tensor.grad == nil }.map(\.name)
        #expect(missing.isEmpty, "no gradient for \(missing)")
    }
}
