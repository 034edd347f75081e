import CTurboJPEG
import CUSIKernels

/// What a JPEG header says about the image.
public struct JPEGHeader: Sendable, Equatable {
    /// Full-resolution width in pixels.
    public var width: Int
    /// Full-resolution height in pixels.
    public var height: Int
    /// The colour space stored in the file.
    public var colorSpace: ColorSpace

    /// JPEG colour spaces as libjpeg-turbo reports them.
    public enum ColorSpace: Sendable, Equatable {
        case rgb, yCbCr, gray, cmyk, yccK
    }

    /// Samples per pixel the decoder produces: 1 for grey files, 3 otherwise (CMYK and YCCK
    /// files are converted to RGB).
    public var outputChannels: Int { colorSpace == .gray ? 1 : 3 }
}

/// Decodes JPEG files with libjpeg-turbo's TurboJPEG API (`tjDecompress2`, accurate integer
/// IDCT and fancy upsampling, i.e. `djpeg`'s defaults, so the output is bit-identical to
/// `djpeg -ppm`).
///
/// One decoder holds one TurboJPEG handle and is not thread-safe: give every worker thread
/// its own. Behaviour on bad input:
/// - a file that is not a JPEG, or whose headers are damaged, or that libjpeg-turbo does not
///   support (12-bit, lossless SOF3, arithmetic-coded hierarchical…), throws
///   ``DataError/decodeFailed(name:reason:)`` naming the file;
/// - a file larger than ``limits`` allows (encoded bytes, or `width × height` in its frame
///   header) throws the same error before any pixel or coefficient buffer is allocated —
///   progressive and multi-scan files included, whose whole-image coefficient buffer is what
///   makes a tiny hostile file expensive;
/// - a progressive file with more than 500 scans throws (TurboJPEG's `TJFLAG_LIMITSCANS`), which
///   bounds the decode time of a small file;
/// - a file whose entropy-coded data ends early (a truncated download) decodes: libjpeg-turbo
///   fills the missing rows with grey and reports a warning, which is tolerated and
///   reported through ``DecodedJPEG/hadWarning``.
///
/// After any error the TurboJPEG handle is replaced by a fresh one. libjpeg-turbo 2.x leaves a
/// handle whose header read failed half-way through a file's markers, so that the next file's
/// start of image looks like a second one ("two SOI markers"); one unsupported file would
/// otherwise break every later decode on the same worker.
public final class JPEGDecoder {
    private var handle: tjhandle?
    /// The size bounds checked before decoding (see ``ImageLimits``).
    public var limits: ImageLimits

    /// Creates a decoder (one TurboJPEG handle).
    ///
    /// - Parameter limits: size bounds; `nil` means ``ImageLimits/fromEnvironment(_:)``
    ///   (the standard limits unless `USI_MAX_IMAGE_PIXELS` / `USI_MAX_IMAGE_BYTES` are set).
    public init(limits: ImageLimits? = nil) throws {
        guard let handle = tjInitDecompress() else {
            throw DataError.decodeFailed(name: "-", reason: "cannot create a TurboJPEG decompressor")
        }
        self.handle = handle
        do {
            self.limits = try limits ?? ImageLimits.fromEnvironment()
        } catch {
            tjDestroy(handle)
            throw error
        }
    }

    deinit { if let handle { tjDestroy(handle) } }

    /// The live handle, recreated if an earlier reset could not make one.
    private func liveHandle(name: String) throws -> tjhandle {
        if let handle { return handle }
        guard let fresh = tjInitDecompress() else {
            throw DataError.decodeFailed(name: name, reason: "cannot create a TurboJPEG decompressor")
        }
        handle = fresh
        return fresh
    }

    /// Replaces the handle after an error (see the type's documentation for why).
    private func reset() {
        if let handle { tjDestroy(handle) }
        handle = tjInitDecompress()
    }

    /// The handle's last error message (read before ``reset()``, which discards it).
    private func lastError(_ handle: tjhandle) -> String {
        tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
    }

