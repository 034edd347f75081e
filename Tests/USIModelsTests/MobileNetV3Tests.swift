import Foundation
import Testing
import USIModels

/// Shared helpers of the mobile-family parity tests (MobileNetV3, EfficientNet, EdgeNeXt).
/// Fixtures come from Tools/fixtures/make_mobile_fixtures.py; weights are filled by the
/// deterministic rule on both sides, so only inputs and expected outputs are committed.
enum MobileFamilyFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func file(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: directory.appendingPathComponent("\(name).safetensors"))
    }

    /// The per-case JSON config stored in the fixture metadata.
    static func caseConfig(_ file: SafeTensorsFile, _ name: String) throws -> [String: Any] {
        let text = try #require(file.metadata[name], "fixture has no metadata for \(name)")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// A committed NCHW input as channels-last NHWC.
    static func input(_ name: String) throws -> Tensor {
        let t = try file("mobile_inputs").tensor(name)
        return withoutGradients { t.permuted([0, 2, 3, 1]) }
    }

    /// Checks `|ours − theirs| ≤ relative · max|theirs| + absolute` elementwise; prints the max difference.
    @discardableResult
    static func expectClose(_ ours: Tensor?, _ theirs: Tensor, relative: Float, absolute: Float = 1e-6,
                            _ label: String, sourceLocation: SourceLocation = #_sourceLocation) -> Float {
        guard let ours else {
            Issue.record("\(label): missing", sourceLocation: sourceLocation)
            return .infinity
        }
        #expect(ours.count == theirs.count, "\(label): \(ours.shape) vs \(theirs.shape)", sourceLocation: sourceLocation)
        guard ours.count == theirs.count else { return .infinity }
        let a = ours.toArray(), b = theirs.toArray()
        let scale = b.map { Swift.abs($0) }.max() ?? 0
        var worst: Float = 0
        for i in 0..<a.count { worst = a[i].isNaN ? .infinity : max(worst, Swift.abs(a[i] - b[i])) }
        let bound = relative * scale + absolute
        print("  \(label): max |diff| \(worst) (max |ref| \(scale), relative \(scale > 0 ? worst / scale : worst))")
        #expect(worst <= bound, "\(label): max |diff| \(worst) exceeds \(bound)", sourceLocation: sourceLocation)
        return worst
    }

    /// A model built as the fixture case describes, filled deterministically.
    static func model(_ config: [String: Any], inputSize: Int) throws -> any Backbone {
        let arch = try #require(config["arch"] as? String)
        let classes = try #require(config["classes"] as? Int)
        let channels = try #require(config["in_chans"] as? Int)
        let model = try Models.create(arch, classes: classes, inputChannels: channels, inputSize: inputSize)
        try DeterministicFill.fill(model)
        return model
    }

    /// Eval-mode logits parity (rtol 1e-4) for every eval case of `arch`'s fixture.
    static func checkEvalParity(_ arch: String) throws {
        let fixture = try file("mobile_\(arch)")
        for name in ["default", "gray32"] {
            let config = try caseConfig(fixture, name)
            let x = try input(try #require(config["input"] as? String))
            let model = try model(config, inputSize: x.shape[1])
            model.eval()
            let logits = withoutGradients { model(x) }
            #expect(logits.shape == [x.shape[0], try #require(config["classes"] as? Int)])
            expectClose(logits, try fixture.tensor("\(name).logits"), relative: 1e-4, "\(arch) \(name) logits")
        }
    }

    /// The `state_dict` keys and PyTorch-layout shapes equal timm's.
    static func checkStateDictKeys(_ arch: String) throws {
        let fixture = try file("mobile_\(arch)")
        let text = try #require(fixture.metadata["keys"])
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[Any]])
        var expected: [String: [Int]] = [:]
        for entry in entries {
            expected[try #require(entry[0] as? String)] = try #require(entry[1] as? [Int])
        }
        let model = try Models.create(arch)
        let ours = model.stateDict().mapValues(\.shape)
        let missing = Set(expected.keys).subtracting(ours.keys).sorted()
        let extra = Set(ours.keys).subtracting(expected.keys).sorted()
        #expect(missing.isEmpty, "\(arch): keys timm has and we lack: \(missing.prefix(20))")
        #expect(extra.isEmpty, "\(arch): keys we have and timm lacks: \(extra.prefix(20))")
        let wrong = expected.filter { ours[$0.key] != nil && ours[$0.key] != $0.value }.keys.sorted()
        #expect(wrong.isEmpty, "\(arch): shape mismatches: \(wrong.prefix(20).map { "\($0) ours \(ours[$0]!) timm \(expected[$0]!)" })")
        print("  \(arch): \(ours.count) state_dict entries, \(model.parameterCount) parameters")
    }

    /// Weights for 1000 classes load into a 10-class model non-strictly, skipping the classifier;
    /// strictly they are refused with the classifier keys listed.
    static func checkClassifierSkip(_ arch: String) throws {
        let source = try Models.create(arch, inputSize: 64)
        try DeterministicFill.fill(source)
        let data = try SafeTensors.encode(source.stateDict())
        let file = try SafeTensorsFile(data: data, source: "\(arch)-1000")
        let target = try Models.create(arch, classes: 10, inputSize: 64)
        #expect(throws: StateDictError.self) { try target.load(file, strict: true) }
        let report = try target.load(file, strict: false, skippingMismatchedPrefixes: target.classifierKeyPrefixes)
        #expect(!report.skipped.isEmpty && report.skipped.allSatisfy { key in
            target.classifierKeyPrefixes.contains { key.hasPrefix($0) }
        }, "\(arch): skipped \(report.skipped)")
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty, "\(report)")
        // Everything but the classifier now equals the source.
        let ours = target.stateDict(), theirs = source.stateDict()
        for (key, record) in ours where !target.classifierKeyPrefixes.contains(where: { key.hasPrefix($0) }) {
            #expect(record.bytes == theirs[key]?.bytes, "\(arch): \(key) not loaded")
        }
    }

    /// Train-mode logits (rtol 1e-4), parameter gradients of `sum(logits · grad_out)` (rtol 1e-3)
    /// and BatchNorm running statistics after the forward (rtol 1e-4) against timm. A looser
    /// tolerance is only for networks whose train-mode float32 result is itself that far from
    /// float64 (measured with PyTorch; see EfficientNetTests).
    static func checkTrainMode(_ arch: String, logitsTolerance: Float = 1e-4, gradientTolerance: Float = 1e-3) throws {
        let fixture = try file("mobile_\(arch)")
        let config = try caseConfig(fixture, "train")
        let x = try input(try #require(config["input"] as? String))
        #expect(x.shape == [4, 32, 32, 1])
        let model = try model(config, inputSize: 32)
        model.train()
        let logits = model(x)
        expectClose(logits, try fixture.tensor("train.logits"), relative: logitsTolerance, "\(arch) train logits")
        let loss = (logits * (try fixture.tensor("train.grad_out"))).sum()
        loss.backward()
        let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0) })
        for key in try #require(config["grad_keys"] as? [String]) {
            let entry = try #require(parameters[key], "no parameter \(key)")
            let grad = try #require(entry.tensor.grad, "no gradient for \(key)")
            let pytorchLayout = entry.layout == .convolutionWeight ? withoutGradients { grad.permuted([0, 3, 1, 2]) } : grad
            expectClose(pytorchLayout, try fixture.tensor("train.grad.\(key)"), relative: gradientTolerance, absolute: 1e-7,
                        "\(arch) grad \(key)")
        }
        let buffers = Dictionary(uniqueKeysWithValues: model.namedBuffers().map { ($0.name, $0.tensor) })
        for key in try #require(config["after_keys"] as? [String]) {
            expectClose(buffers[key], try fixture.tensor("train.after.\(key)"), relative: 1e-4, "\(arch) after \(key)")
        }
    }
}

