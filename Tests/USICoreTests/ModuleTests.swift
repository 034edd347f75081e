import Foundation
import Synchronization
import Testing
import USICore

@Suite("Modules, state dicts and the Backbone protocol")
struct ModuleTests {
    static func input(seed: UInt64 = 3) -> Tensor { randomTensor([4, 28, 28, 1], seed: seed, requiresGrad: false) }

    @Test("parameters and buffers carry PyTorch names; counts add up")
    func names() {
        let net = TinyNet()
        let names = net.namedTensors().map(\.name)
        #expect(names.contains("stem.weight") && names.contains("bn1.running_var") && names.contains("bn2.num_batches_tracked")
                && names.contains("fc.bias"))
        #expect(net.parameterCount == 16 * 9 + 16 * 2 + 32 * 16 * 9 + 32 * 2 + 32 * 10 + 10)
        #expect(net.stateDict()["stem.weight"]?.shape == [16, 1, 3, 3])  // OIHW in files
    }

    @Test("withSeed builds the same weights while other threads draw from the shared generator")
    func seededConstructionIsIsolated() {
        let reference = Initialization.withSeed(11) { TinyNet() }.stateDict()
        let stop = Atomic<Bool>(false)
        let noise = Thread { while !stop.load(ordering: .relaxed) { Initialization.seed(99); _ = TinyNet() } }
        noise.start()
        defer { stop.store(true, ordering: .relaxed) }
        for _ in 0..<20 {
            let again = Initialization.withSeed(11) { TinyNet() }.stateDict()
            #expect(again.keys.allSatisfy { again[$0]!.bytes == reference[$0]!.bytes })
        }
        // A different seed gives different weights, so the comparison above can fail.
        #expect(Initialization.withSeed(12) { TinyNet() }.stateDict()["stem.weight"]!.bytes != reference["stem.weight"]!.bytes)
    }

    @Test("stochastic layers draw per (seed, step, path): independent across layers, repeatable per step")
    func stochasticLayerStreams() {
        final class TwoDrops: Module {
            let a = DropPath(probability: 0.5), b = DropPath(probability: 0.5)
        }
        let net = TwoDrops()
        let x = Tensor(shape: [64, 1], repeating: 1)
        func masks(step: Int) -> [[Float]] {
            net.reseedStochasticLayers(seed: 5, step: step)
            return [net.a(x).toArray(), net.b(x).toArray()]
        }
        let first = masks(step: 3)
        // Constructed alike, the two layers would draw the same mask without the reseed.
        #expect(first[0] != first[1])
        #expect(masks(step: 3) == first)
        #expect(masks(step: 4) != first)
    }

    @Test("a custom backbone trains: the loss falls over a few SGD steps")
    func customBackboneTrains() {
        let net = Initialization.withSeed(1) { TinyNet() }
        let x = Self.input()
        let labels = [0, 1, 2, 3]
        var losses: [Float] = []
        for _ in 0..<8 {
            let loss = crossEntropy(net(x), labels: labels)
            losses.append(loss.item)
            loss.backward()
            for p in net.namedParameters() {
                if let g = p.tensor.grad { p.tensor.assign(withoutGradients { p.tensor - g * 0.1 }) }
            }
            net.zeroGradients()
        }
        #expect(losses.last! < losses.first! * 0.8, "losses \(losses)")
    }

    @Test("eval mode uses running statistics; BatchNorm folding leaves logits unchanged")
    func batchNormFolding() {
        let net = Initialization.withSeed(2) { TinyHeadedNet() }
        // Give the running statistics real values with a few training-mode passes.
        for i in 0..<3 { _ = withoutGradients { net(Self.input(seed: UInt64(10 + i))) } }
        #expect(net.bn1.batchesTracked.item == 3)
        net.eval()
        let x = Self.input()
        let before = withoutGradients { net(x) }
        net.foldBatchNorms()
        let after = withoutGradients { net(x) }
        expectClose(after, before, Tolerance(relative: 1e-4, absolute: 1e-5), "folded logits")
    }

    @Test("save → load round trip; strict loads refuse mismatches and list them; classifier can be skipped")
    func stateDictRoundTrip() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("usi-module-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let a = Initialization.withSeed(3) { TinyHeadedNet() }
        _ = withoutGradients { a(Self.input()) }  // non-trivial running stats and counter
        try a.save(to: url, metadata: ["architecture": "tinyheadednet"])
        let b = Initialization.withSeed(4) { TinyHeadedNet() }
        let report = try b.load(contentsOf: url)
        #expect(report.isExact)
        a.eval(); b.eval()
        #expect(withoutGradients { a(Self.input()) }.toArray() == withoutGradients { b(Self.input()) }.toArray())
        #expect(b.bn1.batchesTracked.item == 1)

        let other = TinyHeadedNet(classes: 5)
        #expect(throws: StateDictError.self) { try other.load(contentsOf: url) }
        let lenient = try other.load(contentsOf: url, strict: false, skippingMismatchedPrefixes: other.classifierPrefixes)
        #expect(lenient.skipped == ["fc.bias", "fc.weight"] || lenient.skipped == ["fc.weight", "fc.bias"])

        let wrong = TinyHeadedNet(inputChannels: 3)
        do {
            try wrong.load(contentsOf: url, strict: false)
            Issue.record("mismatched stem loaded")
        } catch let error as StateDictError {
            #expect(error.description.contains("stem.weight"))
        }
    }

    @Test("Docs/CUSTOM_BACKBONE.md shows CustomBackboneExample.swift from its import on")
    func guideShowsTheExample() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let example = try String(contentsOf: here.appendingPathComponent("CustomBackboneExample.swift"), encoding: .utf8)
        let guide = try String(contentsOf: here.appendingPathComponent("../../Docs/CUSTOM_BACKBONE.md"), encoding: .utf8)
        let code = try #require(example.range(of: "import USICore")).lowerBound
        let block = try #require(guide.components(separatedBy: "```swift\n").dropFirst().first?.components(separatedBy: "```").first)
        #expect(block == String(example[code...]), "update the guide's first code block to the example file")
    }

    @Test("freeze stops gradients; no tape is recorded for a frozen model")
    func freezing() {
        let net = TinyNet()
        net.freeze()
        GradientTape.current.reset()
        _ = net(Self.input())
        #expect(GradientTape.current.count == 0)
        net.unfreeze()
        #expect(net.namedParameters().allSatisfy { $0.tensor.requiresGrad })
    }
}

