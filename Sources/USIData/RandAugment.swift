import Foundation
import USICore

/// timm's RandAugment (`rand_augment_transform`), e.g. `rand-m7-mstd0.5-inc1`: for every
/// image, pick `operationCount` operations uniformly with replacement from timm's op set
/// (the "increasing" variants when `increasing`), and apply each with probability
/// `probability`, at a magnitude drawn from N(`magnitude`, `magnitudeStd`) clipped to
/// [0, `magnitudeMax`].
public struct RandAugment: Sendable, Equatable {
    /// The operations, with their arguments already resolved.
    public enum Operation: Sendable, Equatable {
        case autoContrast
        case equalize
        case invert
        /// Counter-clockwise rotation about the centre, in degrees.
        case rotate(degrees: Double)
        /// Keep the top `bits` bits of each sample.
        case posterize(bits: Int)
        /// Invert samples >= `threshold`.
        case solarize(threshold: Int)
        /// Add `amount` to samples < `threshold` (saturating).
        case solarizeAdd(amount: Int, threshold: Int)
        /// Blend with the grey image: 0 is grey, 1 the original.
        case color(factor: Double)
        /// Blend with the mean grey level.
        case contrast(factor: Double)
        /// Blend with black.
        case brightness(factor: Double)
        /// Blend with the smoothed image.
        case sharpness(factor: Double)
        /// Horizontal shear: source x = x + factor * y.
        case shearX(factor: Double)
        /// Vertical shear: source y = y + factor * x.
        case shearY(factor: Double)
        /// Horizontal translation by `fraction` of the width (source x = x + fraction * width).
        case translateX(fraction: Double)
        /// Vertical translation by `fraction` of the height.
        case translateY(fraction: Double)
    }

    /// timm's op names, in `_RAND_TRANSFORMS` / `_RAND_INCREASING_TRANSFORMS` order.
    public enum OperationName: String, Sendable, CaseIterable {
        case autoContrast = "AutoContrast", equalize = "Equalize", invert = "Invert", rotate = "Rotate"
        case posterize = "Posterize", solarize = "Solarize", solarizeAdd = "SolarizeAdd"
        case color = "Color", contrast = "Contrast", brightness = "Brightness", sharpness = "Sharpness"
        case shearX = "ShearX", shearY = "ShearY", translateXRelative = "TranslateXRel"
        case translateYRelative = "TranslateYRel"
    }

    /// Mean magnitude on timm's 0–10 scale.
    public var magnitude: Double
    /// Standard deviation of the per-operation magnitude noise (0: none; infinity: uniform
    /// in [0, magnitude]).
    public var magnitudeStd: Double
    /// Upper clip of the magnitude.
    public var magnitudeMax: Double
    /// Operations per image.
    public var operationCount: Int
    /// Probability that each picked operation is applied.
    public var probability: Double
    /// Use timm's "increasing" variants (stronger with magnitude for posterize, solarize,
    /// and the enhance ops).
    public var increasing: Bool
    /// Largest translation as a fraction of the image side (timm's `translate_pct`).
    public var translatePercent: Double
    /// Resampling of the geometric operations.
    public var interpolation: Interpolation

    /// Creates a RandAugment with explicit settings; defaults are `rand-m7-mstd0.5-inc1`.
    public init(magnitude: Double = 7, magnitudeStd: Double = 0.5, magnitudeMax: Double = 10,
                operationCount: Int = 2, probability: Double = 0.5, increasing: Bool = true,
                translatePercent: Double = 0.45, interpolation: Interpolation = .bicubic) {
        self.magnitude = magnitude
        self.magnitudeStd = magnitudeStd
        self.magnitudeMax = magnitudeMax
        self.operationCount = operationCount
        self.probability = probability
        self.increasing = increasing
        self.translatePercent = translatePercent
        self.interpolation = interpolation
    }

    /// Parses a timm config string such as `rand-m7-mstd0.5-inc1` (sections `m`, `n`, `p`,
    /// `mstd`, `mmax`, `inc`).
    public init(config: String, interpolation: Interpolation = .bicubic) throws {
        self.init(interpolation: interpolation)
        // timm's defaults before parsing: m 10, n 2, p 0.5, mstd 0, inc 0
        magnitude = 10; magnitudeStd = 0; increasing = false
        let parts = config.split(separator: "-").map(String.init)
        guard parts.first == "rand" else {
            throw DataError.invalidArgument("RandAugment config must start with 'rand', got '\(config)'")
        }
        for part in parts.dropFirst() {
            guard let digit = part.firstIndex(where: { $0.isNumber || $0 == "." }) else {
                throw DataError.invalidArgument("RandAugment config section '\(part)' has no value")
            }
            let key = String(part[..<digit])
            guard let value = Double(part[digit...]) else {
                throw DataError.invalidArgument("RandAugment config section '\(part)' has a bad value")
            }
            switch key {
            case "m": magnitude = value
            case "n": operationCount = Int(value)
            case "p": probability = value
            case "mstd": magnitudeStd = value > 100 ? .infinity : value
            case "mmax": magnitudeMax = value
            case "inc": increasing = value != 0
            default: throw DataError.invalidArgument("unknown RandAugment config section '\(part)'")
            }
        }
    }

    /// Samples the operations for one image, in timm's order of random draws: the op
    /// choices, then per op the apply test, the magnitude and the sign.
    public func sampleOperations(generator: inout RandomGenerator) -> [Operation] {
        let names = OperationName.allCases
        let picks = (0..<operationCount).map { _ in names[generator.integer(in: 0..<names.count)] }
        var result: [Operation] = []
        for name in picks {
            if probability < 1 && generator.nextDouble() > probability { continue }
            var m = magnitude
            if magnitudeStd == .infinity {
                m = generator.uniform(0, m)
            } else if magnitudeStd > 0 {
                m = m + magnitudeStd * generator.normal()
            }
            m = max(0, min(m, magnitudeMax))
            result.append(operation(name, magnitude: m, generator: &generator))
        }
        return result
    }

    /// The operation `name` at magnitude `magnitude` (timm's level-to-argument functions;
    /// signed operations draw their sign from `generator`).
    public func operation(_ name: OperationName, magnitude m: Double, generator: inout RandomGenerator) -> Operation {
        let level = m / 10
        func negate(_ v: Double) -> Double { generator.nextDouble() > 0.5 ? -v : v }
        func enhance() -> Double {
            increasing ? max(0.1, 1.0 + negate(level * 0.9)) : level * 1.8 + 0.1
        }
        switch name {
        case .autoContrast: return .autoContrast
        case .equalize: return .equalize
        case .invert: return .invert
        case .rotate: return .rotate(degrees: negate(level * 30))
        case .posterize:
            let bits = Int(level * 4)
            return .posterize(bits: increasing ? 4 - bits : bits)
        case .solarize:
            let threshold = min(256, Int(level * 256))
            return .solarize(threshold: increasing ? 256 - threshold : threshold)
        case .solarizeAdd: return .solarizeAdd(amount: min(128, Int(level * 110)), threshold: 128)
        case .color: return .color(factor: enhance())
        case .contrast: return .contrast(factor: enhance())
        case .brightness: return .brightness(factor: enhance())
        case .sharpness: return .sharpness(factor: enhance())
        case .shearX: return .shearX(factor: negate(level * 0.3))
        case .shearY: return .shearY(factor: negate(level * 0.3))
        case .translateXRelative: return .translateX(fraction: negate(level * translatePercent))
        case .translateYRelative: return .translateY(fraction: negate(level * translatePercent))
        }
    }
}
