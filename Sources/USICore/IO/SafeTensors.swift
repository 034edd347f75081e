import CUSIKernels
import Foundation

/// An error reading or writing a safetensors file; the message names the file and the problem.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, for a person.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The element types of the safetensors format that this library reads.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case float32 = "F32", float16 = "F16", bfloat16 = "BF16", float64 = "F64"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }
}

/// A safetensors file: a little-endian u64 header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the raw data. Tensors are in PyTorch layout.
///
/// Reading validates the whole header up front (size, JSON, dtypes, that byte ranges match
/// shapes, lie inside the file and neither overlap nor leave holes), so a truncated or
/// malformed file fails with a clear error before any tensor is used. Files are memory-mapped.
///
/// Every number in the header is untrusted: shapes, element counts, byte counts and offsets
/// are checked with overflow-reporting arithmetic, and any violation throws a
/// ``SafeTensorsError`` naming the file, the tensor and the field. What a file can make this
/// reader allocate is bounded by the file itself: the header at most
/// ``maximumHeaderBytes`` (parsed into at most a few times that), and because the byte ranges
/// must tile the data section exactly, ``tensor(_:)`` allocates at most 4 bytes per byte of
/// the tensor in the file (F32 from U8/I8/BOOL) and ``integers(_:)`` at most 8.
public struct SafeTensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable, Equatable {
        /// Element type in the file.
        public let dtype: SafeTensorsDType
        /// PyTorch-layout shape. The product of its dimensions (zeros counted as one) and the
        /// byte count both fit in an `Int`, so code that multiplies them out cannot overflow.
        public let shape: [Int]
        /// Byte range within the data section.
        public let byteRange: Range<Int>
    }

    /// The free-form string map stored under `__metadata__`.
    public let metadata: [String: String]
    /// Header entries by tensor name.
    public let entries: [String: Entry]
    /// Where the file came from (for messages).
    public let source: String
    private let data: Data
    private let dataStart: Int

    /// The largest header this reader accepts (the reference implementation's limit).
    public static let maximumHeaderBytes = 100_000_000

    /// Tensor names, sorted.
    public var names: [String] { entries.keys.sorted() }

    /// Opens and validates the file at `url` (memory-mapped).
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw SafeTensorsError("cannot read \(url.path): \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.path)
    }

    /// Parses and validates safetensors bytes.
    public init(data: Data, source: String = "<memory>") throws {
        self.data = data
        self.source = source
        guard data.count >= 8 else {
            throw SafeTensorsError("\(source): truncated safetensors file (\(data.count) bytes, the header length alone needs 8)")
        }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard headerLength <= UInt64(Self.maximumHeaderBytes) else {
            throw SafeTensorsError("\(source): header of \(headerLength) bytes exceeds the \(Self.maximumHeaderBytes)-byte limit")
        }
        guard Int(headerLength) <= data.count - 8 else {
            throw SafeTensorsError("\(source): truncated safetensors file (header says \(headerLength) bytes, only \(data.count - 8) follow)")
        }
        dataStart = 8 + Int(headerLength)
        let headerBytes = data.subdata(in: data.startIndex + 8 ..< data.startIndex + dataStart)
        let header: SafeTensorsHeader
        do {
            header = try JSONDecoder().decode(SafeTensorsHeader.self, from: headerBytes)
        } catch let error as SafeTensorsFieldError {
            throw SafeTensorsError("\(source): tensor '\(error.tensor)' field \(error.field): \(error.message)")
        } catch let error as DecodingError {
            throw SafeTensorsError("\(source): \(SafeTensorsHeader.describe(error))")
        } catch {
            throw SafeTensorsError("\(source): header is not a JSON object (\(error))")
        }
        // Byte ranges must tile the data section exactly: sorted, no overlap, no hole, no excess.
        // Ties are broken by the end (an empty tensor [k, k] before one starting at k) and the
        // name, so the order, and so the message for a bad file, never depends on hashing.
        var expected = 0
        let ordered = header.entries.sorted { a, b in
            (a.value.byteRange.lowerBound, a.value.byteRange.upperBound, a.key)
                < (b.value.byteRange.lowerBound, b.value.byteRange.upperBound, b.key)
        }
        for (name, entry) in ordered {
            if entry.byteRange.lowerBound < expected {
                throw SafeTensorsError("\(source): tensor '\(name)' overlaps the previous tensor's bytes")
            }
            if entry.byteRange.lowerBound > expected {
                throw SafeTensorsError("\(source): gap in the data section before tensor '\(name)'")
            }
            expected = entry.byteRange.upperBound
        }
        let available = data.count - dataStart
        if expected > available {
            throw SafeTensorsError("\(source): truncated safetensors file (tensors need \(expected) data bytes, \(available) present)")
        }
        if expected < available {
            throw SafeTensorsError("\(source): \(available - expected) unexpected bytes after the last tensor")
        }
        self.metadata = header.metadata
        self.entries = header.entries
    }

    private func entry(_ name: String) throws -> Entry {
        guard let entry = entries[name] else { throw SafeTensorsError("\(source): no tensor named '\(name)'") }
        return entry
    }

    /// The tensor `name` as float32 in the file's (PyTorch) layout and shape, converting from
    /// F16, BF16, F64 and integer types.
    public func tensor(_ name: String) throws -> Tensor {
        let entry = try entry(name)
        let out = Tensor(uninitializedShape: entry.shape)
        let n = out.count
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + entry.byteRange.lowerBound
            let dst = out.pointer
            switch entry.dtype {
            case .float32: UnsafeMutableRawPointer(dst).copyMemory(from: base, byteCount: n * 4)
            // In C, so that a debug build of a consumer converts a teacher as fast as release.
            case .float16: usi_f16_to_f32(dst, base, Int64(n))
            case .bfloat16: usi_bf16_to_f32(dst, base, Int64(n))
            case .float64: for i in 0..<n { dst[i] = Float(base.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .int64: for i in 0..<n { dst[i] = Float(base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            case .int32: for i in 0..<n { dst[i] = Float(base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case .int16: for i in 0..<n { dst[i] = Float(base.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
            case .int8: for i in 0..<n { dst[i] = Float(base.load(fromByteOffset: i, as: Int8.self)) }
            case .uint8, .bool: for i in 0..<n { dst[i] = Float(base.load(fromByteOffset: i, as: UInt8.self)) }
            }
        }
        return out
    }

    /// The tensor `name` exactly as stored (dtype, shape, bytes), to rewrite it unchanged.
    public func record(_ name: String) throws -> SafeTensorsRecord {
        let entry = try entry(name)
        let start = data.startIndex + dataStart + entry.byteRange.lowerBound
        return SafeTensorsRecord(dtype: entry.dtype, shape: entry.shape,
                                 bytes: data.subdata(in: start ..< start + entry.byteRange.count))
    }

    /// The integer tensor `name` (I64/I32/I16/I8/U8/BOOL) as `Int64`s.
    public func integers(_ name: String) throws -> [Int64] {
        let entry = try entry(name)
        let n = entry.shape.reduce(1, *)
        return try data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + entry.byteRange.lowerBound
            switch entry.dtype {
            case .int64: return (0..<n).map { base.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }
            case .int32: return (0..<n).map { Int64(base.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            case .int16: return (0..<n).map { Int64(base.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self)) }
            case .int8: return (0..<n).map { Int64(base.load(fromByteOffset: $0, as: Int8.self)) }
            case .uint8, .bool: return (0..<n).map { Int64(base.load(fromByteOffset: $0, as: UInt8.self)) }
            default: throw SafeTensorsError("\(source): tensor '\(name)' is \(entry.dtype.rawValue), not an integer type")
            }
        }
    }
}

/// A problem with one field of one tensor's header entry (turned into a ``SafeTensorsError``
/// that names the file as well).
struct SafeTensorsFieldError: Error {
    var tensor: String
    var field: String
    var message: String
}

/// The JSON header, decoded strictly: numbers must be exact integers (`JSONDecoder` refuses
/// `2.5`, `1e30`, `2^64` and booleans where `JSONSerialization` would silently round, saturate
/// or zero them), and every size is checked before it is multiplied out.
struct SafeTensorsHeader: Decodable {
    var metadata: [String: String] = [:]
    var entries: [String: SafeTensorsFile.Entry] = [:]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try container.decode([String: String].self, forKey: key)
            } else {
                entries[key.stringValue] = try Self.entry(key.stringValue, try container.superDecoder(forKey: key))
            }
        }
    }

    private enum EntryKey: String, CodingKey { case dtype, shape, data_offsets }

    private static func entry(_ name: String, _ decoder: any Decoder) throws -> SafeTensorsFile.Entry {
        func fail(_ field: String, _ message: String) -> SafeTensorsFieldError {
            SafeTensorsFieldError(tensor: name, field: field, message: message)
        }
        let map: KeyedDecodingContainer<EntryKey>
        do { map = try decoder.container(keyedBy: EntryKey.self) } catch {
            throw fail("(entry)", "needs dtype, shape and two data_offsets")
        }
        guard let dtypeName = try? map.decode(String.self, forKey: .dtype) else {
            throw fail("dtype", "missing or not a string")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw fail("dtype", "unsupported dtype \(dtypeName)")
        }
        let shape = try integers(map, .shape, name: name)
        let offsets = try integers(map, .data_offsets, name: name)
        guard offsets.count == 2 else { throw fail("data_offsets", "needs two offsets, got \(offsets.count)") }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("shape", "negative dimension in \(shape)") }
        // Zeros count as one: a [0, 2^62, 4] tensor is empty, but code that computes strides
        // or partial products from its shape must not overflow either.
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: max(d, 1))
            guard !overflow else { throw fail("shape", "\(shape) has more elements than an Int can count") }
            elements = product
        }
        if shape.contains(0) { elements = 0 }
        let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw fail("shape", "\(shape) of \(dtypeName) needs more bytes than an Int can count") }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin >= 0, end >= begin else { throw fail("data_offsets", "invalid range \(offsets)") }
        guard end - begin == byteCount else {
            throw fail("data_offsets", "shape \(shape) and dtype \(dtypeName) needs \(byteCount) bytes, offsets give \(end - begin)")
        }
        return SafeTensorsFile.Entry(dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    /// An array of exact integers, with a message naming the field when it is not one.
    private static func integers(_ map: KeyedDecodingContainer<EntryKey>, _ key: EntryKey, name: String) throws -> [Int] {
        guard map.contains(key) else {
            throw SafeTensorsFieldError(tensor: name, field: key.rawValue, message: "missing")
        }
        do {
            return try map.decode([Int].self, forKey: key)
        } catch {
            let shown = (try? map.decode([Double].self, forKey: key)).map { "\($0)" } ?? "a value that is not an array of numbers"
            throw SafeTensorsFieldError(tensor: name, field: key.rawValue,
                                        message: "\(shown) is not a list of 64-bit integers")
        }
    }

    /// A decoding error as a sentence naming the field.
    static func describe(_ error: DecodingError) -> String {
        let context: DecodingError.Context
        switch error {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): context = c
        case .keyNotFound(_, let c): context = c
        @unknown default: return "header is not a valid safetensors JSON object"
        }
        let path = context.codingPath.map(\.stringValue)
        if path.first == "__metadata__" {
            return path.count > 1 ? "__metadata__[\(path[1])] is not a string" : "__metadata__ must be a map of strings"
        }
        if path.isEmpty { return "header is not a JSON object (\(context.debugDescription))" }
        return "header field \(path.joined(separator: ".")): \(context.debugDescription)"
    }
}

