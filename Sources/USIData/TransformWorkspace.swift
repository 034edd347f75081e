import CUSIKernels

/// Per-thread state of the transforms: a JPEG decoder (one TurboJPEG handle) and reusable
/// pixel buffers. Not thread-safe; the loader gives each worker its own.
public final class TransformWorkspace {
    let decoder: JPEGDecoder
    let encoded = ByteBuffer(capacity: 1 << 20)
    let decoded = ByteBuffer(capacity: 1 << 22)
    let converted = ByteBuffer(capacity: 1 << 20)
    let first = ByteBuffer(capacity: 224 * 224 * 3)
    let second = ByteBuffer(capacity: 224 * 224 * 3)
    /// Samples whose decoder reported a recoverable warning (e.g. a truncated file).
    public internal(set) var warningCount = 0

    /// Creates a workspace.
    ///
    /// - Parameter imageLimits: size bounds for the JPEGs it decodes; `nil` means
    ///   ``ImageLimits/fromEnvironment(_:)``.
    public init(imageLimits: ImageLimits? = nil) throws {
        decoder = try JPEGDecoder(limits: imageLimits)
    }

    /// The size bounds of this workspace's decoder.
    public var imageLimits: ImageLimits {
        get { decoder.limits }
        set { decoder.limits = newValue }
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
    /// Loads a source and calls `body` with its pixels. For JPEGs, `scaleFor` receives the
    /// full-resolution size and returns the DCT scale denominator to decode with, plus any
    /// value the caller wants back (e.g. the crop it sampled on the full-size image).
    func withPixels<T, R>(of source: ImageSource, channels wanted: Int,
                          plan: (_ width: Int, _ height: Int) throws -> (scaleDenominator: Int, value: T),
                          body: (PixelView, _ fullWidth: Int, _ fullHeight: Int, T) throws -> R) throws -> R {
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
            return try decodeJPEG(UnsafeRawBufferPointer(start: encoded.pointer, count: size), name: path)
        case .encoded(let bytes, let name):
            return try bytes.withUnsafeBytes { try decodeJPEG($0, name: name) }
        case .pixels(let image):
            let (_, value) = try plan(image.width, image.height)
            return try image.pixels.withUnsafeBufferPointer { buffer in
                let view = adapt(PixelView(pointer: buffer.baseAddress!, width: image.width, height: image.height,
                                           channels: image.channels), to: wanted)
                return try body(view, image.width, image.height, value)
            }
        }
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
