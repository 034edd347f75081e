import Foundation
import Testing
import USICore

/// Forward and gradient parity with PyTorch on the committed fixtures
/// (Tools/fixtures/make_core_fixtures.py). Tolerances: forward rtol 1e-4, gradients rtol 1e-3.
@Suite("PyTorch parity")
struct ParityTests {
    static let convCases = ["conv3x3_s1_p1", "conv3x3_s2_p1", "conv1x1_s1", "conv1x1_s2", "conv5x5_s1_p2_d1",
                            "conv3x3_s1_p2_d2", "conv3x3_groups4", "dw3x3_s1", "dw3x3_s2", "dw5x5_s2_same",
                            "conv3x3_nobias", "conv_rect"]

    @Test("conv2d forward and gradients", arguments: convCases)
    func conv(_ name: String) throws {
        let file = try fixture("conv2d")
        let config = try caseConfig(file, name)
        let x = try file.channelsLast("\(name).x"), w = try file.channelsLast("\(name).weight")
        x.requiresGrad = true; w.requiresGrad = true
        let b = file.entries["\(name).bias"] != nil ? try file.tensor("\(name).bias") : nil
        b?.requiresGrad = true
        let stride = config["stride"] as! [Int], dilation = config["dilation"] as! [Int], p = config["padding"] as! [Int]
        let padding: Padding = (config["padding_mode"] as? String) == "tf_same"
            ? .same : .explicit(top: p[0], bottom: p[1], left: p[2], right: p[3])
        let y = conv2d(x, weight: w, bias: b, stride: (stride[0], stride[1]), padding: padding,
                       dilation: (dilation[0], dilation[1]), groups: config["groups"] as! Int)
        expectClose(channelsFirst(y), try file.tensor("\(name).out"), .forward, "\(name) out")
        try (y * file.channelsLast("\(name).grad_out")).sum().backward()
        expectClose(x.grad.map(channelsFirst), try file.tensor("\(name).grad_x"), .gradient, "\(name) grad_x")
        expectClose(w.grad.map(channelsFirst), try file.tensor("\(name).grad_weight"), .gradient, "\(name) grad_weight")
        if let b { expectClose(b.grad, try file.tensor("\(name).grad_bias"), .gradient, "\(name) grad_bias") }
    }

