import CZlib

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
        guard bytes.count == dimensions.reduce(1, *) else {
            throw DataError.invalidArgument("IDX dimensions \(dimensions) need \(dimensions.reduce(1, *)) bytes, got \(bytes.count)")
        }
        self.dimensions = dimensions
        self.bytes = bytes
    }

    /// Reads an IDX file (gzip-compressed or not).
    ///
    /// Throws ``DataError/corrupt(path:reason:)`` for a wrong magic number, an element type
    /// other than unsigned byte, or a file shorter than its header says.
    public init(contentsOf path: String) throws {
        guard let file = gzopen(path, "rb") else {
            throw DataError.unreadable(path: path, reason: "cannot open file")
        }
        defer { gzclose(file) }
        _ = gzbuffer(file, 1 << 17)

        func read(_ count: Int, what: String) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let chunk = Int32(min(count - done, 1 << 30))
                let got = out.withUnsafeMutableBytes { gzread(file, $0.baseAddress! + done, UInt32(chunk)) }
                if got < 0 {
                    var code: Int32 = 0
                    let message = gzerror(file, &code).map { String(cString: $0) } ?? "read error"
                    throw DataError.corrupt(path: path, reason: "\(message) while reading \(what)")
                }
                if got == 0 {
                    throw DataError.corrupt(path: path, reason: "truncated: \(what) needs \(count) bytes, file ends after \(done)")
                }
                done += Int(got)
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
        let (total, overflow) = dims.reduce((1, false)) { acc, d in
            let (m, o) = acc.0.multipliedReportingOverflow(by: d)
            return (m, acc.1 || o)
        }
        guard !overflow, total < 1 << 40 else {
            throw DataError.corrupt(path: path, reason: "dimensions \(dims) are too large")
        }
        self.dimensions = dims
        self.bytes = try read(total, what: "data of shape \(dims)")
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