    /// Reads the header of an encoded JPEG. Throws for an encoded size above
    /// ``ImageLimits/maximumFileBytes``; the pixel limit is checked by the decode calls.
    public func header(of bytes: UnsafeRawBufferPointer, name: String) throws -> JPEGHeader {
        guard let base = bytes.baseAddress, bytes.count > 2 else {
            throw DataError.decodeFailed(name: name, reason: "file is empty")
        }
        try limits.check(fileBytes: bytes.count, name: name)
        let handle = try liveHandle(name: name)
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, space: Int32 = 0
        let status = tjDecompressHeader3(handle, base.assumingMemoryBound(to: UInt8.self),
                                         UInt(bytes.count), &width, &height, &subsampling, &space)
        // A warning (e.g. "extraneous bytes before marker", common in files from the web) still
        // completes the header; djpeg and Pillow decode such files, and so does tjDecompress2,
        // which reports the warning again (DecodedJPEG.hadWarning).
        let warned = status != 0 && tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
        guard status == 0 || warned, width > 0, height > 0 else {
            let message = lastError(handle)
            reset()
            if message.contains("subsampling"), let frame = JPEGMarkers.frame(in: bytes) {
                // TurboJPEG 2.x only names the usual subsamplings; tjDecompress2 decodes others.
                let space: JPEGHeader.ColorSpace
                switch frame.components {
                case 1: space = .gray
                case 4: space = frame.adobeTransform == 2 ? .yccK : .cmyk
                default: space = frame.adobeTransform == 0 ? .rgb : .yCbCr
                }
                return JPEGHeader(width: frame.width, height: frame.height, colorSpace: space)
            }
            throw DataError.decodeFailed(name: name, reason: Self.notJPEGReason(bytes, message: message))
        }
        let colorSpace: JPEGHeader.ColorSpace
        switch Int(space) {
        case Int(TJCS_RGB.rawValue): colorSpace = .rgb
        case Int(TJCS_GRAY.rawValue): colorSpace = .gray
        case Int(TJCS_CMYK.rawValue): colorSpace = .cmyk
        case Int(TJCS_YCCK.rawValue): colorSpace = .yccK
        default: colorSpace = .yCbCr
        }
        return JPEGHeader(width: Int(width), height: Int(height), colorSpace: colorSpace)
    }

    /// The size of the image when decoded at `1/scaleDenominator` (1, 2, 4 or 8), rounded
    /// up as libjpeg does.
    public static func scaledSize(width: Int, height: Int, scaleDenominator: Int) -> (width: Int, height: Int) {
        ((width + scaleDenominator - 1) / scaleDenominator, (height + scaleDenominator - 1) / scaleDenominator)
    }

    /// The largest DCT-domain reduction (1, 2, 4 or 8) that keeps a `cropWidth`×`cropHeight`
    /// region at least `targetWidth`×`targetHeight` pixels, so the following resize still
    /// only shrinks (and its antialiasing filter does the rest).
    public static func scaleDenominator(cropWidth: Double, cropHeight: Double,
                                        targetWidth: Int, targetHeight: Int) -> Int {
        for denominator in [8, 4, 2] {
            let d = Double(denominator)
            if cropWidth / d >= Double(targetWidth) && cropHeight / d >= Double(targetHeight) {
                return denominator
            }
        }
        return 1
    }

    /// Decodes an encoded JPEG at full size or reduced by `scaleDenominator` (1, 2, 4, 8).
    ///
    /// Grey files decode to 1 channel, everything else to RGB.
    public func decode(_ bytes: [UInt8], name: String, scaleDenominator: Int = 1) throws -> DecodedJPEG {
        let buffer = ByteBuffer()
        return try bytes.withUnsafeBytes { raw in
            let layout = try decode(raw, name: name, scaleDenominator: scaleDenominator, into: buffer)
            let count = layout.width * layout.height * layout.channels
            let pixels = [UInt8](UnsafeBufferPointer(start: buffer.pointer, count: count))
            return DecodedJPEG(
                image: Image(uncheckedWidth: layout.width, height: layout.height, channels: layout.channels, pixels: pixels),
                header: layout.header, hadWarning: layout.hadWarning)
        }
    }

