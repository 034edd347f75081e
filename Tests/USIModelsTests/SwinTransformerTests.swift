import Foundation
import Testing
import USICore
@testable import USIModels

/// Swin-T/S parity with timm 1.0.31 (fixtures: Tools/fixtures/make_transformer_fixtures.py
/// `swin`, weights by the deterministic "chirp" fill rule; helpers in VisionTransformerTests.swift).
@Suite("SwinTransformer")
struct SwinTransformerTests {
    /// 224 px (7×7 windows everywhere, masks on shifted blocks), 64 px (padded grids, windows
    /// shrunk to the grid) and 100 px with 10 classes and 1 channel (odd grids through patch merging).
    @Test("forward parity with timm (eval) and timm's state_dict key order",
          arguments: ["swin_tiny_224", "swin_small_64", "swin_tiny_c10_in1_100"])
    func forwardParity(caseName: String) throws {
        try TransformerFixtures.checkForward("swin_parity", caseName)
        try TransformerFixtures.expectKeyOrder("swin_parity", caseName)
    }

    @Test("swin_tiny train-mode forward and parameter gradients match timm (32 px: shift, mask, padding)")
    func gradients() throws {
        try TransformerFixtures.checkGradients("swin_parity", "swin_tiny_grad_32")
    }

    @Test("relative-position index and shifted-window mask equal timm's")
    func tables() throws {
        let file = try TransformerFixtures.file("swin_parity")
        let index = try file.tensor("tables.relative_position_index_3").toArray().map { Int($0) }
        #expect(SwinWindows.relativePositionIndex(window: 3) == index)
        let mask = SwinWindows.attentionMask(padded: 6, window: 3, shift: 1)
        let theirs = try file.tensor("tables.attn_mask_5_w3_s1")
        #expect(mask.shape == theirs.shape)
        #expect(mask.toArray() == theirs.toArray())
    }

    @Test("rolled moves elements as torch.roll")
    func roll() {
        let x = Tensor(shape: [2, 5], values: (0..<10).map(Float.init))
        #expect(x.rolled(2, axis: 1).toArray() == [3, 4, 0, 1, 2, 8, 9, 5, 6, 7])
        #expect(x.rolled(-1, axis: 1).toArray() == [1, 2, 3, 4, 0, 6, 7, 8, 9, 5])
        #expect(x.rolled(1, axis: 0).toArray() == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4])
        #expect(x.rolled(7, axis: 1).toArray() == x.rolled(2, axis: 1).toArray())
    }

    @Test("windows and shifts per stage follow timm's img_size rule")
    func stageWindows() throws {
        #expect(SwinTransformer.stageResolutions(inputSize: 224, architecture: .tiny) == [56, 28, 14, 7])
        #expect(SwinTransformer.stageResolutions(inputSize: 100, architecture: .tiny) == [25, 13, 7, 4])
        let model = try #require(try Models.create("swin_tiny_patch4_window7_224", classes: 10, inputSize: 64) as? SwinTransformer)
        // Grids 16, 8, 4, 2: windows 7 (shift 3), 7 (shift 3), 4 and 2 (no shift).
        #expect(model.layers.map { $0.blocks[1].window } == [7, 7, 4, 2])
        #expect(model.layers.map { $0.blocks[1].shift } == [3, 3, 0, 0])
        #expect(model.layers.map { $0.blocks[0].shift } == [0, 0, 0, 0])
        #expect(model.stateDict()["layers.2.blocks.1.attn.relative_position_bias_table"]!.shape == [49, 12])
        #expect(model.stateDict()["layers.0.blocks.1.attn.relative_position_bias_table"]!.shape == [169, 3])
    }

    @Test("registry: default configs, heads, no-weight-decay names")
    func registry() throws {
        for name in ["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224"] {
            let entry = try Models.entry(name)
            #expect(entry.family == "transformer")
            #expect(entry.defaultConfig.inputSize == 224 && entry.defaultConfig.cropFraction == 0.9)
            #expect(entry.defaultConfig.interpolation == .bicubic)
            #expect(entry.defaultConfig.mean == BackboneConfig.imagenetMean)
            #expect(entry.defaultConfig.standardDeviation == BackboneConfig.imagenetStandardDeviation)
        }
        let model = try #require(try Models.create("swin_tiny_patch4_window7_224", classes: 10, inputChannels: 1, inputSize: 32)
                                 as? any HeadedBackbone)
        #expect(model.classifierPrefixes == ["head.fc."])
        #expect(model.noWeightDecay.count == 2 + 2 + 6 + 2)
        #expect(model.noWeightDecay.allSatisfy { $0.hasSuffix("attn.relative_position_bias_table") })
        #expect(model.stateDict().keys.allSatisfy { !$0.contains("relative_position_index") && !$0.contains("attn_mask") })
        let x = transformerRandomInput([2, 32, 32, 1])
        #expect(withoutGradients { model(x) }.shape == [2, 10])
        model.resetClassifier(classes: 0)
        #expect(model.stateDict()["head.fc.weight"] == nil)
        #expect(withoutGradients { model(x) }.shape == [2, 768])
        #expect(throws: ModelError.self) { try Models.create("swin_tiny_patch4_window7_224", inputSize: 3) }
    }

    @Test("a state_dict with another classifier size loads non-strictly, skipping head.fc")
    func classifierMismatch() throws {
        let source = try Models.create("swin_tiny_patch4_window7_224", classes: 1000, inputSize: 32)
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict()), source: "1000 classes")
        let model = try Models.create("swin_tiny_patch4_window7_224", classes: 10, inputSize: 32, seed: 3)
        #expect(throws: StateDictError.self) { try model.load(file) }
        let report = try model.load(file, strict: false, skippingMismatchedPrefixes: model.classifierKeyPrefixes)
        #expect(report.skipped.sorted() == ["head.fc.bias", "head.fc.weight"])
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty)
    }
}
