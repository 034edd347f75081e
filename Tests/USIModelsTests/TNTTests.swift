import Foundation
import Testing
import USICore
@testable import USIModels

/// TNT-S parity with timm 1.0.31 (fixtures: Tools/fixtures/make_transformer_fixtures.py `tnt`,
/// weights by the deterministic "chirp" fill rule; helpers in VisionTransformerTests.swift).
@Suite("TNT")
struct TNTTests {
    @Test("forward parity with timm (eval) and timm's state_dict key order", arguments: ["tnt_s_224", "tnt_s_c10_in1_48"])
    func forwardParity(caseName: String) throws {
        try TransformerFixtures.checkForward("tnt_parity", caseName)
        try TransformerFixtures.expectKeyOrder("tnt_parity", caseName)
    }

    @Test("tnt_s train-mode forward and parameter gradients match timm (inner and outer transformers)")
    func gradients() throws {
        try TransformerFixtures.checkGradients("tnt_parity", "tnt_s_grad_32")
    }

    @Test("registry: default config, head, no-weight-decay names, other sizes")
    func registry() throws {
        let entry = try Models.entry("tnt_s_patch16_224")
        #expect(entry.family == "transformer")
        #expect(entry.defaultConfig.inputSize == 224 && entry.defaultConfig.cropFraction == 0.9)
        #expect(entry.defaultConfig.interpolation == .bicubic)
        #expect(entry.defaultConfig.mean == [0.5, 0.5, 0.5] && entry.defaultConfig.standardDeviation == [0.5, 0.5, 0.5])
        let model = try #require(try Models.create("tnt_s_patch16_224", classes: 10, inputChannels: 1, inputSize: 40)
                                 as? any HeadedBackbone)
        #expect(model.classifierPrefixes == ["head."])
        #expect(model.noWeightDecay == ["patch_pos", "pixel_pos", "cls_token"])
        // 40 px: a 2×2 grid of 16-px patches (timm's Unfold drops the last 8 px), 4×4 pixels each.
        #expect(model.stateDict()["patch_pos"]!.shape == [1, 5, 384])
        #expect(model.stateDict()["pixel_pos"]!.shape == [1, 24, 4, 4])
        #expect(model.stateDict()["pixel_embed.proj.weight"]!.shape == [24, 1, 7, 7])
        let x = transformerRandomInput([2, 40, 40, 1])
        #expect(withoutGradients { model(x) }.shape == [2, 10])
        model.resetClassifier(classes: 0)
        #expect(model.stateDict()["head.weight"] == nil)
        #expect(withoutGradients { model(x) }.shape == [2, 384])
        #expect(throws: ModelError.self) { try Models.create("tnt_s_patch16_224", inputSize: 8) }
    }

    @Test("a state_dict with another classifier size loads non-strictly, skipping the head")
    func classifierMismatch() throws {
        let source = try Models.create("tnt_s_patch16_224", classes: 1000, inputSize: 32)
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict()), source: "1000 classes")
        let model = try Models.create("tnt_s_patch16_224", classes: 10, inputSize: 32, seed: 3)
        #expect(throws: StateDictError.self) { try model.load(file) }
        let report = try model.load(file, strict: false, skippingMismatchedPrefixes: model.classifierKeyPrefixes)
        #expect(report.skipped.sorted() == ["head.bias", "head.weight"])
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty)
    }
}
