import Foundation
import Testing
import USICore
@testable import USIModels

/// Fixture access shared by the transformer/MLP/LeViT tests (files written by
/// Tools/fixtures/make_transformer_fixtures.py; see its docstring for the conventions).
enum TransformerFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func file(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: directory.appendingPathComponent("\(name).safetensors"))
    }

    struct Case {
        let name: String
        let model: String
        let kwargs: [String: Any]
        let mode: String
        let input: String
        let stateDict: [(key: String, shape: [Int])]
        let gradStrides: [String: Int]
        let batch: Int
        let fill: DeterministicFill.Rule

        var classes: Int { kwargs["num_classes"] as? Int ?? 1000 }
        var inputChannels: Int { kwargs["in_chans"] as? Int ?? 3 }
        var inputSize: Int { kwargs["img_size"] as? Int ?? 224 }
    }

    static func testCase(_ file: SafeTensorsFile, _ name: String) throws -> Case {
        let text = try #require(file.metadata[name], "fixture has no metadata for \(name)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let entries = (json["state_dict"] as? [[Any]]) ?? []
        let stateDict = entries.map { ($0[0] as! String, ($0[1] as! [Any]).map { ($0 as! NSNumber).intValue }) }
        let strides = (json["grad_strides"] as? [String: Any] ?? [:]).mapValues { ($0 as! NSNumber).intValue }
        return Case(name: name, model: json["model"] as! String, kwargs: json["kwargs"] as? [String: Any] ?? [:],
                    mode: json["mode"] as! String, input: json["input"] as! String, stateDict: stateDict,
                    gradStrides: strides, batch: (json["batch"] as? NSNumber)?.intValue ?? 2,
                    fill: try #require(DeterministicFill.Rule(rawValue: json["fill"] as? String ?? "plain"), "\(name): unknown fill rule"))
    }

    /// The case's input as channels-last `[N, H, W, C]`.
    static func input(_ file: SafeTensorsFile, _ c: Case) throws -> Tensor {
        let nchw: Tensor
        if c.input == "random" {
            nchw = try file.tensor("\(c.name).input")
        } else {
            let shape = [c.batch, c.inputChannels, c.inputSize, c.inputSize]
            let fanIn = Double(shape.dropFirst().reduce(1, *))
            let scale = Float((fanIn / 3).squareRoot())
            nchw = Tensor(shape: shape, values: DeterministicFill.values(name: "input", shape: shape).map { $0 * scale })
        }
        return withoutGradients { nchw.permuted([0, 2, 3, 1]) }
    }

    /// The registry model for the case, filled by the deterministic rule.
    static func model(_ c: Case) throws -> any Backbone {
        let model = try Models.create(c.model, classes: c.classes, inputChannels: c.inputChannels, inputSize: c.inputSize)
        try DeterministicFill.fill(model, rule: c.fill)
        model.train(c.mode == "train")
        return model
    }

    /// Our state_dict keys and PyTorch-layout shapes equal timm's.
    static func expectStateDict(_ model: any Backbone, _ c: Case, sourceLocation: SourceLocation = #_sourceLocation) {
        let ours = model.stateDict().mapValues(\.shape)
        let theirs = Dictionary(uniqueKeysWithValues: c.stateDict.map { ($0.key, $0.shape) })
        #expect(Set(ours.keys) == Set(theirs.keys),
                "\(c.name): only ours \(Set(ours.keys).subtracting(theirs.keys).sorted()), only timm \(Set(theirs.keys).subtracting(ours.keys).sorted())",
                sourceLocation: sourceLocation)
        let wrong = theirs.filter { ours[$0.key] != nil && ours[$0.key] != $0.value }.keys.sorted()
        #expect(wrong.isEmpty, "\(c.name): shapes differ for \(wrong)", sourceLocation: sourceLocation)
    }

    /// Our parameters come in timm's `state_dict` order (for models whose state_dict holds
    /// parameters only, as Swin and TNT).
    static func expectKeyOrder(_ fileName: String, _ caseName: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let c = try testCase(try file(fileName), caseName)
        let model = try Models.create(c.model, classes: c.classes, inputChannels: c.inputChannels, inputSize: c.inputSize)
        let ours = model.namedParameters().map(\.name) + model.namedBuffers().map(\.name)
        let theirs = c.stateDict.map(\.key)
        let first = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(ours == theirs, "\(c.name): order differs first at \(first.map { "\($0): ours \(ours[$0]), timm \(theirs[$0])" } ?? "the end")",
                sourceLocation: sourceLocation)
    }

    /// max |ours − theirs| ≤ rtol · max |theirs| + atol; prints the largest difference.
    @discardableResult
    static func expectClose(_ ours: [Float], _ theirs: [Float], relative: Float, absolute: Float = 1e-6,
                            _ label: String, sourceLocation: SourceLocation = #_sourceLocation) -> Float {
        #expect(ours.count == theirs.count, "\(label): \(ours.count) vs \(theirs.count) values", sourceLocation: sourceLocation)
        guard ours.count == theirs.count, !theirs.isEmpty else { return .infinity }
        let scale = theirs.map { Swift.abs($0) }.max()!
        var worst: Float = 0
        for (a, b) in zip(ours, theirs) { worst = Swift.max(worst, a.isNaN ? .infinity : Swift.abs(a - b)) }
        print("  \(label): max |diff| \(worst), max |ref| \(scale), relative \(worst / Swift.max(scale, 1e-30))")
        #expect(worst <= relative * scale + absolute, "\(label): max |diff| \(worst) over \(relative) × \(scale)",
                sourceLocation: sourceLocation)
        return worst
    }

    /// Eval (or train) forward parity of one case, with the state_dict check.
    static func checkForward(_ fileName: String, _ caseName: String, relative: Float = 1e-4) throws {
        let file = try file(fileName)
        let c = try testCase(file, caseName)
        let model = try model(c)
        expectStateDict(model, c)
        let x = try input(file, c)
        let logits = withoutGradients { model(x) }
        let reference = try file.tensor("\(c.name).logits")
        #expect(logits.shape == reference.shape)
        expectClose(logits.toArray(), reference.toArray(), relative: relative, "\(c.name) logits")
    }

    /// Forward and sampled parameter gradients of loss = Σ logits · grad_out.
    static func checkGradients(_ fileName: String, _ caseName: String) throws {
        let file = try file(fileName)
        let c = try testCase(file, caseName)
        let model = try model(c)
        expectStateDict(model, c)
        let logits = model(try input(file, c))
        expectClose(logits.toArray(), try file.tensor("\(c.name).logits").toArray(), relative: 1e-4, "\(c.name) logits")
        let loss = (logits * (try file.tensor("\(c.name).grad_out"))).sum()
        loss.backward()
        let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0) })
        for (name, stride) in c.gradStrides.sorted(by: { $0.key < $1.key }) {
            let p = try #require(parameters[name], "no parameter \(name)")
            let grad = try #require(p.tensor.grad, "\(name) has no gradient")
            let torchLayout = p.layout == .convolutionWeight ? withoutGradients { grad.permuted([0, 3, 1, 2]) } : grad
            let all = torchLayout.toArray()
            let sampled = Swift.stride(from: 0, to: all.count, by: stride).map { all[$0] }
            expectClose(sampled, try file.tensor("\(c.name).grad.\(name)").toArray(), relative: 1e-3, absolute: 0,
                        "\(c.name) grad \(name)")
        }
        model.zeroGradients()
    }
}

