import CSPNG
import CUSIKernels

/// Decodes PNG files with libspng, to the pixels Pillow gives for
/// `Image.open(f).convert("RGB")` (or, for grey files, `convert("L")`).
///
/// What "as Pillow" means, checked against Pillow 13 (Tools/data/make_png_webp_fixtures.py):
/// - alpha (RGBA, grey+alpha, tRNS) is dropped, never composited: `convert("RGB")` discards it;
/// - 16-bit RGB/RGBA and grey+alpha keep the high byte of each sample (Pillow's `;16B` raw
///   modes), which is libspng's 16 → 8 conversion too;
/// - 16-bit grey opens in Pillow as mode `I;16`, whose conversion to L and RGB *clips* to 255
///   instead of scaling, so a typical 16-bit grey photo comes out nearly white; that is
///   reproduced here (``usi_image_gray16_to_gray8_clip``) because it is what a PyTorch
///   pipeline trained on the same files sees;
/// - palette files expand through the palette; grey files of 1, 2 and 4 bits scale to 0…255.
/// Gamma, sBIT and colour profiles are ignored, as Pillow does.
///
/// Grey and grey+alpha files decode to 1 channel, everything else to RGB. Hostile input: the
/// size in IHDR is checked against ``limits`` before any pixel buffer exists, libspng's own
/// image and chunk limits are set, a damaged or truncated file (bad CRC, short IDAT) throws
/// ``DataError/decodeFailed(name:reason:)`` naming the file. Every decode uses a fresh
/// libspng context, so a bad file leaves nothing behind; give each worker its own decoder
/// all the same, as ``limits`` is mutable.
public final class PNGDecoder {
    /// The size bounds checked before decoding (see ``ImageLimits``).
    public var limits: ImageLimits
    /// The largest ancillary chunk (text, ICC profile, EXIF; IDAT is not limited by it) and
    /// the most memory libspng may hold for all of them in one file: real files need far less
    /// (an ICC profile is rarely above 1 MB), a hostile one gets an error instead of
    /// gigabytes. libspng requires the first to be at most the second.
    static let chunkBytes = 16 << 20, chunkCacheBytes = 32 << 20

    /// Creates a decoder; `nil` limits mean ``ImageLimits/fromEnvironment(_:)``.
    public init(limits: ImageLimits? = nil) throws {
        self.limits = try limits ?? ImageLimits.fromEnvironment()
    }

    /// Width and height from IHDR, after the limit checks.
    public func header(of bytes: UnsafeRawBufferPointer, name: String) throws -> (width: Int, height: Int) {
        try withContext(bytes, name: name) { _, ihdr in (Int(ihdr.width), Int(ihdr.height)) }
    }

    /// Decodes a PNG to an ``Image`` (1 channel for grey files, RGB otherwise).
    public func decode(_ bytes: [UInt8], name: String) throws -> Image {
        let buffer = ByteBuffer()
        return try bytes.withUnsafeBytes { raw in
            let layout = try decode(raw, name: name, into: buffer)
            let pixels = [UInt8](UnsafeBufferPointer(start: buffer.pointer, count: layout.width * layout.height * layout.channels))
            return Image(uncheckedWidth: layout.width, height: layout.height, channels: layout.channels, pixels: pixels)
        }
    }

    /// Decodes into a reusable buffer.
    func decode(_ bytes: UnsafeRawBufferPointer, name: String, into output: ByteBuffer) throws -> DecodedLayout {
        try withContext(bytes, name: name) { ctx, ihdr in
            let width = Int(ihdr.width), height = Int(ihdr.height), n = width * height
            let grey = ihdr.color_type == UInt8(SPNG_COLOR_TYPE_GRAYSCALE.rawValue)
                || ihdr.color_type == UInt8(SPNG_COLOR_TYPE_GRAYSCALE_ALPHA.rawValue)
            // 16-bit grey needs its full samples (Pillow clips them); everything else goes
            // through libspng's RGB8, whose palette expansion, low-bit scaling and high-byte
            // 16 → 8 match Pillow, and grey is then taken back from the replicated R.
            let grey16 = ihdr.color_type == UInt8(SPNG_COLOR_TYPE_GRAYSCALE.rawValue) && ihdr.bit_depth == 16
            let format = Int32(grey16 ? SPNG_FMT_PNG.rawValue : SPNG_FMT_RGB8.rawValue)
            var size = 0
            try check(spng_decoded_image_size(ctx, format, &size), name: name)
            output.reserve(size)
            try check(spng_decode_image(ctx, output.pointer, size, format, 0), name: name)
            if grey16 {
                output.pointer.withMemoryRebound(to: UInt16.self, capacity: n) {
                    usi_image_gray16_to_gray8_clip(output.pointer, $0, n)
                }
            } else if grey {
                usi_image_keep_channels(output.pointer, output.pointer, n, 3, 1)
            }
            return DecodedLayout(width: width, height: height, channels: grey ? 1 : 3)
        }
    }

    /// Opens a libspng context on `bytes` with the limits set, reads IHDR and checks it.
    private func withContext<R>(_ bytes: UnsafeRawBufferPointer, name: String,
                                _ body: (OpaquePointer, spng_ihdr) throws -> R) throws -> R {
        guard let base = bytes.baseAddress, bytes.count >= 8 else {
            throw DataError.decodeFailed(name: name, reason: "file is empty or too short for a PNG")
        }
        try limits.check(fileBytes: bytes.count, name: name)
        guard let ctx = spng_ctx_new(0) else {
            throw DataError.decodeFailed(name: name, reason: "cannot create a libspng context")
        }
        defer { spng_ctx_free(ctx) }
        // libspng's per-side limit only stops absurd headers early; the pixel count is ours.
        let side = UInt32(min(limits.maximumPixels, Int(Int32.max)))
        try check(spng_set_image_limits(ctx, side, side), name: name)
        try check(spng_set_chunk_limits(ctx, Self.chunkBytes, Self.chunkCacheBytes), name: name)
        try check(spng_set_png_buffer(ctx, base, bytes.count), name: name)
        var ihdr = spng_ihdr()
        try check(spng_get_ihdr(ctx, &ihdr), name: name)
        try limits.check(width: Int(ihdr.width), height: Int(ihdr.height), name: name)
        return try body(ctx, ihdr)
    }

    private func check(_ status: Int32, name: String) throws {
        guard status == 0 else {
            let message = spng_strerror(status).map { String(cString: $0) } ?? "error \(status)"
            throw DataError.decodeFailed(name: name, reason: "PNG: \(message)")
        }
    }
}
