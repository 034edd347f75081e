import Foundation
import Testing
import USIModels

/// Shared helpers of the CNN-family tests (ResNet, ConvNeXt, TResNet). Fixtures come from
/// Tools/fixtures/make_cnn_fixtures.py; weights are filled by the deterministic rule of
/// Tools/fixtures/model_fill.py (``DeterministicFill``) on both sides.
enum CNNTestSupport {
    static let fixtureDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// A committed fixture, loaded by a path relative to this source file.
    static func fixture(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: fixtureDirectory.appendingPathComponent(name))
    }

    /// The parity fixture (inputs and eval-mode logits of every architecture and variant).
    static func parity() throws -> SafeTensorsFile { try fixture("cnn_parity.safetensors") }

    /// The JSON config a fixture stores for `name` in its metadata.
    static func caseConfig(_ file: SafeTensorsFile, _ name: String) throws -> [String: Any] {
        let text = try #require(file.metadata[name], "fixture has no metadata for \(name)")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// timm's state_dict keys and shapes of `model` (default head), from cnn_state_dict_keys.json.
    static func timmKeys(_ model: String) throws -> [String: [Int]] {
        let data = try Data(contentsOf: fixtureDirectory.appendingPathComponent("cnn_state_dict_keys.json"))
        let all = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [[Any]]])
        let list = try #require(all[model], "no keys for \(model)")
        return Dictionary(uniqueKeysWithValues: list.map { ($0[0] as! String, $0[1] as! [Int]) })
    }

    /// NCHW (PyTorch) to NHWC.
    static func channelsLast(_ t: Tensor) -> Tensor { t.rank == 4 ? withoutGradients { t.permuted([0, 2, 3, 1]) } : t }

    /// NHWC / OHWI back to PyTorch's NCHW / OIHW.
    static func channelsFirst(_ t: Tensor) -> Tensor { t.rank == 4 ? withoutGradients { t.permuted([0, 3, 1, 2]) } : t }

    /// Checks `|ours − theirs| ≤ relative · max|theirs| + absolute` elementwise and prints the
    /// largest difference. Returns the largest difference relative to max|theirs|.
    @discardableResult
    static func expectClose(_ ours: Tensor?, _ theirs: Tensor, relative: Float, absolute: Float = 1e-6,
                            _ label: String, sourceLocation: SourceLocation = #_sourceLocation) -> Float {
        guard let ours else {
            Issue.record("\(label): missing (nil)", sourceLocation: sourceLocation)
            return .infinity
        }
        #expect(ours.shape == theirs.shape, "\(label): shape \(ours.shape) vs \(theirs.shape)", sourceLocation: sourceLocation)
        guard ours.count == theirs.count else { return .infinity }
        let a = ours.toArray(), b = theirs.toArray()
        let scale = b.reduce(0) { max($0, abs($1)) }
        var worst: Float = 0, worstIndex = 0
        for i in 0..<a.count {
            let d = abs(a[i] - b[i])
            if d > worst || d.isNaN { worst = d.isNaN ? .infinity : d; worstIndex = i }
        }
        let bound = relative * scale + absolute
        print("  \(label): max |diff| \(worst), max |ref| \(scale), relative \(worst / max(scale, 1e-30))")
        #expect(worst <= bound, "\(label): element \(worstIndex) is \(a[worstIndex]), expected \(b[worstIndex]) (bound \(bound))",
                sourceLocation: sourceLocation)
        return worst / max(scale, 1e-30)
    }

    /// Builds `name`, fills it by the deterministic rule, switches to eval mode and compares its
    /// logits on the fixture input with timm's (rtol 1e-4 of max |logit|). For a default-head
    /// case (1000 classes, 3 channels) it also compares the state_dict keys and shapes with timm's.
    ///
    /// With `fold`, the model's BatchNorms are folded (by `fold`) after filling, so the same
    /// logits check covers BN folding for the distillation teacher.
    static func checkParity(case name: String, fold: ((any Backbone) -> Void)? = nil,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = try parity()
        let config = try caseConfig(file, name)
        let modelName = config["model"] as! String
        let classes = config["num_classes"] as! Int, channels = config["in_chans"] as! Int
        let size = config["input_size"] as! Int
        let model = try Models.create(modelName, classes: classes, inputChannels: channels, inputSize: size)
        if classes == 1000 && channels == 3 { try checkKeys(model, modelName, sourceLocation: sourceLocation) }
        try DeterministicFill.fill(model)
        // Cases of deep nets whose filled logits would explode scale some weights after the
        // fill (make_cnn_fixtures.py's DAMPED says why).
        if let suffix = config["damp_suffix"] as? String, let factor = config["damp_factor"] as? Double {
            for p in model.namedParameters() where p.name.hasSuffix(suffix) {
                p.tensor.assign(Tensor(shape: p.tensor.shape, values: p.tensor.toArray().map { $0 * Float(factor) }))
            }
        }
        model.eval()
        if let fold { fold(model) }
        let x = channelsLast(try file.tensor(config["input"] as! String))
        #expect(x.shape == [2, size, size, channels], sourceLocation: sourceLocation)
        let y = withoutGradients { model(x) }
        expectClose(y, try file.tensor("\(name).logits"), relative: 1e-4, "\(name) logits\(fold == nil ? "" : " (BN folded)")",
                    sourceLocation: sourceLocation)
    }

    /// One train-mode step against a `make_cnn_fixtures.py` train fixture: logits (rtol 1e-4),
    /// the full gradients of the listed parameters (rtol 1e-3) and the running statistics after
    /// the step (rtol 1e-4), for loss = Σ logits · grad_out with batch statistics.
    static func checkTrainMode(fixture name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = try fixture(name)
        let config = try caseConfig(file, "case")
        let model = try Models.create(config["model"] as! String, classes: config["num_classes"] as! Int,
                                      inputChannels: config["in_chans"] as! Int, inputSize: config["input_size"] as! Int)
        try DeterministicFill.fill(model)
        if let suffix = config["damp_suffix"] as? String, let factor = config["damp_factor"] as? Double {
            for p in model.namedParameters() where p.name.hasSuffix(suffix) {
                p.tensor.assign(Tensor(shape: p.tensor.shape, values: p.tensor.toArray().map { $0 * Float(factor) }))
            }
        }
        model.train()
        let x = channelsLast(try file.tensor("input"))
        let y = model(x)
        expectClose(y, try file.tensor("logits"), relative: 1e-4, "train logits", sourceLocation: sourceLocation)
        try (y * file.tensor("grad_out")).sum().backward()
        let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        for name in config["params"] as! [String] {
            let grad = parameters[name]?.grad.map(channelsFirst)
            expectClose(grad, try file.tensor("grad.\(name)"), relative: 1e-3, "grad \(name)", sourceLocation: sourceLocation)
        }
        let buffers = Dictionary(uniqueKeysWithValues: model.namedBuffers().map { ($0.name, $0.tensor) })
        for name in config["running"] as! [String] {
            expectClose(buffers[name], try file.tensor("running.\(name)"), relative: 1e-4, name, sourceLocation: sourceLocation)
        }
    }

    /// When `USI_CNN_ROUNDTRIP_DIR` is set, writes `<model>.safetensors` (our state_dict after a
    /// train-mode step, so BN statistics are non-trivial) and `<model>.logits.safetensors`
    /// (`input` NCHW, eval-mode `logits`) for `make_cnn_fixtures.py --roundtrip DIR`, which loads
    /// them into timm with strict=True and compares logits.
    static func writeRoundTrip(_ name: String) throws {
        guard let directory = ProcessInfo.processInfo.environment["USI_CNN_ROUNDTRIP_DIR"] else { return }
        let model = try Models.create(name, seed: 7)
        let x = Tensor(shape: [2, 64, 64, 3], values: (0..<(2 * 64 * 64 * 3)).map { Float(sin(0.11 * Double($0))) })
        model.train()
        _ = withoutGradients { model(x) }
        model.eval()
        let y = withoutGradients { model(x) }
        let url = URL(fileURLWithPath: directory)
        try model.save(to: url.appendingPathComponent("\(name).safetensors"))
        try SafeTensors.write(["input": SafeTensorsRecord(channelsFirst(x)), "logits": SafeTensorsRecord(y)],
                              to: url.appendingPathComponent("\(name).logits.safetensors"))
        print("  wrote round-trip files of \(name) to \(directory)")
    }

    /// Compares the module's state_dict keys and PyTorch-layout shapes with timm's.
    static func checkKeys(_ model: any Backbone, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let ours = model.stateDict().mapValues(\.shape)
        let theirs = try timmKeys(name)
        let missing = Set(theirs.keys).subtracting(ours.keys).sorted()
        let extra = Set(ours.keys).subtracting(theirs.keys).sorted()
        #expect(missing.isEmpty, "\(name): keys timm has and we lack: \(missing.prefix(10))", sourceLocation: sourceLocation)
        #expect(extra.isEmpty, "\(name): keys we have and timm lacks: \(extra.prefix(10))", sourceLocation: sourceLocation)
        let wrong = theirs.filter { ours[$0.key] != nil && ours[$0.key] != $0.value }.keys.sorted()
        #expect(wrong.isEmpty, "\(name): shape mismatches: \(wrong.prefix(10).map { "\($0) \(ours[$0]!) vs \(theirs[$0]!)" })",
                sourceLocation: sourceLocation)
        print("  \(name): \(ours.count) keys, \(model.parameterCount) parameters")
    }

    /// An in-memory safetensors file of `module`'s state_dict.
    static func weights(of module: Module) throws -> SafeTensorsFile {
        try SafeTensorsFile(data: SafeTensors.encode(module.stateDict()), source: "in-memory state_dict")
    }

    /// Non-strict load of `name`'s 1000-class weights into a 10-class model: the classifier is
    /// skipped and reported, everything else loads.
    static func checkClassifierSkip(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let source = try Models.create(name, seed: 1)
        try DeterministicFill.fill(source)
        let target = try Models.create(name, classes: 10, seed: 2)
        let prefixes = target.classifierKeyPrefixes
        let file = try weights(of: source)
        #expect(throws: StateDictError.self, sourceLocation: sourceLocation) { try target.load(file) }
        let report = try target.load(file, strict: false, skippingMismatchedPrefixes: prefixes)
        print("  \(name): \(report)")
        #expect(!report.skipped.isEmpty && report.skipped.allSatisfy { key in prefixes.contains { key.hasPrefix($0) } },
                sourceLocation: sourceLocation)
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty, sourceLocation: sourceLocation)
        let sourceTensors = Dictionary(uniqueKeysWithValues: source.namedTensors().map { ($0.name, $0.tensor) })
        for entry in target.namedTensors() where !prefixes.contains(where: { entry.name.hasPrefix($0) }) {
            #expect(entry.tensor.toArray() == sourceTensors[entry.name]?.toArray(), "\(entry.name) not loaded",
                    sourceLocation: sourceLocation)
        }
        let x = Tensor(shape: [1, 32, 32, 3], values: (0..<(32 * 32 * 3)).map { Float(sin(Double($0))) })
        target.eval()
        #expect(withoutGradients { target(x) }.shape == [1, 10], sourceLocation: sourceLocation)
    }

    /// Loading `wrong`'s weights into `name` throws a StateDictError whose message lists keys
    /// (strictly; with `lenient` also non-strictly, which only tolerates missing/unexpected keys).
    static func checkWrongArchitecture(_ name: String, weightsOf wrong: String, listing key: String, lenient: Bool = false,
                                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = try weights(of: try Models.create(wrong))
        let model = try Models.create(name)
        for strict in lenient ? [true, false] : [true] {
            do {
                try model.load(file, strict: strict)
                Issue.record("\(wrong) weights loaded into \(name) (strict: \(strict))", sourceLocation: sourceLocation)
            } catch let error as StateDictError {
                #expect(error.description.contains(key), "message lacks \(key): \(error.description.prefix(300))",
                        sourceLocation: sourceLocation)
            }
        }
    }

    /// `forwardFeatures`/`forwardHead(preLogits:)`/`resetClassifier` behave as timm's.
    static func checkHead(_ name: String, featureChannels: Int, inputSize: Int = 64, featureSize: Int,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
        let model = try #require(try Models.create(name, classes: 7, inputChannels: 1, inputSize: inputSize) as? any HeadedBackbone,
                                 sourceLocation: sourceLocation)
        #expect(model.config.classes == 7 && model.config.inputChannels == 1 && model.config.inputSize == inputSize,
                sourceLocation: sourceLocation)
        #expect(model.config.mean.count == 1 && model.config.standardDeviation.count == 1, sourceLocation: sourceLocation)
        model.eval()
        let x = Tensor(shape: [2, inputSize, inputSize, 1], values: (0..<(2 * inputSize * inputSize)).map { Float(sin(0.37 * Double($0))) })
        let features = withoutGradients { model.forwardFeatures(x) }
        #expect(features.shape == [2, featureSize, featureSize, featureChannels], sourceLocation: sourceLocation)
        let pooled = withoutGradients { model.forwardHead(features, preLogits: true) }
        #expect(pooled.shape == [2, featureChannels], sourceLocation: sourceLocation)
        #expect(withoutGradients { model(x) }.shape == [2, 7], sourceLocation: sourceLocation)
        model.resetClassifier(classes: 3)
        #expect(model.config.classes == 3, sourceLocation: sourceLocation)
        #expect(withoutGradients { model(x) }.shape == [2, 3], sourceLocation: sourceLocation)
        model.resetClassifier(classes: 0)
        #expect(withoutGradients { model(x) }.shape == [2, featureChannels], sourceLocation: sourceLocation)
        #expect(!model.stateDict().keys.contains { key in model.classifierPrefixes.contains { key.hasPrefix($0) } },
                sourceLocation: sourceLocation)
    }
}