// MARK: - Declared state (children and tensors found by reflection)

/// Every way a module declares state, with its expected keys in the comments.
private final class DeclarationLayouts: Module {
    let plain = Linear(inputFeatures: 2, outputFeatures: 3)             // plain.weight, plain.bias
    let absent: Linear? = nil                                           // nothing
    let present: Linear? = Linear(inputFeatures: 3, outputFeatures: 1, bias: false)  // present.weight
    let list = [BatchNorm(2), BatchNorm(3)]                             // list.0.*, list.1.*
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil         // a child without tensors, when set
    @ModuleInfo(key: "renamed") var keyed: Linear                       // renamed.weight
    @ModuleInfo(key: "blocks") var keyedList: [Linear]                  // blocks.0.weight, blocks.1.weight
    @ModuleInfo(key: "") var flat: [Linear]                             // 0.weight (as nn.Sequential)
    @Parameter var gamma: Tensor                                        // gamma
    @Parameter(key: "cls_token") var classToken: Tensor                 // cls_token
    @Parameter var missingBias: Tensor? = nil                           // nothing
    @Buffer(key: "running_mean") var mean: Tensor                       // running_mean (a buffer)
    @Buffer var counter = Tensor(shape: [], repeating: 0)               // counter (a buffer)
    @Constant var filter = Tensor(shape: [3], repeating: 0.25)          // neither trained nor saved
    let width = 7                                                       // not state at all

    override init() {
        _keyed.wrappedValue = Linear(inputFeatures: 1, outputFeatures: 1, bias: false)
        _keyedList.wrappedValue = [Linear(inputFeatures: 1, outputFeatures: 2, bias: false),
                                   Linear(inputFeatures: 2, outputFeatures: 1, bias: false)]
        _flat.wrappedValue = [Linear(inputFeatures: 1, outputFeatures: 1, bias: false)]
        gamma = Tensor(shape: [2], repeating: 1)
        _classToken.wrappedValue = Tensor(shape: [1, 1, 2], repeating: 0)
        _mean.wrappedValue = Tensor(shape: [2], repeating: 0)
        super.init()
    }
}

/// A subclass adds its own declarations after its superclass's.
private final class DerivedLayouts: DeclarationBase {
    let head = Linear(inputFeatures: 1, outputFeatures: 1, bias: false)
}

private class DeclarationBase: Module {
    let trunk = Linear(inputFeatures: 1, outputFeatures: 1, bias: false)
    @Parameter var scale = Tensor(shape: [1], repeating: 1)
}

/// A stored tensor that is not declared: a bug the module must refuse.
private final class UndeclaredTensor: Module {
    let weight = Tensor(shape: [2], repeating: 1)
}

/// A keyed declaration its initialiser forgot to set.
private final class UnsetDeclaration: Module {
    @Parameter(key: "w") var weight: Tensor
}