/// A tensor to write, with the dtype to store it as.
public struct SafeTensorsRecord: Sendable {
    /// Stored element type.
    public let dtype: SafeTensorsDType
    /// PyTorch-layout shape.
    public let shape: [Int]
    /// Little-endian bytes.
    public let bytes: Data

    /// A float tensor stored as F32, F16 or BF16 (its shape as given; convert layouts first).
    public init(_ tensor: Tensor, dtype: SafeTensorsDType = .float32) {
        precondition([.float32, .float16, .bfloat16].contains(dtype), "SafeTensorsRecord: \(dtype) is not a float type")
        self.dtype = dtype
        self.shape = tensor.shape
        let n = tensor.count
        var bytes = Data(count: n * dtype.size)
        bytes.withUnsafeMutableBytes { raw in
            let src = tensor.pointer
            switch dtype {
            case .float16: for i in 0..<n { raw.storeBytes(of: floatToHalf(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .bfloat16: for i in 0..<n { raw.storeBytes(of: floatToBFloat16(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            default: raw.baseAddress!.copyMemory(from: src, byteCount: n * 4)
            }
        }
        withExtendedLifetime(tensor) {}
        self.bytes = bytes
    }

    /// A tensor of any dtype from its little-endian bytes, which must hold exactly
    /// `shape`'s elements (the caller has checked the sizes).
    public init(dtype: SafeTensorsDType, shape: [Int], bytes: Data) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.size, "SafeTensorsRecord: \(bytes.count) bytes for \(dtype) \(shape)")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// An integer tensor stored as I64 (e.g. BatchNorm's `num_batches_tracked`, shape `[]`).
    public init(int64 values: [Int64], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "SafeTensorsRecord: \(values.count) values for shape \(shape)")
        dtype = .int64
        self.shape = shape
        bytes = values.withUnsafeBytes { Data($0) }
    }
}

/// Writing safetensors files.
public enum SafeTensors {
    /// Encodes tensors (sorted by name) and metadata into safetensors bytes.
    public static func encode(_ tensors: [String: SafeTensorsRecord], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let record = tensors[name]!
            header[name] = ["dtype": record.dtype.rawValue, "shape": record.shape, "data_offsets": [offset, offset + record.bytes.count]]
            offset += record.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))  // align data to 8
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names { out.append(tensors[name]!.bytes) }
        return out
    }

    /// Writes a safetensors file atomically (temporary file, fsync, rename), so a crash never
    /// leaves a half-written file under `url`.
    public static func write(_ tensors: [String: SafeTensorsRecord], metadata: [String: String] = [:], to url: URL) throws {
        try AtomicFile.write(encode(tensors, metadata: metadata), to: url)
    }
}

/// Float → IEEE half, round to nearest even (overflow to infinity).
func floatToHalf(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    if f.isNaN { return sign | 0x7E00 }
    let a = abs(f)
    if a >= 65520 { return sign | 0x7C00 }
    if a < 0x1p-14 {  // subnormal half: round a·2^24 to an integer
        return sign | UInt16((a * 0x1p24).rounded(.toNearestOrEven))
    }
    let e = Int((bits >> 23) & 0xFF) - 127 + 15
    var m = bits & 0x7F_FFFF
    var half = UInt32(e) << 10 | (m >> 13)
    m &= 0x1FFF
    if m > 0x1000 || (m == 0x1000 && half & 1 == 1) { half += 1 }
    return sign | UInt16(half)
}

/// Float → bfloat16, round to nearest even.
func floatToBFloat16(_ f: Float) -> UInt16 {
    if f.isNaN { return 0x7FC0 }
    let bits = f.bitPattern
    return UInt16((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)
}
