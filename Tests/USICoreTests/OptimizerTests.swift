import CUSIKernels
import Foundation
import Testing
import USICore

/// The fixture's tiny model, rebuilt from USICore ops:
/// `logits = (fc2(gelu(fc1(x))) · logit_scale) + offset_token`, loss = cross-entropy.
/// `unused.weight` never receives a gradient.
struct TinyOptimizerModel {
    static let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "logit_scale", "offset_token", "unused.weight"]
    let parameters: [(name: String, tensor: Tensor)]
    let x: Tensor
    let labels: [Int]

    init(_ file: SafeTensorsFile) throws {
        parameters = try Self.names.map { name in
            let t = try file.tensor("tiny.init.\(name)")
            t.requiresGrad = true
            return (name, t)
        }
        x = try file.tensor("tiny.x")
        labels = try file.integers("tiny.labels").map { Int($0) }
    }

    subscript(_ name: String) -> Tensor { parameters.first { $0.name == name }!.tensor }

    func loss() -> Tensor {
        let hidden = gelu(linear(x, weight: self["fc1.weight"], bias: self["fc1.bias"]))
        let logits = linear(hidden, weight: self["fc2.weight"], bias: self["fc2.bias"]) * self["logit_scale"] + self["offset_token"]
        return crossEntropy(logits, labels: labels)
    }

    /// A deep copy (fresh tensors with the same values).
    func copy() -> [(name: String, tensor: Tensor)] {
        parameters.map { p in
            let t = p.tensor.copy()
            t.requiresGrad = true
            return (p.name, t)
        }
    }
}

/// Sets `parameter.grad` to exactly `gradient` (through the tape: d/dp Σ p·g = g).
func setGradient(_ parameter: Tensor, _ gradient: Tensor) {
    parameter.zeroGrad()
    (parameter * gradient.detached()).sum().backward()
}

/// Float64 values stored as int64 bit patterns.
func doubles(_ file: SafeTensorsFile, _ name: String) throws -> [Double] {
    try file.integers(name).map { Double(bitPattern: UInt64(bitPattern: $0)) }
}

@Suite("Optimizers")
struct OptimizerTests {
    static let optimizerTolerance = Tolerance(relative: 1e-6, absolute: 1e-7)
    static let trainingTolerance = Tolerance(relative: 1e-5, absolute: 1e-6)

    static func makeOptimizer(_ name: String, _ config: [String: Any], _ parameters: [(name: String, tensor: Tensor)]) -> Optimizer {
        let noWeightDecay = Set(config["no_weight_decay"] as! [String])
        let weightDecay = Float(config["weight_decay"] as! Double), lr = Float(config["lr"] as! Double)
        if name.hasPrefix("adamw") {
            let betas = config["betas"] as! [Double]
            return AdamW(parameters: parameters, learningRate: lr, betas: (Float(betas[0]), Float(betas[1])),
                         epsilon: Float(config["eps"] as! Double), weightDecay: weightDecay, noWeightDecay: noWeightDecay)
        }
        return SGD(parameters: parameters, learningRate: lr, momentum: Float(config["momentum"] as! Double),
                   dampening: Float(config["dampening"] as! Double), nesterov: config["nesterov"] as! Bool,
                   weightDecay: weightDecay, noWeightDecay: noWeightDecay)
    }

    static func file(for name: String) throws -> SafeTensorsFile {
        try fixture(name.hasPrefix("adamw") ? "optim_adamw" : "optim_sgd")
    }

    static let cases = ["adamw_usi", "adamw_strong", "sgd_nesterov", "sgd_momentum"]

    @Test("weight-decay groups match timm's param_groups_weight_decay", arguments: cases)
    func groups(_ name: String) throws {
        let file = try Self.file(for: name)
        let config = try caseConfig(file, name)
        let model = try TinyOptimizerModel(file)
        let groups = ParameterGroup.weightDecayGroups(model.parameters, weightDecay: Float(config["weight_decay"] as! Double),
                                                      noWeightDecay: Set(config["no_weight_decay"] as! [String]))
        #expect(groups.count == 2)
        #expect(groups[0].weightDecay == 0)
        #expect(groups[0].parameters.map(\.name).sorted() == (config["no_decay_names"] as! [String]))
        #expect(groups[1].weightDecay == Float(config["weight_decay"] as! Double))
        #expect(groups[1].parameters.map(\.name).sorted() == (config["decay_names"] as! [String]))
    }

