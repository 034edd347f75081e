import CZlib
import Foundation

/// A read-only zip archive held in memory: the central directory, and each entry's bytes on
/// request. Written for PyTorch's checkpoint format (torch ≥ 1.6 writes STORED entries);
/// DEFLATED entries are inflated with zlib, anything else is refused.
///
/// The archive is untrusted: every offset and size is checked against the bytes present with
/// overflow-reporting arithmetic before it is used, an inflated entry may not claim more
/// than ``maximumInflationRatio`` times its compressed size (deflate cannot expand further),
/// and every entry's CRC-32 is verified. Errors are ``PyTorchCheckpointError``s naming the
/// file and the entry.
struct ZipArchive {
    struct Entry {
        var name: String
        var method: UInt16
        var crc32: UInt32
        var compressedSize: Int
        var size: Int
        var localHeaderOffset: Int
    }

    /// Entries in central-directory order.
    let entries: [Entry]
    /// Entry positions by name: a checkpoint looks up one entry per storage, and a linear
    /// search would make a hostile archive of many entries quadratic.
    private let index: [String: Int]
    private let data: Data
    private let source: String

    /// Deflate's worst-case expansion is 1032:1; a larger claimed size is a lie.
    static let maximumInflationRatio = 1032
    /// The zip signature every archive starts with (a local file header).
    static let magic: [UInt8] = [0x50, 0x4B, 0x03, 0x04]

