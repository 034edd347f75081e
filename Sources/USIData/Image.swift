/// A decoded 8-bit image in channels-last layout: `pixels[(y * width + x) * channels + c]`.
///
/// `channels` is 1 (grey) or 3 (RGB).
public struct Image: Sendable, Equatable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// Samples per pixel (1 or 3).
    public var channels: Int
    /// `height * width * channels` samples, row by row.
    public var pixels: [UInt8]

    /// Creates an image from packed pixels; throws if the sizes disagree.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0, channels == 1 || channels == 3 else {
            throw DataError.invalidArgument(
                "image must have positive size and 1 or 3 channels, got \(width)x\(height)x\(channels)")
        }
        let (area, o1) = width.multipliedReportingOverflow(by: height)
        let (samples, o2) = area.multipliedReportingOverflow(by: channels)
        guard !o1, !o2, pixels.count == samples else {
            throw DataError.invalidArgument(
                "image of \(width)x\(height)x\(channels) needs \(o1 || o2 ? "more than Int.max" : "\(samples)") samples, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    init(uncheckedWidth width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}