    @Test("the update equals torch's, given torch's gradients", arguments: cases)
    func updateGivenGradients(_ name: String) throws {
        let file = try Self.file(for: name)
        let config = try caseConfig(file, name)
        let model = try TinyOptimizerModel(file)
        let optimizer = Self.makeOptimizer(name, config, model.parameters)
        let steps = config["steps"] as! Int
        let lrs = try doubles(file, "\(name).lr_bits")
        for k in 1...steps {
            for (pname, p) in model.parameters {
                if file.entries["\(name).grad\(k).\(pname)"] != nil {
                    setGradient(p, try file.tensor("\(name).grad\(k).\(pname)"))
                } else {
                    p.zeroGrad()
                }
            }
            optimizer.learningRate = Float(lrs[k - 1])
            optimizer.step()
            if [1, 5, steps].contains(k) {
                for (pname, p) in model.parameters {
                    expectClose(p, try file.tensor("\(name).step\(k).\(pname)"), Self.optimizerTolerance, "\(name) step \(k) \(pname)")
                }
            }
        }
        #expect(model["unused.weight"].toArray() == (try file.tensor("tiny.init.unused.weight")).toArray())
        // The exported state is torch's state_dict, slot for slot.
        let state = optimizer.exportState()
        let torchKeys = file.names.filter { $0.hasPrefix("\(name).state.") }.map { String($0.dropFirst("\(name).state.".count)) }
        #expect(Set(state.tensors.keys).union(state.counters.keys) == Set(torchKeys))
        for (key, tensor) in state.tensors {
            expectClose(tensor, try file.tensor("\(name).state.\(key)"), Self.optimizerTolerance, "\(name) state \(key)")
        }
        for (key, value) in state.counters {
            #expect(value == (try file.integers("\(name).state.\(key)"))[0], "\(key)")
        }
    }

    @Test("training with our autograd follows torch (losses and weights)", arguments: cases)
    func training(_ name: String) throws {
        let file = try Self.file(for: name)
        let config = try caseConfig(file, name)
        let model = try TinyOptimizerModel(file)
        let optimizer = Self.makeOptimizer(name, config, model.parameters)
        let steps = config["steps"] as! Int
        let lrs = try doubles(file, "\(name).lr_bits")
        var losses: [Float] = []
        for k in 1...steps {
            optimizer.zeroGradients()
            let loss = model.loss()
            losses.append(loss.item)
            loss.backward()
            #expect(model["unused.weight"].grad == nil)
            optimizer.learningRate = Float(lrs[k - 1])
            optimizer.step()
            if [1, 5, steps].contains(k) {
                for (pname, p) in model.parameters {
                    expectClose(p, try file.tensor("\(name).step\(k).\(pname)"), Self.trainingTolerance, "\(name) step \(k) \(pname)")
                }
            }
        }
        expectClose(Tensor(shape: [steps], values: losses), try file.tensor("\(name).losses"), Self.trainingTolerance, "\(name) losses")
    }

