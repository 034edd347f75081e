import Foundation

// The building blocks and the block builder timm's EfficientNet and MobileNetV3 share
// (timm/models/_efficientnet_blocks.py and _efficientnet_builder.py), with timm's module names
// so that `state_dict` keys match: `conv_dw`, `bn1`, `se.conv_reduce`, `conv_pwl`, `bn3`, …

/// timm's `make_divisible`: rounds `value` to the nearest multiple of `divisor` (at least
/// `minimum`, default `divisor`), adding one `divisor` when rounding lost more than 10 %.
public func efficientNetMakeDivisible(_ value: Double, divisor: Int = 8, minimum: Int? = nil,
                                      roundLimit: Double = 0.9) -> Int {
    let floor = minimum ?? divisor
    var rounded = max(floor, Int(value + Double(divisor) / 2) / divisor * divisor)
    if Double(rounded) < roundLimit * value { rounded += divisor }
    return rounded
}

/// timm's `round_channels`: channel count `channels × multiplier` made divisible by `divisor`.
public func efficientNetRoundChannels(_ channels: Int, multiplier: Double = 1, divisor: Int = 8) -> Int {
    multiplier == 0 ? channels : efficientNetMakeDivisible(Double(channels) * multiplier, divisor: divisor)
}

/// How the EfficientNet family pads its convolutions (timm's `pad_type`).
public enum EfficientNetPadding: Sendable, Hashable {
    /// PyTorch-style symmetric padding `((stride − 1) + dilation·(kernel − 1)) / 2` (timm's `''`).
    case symmetric
    /// TensorFlow "SAME" padding, asymmetric for strided convolutions (timm's `'same'`, the `tf_` models).
    case same

    func resolve(kernelSize: Int, stride: Int, dilation: Int = 1) -> Padding {
        switch self {
        case .symmetric: .symmetric(((stride - 1) + dilation * (kernelSize - 1)) / 2)
        case .same: .same
        }
    }
}

/// Batch normalisation settings of a network (timm's `bn_eps`/`bn_momentum`).
public struct EfficientNetNormalization: Sendable, Hashable {
    /// Added to the variance.
    public var epsilon: Float = 1e-5
    /// Running-statistics momentum (PyTorch convention).
    public var momentum: Float = 0.1
    /// PyTorch's defaults.
    public static let pytorch = EfficientNetNormalization()
    /// TensorFlow's (`BN_EPS_TF_DEFAULT`; timm keeps momentum 0.1 for the `tf_` models).
    public static let tensorflow = EfficientNetNormalization(epsilon: 1e-3, momentum: 0.1)

    func make(_ channels: Int) -> BatchNorm { BatchNorm(channels, epsilon: epsilon, momentum: momentum) }
}

/// A convolution with the family's padding rule and no bias (timm's `create_conv2d`).
func efficientNetConvolution(_ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1,
                             groups: Int = 1, padding: EfficientNetPadding, bias: Bool = false) -> Conv2d {
    Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
           padding: padding.resolve(kernelSize: kernelSize, stride: stride), groups: groups, bias: bias)
}

/// How a squeeze-and-excitation layer is configured (timm's `se_layer` partials).
public struct EfficientNetSqueezeExciteStyle: Sendable, Hashable {
    /// How the reduced channel count is rounded.
    public enum Rounding: Sendable, Hashable {
        /// Python's `round` (half to even) — EfficientNet.
        case nearestEven
        /// `round_channels` (`make_divisible(·, 8)`) — MobileNetV3.
        case divisibleBy8
    }
    /// Activation after the reduction; `nil` uses the block's activation.
    public var forcedActivation: Activation?
    /// Gate applied to the expanded excitation.
    public var gate: Activation
    /// Rounding of `channels × ratio`.
    public var rounding: Rounding
    /// Whether the ratio refers to the expanded (mid) channels (`se_from_exp`); otherwise it
    /// refers to the block's input channels and is divided by the expansion ratio.
    public var ratioFromExpanded: Bool

    /// EfficientNet's: block activation, sigmoid gate, `round`, ratio of the block input.
    public static let efficientNet = EfficientNetSqueezeExciteStyle(forcedActivation: nil, gate: .sigmoid,
                                                                   rounding: .nearestEven, ratioFromExpanded: false)
    /// MobileNetV3's: ReLU, hard-sigmoid gate, `round_channels`, ratio of the expanded channels.
    public static let mobileNetV3 = EfficientNetSqueezeExciteStyle(forcedActivation: .relu, gate: .hardSigmoid,
                                                                  rounding: .divisibleBy8, ratioFromExpanded: true)

