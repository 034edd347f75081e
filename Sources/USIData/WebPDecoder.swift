import CWebP

/// Decodes still WebP files (lossy, lossless, with or without alpha) with libwebp, to the
/// pixels Pillow gives for `Image.open(f).convert("RGB")`: alpha is dropped, not composited,
/// and libwebp's default (fancy) upsampling without dithering is what both Pillow and
/// `dwebp -nodither` use, so the bytes are identical (checked by
/// Tools/data/make_png_webp_fixtures.py). Always 3 channels (WebP has no grey mode).
///
/// The size in the bitstream header is checked against ``limits`` before any pixel buffer
/// exists (WebP allows 16383 × 16383, three times the default limit). A damaged or truncated
/// file, or an animated one (not supported yet), throws
/// ``DataError/decodeFailed(name:reason:)`` naming the file.
public final class WebPDecoder {
    /// The size bounds checked before decoding (see ``ImageLimits``).
    public var limits: ImageLimits

    /// Creates a decoder; `nil` limits mean ``ImageLimits/fromEnvironment(_:)``.
    public init(limits: ImageLimits? = nil) throws {
        self.limits = try limits ?? ImageLimits.fromEnvironment()
    }

    /// Width and height from the bitstream header, after the limit checks.
    public func header(of bytes: UnsafeRawBufferPointer, name: String) throws -> (width: Int, height: Int) {
        guard let base = bytes.baseAddress, bytes.count >= 12 else {
            throw DataError.decodeFailed(name: name, reason: "file is empty or too short for a WebP")
        }
        try limits.check(fileBytes: bytes.count, name: name)
        var features = WebPBitstreamFeatures()
        let status = WebPGetFeatures(base.assumingMemoryBound(to: UInt8.self), bytes.count, &features)
        guard status == VP8_STATUS_OK else {
            throw DataError.decodeFailed(name: name, reason: "WebP: \(Self.describe(status))")
        }
        guard features.has_animation == 0 else {
            throw DataError.decodeFailed(name: name, reason: "animated WebP is not supported")
        }
        try limits.check(width: Int(features.width), height: Int(features.height), name: name)
        return (Int(features.width), Int(features.height))
    }

    /// Decodes a WebP to an RGB ``Image``.
    public func decode(_ bytes: [UInt8], name: String) throws -> Image {
        let buffer = ByteBuffer()
        return try bytes.withUnsafeBytes { raw in
            let layout = try decode(raw, name: name, into: buffer)
            let pixels = [UInt8](UnsafeBufferPointer(start: buffer.pointer, count: layout.width * layout.height * 3))
            return Image(uncheckedWidth: layout.width, height: layout.height, channels: 3, pixels: pixels)
        }
    }

    /// Decodes into a reusable buffer.
    func decode(_ bytes: UnsafeRawBufferPointer, name: String, into output: ByteBuffer) throws -> DecodedLayout {
        let (width, height) = try header(of: bytes, name: name)
        let size = width * height * 3
        output.reserve(size)
        guard WebPDecodeRGBInto(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count,
                                output.pointer, size, Int32(width * 3)) != nil else {
            throw DataError.decodeFailed(name: name, reason: "WebP: corrupt or truncated bitstream")
        }
        return DecodedLayout(width: width, height: height, channels: 3)
    }

    private static func describe(_ status: VP8StatusCode) -> String {
        switch status {
        case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated file"
        case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream"
        case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature"
        case VP8_STATUS_OUT_OF_MEMORY: return "out of memory"
        default: return "invalid file (status \(status.rawValue))"
        }
    }
}