@Suite("VisionTransformer")
struct VisionTransformerTests {
    @Test("forward parity with timm (eval)",
          arguments: ["deit_tiny_224", "deit_small_48", "vit_small_48", "deit_tiny_c10_in1_64"])
    func forwardParity(caseName: String) throws {
        try TransformerFixtures.checkForward("vit_parity", caseName)
    }

    @Test("deit_tiny train-mode forward and parameter gradients match timm")
    func gradients() throws {
        try TransformerFixtures.checkGradients("vit_parity", "deit_tiny_grad_32")
    }

    @Test("resampleAbsolutePositionEmbedding matches timm's resample_abs_pos_embed", arguments: [3, 6, 18])
    func resampling(grid: Int) throws {
        let file = try TransformerFixtures.file("vit_parity")
        let pos = try file.tensor("resample.pos_embed")
        let ours = resampleAbsolutePositionEmbedding(pos, newSize: (grid, grid), prefixTokens: 1)
        let theirs = try file.tensor("resample.to\(grid)")
        #expect(ours.shape == theirs.shape)
        TransformerFixtures.expectClose(ours.toArray(), theirs.toArray(), relative: 1e-5, "pos_embed 14→\(grid)")
    }

    @Test("weights saved for another input size load with pos_embed resampled")
    func loadResampling() throws {
        let source = try Models.create("deit_tiny_patch16_224", classes: 10, inputSize: 32, seed: 1)
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict()), source: "32px")
        let target = try #require(try Models.create("deit_tiny_patch16_224", classes: 10, inputSize: 48) as? VisionTransformer)
        #expect(throws: StateDictError.self) { try target.load(file) }
        let report = try target.loadResamplingPositionEmbedding(file)
        #expect(report.isExact)
        let expected = resampleAbsolutePositionEmbedding(try file.tensor("pos_embed"), newSize: (3, 3))
        #expect(target.positionEmbedding.shape == [1, 10, 192])
        #expect(target.positionEmbedding.toArray() == expected.toArray())
        #expect(target.classToken.toArray() == (try file.tensor("cls_token")).toArray())
        let x = transformerRandomInput([1, 48, 48, 3])
        #expect(withoutGradients { target(x) }.shape == [1, 10])
    }

    @Test("a timm state_dict with another classifier size loads non-strictly, skipping the head")
    func classifierMismatch() throws {
        let source = try Models.create("deit_tiny_patch16_224", classes: 1000, inputSize: 32)
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict()), source: "1000 classes")
        let model = try Models.create("deit_tiny_patch16_224", classes: 10, inputSize: 32, seed: 3)
        #expect(throws: StateDictError.self) { try model.load(file) }
        let freshHead = model.stateDict()["head.weight"]!.bytes
        let report = try model.load(file, strict: false, skippingMismatchedPrefixes: model.classifierKeyPrefixes)
        print("  \(report)")
        #expect(report.skipped.sorted() == ["head.bias", "head.weight"])
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty)
        #expect(model.stateDict()["head.weight"]!.bytes == freshHead)
        #expect(model.stateDict()["blocks.3.mlp.fc1.weight"]!.bytes == source.stateDict()["blocks.3.mlp.fc1.weight"]!.bytes)
    }

    @Test("registry: default configs, options and errors")
    func registry() throws {
        let deit = try Models.entry("deit_tiny_patch16_224").defaultConfig
        #expect(deit.inputSize == 224 && deit.cropFraction == 0.9 && deit.interpolation == .bicubic)
        #expect(deit.mean == BackboneConfig.imagenetMean && deit.standardDeviation == BackboneConfig.imagenetStandardDeviation)
        let vit = try Models.entry("vit_small_patch16_224").defaultConfig
        #expect(vit.mean == [0.5, 0.5, 0.5] && vit.standardDeviation == [0.5, 0.5, 0.5] && vit.cropFraction == 0.9)
        #expect(try Models.entry("deit_small_patch16_224").family == "transformer")

        let model = try #require(try Models.create("deit_tiny_patch16_224", classes: 0, inputChannels: 1, inputSize: 32) as? any HeadedBackbone)
        #expect(model.noWeightDecay == ["pos_embed", "cls_token"])
        #expect(model.classifierPrefixes == ["head."])
        #expect(model.stateDict()["head.weight"] == nil)
        #expect(model.stateDict()["pos_embed"]!.shape == [1, 5, 192])
        let features = withoutGradients { model(transformerRandomInput([2, 32, 32, 1])) }
        #expect(features.shape == [2, 192])
        model.resetClassifier(classes: 7)
        #expect(model.config.classes == 7 && model.stateDict()["head.weight"]!.shape == [7, 192])
        #expect(withoutGradients { model(transformerRandomInput([2, 32, 32, 1])) }.shape == [2, 7])
        #expect(throws: ModelError.self) { try Models.create("deit_tiny_patch16_224", inputSize: 40) }
        // timm's init: cls_token ~ N(0, 1e-6), pos_embed ~ trunc N(0, 0.02), Linear bias 0.
        let fresh = try #require(try Models.create("deit_small_patch16_224", inputSize: 32) as? VisionTransformer)
        #expect(fresh.classToken.toArray().allSatisfy { abs($0) < 1e-5 })
        let pos = fresh.positionEmbedding.toArray()
        let std = (pos.map { $0 * $0 }.reduce(0, +) / Float(pos.count)).squareRoot()
        #expect(abs(std - 0.02) < 0.003)
        #expect(fresh.blocks[0].attn.qkv.bias!.toArray().allSatisfy { $0 == 0 })
    }

    @Test("trains: one SGD step on deit_tiny lowers the loss")
    func trainingStep() throws {
        let model = try Models.create("deit_tiny_patch16_224", classes: 3, inputSize: 32, seed: 5)
        model.train()
        let x = transformerRandomInput([4, 32, 32, 3])
        let labels = [0, 1, 2, 1]
        let loss0 = crossEntropy(model(x), labels: labels)
        loss0.backward()
        for p in model.namedParameters() {
            guard let g = p.tensor.grad else { continue }
            p.tensor.assign(withoutGradients { p.tensor - g * 0.05 })
        }
        model.zeroGradients()
        let loss1 = withoutGradients { crossEntropy(model(x), labels: labels) }
        print("  loss \(loss0.item) → \(loss1.item)")
        #expect(loss1.item < loss0.item)
    }
}

/// A seeded uniform [-1, 1) input that does not require gradients.
func transformerRandomInput(_ shape: [Int], seed: UInt64 = 11) -> Tensor {
    var g = RandomGenerator(seed: seed)
    return Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in g.nextFloat() * 2 - 1 })
}