    func reducedChannels(_ channels: Int, ratio: Double) -> Int {
        let value = Double(channels) * ratio
        switch rounding {
        case .nearestEven: return Int(value.rounded(.toNearestOrEven))
        case .divisibleBy8: return efficientNetMakeDivisible(value)
        }
    }
}

/// Squeeze-and-excitation of the EfficientNet/MobileNet blocks (timm's `SqueezeExcite`):
/// `x · gate(conv_expand(act(conv_reduce(mean_hw(x)))))`.
public final class EfficientNetSqueezeExcite: Module, UnaryLayer {
    let conv_reduce: Conv2d, conv_expand: Conv2d
    let activation: Activation, gate: Activation

    /// Creates the layer for `channels` with `reducedChannels` in the bottleneck.
    public init(channels: Int, reducedChannels: Int, activation: Activation, gate: Activation) {
        conv_reduce = Conv2d(inputChannels: channels, outputChannels: reducedChannels, kernelSize: 1)
        conv_expand = Conv2d(inputChannels: reducedChannels, outputChannels: channels, kernelSize: 1)
        self.activation = activation
        self.gate = gate
        super.init()
    }

    /// Rescales the channels of `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let squeezed = x.mean(axes: [1, 2], keepingAxes: true)
        return x * gate(conv_expand(activation(conv_reduce(squeezed))))
    }
}

/// One block of a timm architecture string (`ir_r2_k5_s2_e6_c40_se0.25`), as timm's
/// `_decode_block_str` reads it.
public struct EfficientNetBlockSpec: Sendable, Hashable {
    /// The block type.
    public enum Kind: String, Sendable, Hashable {
        /// Depthwise-separable (`ds`; `dsa` adds an activation after the pointwise conv).
        case depthwiseSeparable
        /// Inverted residual / MBConv (`ir`).
        case invertedResidual
        /// Conv + BN + activation (`cn`).
        case convBnAct
    }
    /// Block type.
    public var kind: Kind
    /// Repeats within the stage (`r`).
    public var repeats: Int
    /// Kernel size (`k`): depthwise kernel for `ds`/`ir`, the conv kernel for `cn`.
    public var kernelSize: Int
    /// Stride of the first repeat (`s`).
    public var stride: Int
    /// Expansion ratio (`e`, `ir` only).
    public var expansionRatio: Double
    /// Output channels before the channel multiplier (`c`).
    public var outputChannels: Int
    /// Squeeze-excitation ratio (`se`, 0 = none).
    public var squeezeExciteRatio: Double
    /// Activation override (`nre`, `nr6`, `nhs`, `nsw`); `nil` = the network's.
    public var activation: Activation?
    /// `noskip` (and `dsa`): no residual connection.
    public var noSkip: Bool
    /// `dsa`: activation after the pointwise conv of a depthwise-separable block.
    public var pointwiseActivation: Bool
    /// `skip` (for `cn`): a residual connection when shapes allow.
    public var forceSkip: Bool

    /// Parses timm's notation; throws on an unknown block type or a missing field.
    public init(_ text: String) throws {
        let ops = text.split(separator: "_").map(String.init)
        guard let type = ops.first else { throw ModelError(description: "empty block string") }
        var options: [String: String] = [:]
        var skip: Bool?
        var activation: Activation?
        for op in ops.dropFirst() {
            if op == "noskip" { skip = false; continue }
            if op == "skip" { skip = true; continue }
            if op.hasPrefix("n") {
                switch op.dropFirst() {
                case "re": activation = .relu
                case "r6": activation = .relu6
                case "hs": activation = .hardSwish
                case "sw": activation = .silu
                default: break
                }
                continue
            }
            guard let digit = op.firstIndex(where: { $0.isNumber }) else { continue }
            options[String(op[..<digit])] = String(op[digit...])
        }
        func value(_ key: String) throws -> String {
            guard let v = options[key] else { throw ModelError(description: "block '\(text)' has no '\(key)'") }
            return v
        }
        func int(_ key: String) throws -> Int {
            guard let v = Int(try value(key)) else { throw ModelError(description: "block '\(text)': bad '\(key)'") }
            return v
        }
        func double(_ key: String, default fallback: Double? = nil) throws -> Double {
            if options[key] == nil, let fallback { return fallback }
            guard let v = Double(try value(key)) else { throw ModelError(description: "block '\(text)': bad '\(key)'") }
            return v
        }
        repeats = try int("r")
        stride = try int("s")
        outputChannels = try int("c")
        kernelSize = try int("k")
        self.activation = activation
        squeezeExciteRatio = try double("se", default: 0)
        forceSkip = false
        pointwiseActivation = false
        switch type {
        case "ir":
            kind = .invertedResidual
            expansionRatio = try double("e")
            noSkip = skip == false
        case "ds", "dsa":
            kind = .depthwiseSeparable
            expansionRatio = 1
            pointwiseActivation = type == "dsa"
            noSkip = type == "dsa" || skip == false
        case "cn":
            kind = .convBnAct
            expansionRatio = 1
            noSkip = false
            forceSkip = skip == true
        default:
            throw ModelError(description: "unsupported block type '\(type)' in '\(text)'")
        }
    }
}

