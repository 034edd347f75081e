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
            override init() { super.init(); register("a", a); register("b", b) }
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
        let net = Initialization.withSeed(2) { TinyNet() }
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
        let a = Initialization.withSeed(3) { TinyNet() }
        _ = withoutGradients { a(Self.input()) }  // non-trivial running stats and counter
        try a.save(to: url, metadata: ["architecture": "tinynet"])
        let b = Initialization.withSeed(4) { TinyNet() }
        let report = try b.load(contentsOf: url)
        #expect(report.isExact)
        a.eval(); b.eval()
        #expect(withoutGradients { a(Self.input()) }.toArray() == withoutGradients { b(Self.input()) }.toArray())
        #expect(b.bn1.batchesTracked.item == 1)

        let other = TinyNet(classes: 5)
        #expect(throws: StateDictError.self) { try other.load(contentsOf: url) }
        let lenient = try other.load(contentsOf: url, strict: false, skippingMismatchedPrefixes: other.classifierPrefixes)
        #expect(lenient.skipped == ["fc.bias", "fc.weight"] || lenient.skipped == ["fc.weight", "fc.bias"])

        let wrong = TinyNet(inputChannels: 3)
        do {
            try wrong.load(contentsOf: url, strict: false)
            Issue.record("mismatched stem loaded")
        } catch let error as StateDictError {
            #expect(error.description.contains("stem.weight"))
        }
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
