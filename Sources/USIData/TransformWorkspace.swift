import CUSIKernels

/// Per-thread state of the transforms: the image decoders (JPEG: one TurboJPEG handle; PNG,
/// WebP) and reusable pixel buffers. Not thread-safe; the loader gives each worker its own.
public final class TransformWorkspace {
    let decoder: JPEGDecoder
    let pngDecoder: PNGDecoder
    let webpDecoder: WebPDecoder
    let encoded = ByteBuffer(capacity: 1 << 20)
    let decoded = ByteBuffer(capacity: 1 << 22)
    let converted = ByteBuffer(capacity: 1 << 20)
    let first = ByteBuffer(capacity: 224 * 224 * 3)
    let second = ByteBuffer(capacity: 224 * 224 * 3)
    /// Samples whose decoder reported a recoverable warning (e.g. a truncated file).
    public internal(set) var warningCount = 0

    /// Creates a workspace.
    ///
    /// - Parameter imageLimits: size bounds for the images it decodes; `nil` means
    ///   ``ImageLimits/fromEnvironment(_:)``.
    public init(imageLimits: ImageLimits? = nil) throws {
        decoder = try JPEGDecoder(limits: imageLimits)
        pngDecoder = try PNGDecoder(limits: decoder.limits)
        webpDecoder = try WebPDecoder(limits: decoder.limits)
    }

    /// The size bounds of this workspace's decoders.
    public var imageLimits: ImageLimits {
        get { decoder.limits }
        set {
            decoder.limits = newValue
            pngDecoder.limits = newValue
            webpDecoder.limits = newValue
        }
    }
}

/// Decoded pixels borrowed from a workspace buffer or an `Image`.
struct PixelView {
    var pointer: UnsafePointer<UInt8>
    var width: Int
    var height: Int
    var channels: Int
    var rowStride: Int { width * channels }
}

extension TransformWorkspace {
    /// Loads a source and calls `body` with its pixels. `plan` receives the full-resolution
    /// size and returns the DCT scale denominator to decode a JPEG with (PNG and WebP always
    /// decode at full size), plus any value the caller wants back (e.g. the crop it sampled
    /// on the full-size image). The format is told by the file's first bytes.
    func withPixels<T, R>(of source: ImageSource, channels wanted: Int,
                          plan: (_ width: Int, _ height: Int) throws -> (scaleDenominator: Int, value: T),
                          body: (PixelView, _ fullWidth: Int, _ fullHeight: Int, T) throws -> R) throws -> R {
        func decodeImage(_ bytes: UnsafeRawBufferPointer, name: String) throws -> R {
            switch ImageFormat.detect(bytes) {
            case .png:
                let (width, height) = try pngDecoder.header(of: bytes, name: name)
                let (_, value) = try plan(width, height)
                let layout = try pngDecoder.decode(bytes, name: name, into: decoded)
                return try body(adapt(view(of: layout), to: wanted), width, height, value)
            case .webp:
                let (width, height) = try webpDecoder.header(of: bytes, name: name)
                let (_, value) = try plan(width, height)
                let layout = try webpDecoder.decode(bytes, name: name, into: decoded)
                return try body(adapt(view(of: layout), to: wanted), width, height, value)
            case .jpeg, nil:
                // not sniffed as anything else: the JPEG decoder's error names the problem
                return try decodeJPEG(bytes, name: name)
            }
        }
        func decodeJPEG(_ bytes: UnsafeRawBufferPointer, name: String) throws -> R {
            let header = try decoder.header(of: bytes, name: name)
            let (denominator, value) = try plan(header.width, header.height)
            let layout = try decoder.decode(bytes, name: name, scaleDenominator: denominator, into: decoded, header: header)
            if layout.hadWarning { warningCount += 1 }
            let view = adapt(PixelView(pointer: UnsafePointer(decoded.pointer), width: layout.width,
                                       height: layout.height, channels: layout.channels), to: wanted)
            return try body(view, header.width, header.height, value)
        }
        switch source {
        case .file(let path):
            let size = try encoded.read(file: path, maximumBytes: decoder.limits.maximumFileBytes)
            return try decodeImage(UnsafeRawBufferPointer(start: encoded.pointer, count: size), name: path)
        case .encoded(let bytes, let name):
            return try bytes.withUnsafeBytes { try decodeImage($0, name: name) }
        case .pixels(let image):
            let (_, value) = try plan(image.width, image.height)
            return try image.pixels.withUnsafeBufferPointer { buffer in
                let view = adapt(PixelView(pointer: buffer.baseAddress!, width: image.width, height: image.height,
                                           channels: image.channels), to: wanted)
                return try body(view, image.width, image.height, value)
            }
        }
    }

    private func view(of layout: DecodedLayout) -> PixelView {
        PixelView(pointer: UnsafePointer(decoded.pointer), width: layout.width, height: layout.height,
                  channels: layout.channels)
    }

    /// RGB sources feeding a grey model are converted to L before any resampling (as a PIL
    /// pipeline that opens images with `convert("L")`); grey sources stay grey here and are
    /// expanded to RGB after the resize, which gives identical pixels at a third of the cost.
    private func adapt(_ view: PixelView, to wanted: Int) -> PixelView {
        guard view.channels == 3 && wanted == 1 else { return view }
        converted.reserve(view.width * view.height)
        usi_image_rgb_to_gray(converted.pointer, view.pointer, view.width * view.height)
        return PixelView(pointer: UnsafePointer(converted.pointer), width: view.width, height: view.height, channels: 1)
    }
}