    @Test("batch norm, training: output, running statistics, gradients")
    func batchNormTrain() throws {
        let file = try fixture("norm")
        let x = try file.channelsLast("batchnorm_train.x")
        let w = try file.tensor("batchnorm_train.weight"), b = try file.tensor("batchnorm_train.bias")
        let rm = try file.tensor("batchnorm_train.running_mean_in"), rv = try file.tensor("batchnorm_train.running_var_in")
        for t in [x, w, b] { t.requiresGrad = true }
        let y = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVariance: rv, training: true)
        expectClose(channelsFirst(y), try file.tensor("batchnorm_train.out"), .forward, "bn train out")
        expectClose(rm, try file.tensor("batchnorm_train.running_mean_out"), .forward, "running mean")
        expectClose(rv, try file.tensor("batchnorm_train.running_var_out"), .forward, "running var")
        try (y * file.channelsLast("batchnorm_train.grad_out")).sum().backward()
        expectClose(x.grad.map(channelsFirst), try file.tensor("batchnorm_train.grad_x"), .gradient, "bn grad_x")
        expectClose(w.grad, try file.tensor("batchnorm_train.grad_weight"), .gradient, "bn grad_weight")
        expectClose(b.grad, try file.tensor("batchnorm_train.grad_bias"), .gradient, "bn grad_bias")
    }

    @Test("batch norm, eval: output and gradients")
    func batchNormEval() throws {
        let file = try fixture("norm")
        let x = try file.channelsLast("batchnorm_eval.x")
        let w = try file.tensor("batchnorm_eval.weight"), b = try file.tensor("batchnorm_eval.bias")
        for t in [x, w, b] { t.requiresGrad = true }
        let y = batchNorm(x, weight: w, bias: b, runningMean: try file.tensor("batchnorm_eval.running_mean"),
                          runningVariance: try file.tensor("batchnorm_eval.running_var"), training: false)
        expectClose(channelsFirst(y), try file.tensor("batchnorm_eval.out"), .forward, "bn eval out")
        try (y * file.channelsLast("batchnorm_eval.grad_out")).sum().backward()
        expectClose(x.grad.map(channelsFirst), try file.tensor("batchnorm_eval.grad_x"), .gradient, "bn eval grad_x")
        expectClose(w.grad, try file.tensor("batchnorm_eval.grad_weight"), .gradient, "bn eval grad_weight")
        expectClose(b.grad, try file.tensor("batchnorm_eval.grad_bias"), .gradient, "bn eval grad_bias")
    }

    @Test("layer norm over the last axis and over channels (LayerNorm2d)", arguments: ["layernorm_last", "layernorm2d"])
    func layerNormParity(_ name: String) throws {
        let file = try fixture("norm")
        let x = try file.channelsLast("\(name).x")
        let w = try file.tensor("\(name).weight"), b = try file.tensor("\(name).bias")
        for t in [x, w, b] { t.requiresGrad = true }
        let y = layerNorm(x, weight: w, bias: b, epsilon: 1e-6)
        expectClose(channelsFirst(y), try file.tensor("\(name).out"), .forward, "\(name) out")
        try (y * file.channelsLast("\(name).grad_out")).sum().backward()
        expectClose(x.grad.map(channelsFirst), try file.tensor("\(name).grad_x"), .gradient, "\(name) grad_x")
        expectClose(w.grad, try file.tensor("\(name).grad_weight"), .gradient, "\(name) grad_weight")
        expectClose(b.grad, try file.tensor("\(name).grad_bias"), .gradient, "\(name) grad_bias")
    }

    static let activations: [(String, @Sendable (Tensor) -> Tensor)] = [
        ("gelu", { gelu($0) }), ("gelu_tanh", { gelu($0, approximateTanh: true) }), ("relu", relu), ("relu6", relu6),
        ("leaky_relu", { leakyReLU($0, negativeSlope: 0.1) }), ("silu", silu), ("hardswish", hardSwish),
        ("hardsigmoid", hardSigmoid), ("sigmoid", sigmoid), ("tanh", tanh), ("softmax", softmax),
        ("log_softmax", logSoftmax),
    ]

    @Test("activations, softmax and log-softmax", arguments: activations.map(\.0))
    func activation(_ name: String) throws {
        let file = try fixture("activations")
        let f = Self.activations.first { $0.0 == name }!.1
        let x = try file.tensor("x")
        x.requiresGrad = true
        let y = f(x)
        expectClose(y, try file.tensor("\(name).out"), .forward, "\(name) out")
        try (y * file.tensor("grad_out")).sum().backward()
        expectClose(x.grad, try file.tensor("\(name).grad_x"), .gradient, "\(name) grad_x")
    }

    @Test("cross-entropy (hard and soft), KL divergence and the USI loss")
    func losses() throws {
        let file = try fixture("losses")
        let labels = try file.integers("labels").map { Int($0) }
        let targets = try file.tensor("soft_targets")
        func logits() throws -> Tensor { let t = try file.tensor("logits"); t.requiresGrad = true; return t }

        let a = try logits()
        let hard = crossEntropy(a, labels: labels)
        expectClose(hard, try file.tensor("ce_hard.loss"), .forward, "ce_hard loss")
        hard.backward()
        expectClose(a.grad, try file.tensor("ce_hard.grad_logits"), .gradient, "ce_hard grad")

        let b = try logits()
        let soft = crossEntropy(b, softTargets: targets)
        expectClose(soft, try file.tensor("ce_soft.loss"), .forward, "ce_soft loss")
        soft.backward()
        expectClose(b.grad, try file.tensor("ce_soft.grad_logits"), .gradient, "ce_soft grad")

        let c = try logits(), teacher = try file.tensor("teacher_logits")
        teacher.requiresGrad = true
        let kl = klDivergence(student: c, teacher: teacher)
        expectClose(kl, try file.tensor("kl.loss"), .forward, "kl loss")
        kl.backward()
        expectClose(c.grad, try file.tensor("kl.grad_logits"), .gradient, "kl grad student")
        expectClose(teacher.grad, try file.tensor("kl.grad_teacher_logits"), .gradient, "kl grad teacher")

        let d = try logits()
        let usi = crossEntropy(d, softTargets: targets) + klDivergence(student: d, teacher: try file.tensor("teacher_logits")) * 5
        expectClose(usi, try file.tensor("usi_loss.loss"), .forward, "usi loss")
        usi.backward()
        expectClose(d.grad, try file.tensor("usi_loss.grad_logits"), .gradient, "usi grad")
    }

    @Test("scaled dot-product attention block (timm ViT Attention)")
    func attention() throws {
        let file = try fixture("attention")
        let config = try caseConfig(file, "attention")
        let heads = config["num_heads"] as! Int
        let x = try file.tensor("attention.x")
        let names = ["qkv.weight", "qkv.bias", "proj.weight", "proj.bias"]
        let p = try names.map { try file.tensor("attention.\($0)") }
        for t in [x] + p { t.requiresGrad = true }
        let (batch, tokens, dim) = (x.shape[0], x.shape[1], x.shape[2])
        let headDim = dim / heads
        let qkv = linear(x, weight: p[0], bias: p[1]).reshaped([batch, tokens, 3, heads, headDim]).permuted([2, 0, 3, 1, 4])
        let parts = qkv.split(sizes: [1, 1, 1], axis: 0).map { $0.reshaped([batch * heads, tokens, headDim]) }
        let attn = softmax(matmul(parts[0], parts[1], transposeB: true) * (1 / Float(headDim).squareRoot()))
        expectClose(attn.reshaped([batch, heads, tokens, tokens]), try file.tensor("attention.attn"), .forward, "attn")
        let mixed = matmul(attn, parts[2]).reshaped([batch, heads, tokens, headDim]).transposed(1, 2).reshaped([batch, tokens, dim])
        let y = linear(mixed, weight: p[2], bias: p[3])
        expectClose(y, try file.tensor("attention.out"), .forward, "attention out")
        try (y * file.tensor("attention.grad_out")).sum().backward()
        expectClose(x.grad, try file.tensor("attention.grad_x"), .gradient, "attention grad_x")
        for (name, t) in zip(names, p) {
            expectClose(t.grad, try file.tensor("attention.grad_\(name)"), .gradient, "attention grad \(name)")
        }
    }

    static let poolCases = ["maxpool3x3_s2_p1", "avgpool3x3_s2_p1_incl", "avgpool3x3_s2_p1_excl", "avgpool2x2_s2_ceil_excl",
                            "adaptive_avg_3x3_from7", "adaptive_avg_3x3_from8", "global_avg"]

    @Test("pooling", arguments: poolCases)
    func pool(_ name: String) throws {
        let file = try fixture("pool")
        let config = try caseConfig(file, name)
        let x = try file.channelsLast("\(name).x")
        x.requiresGrad = true
        let y: Tensor
        switch config["op"] as! String {
        case "max", "avg":
            let k = config["kernel"] as! [Int], s = config["stride"] as! [Int], p = config["padding"] as! [Int]
            let padding = Padding.explicit(top: p[0], bottom: p[1], left: p[2], right: p[3])
            let ceil = config["ceil_mode"] as! Bool
            y = config["op"] as! String == "max"
                ? maxPool2d(x, kernel: (k[0], k[1]), stride: (s[0], s[1]), padding: padding, ceilMode: ceil)
                : avgPool2d(x, kernel: (k[0], k[1]), stride: (s[0], s[1]), padding: padding, ceilMode: ceil,
                            countIncludePad: config["count_include_pad"] as! Bool)
        case "adaptive_avg":
            let o = config["output_size"] as! [Int]
            y = adaptiveAvgPool2d(x, outputSize: (o[0], o[1]))
        default:
            y = globalAvgPool2d(x)
        }
        expectClose(channelsFirst(y), try file.tensor("\(name).out"), .forward, "\(name) out")
        try (y * file.channelsLast("\(name).grad_out")).sum().backward()
        expectClose(x.grad.map(channelsFirst), try file.tensor("\(name).grad_x"), .gradient, "\(name) grad_x")
    }

    @Test("linear and batched matmul")
    func linearAndMatmul() throws {
        let file = try fixture("linear")
        let x = try file.tensor("linear.x"), w = try file.tensor("linear.weight"), b = try file.tensor("linear.bias")
        for t in [x, w, b] { t.requiresGrad = true }
        let y = linear(x, weight: w, bias: b)
        expectClose(y, try file.tensor("linear.out"), .forward, "linear out")
        try (y * file.tensor("linear.grad_out")).sum().backward()
        expectClose(x.grad, try file.tensor("linear.grad_x"), .gradient, "linear grad_x")
        expectClose(w.grad, try file.tensor("linear.grad_weight"), .gradient, "linear grad_weight")
        expectClose(b.grad, try file.tensor("linear.grad_bias"), .gradient, "linear grad_bias")

        let a = try file.tensor("matmul_batched.a"), m = try file.tensor("matmul_batched.b")
        a.requiresGrad = true; m.requiresGrad = true
        let z = matmul(a, m)
        expectClose(z, try file.tensor("matmul_batched.out"), .forward, "matmul out")
        try (z * file.tensor("matmul_batched.grad_out")).sum().backward()
        expectClose(a.grad, try file.tensor("matmul_batched.grad_a"), .gradient, "matmul grad_a")
        expectClose(m.grad, try file.tensor("matmul_batched.grad_b"), .gradient, "matmul grad_b")
    }
}