@Suite("ResNet (timm parity)")
struct ResNetTests {
    static let models = ["resnet10t", "resnet18", "resnet26", "resnet34", "resnet50"]

    @Test("eval-mode logits and state_dict keys/shapes match timm (deterministic fill, 2×3×64×64)", arguments: models)
    func parity(_ name: String) throws { try CNNTestSupport.checkParity(case: name) }

    @Test("10 classes, 1 input channel, 48×48 input match timm", arguments: ["resnet10t_c10_in1_48", "resnet18_c10_in1_48"])
    func variantParity(_ name: String) throws { try CNNTestSupport.checkParity(case: name) }

    @Test("train-mode forward, parameter gradients and running statistics match timm (resnet10t)")
    func trainMode() throws { try CNNTestSupport.checkTrainMode(fixture: "cnn_resnet10t_train.safetensors") }

    @Test("BN folding (for the teacher) keeps timm's logits", arguments: ["resnet10t_c10_in1_48", "resnet26"])
    func foldedParity(_ name: String) throws {
        try CNNTestSupport.checkParity(case: name) { ($0 as! ResNet).foldBatchNorms() }
    }

    @Test("round-trip files for timm (only with USI_CNN_ROUNDTRIP_DIR)", arguments: models)
    func roundTrip(_ name: String) throws { try CNNTestSupport.writeRoundTrip(name) }

