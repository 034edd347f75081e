/// Resampling filter for resizes and affine warps, with Pillow's semantics (timm's
/// transforms run on PIL images); a backbone's default is its timm `interpolation`.
public enum Interpolation: String, Sendable, CaseIterable, Codable, Hashable {
    /// Pillow `BILINEAR`: triangle filter, antialiased when shrinking.
    case bilinear
    /// Pillow `BICUBIC`: cubic filter (a = -0.5 for resize, a = -1 for affine warps, as in
    /// Pillow), antialiased when shrinking.
    case bicubic
}

/// A backbone's architecture and data configuration — timm's `pretrained_cfg` essentials.
public struct BackboneConfig: Sendable, Codable, Hashable {
    /// timm architecture name, e.g. `resnet50`.
    public var architecture: String
    /// Classifier outputs (0 = no classifier, features only).
    public var classes: Int
    /// Input image channels (3 for RGB, 1 for grayscale).
    public var inputChannels: Int
    /// Default square input size in pixels.
    public var inputSize: Int
    /// Per-channel normalisation mean (of the `inputChannels` channels).
    public var mean: [Float]
    /// Per-channel normalisation standard deviation.
    public var standardDeviation: [Float]
    /// Centre-crop fraction at evaluation (`crop_pct`).
    public var cropFraction: Double
    /// Resampling filter for resizing.
    public var interpolation: Interpolation

    /// ImageNet's mean (timm `IMAGENET_DEFAULT_MEAN`).
    public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
    /// ImageNet's standard deviation (timm `IMAGENET_DEFAULT_STD`).
    public static let imagenetStandardDeviation: [Float] = [0.229, 0.224, 0.225]

    /// Creates a config; mean and std default to ImageNet's (averaged when `inputChannels` is 1).
    public init(architecture: String, classes: Int = 1000, inputChannels: Int = 3, inputSize: Int = 224,
                mean: [Float]? = nil, standardDeviation: [Float]? = nil, cropFraction: Double = 0.875,
                interpolation: Interpolation = .bicubic) {
        self.architecture = architecture
        self.classes = classes
        self.inputChannels = inputChannels
        self.inputSize = inputSize
        self.mean = BackboneConfig.adapt(mean ?? Self.imagenetMean, to: inputChannels)
        self.standardDeviation = BackboneConfig.adapt(standardDeviation ?? Self.imagenetStandardDeviation, to: inputChannels)
        self.cropFraction = cropFraction
        self.interpolation = interpolation
    }

    /// Per-channel statistics for another channel count (the average for one channel, as timm
    /// does when it adapts a pretrained stem to grayscale).
    public static func adapt(_ values: [Float], to channels: Int) -> [Float] {
        if values.count == channels { return values }
        if channels == 1 { return [values.reduce(0, +) / Float(values.count)] }
        return (0..<channels).map { values[$0 % values.count] }
    }
}

/// An image classifier the USI scheme can train: a ``Module`` with a ``BackboneConfig`` that
/// maps `[N, H, W, C]` images to `[N, classes]` logits.
///
/// A conforming type needs only its configuration and its forward pass; its layers and tensors
/// are found from its stored properties (see ``Module``):
///
/// ```swift
/// final class TinyNet: Module, Backbone {
///     let config = BackboneConfig(architecture: "tinynet", classes: 10, inputChannels: 1, inputSize: 28)
///     let conv = Conv2d(inputChannels: 1, outputChannels: 16, kernelSize: 3, padding: .symmetric(1))
///     let fc = Linear(inputFeatures: 16, outputFeatures: 10)
///     func callAsFunction(_ x: Tensor) -> Tensor { fc(globalAvgPool2d(relu(conv(x)))) }
/// }
/// ```
/// timm's extras are opt-in: ``HeadedBackbone`` (features, head, a replaceable classifier),
/// ``BatchNormFoldable`` (a faster frozen teacher) and ``noWeightDecay``.
public protocol Backbone: UnaryLayer {
    /// Architecture and data configuration.
    var config: BackboneConfig { get }
    /// Parameter names excluded from weight decay besides 1-D tensors and biases (timm's
    /// `no_weight_decay`, e.g. `cls_token`, `pos_embed`). Empty unless a backbone says otherwise.
    var noWeightDecay: Set<String> { get }
}

extension Backbone {
    /// No extra names.
    public var noWeightDecay: Set<String> { [] }
}

/// A backbone split as timm's are: a trunk (`forward_features`), a head (`forward_head`), and
/// a classifier that can be replaced for another class count (`reset_classifier`).
public protocol HeadedBackbone: Backbone {
    /// The trunk: images `[N, H, W, C]` to unpooled features (e.g. `[N, h, w, C']` or tokens).
    func forwardFeatures(_ x: Tensor) -> Tensor
    /// Pooling and classifier; with `preLogits` the pooled features before the classifier.
    func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor
    /// Replaces the classifier with a freshly initialised one for `classes` outputs.
    func resetClassifier(classes: Int)
    /// Key prefixes of the classifier (skipped when loading weights with another class count).
    var classifierPrefixes: [String] { get }
}

extension HeadedBackbone {
    /// Logits: `forwardHead(forwardFeatures(x), preLogits: false)`.
    public func callAsFunction(_ x: Tensor) -> Tensor { forwardHead(forwardFeatures(x), preLogits: false) }
}

extension Backbone {
    /// The classifier's key prefixes when the backbone is a ``HeadedBackbone``, else none.
    public var classifierKeyPrefixes: [String] { (self as? any HeadedBackbone)?.classifierPrefixes ?? [] }
}

/// A model that can fold its BatchNorms into the preceding convolutions for inference (the
/// frozen teacher runs faster with the same logits).
public protocol BatchNormFoldable {
    /// Folds every BatchNorm into its convolution (eval-mode statistics); logits are unchanged.
    func foldBatchNorms()
}
