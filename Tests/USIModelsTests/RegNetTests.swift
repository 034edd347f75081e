import Foundation
import Testing
import USIModels

/// RegNetY parity with timm 1.0.31 (fixtures: Tools/fixtures/make_cnn_fixtures.py; helpers in
/// ResNetTests.swift's ``CNNTestSupport``).
@Suite("RegNetY (timm parity)")
struct RegNetTests {
    static let models = ["regnety_008", "regnety_032"]

    @Test("eval-mode logits and state_dict keys/shapes match timm (deterministic fill, 2×3×64×64)", arguments: models)
    func parity(_ name: String) throws { try CNNTestSupport.checkParity(case: name) }

    @Test("10 classes, 1 input channel, 48×48 input match timm")
    func variantParity() throws { try CNNTestSupport.checkParity(case: "regnety_008_c10_in1_48") }

    @Test("train-mode forward, parameter gradients (grouped conv, SE) and running statistics match timm (regnety_008)")
    func trainMode() throws { try CNNTestSupport.checkTrainMode(fixture: "cnn_regnety_008_train.safetensors") }

    @Test("BN folding (for the teacher) keeps timm's logits")
    func foldedParity() throws {
        try CNNTestSupport.checkParity(case: "regnety_008") { ($0 as! RegNet).foldBatchNorms() }
    }

    @Test("round-trip files for timm (only with USI_CNN_ROUNDTRIP_DIR)", arguments: models)
    func roundTrip(_ name: String) throws { try CNNTestSupport.writeRoundTrip(name) }

    @Test("1000-class weights load into a 10-class model non-strictly, skipping head.fc")
    func classifierSkip() throws { try CNNTestSupport.checkClassifierSkip("regnety_008") }

    @Test("weights of another architecture throw StateDictError listing keys")
    func wrongArchitecture() throws {
        try CNNTestSupport.checkWrongArchitecture("regnety_032", weightsOf: "regnety_008", listing: "s1.b2.conv1.conv.weight")
    }

    @Test("features, pre-logits, reset classifier, 1 channel, 96×96")
    func head() throws {
        try CNNTestSupport.checkHead("regnety_008", featureChannels: 768, inputSize: 96, featureSize: 3)
    }

    @Test("default configs and initialisation are timm's")
    func defaults() throws {
        for (name, crop) in [("regnety_008", 0.875), ("regnety_032", 0.95)] {
            let entry = try Models.entry(name)
            #expect(entry.defaultConfig.inputSize == 224 && entry.defaultConfig.cropFraction == crop)
            #expect(entry.defaultConfig.interpolation == .bicubic)
            #expect(entry.defaultConfig.mean == BackboneConfig.imagenetMean)
        }
        let model = try Models.create("regnety_008")
        let tensors = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        #expect(tensors["s1.b1.conv3.bn.weight"]!.toArray().allSatisfy { $0 == 0 })  // zero_init_last
        #expect(tensors["head.fc.bias"]!.toArray().allSatisfy { $0 == 0 })
        func std(_ key: String) -> Float {
            let w = tensors[key]!.toArray()
            return (w.reduce(0) { $0 + $1 * $1 } / Float(w.count)).squareRoot()
        }
        #expect(abs(std("head.fc.weight") - 0.01) < 0.001)
        // Grouped 3×3 of s3 (320 channels, 20 groups): fan-out = 9 · 320 / 20.
        #expect(abs(std("s3.b1.conv2.conv.weight") - (2.0 / 144).squareRoot()) < 0.006)
    }
}