    @Test("1000-class weights load into a 10-class model non-strictly, skipping fc")
    func classifierSkip() throws { try CNNTestSupport.checkClassifierSkip("resnet18") }

    @Test("weights of another architecture throw StateDictError listing keys")
    func wrongArchitecture() throws {
        try CNNTestSupport.checkWrongArchitecture("resnet34", weightsOf: "resnet18", listing: "layer1.2.conv1.weight")
        try CNNTestSupport.checkWrongArchitecture("resnet18", weightsOf: "resnet50", listing: "layer1.0.conv1.weight",
                                                  lenient: true)
    }

    @Test("features, pre-logits, reset classifier, 1 channel, 80×80")
    func head() throws {
        try CNNTestSupport.checkHead("resnet10t", featureChannels: 512, inputSize: 80, featureSize: 3)
        try CNNTestSupport.checkHead("resnet26", featureChannels: 2048, inputSize: 64, featureSize: 2)
    }

    @Test("default configs are timm's")
    func defaultConfigs() throws {
        let expected: [String: (Int, Double)] = ["resnet10t": (176, 0.875), "resnet18": (224, 0.95), "resnet26": (224, 0.875),
                                                 "resnet34": (224, 0.95), "resnet50": (224, 0.95)]
        for (name, (size, crop)) in expected {
            let entry = try Models.entry(name)
            #expect(entry.family == "cnn")
            #expect(entry.defaultConfig.inputSize == size && entry.defaultConfig.cropFraction == crop)
            #expect(entry.defaultConfig.interpolation == .bicubic)
            #expect(entry.defaultConfig.mean == BackboneConfig.imagenetMean)
            #expect(entry.defaultConfig.standardDeviation == BackboneConfig.imagenetStandardDeviation)
        }
    }

    @Test("timm initialisation: kaiming fan-out convs, zero last BN of each block")
    func initialisation() throws {
        let model = try Models.create("resnet50")
        let tensors = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor) })
        #expect(tensors["layer1.0.bn3.weight"]!.toArray().allSatisfy { $0 == 0 })
        #expect(tensors["layer1.0.bn2.weight"]!.toArray().allSatisfy { $0 == 1 })
        let w = tensors["layer3.0.conv2.weight"]!.toArray()  // 256×3×3×256, fan-out 256·9
        let std = (w.reduce(0) { $0 + $1 * $1 } / Float(w.count)).squareRoot()
        #expect(abs(std - (2.0 / 2304).squareRoot()) < 0.002)
    }
}