/// Everything a block needs besides its own spec.
struct EfficientNetBlockContext {
    var inputChannels: Int
    var outputChannels: Int
    var stride: Int
    var activation: Activation
    var padding: EfficientNetPadding
    var normalization: EfficientNetNormalization
    var squeezeExcite: EfficientNetSqueezeExciteStyle
    var dropPath: Float
}

/// timm's `DepthwiseSeparableConv`: dw conv → BN → act → SE → pw conv → BN (→ act) (+ skip).
public final class EfficientNetDepthwiseSeparableBlock: Module, UnaryLayer {
    let conv_dw: Conv2d, bn1: BatchNorm, se: EfficientNetSqueezeExcite?, conv_pw: Conv2d, bn2: BatchNorm
    let activation: Activation, pointwiseActivation: Bool, hasSkip: Bool
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    init(_ spec: EfficientNetBlockSpec, _ c: EfficientNetBlockContext) {
        let channels = c.inputChannels
        conv_dw = efficientNetConvolution(channels, channels, kernelSize: spec.kernelSize, stride: c.stride,
                                          groups: channels, padding: c.padding)
        bn1 = c.normalization.make(channels)
        if spec.squeezeExciteRatio > 0 {
            // A depthwise-separable block has no expansion: the ratio is the same either way.
            se = EfficientNetSqueezeExcite(
                channels: channels, reducedChannels: c.squeezeExcite.reducedChannels(channels, ratio: spec.squeezeExciteRatio),
                activation: c.squeezeExcite.forcedActivation ?? c.activation, gate: c.squeezeExcite.gate)
        } else {
            se = nil
        }
        conv_pw = efficientNetConvolution(channels, c.outputChannels, kernelSize: 1, padding: c.padding)
        bn2 = c.normalization.make(c.outputChannels)
        activation = c.activation
        pointwiseActivation = spec.pointwiseActivation
        hasSkip = c.stride == 1 && c.inputChannels == c.outputChannels && !spec.noSkip
        dropPath = c.dropPath > 0 ? DropPath(probability: c.dropPath) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = activation(bn1(conv_dw(x)))
        if let se { y = se(y) }
        y = bn2(conv_pw(y))
        if pointwiseActivation { y = activation(y) }
        guard hasSkip else { return y }
        if let dropPath { y = dropPath(y) }
        return y + x
    }
}

/// timm's `InvertedResidual` (MBConv): pw conv → BN → act → dw conv → BN → act → SE →
/// pw-linear conv → BN (+ skip).
public final class EfficientNetInvertedResidualBlock: Module, UnaryLayer {
    let conv_pw: Conv2d, bn1: BatchNorm, conv_dw: Conv2d, bn2: BatchNorm
    let se: EfficientNetSqueezeExcite?, conv_pwl: Conv2d, bn3: BatchNorm
    let activation: Activation, hasSkip: Bool
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    init(_ spec: EfficientNetBlockSpec, _ c: EfficientNetBlockContext) {
        let mid = efficientNetMakeDivisible(Double(c.inputChannels) * spec.expansionRatio)
        conv_pw = efficientNetConvolution(c.inputChannels, mid, kernelSize: 1, padding: c.padding)
        bn1 = c.normalization.make(mid)
        conv_dw = efficientNetConvolution(mid, mid, kernelSize: spec.kernelSize, stride: c.stride, groups: mid,
                                          padding: c.padding)
        bn2 = c.normalization.make(mid)
        if spec.squeezeExciteRatio > 0 {
            var ratio = spec.squeezeExciteRatio
            if !c.squeezeExcite.ratioFromExpanded { ratio /= spec.expansionRatio }
            se = EfficientNetSqueezeExcite(
                channels: mid, reducedChannels: c.squeezeExcite.reducedChannels(mid, ratio: ratio),
                activation: c.squeezeExcite.forcedActivation ?? c.activation, gate: c.squeezeExcite.gate)
        } else {
            se = nil
        }
        conv_pwl = efficientNetConvolution(mid, c.outputChannels, kernelSize: 1, padding: c.padding)
        bn3 = c.normalization.make(c.outputChannels)
        activation = c.activation
        hasSkip = c.stride == 1 && c.inputChannels == c.outputChannels && !spec.noSkip
        dropPath = c.dropPath > 0 ? DropPath(probability: c.dropPath) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = activation(bn1(conv_pw(x)))
        y = activation(bn2(conv_dw(y)))
        if let se { y = se(y) }
        y = bn3(conv_pwl(y))
        guard hasSkip else { return y }
        if let dropPath { y = dropPath(y) }
        return y + x
    }
}

