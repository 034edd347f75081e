import Foundation
import Testing
import USICore

/// The EMA of weights against analytic values and timm's ModelEmaV3 (optim_ema.safetensors).
@Suite("EMA of weights")
struct EMATests {
    @Test("decay schedule equals ModelEmaV3.get_decay", arguments: ["decay_warmup", "decay_warmup_floor", "decay_constant"])
    func decaySchedule(_ name: String) throws {
        let file = try fixture("optim_ema")
        let config = try caseConfig(file, name)
        let ema = ExponentialMovingAverage([("w", Tensor.zeros([1]))], decay: config["decay"] as! Double,
                                           warmup: (config["use_warmup"] as! Bool)
                                               ? .init(gamma: config["warmup_gamma"] as! Double, power: config["warmup_power"] as! Double)
                                               : nil,
                                           minimumDecay: config["min_decay"] as! Double,
                                           updateAfterStep: config["update_after_step"] as! Int)
        let steps = config["steps"] as! [Int]
        let expected = try doubles(file, "\(name).decay_bits")
        for (step, value) in zip(steps, expected) {
            let ours = ema.decay(atStep: step)
            #expect(abs(ours - value) <= 1e-12 * abs(value), "\(name) step \(step): \(ours) vs timm \(value)")
        }
        #expect(ema.decay(atStep: nil) == (try doubles(file, "\(name).decay_none_bits"))[0])
    }

    @Test("update runs equal ModelEmaV3 (parameters averaged, num_batches_tracked copied)",
          arguments: [("run_warmup", false), ("run_warmup", true), ("run_constant", false)])
    func runs(_ name: String, _ explicitSteps: Bool) throws {
        let file = try fixture("optim_ema")
        let config = try caseConfig(file, name)
        let names = config["names"] as! [String]
        let model = try names.map { ($0, try file.tensor("\(name).model0.\($0)")) }
        let ema = ExponentialMovingAverage(model, decay: config["decay"] as! Double,
                                           warmup: (config["use_warmup"] as? Bool ?? false)
                                               ? .init(gamma: config["warmup_gamma"] as! Double, power: config["warmup_power"] as! Double)
                                               : nil)
        for k in 1...(config["updates"] as! Int) {
            for (n, t) in model { t.assign(try file.tensor("\(name).model\(k).\(n)")) }
            if explicitSteps { ema.update(step: k) } else { ema.update() }
            #expect(ema.stepCount == k)
        }
        for n in names {
            expectClose(ema[n], try file.tensor("\(name).ema.\(n)"), Tolerance(relative: 1e-6, absolute: 1e-7), "\(name) \(n)")
        }
        #expect(ema["1.num_batches_tracked"]?.item == model.first { $0.0 == "1.num_batches_tracked" }!.1.item)
    }

    @Test("analytic updates: ema = d·ema + (1 − d)·value; counters are copied")
    func analytic() throws {
        let w = Tensor(shape: [2], values: [0, 8]), counter = Tensor(shape: [], values: [0])
        let ema = ExponentialMovingAverage([("w", w), ("count", counter)], decay: 0.75, copiedNames: ["count"])
        var expected: [Double] = [0, 8]
        for (k, value) in [[4.0, 0.0], [4.0, 4.0], [-2.0, 1.0]].enumerated() {
            w.assign(Tensor(shape: [2], values: value.map(Float.init)))
            counter.fill(Float(k + 1))
            ema.update()
            expected = zip(expected, value).map { 0.75 * $0 + 0.25 * $1 }
            #expect(ema.lastDecay == 0.75)
            for i in 0..<2 { #expect(abs(Double(ema["w"]!.toArray()[i]) - expected[i]) < 1e-6) }
            #expect(ema["count"]?.item == Float(k + 1))
        }
        // timm V3 with an explicit step: the first update after update_after_step copies.
        let v = Tensor(shape: [1], values: [1])
        let copying = ExponentialMovingAverage([("v", v)], decay: 0.5)
        v.fill(3)
        copying.update(step: 1)
        #expect(copying["v"]?.item == 3 && copying.lastDecay == 0)
        v.fill(5)
        copying.update(step: 2)
        #expect(copying["v"]?.item == 4)
        // Time constants.
        #expect(abs(ExponentialMovingAverage.decay(timeConstant: 25_000) - 0.99996) < 1e-9)
        #expect(abs(ExponentialMovingAverage.timeConstant(decay: ExponentialMovingAverage.decay(timeConstant: 123)) - 123) < 1e-6)
    }

    @Test("copy(into:), reset, export and import")
    func copyAndState() throws {
        let w = Tensor(shape: [2], values: [1, 2]), b = Tensor(shape: [1], values: [3])
        let ema = ExponentialMovingAverage([("w", w), ("b", b)], decay: 0.5)
        w.fill(3); b.fill(5)
        ema.update()
        #expect(ema.names == ["w", "b"])
        #expect(ema.averages.map(\.name) == ["w", "b"])
        let evalW = Tensor.zeros([2]), evalB = Tensor.zeros([1])
        try ema.copy(into: [("w", evalW), ("b", evalB)])
        #expect(evalW.toArray() == [2, 2.5] && evalB.toArray() == [4])
        #expect(throws: OptimizerError.self) { try ema.copy(into: [("missing", evalW)]) }
        #expect(throws: OptimizerError.self) { try ema.copy(into: [("w", Tensor.zeros([3]))]) }

        let saved = ema.exportState()
        let restored = ExponentialMovingAverage([("w", w), ("b", b)], decay: 0.5)
        try restored.importState(saved, stepCount: ema.stepCount)
        #expect(restored["w"]!.toArray() == ema["w"]!.toArray() && restored.stepCount == 1)
        ema.update(); restored.update()
        #expect(restored["w"]!.toArray() == ema["w"]!.toArray() && restored["b"]!.toArray() == ema["b"]!.toArray())
        #expect(throws: OptimizerError.self) { try restored.importState(["w": Tensor.zeros([2])], stepCount: 0) }
        #expect(throws: OptimizerError.self) {
            try restored.importState(["w": Tensor.zeros([2]), "b": Tensor.zeros([1]), "x": Tensor.zeros([1])], stepCount: 0)
        }
        #expect(throws: OptimizerError.self) { try restored.importState(["w": Tensor.zeros([3]), "b": Tensor.zeros([1])], stepCount: 0) }

        ema.reset()
        #expect(ema["w"]!.toArray() == w.toArray())
    }
}