/// Children with run-time names (the hook for containers).
private final class NamedContainer: Module {
    let entries: [(String, Linear)] = [("alpha", Linear(inputFeatures: 1, outputFeatures: 1)),
                                       ("beta", Linear(inputFeatures: 1, outputFeatures: 1))]
    override var containedModules: [(name: String, module: Module)] { entries.map { ($0.0, $0.1) } }
}

@Suite("Declared module state")
struct DeclaredStateTests {
    @Test("keys and their order for plain, optional, array, @ModuleInfo, key \"\", @Parameter, @Buffer and @Constant")
    func layouts() {
        let m = DeclarationLayouts()
        // A module's own tensors come before its children's, as PyTorch's `named_parameters`.
        #expect(m.namedParameters().map(\.name) == [
            "gamma", "cls_token",
            "plain.weight", "plain.bias", "present.weight",
            "list.0.weight", "list.0.bias", "list.1.weight", "list.1.bias",
            "renamed.weight", "blocks.0.weight", "blocks.1.weight", "0.weight",
        ])
        #expect(m.namedBuffers().map(\.name) == [
            "running_mean", "counter",
            "list.0.running_mean", "list.0.running_var", "list.0.num_batches_tracked",
            "list.1.running_mean", "list.1.running_var", "list.1.num_batches_tracked",
        ])
        #expect(m.children.map(\.name) == ["plain", "present", "list.0", "list.1", "renamed", "blocks.0", "blocks.1", "0"])
        #expect(m.namedParameters().allSatisfy { $0.tensor.requiresGrad })
        #expect(!m.mean.requiresGrad && !m.counter.requiresGrad && !m.filter.requiresGrad)
        #expect(m.stateDict().keys.sorted() == (m.namedParameters() + m.namedBuffers()).map(\.name).sorted())

        // Optional children and tensors appear once set.
        m.dropPath = DropPath(probability: 0.1)
        m.missingBias = Tensor(shape: [2], repeating: 0)
        #expect(m.children.map(\.name).contains("drop_path"))
        #expect(m.namedParameters()[2].name == "missingBias" && m.missingBias!.requiresGrad)
    }

    @Test("a superclass's declarations come first; containedModules adds run-time names")
    func inheritanceAndContainers() {
        #expect(DerivedLayouts().children.map(\.name) == ["trunk", "head"])
        #expect(DerivedLayouts().namedParameters().map(\.name) == ["scale", "trunk.weight", "head.weight"])
        #expect(NamedContainer().namedParameters().map(\.name) == ["alpha.weight", "alpha.bias", "beta.weight", "beta.bias"])
    }

    @Test("a replaced classifier and the biases BatchNorm folding adds are seen")
    func replacedAndAddedState() {
        let net = TinyHeadedNet()
        let oldWeight = net.fc.weight
        net.resetClassifier(classes: 3)
        let fc = net.namedParameters().filter { $0.name.hasPrefix("fc.") }
        #expect(fc.map(\.name) == ["fc.weight", "fc.bias"])
        #expect(fc[0].tensor === net.fc.weight && fc[0].tensor !== oldWeight && fc[0].tensor.shape == [3, 32])
        #expect(!net.namedParameters().map(\.name).contains("stem.bias"))
        net.eval()
        net.foldBatchNorms()
        let names = net.namedParameters().map(\.name)
        #expect(names.contains("stem.bias") && names.contains("conv2.bias"))
        #expect(net.stateDict()["conv2.bias"]?.shape == [32])
    }

    @Test("train() and eval() reach children in arrays, keyed arrays and Sequential")
    func modesReachEveryChild() {
        let m = DeclarationLayouts()
        m.dropPath = DropPath(probability: 0.1)
        let sequential = Sequential([Linear(inputFeatures: 1, outputFeatures: 1), Dropout(probability: 0.5)])
        let all = m.namedModules().map(\.module) + sequential.namedModules().map(\.module)
        #expect(m.namedModules().count == 10 && sequential.namedModules().count == 3)
        m.eval(); sequential.eval()
        #expect(all.allSatisfy { !$0.isTraining })
        m.train(); sequential.train()
        #expect(all.allSatisfy { $0.isTraining })
    }

    @Test("a stored Tensor that is not declared stops the program")
    func undeclaredTensorStops() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = UndeclaredTensor().namedParameters()
        }
        // The message names the type and the property, in optimised builds too.
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("UndeclaredTensor.weight") && message.contains("@Parameter"), "\(message)")
    }

    @Test("reading a keyed declaration its initialiser never set stops the program")
    func unsetDeclarationStops() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = UnsetDeclaration().weight
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("_name.wrappedValue"), "\(message)")
    }
}