    @Test("export → safetensors → import continues bit-identically", arguments: ["adamw_usi", "sgd_nesterov"])
    func resume(_ name: String) throws {
        let file = try Self.file(for: name)
        let config = try caseConfig(file, name)
        let model = try TinyOptimizerModel(file)
        let optimizer = Self.makeOptimizer(name, config, model.parameters)
        func train(_ optimizer: Optimizer, _ model: TinyOptimizerModel, steps: Int) -> [Float] {
            (0..<steps).map { _ in
                optimizer.zeroGradients()
                let loss = model.loss()
                loss.backward()
                optimizer.step()
                return loss.item
            }
        }
        _ = train(optimizer, model, steps: 4)
        // Checkpoint: weights and optimizer state through a safetensors file in memory.
        var records = optimizer.exportState().safeTensorsRecords(prefix: "optimizer.")
        for (pname, p) in model.parameters { records["model.\(pname)"] = SafeTensorsRecord(p) }
        let saved = try SafeTensorsFile(data: try SafeTensors.encode(records))
        let uninterrupted = train(optimizer, model, steps: 4)

        let restoredModel = try TinyOptimizerModel(file)
        for (pname, p) in restoredModel.parameters { p.assign(try saved.tensor("model.\(pname)")) }
        let restored = Self.makeOptimizer(name, config, restoredModel.parameters)
        try restored.importState(OptimizerState(file: saved, prefix: "optimizer."))
        let resumed = train(restored, restoredModel, steps: 4)
        #expect(resumed == uninterrupted)
        for (a, b) in zip(model.parameters, restoredModel.parameters) {
            #expect(a.tensor.toArray() == b.tensor.toArray(), "\(a.name)")
        }
        if let adamW = restored as? AdamW { #expect(adamW.stepCount(of: "fc1.weight") == 8) }
    }

    @Test("importing state that does not fit throws a clear error")
    func importErrors() throws {
        let model = try TinyOptimizerModel(try fixture("optim_adamw"))
        let optimizer = AdamW(parameters: model.parameters)
        let shape = model["fc1.bias"].shape
        let good = OptimizerState(tensors: ["fc1.bias.exp_avg": .zeros(shape), "fc1.bias.exp_avg_sq": .zeros(shape)],
                                  counters: ["fc1.bias.step": 3])
        try optimizer.importState(good)
        #expect(optimizer.stepCount(of: "fc1.bias") == 3)
        var unknown = good
        unknown.tensors["head.bias.exp_avg"] = .zeros([4])
        #expect(throws: OptimizerError.self) { try optimizer.importState(unknown) }
        var misShaped = good
        misShaped.tensors["fc1.bias.exp_avg"] = .zeros([3])
        #expect(throws: OptimizerError.self) { try optimizer.importState(misShaped) }
        var incomplete = good
        incomplete.counters = [:]
        let error = #expect(throws: OptimizerError.self) { try optimizer.importState(incomplete) }
        #expect(error?.description.contains("fc1.bias.step") == true)
        var badSlot = good
        badSlot.tensors["fc1.bias.momentum_buffer"] = .zeros(shape)
        #expect(throws: OptimizerError.self) { try optimizer.importState(badSlot) }
        // A failed import changes nothing.
        #expect(optimizer.stepCount(of: "fc1.bias") == 3)
    }

    @Test("USI's grouping rules: rank ≤ 1, .bias, no_weight_decay names and patterns, frozen parameters")
    func groupingRules() {
        func decays(_ name: String, _ shape: [Int], _ noWeightDecay: Set<String> = []) -> Bool {
            ParameterGroup.appliesWeightDecay(name: name, shape: shape, noWeightDecay: noWeightDecay)
        }
        #expect(decays("layer1.0.conv1.weight", [64, 3, 3, 64]))
        #expect(!decays("layer1.0.bn1.weight", [64]))
        #expect(!decays("head.fc.bias", [10]))
        #expect(!decays("odd.bias", [3, 3]))  // the name alone excludes it
        #expect(!decays("scale", []))
        #expect(!decays("cls_token", [1, 1, 8], ["cls_token", "pos_embed"]))
        #expect(decays("blocks.0.cls_token", [1, 1, 8], ["cls_token"]))  // exact names, as timm
        #expect(!decays("blocks.3.attn.rel_pos", [7, 7], ["blocks.*.attn.rel_pos"]))
        #expect(!decays("stages.1.pos_embed", [1, 4, 4], ["stages.?.pos_embed"]))
        #expect(decays("stages.12.pos_embed", [1, 4, 4], ["stages.?.pos_embed"]))
        let frozen = Tensor.zeros([2, 2]), trained = Tensor.zeros([2, 2], requiresGrad: true)
        let groups = ParameterGroup.weightDecayGroups([("frozen.weight", frozen), ("trained.weight", trained)], weightDecay: 0.1)
        #expect(groups.count == 1 && groups[0].parameters.map(\.name) == ["trained.weight"] && groups[0].weightDecay == 0.1)
        let noDecay = ParameterGroup.weightDecayGroups([("trained.weight", trained)], weightDecay: 0)
        #expect(noDecay.count == 1 && noDecay[0].weightDecay == 0)
    }

    @Test("learning-rate scale and parameters without gradients")
    func learningRateScaleAndMissingGradients() {
        let a = Tensor(shape: [3], values: [1, 2, 3], requiresGrad: true)
        let b = Tensor(shape: [3], values: [1, 2, 3], requiresGrad: true)
        let c = Tensor(shape: [2], values: [5, 5], requiresGrad: true)
        let sgd = SGD(groups: [ParameterGroup(parameters: [("a", a), ("c", c)], weightDecay: 0),
                               ParameterGroup(parameters: [("b", b)], weightDecay: 0, learningRateScale: 0.5)],
                      learningRate: 0.1)
        setGradient(a, Tensor(shape: [3], values: [1, 1, 1]))
        setGradient(b, Tensor(shape: [3], values: [1, 1, 1]))
        sgd.step()
        let lr: Float = 0.1, halfLR: Float = 0.05
        let expectedA: [Float] = [1 - lr, 2 - lr, 3 - lr], expectedB: [Float] = [1 - halfLR, 2 - halfLR, 3 - halfLR]
        #expect(a.toArray() == expectedA)
        #expect(b.toArray() == expectedB)
        #expect(c.toArray() == [5, 5])
        sgd.zeroGradients()
        #expect(a.grad == nil && b.grad == nil)
        #expect(sgd.exportState().tensors.isEmpty)  // no momentum, no state
    }

    @Test("SGD and EMA C loops agree with their naive references", arguments: [7, 100_003])
    func kernels(_ n: Int) {
        let p0 = randomTensor([n], seed: 1, requiresGrad: false), g = randomTensor([n], seed: 2, requiresGrad: false)
        let b0 = randomTensor([n], seed: 3, requiresGrad: false)
        for (nesterov, first, dampening) in [(true, true, Float(0)), (true, false, 0), (false, false, 0.25), (false, true, 0.25)] {
            let p1 = p0.copy(), p2 = p0.copy(), b1 = b0.copy(), b2 = b0.copy()
            usi_sgd_step(p1.pointer, g.pointer, b1.pointer, n, 0.1, 0.9, dampening, 1e-3, nesterov ? 1 : 0, first ? 1 : 0)
            usi_sgd_step_naive(p2.pointer, g.pointer, b2.pointer, n, 0.1, 0.9, dampening, 1e-3, nesterov ? 1 : 0, first ? 1 : 0)
            expectClose(p1, p2, Tolerance(relative: 1e-6, absolute: 1e-7), "sgd param n=\(n) nesterov=\(nesterov) first=\(first)")
            expectClose(b1, b2, Tolerance(relative: 1e-6, absolute: 1e-7), "sgd buffer n=\(n)")
        }
        let p1 = p0.copy(), p2 = p0.copy()
        usi_sgd_step(p1.pointer, g.pointer, nil, n, 0.1, 0, 0, 1e-2, 0, 1)
        usi_sgd_step_naive(p2.pointer, g.pointer, nil, n, 0.1, 0, 0, 1e-2, 0, 1)
        expectClose(p1, p2, Tolerance(relative: 1e-6, absolute: 1e-7), "plain sgd n=\(n)")
        for decay in [0.9, 0.25, 0.99996] {
            let e1 = b0.copy(), e2 = b0.copy()
            usi_ema_update(e1.pointer, p0.pointer, n, decay)
            usi_ema_update_naive(e2.pointer, p0.pointer, n, decay)
            expectClose(e1, e2, Tolerance(relative: 1e-6, absolute: 1e-7), "ema n=\(n) decay=\(decay)")
        }
        let reference = p0.toArray().reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(usi_optim_sum_squares(p0.pointer, n) - reference) <= 1e-9 * reference)
    }

