import Foundation
import Testing
import USIModels

/// TResNet parity with timm 1.0.31 (fixtures: Tools/fixtures/make_cnn_fixtures.py; helpers in
/// ResNetTests.swift's ``CNNTestSupport``).
@Suite("TResNet (timm parity)")
struct TResNetTests {
    static let models = ["tresnet_m", "tresnet_l", "tresnet_v2_l"]

    @Test("eval-mode logits and state_dict keys/shapes match timm (deterministic fill, 2×3×64×64)", arguments: models)
    func parity(_ name: String) throws { try CNNTestSupport.checkParity(case: name) }

    @Test("10 classes, 1 input channel, 48×48 input match timm")
    func variantParity() throws { try CNNTestSupport.checkParity(case: "tresnet_m_c10_in1_48") }

    @Test("BN folding (for the teacher) keeps timm's logits")
    func foldedParity() throws {
        try CNNTestSupport.checkParity(case: "tresnet_m_c10_in1_48") { ($0 as! TResNet).foldBatchNorms() }
    }

    @Test("round-trip files for timm (only with USI_CNN_ROUNDTRIP_DIR)", arguments: models)
    func roundTrip(_ name: String) throws { try CNNTestSupport.writeRoundTrip(name) }

    @Test("1000-class weights load into a 10-class model non-strictly, skipping head.fc")
    func classifierSkip() throws { try CNNTestSupport.checkClassifierSkip("tresnet_m") }

    @Test("weights of another architecture throw StateDictError listing keys")
    func wrongArchitecture() throws {
        try CNNTestSupport.checkWrongArchitecture("tresnet_m", weightsOf: "resnet10t", listing: "body.conv1.conv.weight",
                                                  lenient: true)
    }

    @Test("features, pre-logits, reset classifier, 1 channel, 96×96")
    func head() throws {
        try CNNTestSupport.checkHead("tresnet_m", featureChannels: 2048, inputSize: 96, featureSize: 3)
    }

    @Test("default configs; input sizes must be multiples of 4")
    func defaults() throws {
        for name in Self.models {
            let entry = try Models.entry(name)
            #expect(entry.defaultConfig.inputSize == 224 && entry.defaultConfig.cropFraction == 0.875)
            #expect(entry.defaultConfig.interpolation == .bilinear)
            #expect(entry.defaultConfig.mean == [0, 0, 0] && entry.defaultConfig.standardDeviation == [1, 1, 1])
        }
        #expect(throws: ModelError.self) { try Models.create("tresnet_m", inputSize: 50) }
    }

    @Test("space-to-depth matches timm's channel order")
    func spaceToDepth() {
        // NCHW x[0, c, h, w] = 100c + 10h + w, C = 2, 4×4 → timm channel (bh·4 + bw)·C + c.
        func value(_ c: Int, _ h: Int, _ w: Int) -> Float { Float(100 * c + 10 * h + w) }
        var nchw: [Float] = []
        for c in 0..<2 { for h in 0..<4 { for w in 0..<4 { nchw.append(value(c, h, w)) } } }
        let x = CNNTestSupport.channelsLast(Tensor(shape: [1, 2, 4, 4], values: nchw))
        let y = tresnetSpaceToDepth(x).toArray()
        #expect(y.count == 32)
        for bh in 0..<4 { for bw in 0..<4 { for c in 0..<2 {
            let index: Int = (bh * 4 + bw) * 2 + c
            #expect(y[index] == value(c, bh, bw))
        } } }
    }
}
