import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IDX array of unsigned bytes, the format of MNIST and Fashion-MNIST
/// (`train-images-idx3-ubyte.gz`, …): a magic number `0x0000 08 nd`, `nd` big-endian
/// 32-bit dimensions, then the data. Files may be gzip-compressed or raw.
public struct IDXFile: Sendable, Equatable {
    /// The dimensions, outermost first, e.g. `[60000, 28, 28]`.
    public var dimensions: [Int]
    /// The elements in row-major order.
    public var bytes: [UInt8]

    /// Creates an array; throws if `bytes.count` is not the product of the dimensions.
    public init(dimensions: [Int], bytes: [UInt8]) throws {
        guard !dimensions.isEmpty, dimensions.count < 256,
              dimensions.allSatisfy({ $0 >= 0 && $0 <= Int(UInt32.max) }) else {
            throw DataError.invalidArgument("IDX dimensions must be 1 to 255 non-negative 32-bit sizes, got \(dimensions)")
        }
        var product = 1
        for d in dimensions {
            let (m, overflow) = product.multipliedReportingOverflow(by: max(d, 1))
            guard !overflow else { throw DataError.invalidArgument("IDX dimensions \(dimensions) overflow the element count") }
            product = m
        }
        if dimensions.contains(0) { product = 0 }
        guard bytes.count == product else {
            throw DataError.invalidArgument("IDX dimensions \(dimensions) need \(product) bytes, got \(bytes.count)")
        }
        self.dimensions = dimensions
        self.bytes = bytes
    }

    /// The largest data section ``init(contentsOf:maximumBytes:)`` accepts by default: 4 GiB
    /// (Fashion-MNIST's training images are 47 MB). A gzip file can expand about a
    /// thousandfold, so this bounds what a small file can make the reader allocate.
    public static let defaultMaximumBytes = 1 << 32

    /// Reads an IDX file (gzip-compressed or not).
    ///
    /// Throws ``DataError/corrupt(path:reason:)`` for a wrong magic number, an element type
    /// other than unsigned byte, dimensions whose product overflows or exceeds `maximumBytes`,
    /// a file shorter than its header says, or bytes after the data. Memory grows with the
    /// data actually read (a gzip file is inflated chunk by chunk), never with what the header
    /// claims alone; a raw file's size is checked against its header before any data is read.
    public init(contentsOf path: String, maximumBytes: Int = IDXFile.defaultMaximumBytes) throws {
        guard let file = gzopen(path, "rb") else {
            throw DataError.unreadable(path: path, reason: "cannot open file")
        }
        defer { gzclose(file) }
        _ = gzbuffer(file, 1 << 17)

        /// Reads up to `count` bytes into `destination`; returns how many (0 at the end).
        func readSome(_ destination: UnsafeMutableRawPointer, _ count: Int, what: String) throws -> Int {
            let got = gzread(file, destination, UInt32(min(count, 1 << 30)))
            if got < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "read error"
                throw DataError.corrupt(path: path, reason: "\(message) while reading \(what)")
            }
            return Int(got)
        }

        /// Reads exactly `count` bytes, growing the array with the data that arrives: chunks
        /// start at 64 KiB and double up to 16 MiB, so a header that claims gigabytes costs no
        /// more than the data that is really there (at most twice it, plus one chunk).
        func read(_ count: Int, what: String) throws -> [UInt8] {
            var out: [UInt8] = []
            while out.count < count {
                let start = out.count
                let want = min(count - start, min(1 << 24, max(1 << 16, start)))
                // Grown by copying whole blocks (no per-element appends, which a consumer's
                // debug build would run element by element).
                var got = 0
                out = try [UInt8](unsafeUninitializedCapacity: start + want) { buffer, initialized in
                    out.withUnsafeBufferPointer { old in
                        if let from = old.baseAddress { buffer.baseAddress!.update(from: from, count: start) }
                    }
                    got = try readSome(buffer.baseAddress! + start, want, what: what)
                    initialized = start + got
                }
                if got == 0 {
                    throw DataError.corrupt(path: path, reason: "truncated: \(what) needs \(count) bytes, file ends after \(out.count)")
                }
            }
            return out
        }

        let magic = try read(4, what: "the magic number")
        guard magic[0] == 0, magic[1] == 0 else {
            throw DataError.corrupt(path: path, reason: String(format: "bad magic number 0x%02x%02x%02x%02x (an IDX file starts with two zero bytes)", magic[0], magic[1], magic[2], magic[3]))
        }
        guard magic[2] == 0x08 else {
            throw DataError.corrupt(path: path, reason: String(format: "element type 0x%02x is not supported (only 0x08, unsigned byte)", magic[2]))
        }
        let rank = Int(magic[3])
        guard rank > 0 else { throw DataError.corrupt(path: path, reason: "IDX array has zero dimensions") }
        let header = try read(4 * rank, what: "the \(rank) dimensions")
        var dims: [Int] = []
        for d in 0..<rank {
            let b = header[(4 * d)..<(4 * d + 4)].map(Int.init)
            dims.append(b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3])
        }
        // Every dimension is below 2^32, so each partial product of up to 255 of them is
        // checked; a zero dimension does not excuse an overflow (the others size the images).
        var total = 1, overflow = false
        for d in dims {
            let (m, o) = total.multipliedReportingOverflow(by: max(d, 1))
            total = m
            overflow = overflow || o
        }
        guard !overflow, total <= maximumBytes else {
            throw DataError.corrupt(path: path, reason: "dimensions \(dims) describe more than the \(maximumBytes)-byte limit of an IDX file")
        }
        if dims.contains(0) { total = 0 }
        if gzdirect(file) == 1 {
            // An uncompressed file: its size must match the header before anything is read.
            var info = stat()
            if stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
                let expected = 4 + 4 * rank + total, actual = Int(info.st_size)
                if actual < expected {
                    throw DataError.corrupt(path: path, reason: "truncated: data of shape \(dims) needs \(total) bytes, file ends after \(max(0, actual - 4 - 4 * rank))")
                }
                if actual > expected {
                    throw DataError.corrupt(path: path, reason: "\(actual - expected) unexpected bytes after the data of shape \(dims)")
                }
            }
        }
        self.dimensions = dims
        self.bytes = try read(total, what: "data of shape \(dims)")
        var extra: UInt8 = 0
        if try readSome(&extra, 1, what: "the end of the file") != 0 {
            throw DataError.corrupt(path: path, reason: "unexpected bytes after the data of shape \(dims)")
        }
    }

    /// Writes the array as an IDX file, gzip-compressed when `compressed` (the default).
    public func write(to path: String, compressed: Bool = true) throws {
        guard let file = gzopen(path, compressed ? "wb6" : "wbT") else {
            throw DataError.unreadable(path: path, reason: "cannot create file")
        }
        var header: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
        for d in dimensions {
            header += [UInt8(truncatingIfNeeded: d >> 24), UInt8(truncatingIfNeeded: d >> 16),
                       UInt8(truncatingIfNeeded: d >> 8), UInt8(truncatingIfNeeded: d)]
        }
        var ok = true
        for chunk in [header, bytes] where !chunk.isEmpty {
            let written = chunk.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
            ok = ok && Int(written) == chunk.count
        }
        let closed = gzclose(file)
        guard ok, closed == Z_OK else {
            throw DataError.unreadable(path: path, reason: "write failed")
        }
    }
}
