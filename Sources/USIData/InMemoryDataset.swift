/// A dataset held in memory: equally sized 8-bit images plus labels, for embedding users
/// who already have their data in arrays.
public struct InMemoryDataset: ImageDataset {
    /// Image width in pixels.
    public let width: Int
    /// Image height in pixels.
    public let height: Int
    /// Samples per pixel (1 or 3).
    public let channels: Int
    /// All images back to back, `[count, height, width, channels]`.
    public let pixels: [UInt8]
    /// One label per image.
    public let labels: [Int]
    public let classNames: [String]

    /// Creates a dataset from packed images `[count, height, width, channels]` and labels.
    ///
    /// - Parameter classNames: names of the classes; defaults to `"0"`, `"1"`, … up to the
    ///   largest label.
    public init(pixels: [UInt8], labels: [Int], width: Int, height: Int, channels: Int,
                classNames: [String]? = nil) throws {
        guard width > 0, height > 0, channels == 1 || channels == 3 else {
            throw DataError.invalidArgument("in-memory images need positive size and 1 or 3 channels, got \(width)x\(height)x\(channels)")
        }
        let (area, o1) = width.multipliedReportingOverflow(by: height)
        let (sampleSize, o2) = area.multipliedReportingOverflow(by: channels)
        let (needed, o3) = sampleSize.multipliedReportingOverflow(by: labels.count)
        guard !o1, !o2, !o3, pixels.count == needed else {
            throw DataError.invalidArgument("\(labels.count) labels of \(width)x\(height)x\(channels) images need \(o1 || o2 || o3 ? "more than Int.max" : "\(needed)") pixel samples, got \(pixels.count)")
        }
        let names = classNames ?? (0..<((labels.max() ?? -1) + 1)).map(String.init)
        if let bad = labels.first(where: { $0 < 0 || $0 >= names.count }) {
            throw DataError.invalidArgument("label \(bad) is outside 0..<\(names.count)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
        self.labels = labels
        self.classNames = names
    }

    public var count: Int { labels.count }

    public func label(at index: Int) -> Int { labels[index] }

    public func source(at index: Int) throws -> ImageSource {
        .pixels(image(at: index))
    }

    /// The decoded image of sample `index`.
    public func image(at index: Int) -> Image {
        let size = width * height * channels
        return Image(uncheckedWidth: width, height: height, channels: channels,
                     pixels: Array(pixels[(index * size)..<((index + 1) * size)]))
    }
}
