import Foundation

/// Bounds on what one encoded image may make the decoder allocate. They are checked against
/// the file's size and its frame header *before* any pixel or coefficient buffer exists, so a
/// small hostile file (a 2 KB progressive JPEG whose header claims 65500 × 65500) fails fast
/// with a clear error instead of taking gigabytes.
///
/// Memory per decoder stays below roughly `maximumFileBytes + 12 · maximumPixels` bytes: the
/// encoded file, the decoded RGB/CMYK pixels (≤ 4 bytes a pixel) and, for progressive and
/// multi-scan files, libjpeg's whole-image coefficient buffer (2 bytes per component and
/// pixel: ≤ 8 bytes a pixel for 4-component CMYK, 3 for 4:2:0 YCbCr). With the defaults that
/// is at most about 1.3 GB per worker for the worst file, typically far less.
///
/// The defaults can be changed per decoder, per ``TransformWorkspace`` and per
/// ``DataLoader``, or for a whole process with the environment variables
/// `USI_MAX_IMAGE_PIXELS` and `USI_MAX_IMAGE_BYTES` (decimal integers).
public struct ImageLimits: Sendable, Equatable {
    /// The largest `width × height` (full resolution, as the frame header states it).
    public var maximumPixels: Int
    /// The largest encoded file, in bytes.
    public var maximumFileBytes: Int

    /// Creates limits; both must be positive.
    public init(maximumPixels: Int = ImageLimits.standard.maximumPixels,
                maximumFileBytes: Int = ImageLimits.standard.maximumFileBytes) throws {
        guard maximumPixels > 0, maximumFileBytes > 0 else {
            throw DataError.invalidArgument("image limits must be positive, got \(maximumPixels) pixels and \(maximumFileBytes) bytes")
        }
        self.maximumPixels = maximumPixels
        self.maximumFileBytes = maximumFileBytes
    }

    private init(uncheckedPixels: Int, bytes: Int) {
        maximumPixels = uncheckedPixels
        maximumFileBytes = bytes
    }

    /// 89,478,485 pixels — Pillow's `Image.MAX_IMAGE_PIXELS`, so every image that torchvision's
    /// `ImageFolder` opens without a decompression-bomb warning opens here too — and 256 MiB
    /// files.
    public static let standard = ImageLimits(uncheckedPixels: 89_478_485, bytes: 256 << 20)

    /// Name of the environment variable that overrides ``maximumPixels``.
    public static let pixelsVariable = "USI_MAX_IMAGE_PIXELS"
    /// Name of the environment variable that overrides ``maximumFileBytes``.
    public static let bytesVariable = "USI_MAX_IMAGE_BYTES"

    /// ``standard``, with `USI_MAX_IMAGE_PIXELS` / `USI_MAX_IMAGE_BYTES` applied when set.
    /// A value that is not a positive decimal integer is an error (naming the variable), not
    /// silently ignored.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ImageLimits {
        var limits = standard
        func read(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value > 0 else {
                throw DataError.invalidArgument("environment variable \(name) must be a positive integer, got '\(text)'")
            }
            return value
        }
        if let pixels = try read(pixelsVariable) { limits.maximumPixels = pixels }
        if let bytes = try read(bytesVariable) { limits.maximumFileBytes = bytes }
        return limits
    }

    /// Throws unless a `width × height` image is within ``maximumPixels``.
    func check(width: Int, height: Int, name: String) throws {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= maximumPixels else {
            throw DataError.decodeFailed(
                name: name,
                reason: "image of \(width)x\(height) pixels exceeds the limit of \(maximumPixels) pixels (raise it with \(Self.pixelsVariable) or ImageLimits)")
        }
    }

    /// Throws unless an encoded file of `count` bytes is within ``maximumFileBytes``.
    func check(fileBytes count: Int, name: String) throws {
        guard count <= maximumFileBytes else {
            throw DataError.decodeFailed(
                name: name,
                reason: "file of \(count) bytes exceeds the limit of \(maximumFileBytes) bytes (raise it with \(Self.bytesVariable) or ImageLimits)")
        }
    }
}