    /// Decodes a JPEG file (refusing, before reading it, a file above
    /// ``ImageLimits/maximumFileBytes``).
    public func decode(file path: String, scaleDenominator: Int = 1) throws -> DecodedJPEG {
        let bytes = ByteBuffer()
        let size = try bytes.read(file: path, maximumBytes: limits.maximumFileBytes)
        return try decode([UInt8](UnsafeBufferPointer(start: bytes.pointer, count: size)),
                          name: path, scaleDenominator: scaleDenominator)
    }

    struct Layout {
        var width: Int, height: Int, channels: Int
        var header: JPEGHeader
        var hadWarning: Bool
    }

    /// Decodes into a reusable buffer (packed `[height, width, channels]`).
    func decode(_ bytes: UnsafeRawBufferPointer, name: String, scaleDenominator: Int,
                into output: ByteBuffer, header known: JPEGHeader? = nil) throws -> Layout {
        guard [1, 2, 4, 8].contains(scaleDenominator) else {
            throw DataError.invalidArgument("JPEG scale denominator must be 1, 2, 4 or 8, got \(scaleDenominator)")
        }
        let header = try known ?? self.header(of: bytes, name: name)
        // Before anything is allocated: libjpeg sizes its coefficient buffer (progressive and
        // multi-scan files) by the full-resolution frame, whatever the scale.
        try limits.check(width: header.width, height: header.height, name: name)
        try limits.check(fileBytes: bytes.count, name: name)
        guard let base = bytes.baseAddress else { throw DataError.decodeFailed(name: name, reason: "file is empty") }
        let (width, height) = Self.scaledSize(width: header.width, height: header.height,
                                              scaleDenominator: scaleDenominator)
        let cmyk = header.colorSpace == .cmyk || header.colorSpace == .yccK
        let format: TJPF = header.colorSpace == .gray ? TJPF_GRAY : (cmyk ? TJPF_CMYK : TJPF_RGB)
        let decodedChannels = header.colorSpace == .gray ? 1 : (cmyk ? 4 : 3)
        // CMYK decodes to 4 channels first and is converted in place to 3.
        output.reserve(width * height * decodedChannels)
        let handle = try liveHandle(name: name)
        let status = tjDecompress2(handle, base.assumingMemoryBound(to: UInt8.self),
                                   UInt(bytes.count), output.pointer, Int32(width),
                                   Int32(width * decodedChannels), Int32(height),
                                   Int32(format.rawValue), TJFLAG_LIMITSCANS)
        var hadWarning = false
        if status != 0 {
            if tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) {
                hadWarning = true
            } else {
                let message = lastError(handle)
                reset()
                throw DataError.decodeFailed(name: name, reason: message)
            }
        }
        if cmyk {
            usi_image_cmyk_to_rgb(output.pointer, output.pointer, width * height)
        }
        return Layout(width: width, height: height, channels: header.outputChannels,
                      header: header, hadWarning: hadWarning)
    }

    private static func notJPEGReason(_ bytes: UnsafeRawBufferPointer, message: String) -> String {
        if bytes.count >= 2 && !(bytes[0] == 0xFF && bytes[1] == 0xD8) {
            return "not a JPEG file (no SOI marker); \(message)"
        }
        return message
    }
}

/// The result of decoding one JPEG.
public struct DecodedJPEG: Sendable {
    /// The pixels: 1 channel for grey files, RGB otherwise.
    public var image: Image
    /// The file's header (full-resolution size, colour space).
    public var header: JPEGHeader
    /// libjpeg-turbo reported a recoverable problem, typically "premature end of data
    /// segment" for a truncated file, and filled the missing part.
    public var hadWarning: Bool
}
