/// Where a sample's pixels come from.
public enum ImageSource: Sendable {
    /// A file on disk holding an encoded image (JPEG).
    case file(path: String)
    /// Encoded image bytes in memory (JPEG).
    case encoded(bytes: [UInt8], name: String)
    /// Already decoded pixels.
    case pixels(Image)
}

/// A labelled image classification dataset: the loader asks it for a sample's source and
/// label by index and does decoding and augmentation itself.
///
/// Implementations must be safe to call from several worker threads at once.
public protocol ImageDataset: Sendable {
    /// Number of samples.
    var count: Int { get }
    /// Class names; a label is an index into this array.
    var classNames: [String] { get }
    /// The label of sample `index` (in `0..<classNames.count`).
    func label(at index: Int) -> Int
    /// The pixels (or encoded bytes) of sample `index`.
    func source(at index: Int) throws -> ImageSource
}

extension ImageDataset {
    /// Number of classes.
    public var classCount: Int { classNames.count }
}