    init(data: Data, source: String) throws {
        self.data = data
        self.source = source
        let reader = ByteReader(data: data, source: source)
        // The end-of-central-directory record is the last 22 bytes plus a comment of at most
        // 65 535 bytes, so it is searched for only there.
        guard data.count >= 22 else { throw reader.fail("truncated zip archive (\(data.count) bytes)") }
        var eocd = -1
        var position = data.count - 22
        let lowest = max(0, data.count - 22 - 65_535)
        while position >= lowest {
            if try reader.u32(position) == 0x0605_4B50 { eocd = position; break }
            position -= 1
        }
        guard eocd >= 0 else { throw reader.fail("not a zip archive (no end-of-central-directory record)") }
        var count = Int(try reader.u16(eocd + 10))
        var directorySize = Int(try reader.u32(eocd + 12))
        var directoryOffset = Int(try reader.u32(eocd + 16))
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // Zip64: a locator just before the record points at the 64-bit record.
            guard eocd >= 20, try reader.u32(eocd - 20) == 0x0706_4B50 else {
                throw reader.fail("zip64 archive without a zip64 locator")
            }
            let record = try reader.int64(eocd - 20 + 8, field: "zip64 record offset")
            guard try reader.u32(record) == 0x0606_4B50 else { throw reader.fail("zip64 end-of-central-directory record not found") }
            count = try reader.int64(record + 32, field: "entry count")
            directorySize = try reader.int64(record + 40, field: "central directory size")
            directoryOffset = try reader.int64(record + 48, field: "central directory offset")
        }
        let (directoryEnd, overflow) = directoryOffset.addingReportingOverflow(directorySize)
        guard !overflow, directoryEnd <= data.count else {
            throw reader.fail("central directory (\(directorySize) bytes at \(directoryOffset)) lies outside the \(data.count)-byte file")
        }
        // Each central-directory header is at least 46 bytes: a count beyond that is a lie
        // and must not size an allocation.
        guard count <= directorySize / 46 else {
            throw reader.fail("central directory claims \(count) entries in \(directorySize) bytes")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var index: [String: Int] = [:]
        var at = directoryOffset
        for _ in 0..<count {
            guard try reader.u32(at) == 0x0201_4B50 else { throw reader.fail("bad central directory header at byte \(at)") }
            let method = try reader.u16(at + 10)
            let crc = try reader.u32(at + 16)
            var compressed = Int(try reader.u32(at + 20))
            var size = Int(try reader.u32(at + 24))
            let nameLength = Int(try reader.u16(at + 28))
            let extraLength = Int(try reader.u16(at + 30))
            let commentLength = Int(try reader.u16(at + 32))
            var local = Int(try reader.u32(at + 42))
            let nameBytes = try reader.bytes(at + 46, count: nameLength)
            let name = String(decoding: nameBytes, as: UTF8.self)
            // Zip64 extended information: the 64-bit values of the fields that read 0xFFFFFFFF,
            // in this order.
            var extra = at + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try reader.u16(extra), length = Int(try reader.u16(extra + 2))
                guard extra + 4 + length <= extraEnd else { throw reader.fail("entry \(name): extra field overruns its header") }
                if id == 0x0001 {
                    var field = extra + 4
                    func next(_ value: Int) throws -> Int {
                        guard value == 0xFFFF_FFFF else { return value }
                        guard field + 8 <= extra + 4 + length else { throw reader.fail("entry \(name): short zip64 extra field") }
                        defer { field += 8 }
                        return try reader.int64(field, field: "entry \(name) zip64 field")
                    }
                    size = try next(size)
                    compressed = try next(compressed)
                    local = try next(local)
                }
                extra += 4 + length
            }
            guard index.updateValue(entries.count, forKey: name) == nil else { throw reader.fail("entry \(name) appears twice") }
            entries.append(Entry(name: name, method: method, crc32: crc, compressedSize: compressed, size: size,
                                 localHeaderOffset: local))
            at = extraEnd + commentLength
            guard at <= directoryEnd else { throw reader.fail("central directory header of \(name) overruns the directory") }
        }
        self.entries = entries
        self.index = index
    }

    /// The entry called `name`, if any.
    func entry(named name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The uncompressed bytes of `entry`, CRC-checked.
    func contents(of entry: Entry) throws -> Data {
        let reader = ByteReader(data: data, source: source)
        let at = entry.localHeaderOffset
        guard try reader.u32(at) == 0x0403_4B50 else { throw reader.fail("entry \(entry.name): bad local header at byte \(at)") }
        // The local header's own name and extra lengths decide where the data starts (they
        // may differ from the central directory's: torch pads the extra field to align data).
        let start = at + 30 + Int(try reader.u16(at + 26)) + Int(try reader.u16(at + 28))
        let stored = try reader.bytes(start, count: entry.compressedSize)
        let output: Data
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.size else {
                throw reader.fail("stored entry \(entry.name) has compressed size \(entry.compressedSize) ≠ size \(entry.size)")
            }
            output = stored
        case 8:
            output = try inflate(stored, size: entry.size, name: entry.name, reader: reader)
        default:
            throw reader.fail("entry \(entry.name) uses compression method \(entry.method); only stored (0) and deflated (8) are read")
        }
        let crc = output.withUnsafeBytes { raw -> UInt32 in
            guard let base = raw.bindMemory(to: Bytef.self).baseAddress else { return 0 }
            return UInt32(CZlib.crc32(0, base, uInt(raw.count)))
        }
        guard crc == entry.crc32 else { throw reader.fail("entry \(entry.name) fails its CRC-32 check (corrupt archive)") }
        return output
    }

    /// Raw-deflate `input` into exactly `size` bytes.
    private func inflate(_ input: Data, size: Int, name: String, reader: ByteReader) throws -> Data {
        let (limit, overflow) = max(input.count, 1).multipliedReportingOverflow(by: Self.maximumInflationRatio)
        guard overflow || size <= limit else {
            throw reader.fail("entry \(name) claims \(size) bytes from \(input.count) compressed, more than deflate can expand")
        }
        guard size <= Int(UInt32.max), input.count <= Int(UInt32.max) else {
            throw reader.fail("deflated entry \(name) is larger than 4 GiB; re-save it stored, as torch.save does")
        }
        var output = Data(count: size)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw reader.fail("zlib could not start inflating \(name)")
        }
        defer { inflateEnd(&stream) }
        let status: Int32 = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                stream.next_in = UnsafeMutablePointer(mutating: src.bindMemory(to: Bytef.self).baseAddress)
                stream.avail_in = uInt(src.count)
                stream.next_out = dst.bindMemory(to: Bytef.self).baseAddress
                stream.avail_out = uInt(dst.count)
                return CZlib.inflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == size else {
            throw reader.fail("entry \(name) does not inflate to its \(size) bytes (corrupt deflate stream)")
        }
        return output
    }
}

/// Bounds-checked little-endian reads from untrusted bytes; every miss throws.
struct ByteReader {
    let data: Data
    let source: String

    func fail(_ message: String) -> PyTorchCheckpointError { PyTorchCheckpointError("\(source): \(message)") }

    /// `count` bytes at `offset`, or an error when they are not all in the file.
    func bytes(_ offset: Int, count: Int) throws -> Data {
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard offset >= 0, count >= 0, !overflow, end <= data.count else {
            throw fail("truncated file (\(count) bytes at offset \(offset) wanted, the file has \(data.count))")
        }
        return data.subdata(in: data.startIndex + offset ..< data.startIndex + end)
    }

    private func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= data.count - size else {
            throw fail("truncated file (\(size) bytes at offset \(offset) wanted, the file has \(data.count))")
        }
        return data.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    func u16(_ offset: Int) throws -> UInt16 { try load(offset, UInt16.self) }
    func u32(_ offset: Int) throws -> UInt32 { try load(offset, UInt32.self) }
    /// A u64 that must fit in a non-negative `Int`.
    func int64(_ offset: Int, field: String) throws -> Int {
        let value = try load(offset, UInt64.self)
        guard value <= UInt64(Int.max) else { throw fail("\(field) \(value) is out of range") }
        return Int(value)
    }
}
