import CUSIKernels
import USICore

// `Interpolation` is USICore's (it is part of every `BackboneConfig`); here it learns its kernel code.
extension Interpolation {
    var kernelValue: Int32 {
        switch self {
        case .bilinear: return Int32(USI_RESAMPLE_BILINEAR.rawValue)
        case .bicubic: return Int32(USI_RESAMPLE_BICUBIC.rawValue)
        }
    }
}

/// A crop rectangle in pixels: rows `top..<top+height`, columns `left..<left+width`.
public struct CropRegion: Sendable, Equatable, CustomStringConvertible {
    public var top: Int
    public var left: Int
    public var height: Int
    public var width: Int

    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top
        self.left = left
        self.height = height
        self.width = width
    }

    public var description: String { "(top: \(top), left: \(left), height: \(height), width: \(width))" }
}

/// Python's `round()` for a Double: to nearest, ties to even.
@inline(__always) func pythonRound(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }
