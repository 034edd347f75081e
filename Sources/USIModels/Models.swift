import Synchronization

/// Thrown for an unknown architecture name or an unsupported configuration.
public struct ModelError: Error, CustomStringConvertible {
    /// The message.
    public let description: String
}

/// The model registry: timm architecture names to builders with their default configs.
///
/// ```swift
/// let student = try Models.create("mobilenetv3_small_050", classes: 10, inputChannels: 1, inputSize: 32)
/// ```
public enum Models {
    /// A registered architecture.
    public struct Entry: Sendable {
        /// timm name.
        public let name: String
        /// Family, for listings: `cnn`, `mobile`, `transformer`, `mlp`.
        public let family: String
        /// timm's default config (1000 classes, 3 channels).
        public let defaultConfig: BackboneConfig
        /// Whether the architecture accepts input sizes other than the default.
        public let flexibleInputSize: Bool
        let build: @Sendable (BackboneConfig) throws -> any Backbone
    }

    private static let registry = Mutex<[String: Entry]>([:])
    private static let builtIns: Void = { BuiltInModels.registerAll() }()

    /// Adds an architecture (built-ins register themselves; apps may add their own).
    public static func register(_ name: String, family: String, defaultConfig: BackboneConfig, flexibleInputSize: Bool = true,
                                build: @escaping @Sendable (BackboneConfig) throws -> any Backbone) {
        registry.withLock { $0[name] = Entry(name: name, family: family, defaultConfig: defaultConfig,
                                             flexibleInputSize: flexibleInputSize, build: build) }
    }

    /// Registered architecture names, sorted.
    public static var available: [String] {
        _ = builtIns
        return registry.withLock { $0.keys.sorted() }
    }

    /// The registry entry for `name`.
    public static func entry(_ name: String) throws -> Entry {
        _ = builtIns
        if let entry = registry.withLock({ $0[name] }) { return entry }
        let suggestions = available.filter { $0.hasPrefix(String(name.prefix(4))) }.prefix(6)
        throw ModelError(description: "unknown model '\(name)'" + (suggestions.isEmpty ? "" : "; similar: \(suggestions.joined(separator: ", "))")
                         + ". `usi models` lists all \(available.count).")
    }

    /// Builds `name` with `classes` outputs, `inputChannels` input channels and, where the
    /// architecture allows it, a non-default `inputSize`. Initialisation is seeded by `seed`.
    public static func create(_ name: String, classes: Int = 1000, inputChannels: Int = 3, inputSize: Int? = nil,
                              seed: UInt64 = 0) throws -> any Backbone {
        let entry = try entry(name)
        guard (0...WeightsMetadata.Limits.classes).contains(classes) else {
            throw ModelError(description: "classes must be in 0…\(WeightsMetadata.Limits.classes), got \(classes)")
        }
        guard (1...WeightsMetadata.Limits.inputChannels).contains(inputChannels) else {
            throw ModelError(description: "input channels must be in 1…\(WeightsMetadata.Limits.inputChannels), got \(inputChannels)")
        }
        var config = entry.defaultConfig
        config.classes = classes
        config.inputChannels = inputChannels
        config.mean = BackboneConfig.adapt(entry.defaultConfig.mean, to: inputChannels)
        config.standardDeviation = BackboneConfig.adapt(entry.defaultConfig.standardDeviation, to: inputChannels)
        if let inputSize, inputSize != config.inputSize {
            guard entry.flexibleInputSize else {
                throw ModelError(description: "\(name) needs input size \(config.inputSize), got \(inputSize)")
            }
            guard inputSize >= minimumInputSize else {
                throw ModelError(description: "input size \(inputSize) is too small (at least \(minimumInputSize))")
            }
            guard inputSize <= maximumInputSize else {
                throw ModelError(description: "input size \(inputSize) is too large (at most \(maximumInputSize))")
            }
            config.inputSize = inputSize
        }
        return try Initialization.withSeed(seed) { try entry.build(config) }
    }
}
