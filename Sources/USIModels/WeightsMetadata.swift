import Foundation
import USICore

/// What a weights file says about the model it holds: the safetensors `__metadata__` that this
/// library writes into `best.safetensors` and teacher files, and reads back wherever weights
/// are accepted (``Models/create(fromWeights:architecture:classes:inputSize:)``, `usi eval`,
/// `usi predict`, the embedded default's teacher).
///
/// Every field is optional: a timm `state_dict` saved from Python carries none of them. Numbers
/// are checked against ``Limits`` when read, because they size allocations: a file that claims
/// 2³² classes is refused with the file and the field named, not allocated.
public struct WeightsMetadata: Sendable, Hashable {
    /// timm architecture name (`architecture`).
    public var architecture: String?
    /// Classifier outputs (`classes`).
    public var classes: Int?
    /// Input channels (`in_chans`).
    public var inputChannels: Int?
    /// Input side in pixels (`input_size`).
    public var inputSize: Int?
    /// Class names in label order (`class_names`, a JSON array).
    public var classNames: [String]?
    /// Validation top-1 of these weights in percent (`top1`).
    public var top1: Double?
    /// The epoch that produced them (`epoch`).
    public var epoch: Int?
    /// Whether they are the model's own weights or its EMA (`weights`: `model` or `ema`).
    public var isEMA: Bool?
    /// The data set they were trained on (`dataset`).
    public var dataset: String?
    /// Keys this type does not interpret, kept as they are.
    public var other: [String: String] = [:]

    /// Upper bounds on the numbers a file may claim.
    public enum Limits {
        /// Most classifier outputs (ImageNet-21k has 21 841).
        public static let classes = 100_000
        /// Most input channels.
        public static let inputChannels = 64
        /// Largest input side in pixels.
        public static let inputSize = Models.maximumInputSize
    }

    /// Empty metadata.
    public init() {}

    /// Reads the metadata of a file; `source` names it in errors.
    public init(_ dictionary: [String: String], source: String) throws {
        func number(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let text = dictionary[key] else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw ModelError(description: "\(source): metadata \(key) = \(text.prefix(40)) is not a whole number in \(range.lowerBound)…\(range.upperBound)")
            }
            return value
        }
        architecture = dictionary["architecture"]
        classes = try number("classes", in: 0...Limits.classes)
        inputChannels = try number("in_chans", in: 1...Limits.inputChannels)
        inputSize = try number("input_size", in: Models.minimumInputSize...Limits.inputSize)
        epoch = try number("epoch", in: 0...Int(Int32.max))
        if let text = dictionary["class_names"] {
            guard let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
                throw ModelError(description: "\(source): metadata class_names is not a JSON array of strings")
            }
            guard names.count <= Limits.classes else {
                throw ModelError(description: "\(source): metadata class_names lists \(names.count) names, more than \(Limits.classes)")
            }
            classNames = names
        }
        if let text = dictionary["top1"] {
            guard let value = Double(text), value.isFinite else {
                throw ModelError(description: "\(source): metadata top1 = \(text.prefix(40)) is not a number")
            }
            top1 = value
        }
        isEMA = dictionary["weights"].map { $0 == "ema" }
        dataset = dictionary["dataset"]
        other = dictionary.filter { !Self.knownKeys.contains($0.key) }
    }

    /// The metadata as written into a file (`format: pt`, as timm's safetensors files).
    public var dictionary: [String: String] {
        var result = other
        result["format"] = "pt"
        result["architecture"] = architecture
        result["classes"] = classes.map(String.init)
        result["in_chans"] = inputChannels.map(String.init)
        result["input_size"] = inputSize.map(String.init)
        result["epoch"] = epoch.map(String.init)
        result["top1"] = top1.map { String(format: "%.2f", $0) }
        result["weights"] = isEMA.map { $0 ? "ema" : "model" }
        result["dataset"] = dataset
        if let classNames {
            result["class_names"] = String(decoding: (try? JSONEncoder().encode(classNames)) ?? Data("[]".utf8), as: UTF8.self)
        }
        return result
    }

    /// Metadata describing `config`'s architecture, classes, channels and input size.
    public init(describing config: BackboneConfig) {
        architecture = config.architecture
        classes = config.classes
        inputChannels = config.inputChannels
        inputSize = config.inputSize
    }

    private static let knownKeys: Set<String> = [
        "format", "architecture", "classes", "in_chans", "input_size", "class_names", "top1", "epoch", "weights", "dataset",
    ]
}

extension Models {
    /// Smallest input side any architecture accepts.
    public static let minimumInputSize = 8
    /// Largest input side accepted (a 4096² RGB batch of 8 is already 1.6 GB of input alone).
    public static let maximumInputSize = 4096

    /// Builds the model a weights file describes and loads the weights: the architecture,
    /// classes, channels and input size come from its ``WeightsMetadata`` unless given here
    /// (a timm `state_dict` has no metadata: name the architecture; classes default to 1000,
    /// channels to 3). Loading is strict: every key must match.
    public static func create(fromWeights url: URL, architecture: String? = nil, classes: Int? = nil,
                              inputSize: Int? = nil) throws -> (model: any Backbone, metadata: WeightsMetadata) {
        try create(fromWeights: SafeTensorsFile(weightsAt: url), source: url.path, architecture: architecture,
                   classes: classes, inputSize: inputSize)
    }

    /// ``create(fromWeights:architecture:classes:inputSize:)`` for an open file; `source`
    /// names it in errors.
    public static func create(fromWeights file: SafeTensorsFile, source: String, architecture: String? = nil,
                              classes: Int? = nil, inputSize: Int? = nil) throws -> (model: any Backbone, metadata: WeightsMetadata) {
        let metadata = try WeightsMetadata(file.metadata, source: source)
        guard let name = architecture ?? metadata.architecture else {
            throw ModelError(description: "\(source) does not name its architecture in its metadata; name the model")
        }
        let model = try create(name, classes: classes ?? metadata.classes ?? 1000, inputChannels: metadata.inputChannels ?? 3,
                               inputSize: inputSize ?? metadata.inputSize)
        try model.load(file)
        return (model, metadata)
    }
}
