import Foundation
import Testing
import USIModels

/// ConvNeXt parity with timm 1.0.31 (fixtures: Tools/fixtures/make_cnn_fixtures.py; helpers in
/// ResNetTests.swift's ``CNNTestSupport``).
@Suite("ConvNeXt (timm parity)")
struct ConvNeXtTests {
    static let models = ["convnext_atto", "convnext_tiny", "convnext_small"]

    @Test("eval-mode logits and state_dict keys/shapes match timm (deterministic fill, 2×3×64×64)", arguments: models)
    func parity(_ name: String) throws { try CNNTestSupport.checkParity(case: name) }

    @Test("10 classes, 1 input channel, 48×48 input match timm")
    func variantParity() throws { try CNNTestSupport.checkParity(case: "convnext_atto_c10_in1_48") }

    @Test("round-trip files for timm (only with USI_CNN_ROUNDTRIP_DIR)", arguments: models)
    func roundTrip(_ name: String) throws { try CNNTestSupport.writeRoundTrip(name) }

    @Test("1000-class weights load into a 10-class model non-strictly, skipping head.fc")
    func classifierSkip() throws { try CNNTestSupport.checkClassifierSkip("convnext_atto") }

    @Test("weights of another architecture throw StateDictError listing keys")
    func wrongArchitecture() throws {
        try CNNTestSupport.checkWrongArchitecture("convnext_atto", weightsOf: "resnet10t", listing: "stem.0.weight",
                                                  lenient: true)
    }

    @Test("features, pre-logits, reset classifier, 1 channel, 96×96")
    func head() throws {
        try CNNTestSupport.checkHead("convnext_atto", featureChannels: 320, inputSize: 96, featureSize: 3)
    }

    @Test("default configs and initialisation are timm's")
    func defaults() throws {
        for (name, crop) in [("convnext_atto", 0.875), ("convnext_tiny", 0.95), ("convnext_small", 0.95)] {
            let entry = try Models.entry(name)
            #expect(entry.defaultConfig.inputSize == 224 && entry.defaultConfig.cropFraction == crop)
            #expect(entry.defaultConfig.interpolation == .bicubic)
            #expect(entry.defaultConfig.mean == BackboneConfig.imagenetMean)
        }
        let model = try Models.create("convnext_atto")
        let tensors = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        #expect(tensors["stages.0.blocks.0.gamma"]!.toArray().allSatisfy { $0 == 1e-6 })
        #expect(tensors["stages.0.blocks.0.mlp.fc1.bias"]!.toArray().allSatisfy { $0 == 0 })
        let w = tensors["stages.2.blocks.0.mlp.fc1.weight"]!.toArray()
        let std = (w.reduce(0) { $0 + $1 * $1 } / Float(w.count)).squareRoot()
        #expect(abs(std - 0.02) < 0.001)
    }
}