    @Test("gradient clipping matches torch.nn.utils.clip_grad_norm_", arguments: ["clip_small", "clip_half", "clip_none"])
    func clipping(_ name: String) throws {
        let file = try fixture("optim_clip")
        let config = try caseConfig(file, name)
        let parameters = try (0..<3).map { i -> (name: String, tensor: Tensor) in
            let g = try file.tensor("grad\(i)")
            let p = Tensor.zeros(g.shape, requiresGrad: true)
            setGradient(p, g)
            return ("p\(i)", p)
        }
        let withoutGradient = Tensor.zeros([4], requiresGrad: true)
        let total = clipGradientNorm(parameters + [("none", withoutGradient)], maxNorm: Float(config["max_norm"] as! Double))
        expectClose(Tensor(total), try file.tensor("\(name).total_norm"), Tolerance(relative: 1e-6, absolute: 0), "\(name) total norm")
        for (i, p) in parameters.enumerated() {
            expectClose(p.tensor.grad, try file.tensor("\(name).clipped\(i)"), Tolerance(relative: 1e-6, absolute: 1e-7), "\(name) grad \(i)")
        }
        #expect(withoutGradient.grad == nil)
    }

    @Test("gradient clipping: no gradients, non-finite gradients, through an optimizer")
    func clippingEdgeCases() {
        let a = Tensor.zeros([2], requiresGrad: true)
        #expect(clipGradientNorm([a], maxNorm: 1) == 0)
        setGradient(a, Tensor(shape: [2], values: [3, 4]))
        let optimizer = SGD(parameters: [("a", a)], learningRate: 1)
        #expect(optimizer.clipGradientNorm(maxNorm: 1) == 5)
        let g = a.grad!.toArray()
        #expect(abs(g[0] - 0.6) < 1e-6 && abs(g[1] - 0.8) < 1e-6)
        #expect(abs(gradientNorm([a]) - 1) < 1e-5)
        setGradient(a, Tensor(shape: [2], values: [.nan, 1]))
        #expect(clipGradientNorm([a], maxNorm: 1).isNaN)
        #expect(a.grad!.hasNonFinite)
    }
}