/// timm's `ConvBnAct`: conv → BN → act (+ skip when requested and shapes allow).
public final class EfficientNetConvBnActBlock: Module, UnaryLayer {
    let conv: Conv2d, bn1: BatchNorm
    let activation: Activation, hasSkip: Bool
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    init(_ spec: EfficientNetBlockSpec, _ c: EfficientNetBlockContext) {
        conv = efficientNetConvolution(c.inputChannels, c.outputChannels, kernelSize: spec.kernelSize, stride: c.stride,
                                       padding: c.padding)
        bn1 = c.normalization.make(c.outputChannels)
        activation = c.activation
        hasSkip = spec.forceSkip && c.stride == 1 && c.inputChannels == c.outputChannels
        dropPath = c.dropPath > 0 ? DropPath(probability: c.dropPath) : nil
        super.init()
    }

    /// Runs the block on `[N, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = activation(bn1(conv(x)))
        guard hasSkip else { return y }
        if let dropPath { y = dropPath(y) }
        return y + x
    }
}

/// timm's `EfficientNetBuilder` for output stride 32 and depth multiplier 1: turns stages of
/// block strings into `Sequential` stages of blocks.
struct EfficientNetBuilder {
    var roundChannels: (Int) -> Int
    var activation: Activation
    var padding: EfficientNetPadding
    var normalization: EfficientNetNormalization
    var squeezeExcite: EfficientNetSqueezeExciteStyle
    var dropPathRate: Float = 0

    /// The stages and the channel count of the last block.
    func build(inputChannels: Int, stages: [[String]]) throws -> (stages: [Sequential], outputChannels: Int) {
        let specs = try stages.map { try $0.map(EfficientNetBlockSpec.init) }
        let total = specs.flatMap { $0 }.reduce(0) { $0 + $1.repeats }
        var index = 0
        var channels = inputChannels
        var result: [Sequential] = []
        for stage in specs {
            var blocks: [any UnaryLayer] = []
            for spec in stage {
                for repeatIndex in 0..<spec.repeats {
                    let context = EfficientNetBlockContext(
                        inputChannels: channels, outputChannels: roundChannels(spec.outputChannels),
                        stride: blocks.isEmpty && repeatIndex == 0 ? spec.stride : 1,
                        activation: spec.activation ?? activation, padding: padding, normalization: normalization,
                        squeezeExcite: squeezeExcite, dropPath: dropPathRate * Float(index) / Float(total))
                    switch spec.kind {
                    case .depthwiseSeparable: blocks.append(EfficientNetDepthwiseSeparableBlock(spec, context))
                    case .invertedResidual: blocks.append(EfficientNetInvertedResidualBlock(spec, context))
                    case .convBnAct: blocks.append(EfficientNetConvBnActBlock(spec, context))
                    }
                    channels = context.outputChannels
                    index += 1
                }
            }
            result.append(Sequential(blocks))
        }
        return (result, channels)
    }
}

/// timm's `_init_weight_goog` over every convolution and linear layer of `module`:
/// conv weights normal(0, √(2 / fan_out)) with fan_out = k·k·out/groups, linear weights
/// uniform(±1/√out), biases zero (BatchNorm keeps weight 1, bias 0).
func efficientNetInitializeWeights(_ module: Module) {
    for (_, child) in module.namedModules() {
        if let conv = child as? Conv2d {
            let shape = conv.weight.shape
            let fanOut = shape[1] * shape[2] * shape[0] / conv.groups
            conv.weight.assign(Initialization.normal(shape, standardDeviation: (2 / Float(fanOut)).squareRoot()))
            conv.bias?.fill(0)
        } else if let linear = child as? Linear {
            let range = 1 / Float(linear.outputFeatures).squareRoot()
            linear.weight.assign(Initialization.uniform(linear.weight.shape, low: -range, high: range))
            linear.bias?.fill(0)
        }
    }
}
