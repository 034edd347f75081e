import Foundation
import Testing
import USICore
@testable import USIModels

@Suite("MLPModels")
struct MLPModelsTests {
    @Test("forward parity with timm (eval)",
          arguments: ["mixer_s16_224", "mixer_b16_48", "resmlp_12_224", "resmlp_12_c10_in1_32"])
    func forwardParity(caseName: String) throws {
        try TransformerFixtures.checkForward("mlp_parity", caseName)
    }

    @Test("registry: default configs, init, classifier and input size")
    func registry() throws {
        let mixer = try Models.entry("mixer_b16_224")
        #expect(mixer.family == "mlp" && mixer.defaultConfig.mean == [0.5, 0.5, 0.5] && mixer.defaultConfig.cropFraction == 0.875)
        let resmlp = try Models.entry("resmlp_12_224").defaultConfig
        #expect(resmlp.mean == BackboneConfig.imagenetMean && resmlp.cropFraction == 0.875 && resmlp.interpolation == .bicubic)

        // Another input size changes the token-mixing widths (tokens = (size/16)²).
        let small = try #require(try Models.create("mixer_s16_224", classes: 10, inputChannels: 1, inputSize: 64) as? any HeadedBackbone)
        let sd = small.stateDict()
        #expect(sd["blocks.0.mlp_tokens.fc1.weight"]!.shape == [256, 16])
        #expect(sd["stem.proj.weight"]!.shape == [512, 1, 16, 16])
        #expect(sd["head.weight"]!.shape == [10, 512])
        #expect(small.classifierPrefixes == ["head."] && small.noWeightDecay.isEmpty)
        // timm's Mixer init: zero head, zero non-MLP biases, tiny MLP biases.
        #expect(small.stateDict()["head.weight"]!.bytes == Data(count: 10 * 512 * 4))
        let y = withoutGradients { small(transformerRandomInput([2, 64, 64, 1])) }
        #expect(y.shape == [2, 10])
        #expect(throws: ModelError.self) { try Models.create("mixer_s16_224", inputSize: 50) }

        let res = try #require(try Models.create("resmlp_12_224", classes: 0, inputSize: 32) as? any HeadedBackbone)
        #expect(res.stateDict()["blocks.0.ls1"]!.shape == [384])
        #expect(res.stateDict()["blocks.0.norm1.alpha"]!.shape == [1, 1, 384])
        #expect(res.stateDict()["blocks.0.linear_tokens.weight"]!.shape == [4, 4])
        #expect(withoutGradients { res(transformerRandomInput([1, 32, 32, 3])) }.shape == [1, 384])
        res.resetClassifier(classes: 4)
        #expect(res.stateDict()["head.weight"]!.shape == [4, 384])
    }

    @Test("a state_dict with another classifier size loads non-strictly")
    func classifierMismatch() throws {
        let source = try Models.create("resmlp_12_224", classes: 1000, inputSize: 32)
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict()), source: "1000 classes")
        let model = try Models.create("resmlp_12_224", classes: 10, inputSize: 32)
        #expect(throws: StateDictError.self) { try model.load(file) }
        let report = try model.load(file, strict: false, skippingMismatchedPrefixes: model.classifierKeyPrefixes)
        #expect(report.skipped.sorted() == ["head.bias", "head.weight"])
        #expect(report.missing.isEmpty && report.unexpected.isEmpty)
    }

    @Test("trains: one SGD step on resmlp lowers the loss")
    func trainingStep() throws {
        let model = try Models.create("resmlp_12_224", classes: 3, inputSize: 32, seed: 5)
        model.train()
        let x = transformerRandomInput([4, 32, 32, 3])
        let labels = [0, 1, 2, 1]
        let loss0 = crossEntropy(model(x), labels: labels)
        loss0.backward()
        for p in model.namedParameters() {
            guard let g = p.tensor.grad else { continue }
            p.tensor.assign(withoutGradients { p.tensor - g * 0.5 })
        }
        let loss1 = withoutGradients { crossEntropy(model(x), labels: labels) }
        print("  loss \(loss0.item) → \(loss1.item)")
        #expect(loss1.item < loss0.item)
    }
}