@Suite("MobileNetV3")
struct MobileNetV3Tests {
    static let architectures = ["mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv3_large_100"]

    @Test("eval-mode logits match timm", arguments: architectures)
    func evalParity(_ arch: String) throws {
        try MobileFamilyFixtures.checkEvalParity(arch)
    }

    @Test("state_dict keys and shapes equal timm's", arguments: architectures)
    func stateDictKeys(_ arch: String) throws {
        try MobileFamilyFixtures.checkStateDictKeys(arch)
    }

    @Test("a 1000-class state_dict loads non-strictly into a 10-class model", arguments: ["mobilenetv3_small_050"])
    func classifierSkip(_ arch: String) throws {
        try MobileFamilyFixtures.checkClassifierSkip(arch)
    }

    @Test("mobilenetv3_small_050 train-mode logits, gradients and running statistics match timm (32 px, grayscale)")
    func trainModeGradients() throws {
        try MobileFamilyFixtures.checkTrainMode("mobilenetv3_small_050")
    }

    @Test("registry: default config, configurable classes, channels and input size")
    func registry() throws {
        let entry = try Models.entry("mobilenetv3_small_050")
        #expect(entry.family == "mobile" && entry.flexibleInputSize)
        #expect(entry.defaultConfig.inputSize == 224 && entry.defaultConfig.cropFraction == 0.875)
        #expect(entry.defaultConfig.interpolation == .bicubic)
        #expect(entry.defaultConfig.mean == BackboneConfig.imagenetMean)
        let model = try #require(try Models.create("mobilenetv3_small_050", classes: 10, inputChannels: 1, inputSize: 32) as? any HeadedBackbone)
        #expect(model.config.classes == 10 && model.config.inputChannels == 1 && model.config.inputSize == 32)
        #expect(model.classifierPrefixes == ["classifier."])
        let x = Tensor(shape: [1, 28, 28, 1], repeating: 0.5)
        model.eval()
        let features = withoutGradients { model.forwardFeatures(x) }
        #expect(features.shape == [1, 1, 1, 288])
        #expect(withoutGradients { model.forwardHead(features, preLogits: true) }.shape == [1, 1024])
        model.resetClassifier(classes: 3)
        #expect(withoutGradients { model(x) }.shape == [1, 3])
        #expect(model.stateDict()["classifier.weight"]?.shape == [3, 1024])
        model.resetClassifier(classes: 0)
        #expect(withoutGradients { model(x) }.shape == [1, 1024])
        #expect(model.stateDict()["classifier.weight"] == nil)
    }

    @Test("timm's initialisation: conv std √(2/fan_out), zero biases, unit BN weights")
    func initialisation() throws {
        let model = try Models.create("mobilenetv3_small_050", seed: 3)
        let tensors = Dictionary(uniqueKeysWithValues: model.namedTensors().map { ($0.name, $0.tensor) })
        let head = try #require(tensors["conv_head.weight"]).toArray()  // fan_out = 1024
        let std = (head.map { $0 * $0 }.reduce(0, +) / Float(head.count)).squareRoot()
        #expect(Swift.abs(std - (2.0 / 1024).squareRoot()) < 0.002)
        #expect(try #require(tensors["conv_head.bias"]).toArray().allSatisfy { $0 == 0 })
        #expect(try #require(tensors["blocks.0.0.se.conv_reduce.bias"]).toArray().allSatisfy { $0 == 0 })
        #expect(try #require(tensors["bn1.weight"]).toArray().allSatisfy { $0 == 1 })
        let classifier = try #require(tensors["classifier.weight"]).toArray()
        #expect(classifier.allSatisfy { Swift.abs($0) <= 1 / Float(1000).squareRoot() })
        #expect(try #require(tensors["classifier.bias"]).toArray().allSatisfy { $0 == 0 })
    }
}
