/// The encoded image formats the data pipeline reads, told apart by their first bytes.
///
/// The content decides, not the file name: a PNG saved as `photo.jpg` (common in scraped
/// data sets) decodes as what it is, as it does with Pillow, which also sniffs.
public enum ImageFormat: Sendable, Equatable {
    /// JPEG (starts with the SOI marker FF D8), decoded by ``JPEGDecoder``.
    case jpeg
    /// PNG (the 8-byte PNG signature), decoded by ``PNGDecoder``.
    case png
    /// WebP (`RIFF` <size> `WEBP`), decoded by ``WebPDecoder``.
    case webp

    /// The format whose signature `bytes` start with, or `nil`.
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= 8 && bytes.prefix(8).elementsEqual(png) { return .png }
        // RIFF <size> WEBP
        if bytes.count >= 12 && bytes.prefix(4).elementsEqual(Array("RIFF".utf8))
            && bytes[8..<12].elementsEqual(Array("WEBP".utf8)) { return .webp }
        if bytes.count >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 { return .jpeg }
        return nil
    }

    /// File name extensions listed by ``ImageFolderDataset`` for this format (lower case;
    /// names are compared case-insensitively).
    public var extensions: Set<String> {
        switch self {
        case .jpeg: return ["jpg", "jpeg", "jpe", "jfif"]
        case .png: return ["png"]
        case .webp: return ["webp"]
        }
    }
}

/// The size and channels of pixels decoded into a workspace buffer (packed
/// `[height, width, channels]`, 1 = grey or 3 = RGB).
struct DecodedLayout {
    var width: Int, height: Int, channels: Int
}
