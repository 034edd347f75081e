import Foundation
import Testing
import USICore
@testable import USIModels

@Suite("LeViT")
struct LeViTTests {
    @Test("forward parity with timm (eval)",
          arguments: ["levit_128s_224", "levit_256_224", "levit_384_224", "levit_128s_c10_in1_96"])
    func forwardParity(caseName: String) throws {
        try TransformerFixtures.checkForward("levit_parity", caseName)
    }

    @Test("levit_128s parameter gradients match timm (eval mode)")
    func gradients() throws {
        try TransformerFixtures.checkGradients("levit_parity", "levit_128s_grad_64")
    }

    /// BatchNorm with batch statistics over a small batch is badly conditioned under the fill
    /// rule: timm's own float32 and float64 logits differ by ~2e-4 relative on this case, so
    /// it is compared at 5e-3 (a wiring error gives O(1) differences).
    @Test("levit_128s train-mode forward (batch statistics) matches timm")
    func trainModeForward() throws {
        try TransformerFixtures.checkForward("levit_parity", "levit_128s_train_96", relative: 5e-3)
    }

    @Test("the attention-bias index table equals timm's attention_bias_idxs")
    func biasIndices() {
        // timm: rel = |Δrow|·res + |Δcol| over the ndgrid of positions (query sub-grid for stride 2).
        let full = LeViTAttentionBias.indices(resolution: 3, stride: 1)
        #expect(full.count == 81)
        #expect(Array(full.prefix(9)) == [0, 1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(full[9..<18]) == [1, 0, 1, 4, 3, 4, 7, 6, 7])
        let down = LeViTAttentionBias.indices(resolution: 3, stride: 2)
        #expect(down.count == 4 * 9)
        #expect(Array(down[9..<18]) == [2, 1, 0, 5, 4, 3, 8, 7, 6])
    }

    @Test("registry: default configs, heads, no-weight-decay names")
    func registry() throws {
        let entry = try Models.entry("levit_256")
        #expect(entry.family == "transformer" && entry.defaultConfig.cropFraction == 0.9)
        #expect(entry.defaultConfig.mean == BackboneConfig.imagenetMean)
        let model = try #require(try Models.create("levit_128s", classes: 10, inputSize: 64) as? any HeadedBackbone)
        #expect(model.classifierPrefixes == ["head.", "head_dist."])
        #expect(model.noWeightDecay.count == 2 + 3 + 4 + 2)
        #expect(model.noWeightDecay.contains("stages.1.downsample.attn_downsample.attention_biases"))
        #expect(model.stateDict()["stages.0.blocks.0.attn.attention_biases"]!.shape == [4, 16])
        #expect(model.stateDict().keys.allSatisfy { !$0.contains("attention_bias_idxs") })
        model.resetClassifier(classes: 0)
        #expect(model.stateDict()["head_dist.linear.weight"] == nil)
        #expect(withoutGradients { model.eval(); return model(transformerRandomInput([2, 64, 64, 3])) }.shape == [2, 384])
    }

    @Test("a state_dict with another classifier size loads non-strictly, skipping both heads")
    func classifierMismatch() throws {
        let source = try Models.create("levit_128s", classes: 1000, inputSize: 64)
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict()), source: "1000 classes")
        let model = try Models.create("levit_128s", classes: 10, inputSize: 64)
        let report = try model.load(file, strict: false, skippingMismatchedPrefixes: model.classifierKeyPrefixes)
        #expect(report.skipped.sorted() == ["head.linear.bias", "head.linear.weight", "head_dist.linear.bias", "head_dist.linear.weight"])
        #expect(report.missing.isEmpty && report.unexpected.isEmpty)
    }
}
