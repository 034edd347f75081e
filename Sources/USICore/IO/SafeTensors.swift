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
public struct SafeTensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable, Equatable {
        /// Element type in the file.
        public let dtype: SafeTensorsDType
        /// PyTorch-layout shape.
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
        guard let json = try? JSONSerialization.jsonObject(with: headerBytes), let header = json as? [String: Any] else {
            throw SafeTensorsError("\(source): header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw SafeTensorsError("\(source): __metadata__ must be a map of strings")
                }
                for (k, v) in map {
                    guard let s = v as? String else { throw SafeTensorsError("\(source): __metadata__[\(k)] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try Self.parseEntry(name, value, source: source)
        }
        // Byte ranges must tile the data section exactly: sorted, no overlap, no hole, no excess.
        var expected = 0
        for (name, entry) in entries.sorted(by: { $0.value.byteRange.lowerBound < $1.value.byteRange.lowerBound }) {
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
        self.metadata = metadata
        self.entries = entries
    }

    private static func parseEntry(_ name: String, _ value: Any, source: String) throws -> Entry {
        guard let map = value as? [String: Any], let dtypeName = map["dtype"] as? String,
              let shapeValues = map["shape"] as? [Any], let offsets = map["data_offsets"] as? [Any], offsets.count == 2
        else { throw SafeTensorsError("\(source): tensor '\(name)' needs dtype, shape and two data_offsets") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw SafeTensorsError("\(source): tensor '\(name)' has unsupported dtype \(dtypeName)")
        }
        let shape = try shapeValues.map { v -> Int in
            guard let n = (v as? NSNumber)?.intValue, n >= 0 else {
                throw SafeTensorsError("\(source): tensor '\(name)' has an invalid shape \(shapeValues)")
            }
            return n
        }
        guard let begin = (offsets[0] as? NSNumber)?.intValue, let end = (offsets[1] as? NSNumber)?.intValue,
              begin >= 0, end >= begin else {
            throw SafeTensorsError("\(source): tensor '\(name)' has invalid data_offsets \(offsets)")
        }
        let elements = shape.reduce(1, *)
        guard end - begin == elements * dtype.size else {
            throw SafeTensorsError("\(source): tensor '\(name)' of shape \(shape) and dtype \(dtypeName) needs \(elements * dtype.size) bytes, offsets give \(end - begin)")
        }
        return Entry(dtype: dtype, shape: shape, byteRange: begin..<end)
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
            case .float16: for i in 0..<n { dst[i] = halfToFloat(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .bfloat16: for i in 0..<n { dst[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
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

/// A tensor to write, with the dtype to store it as.
public struct SafeTensorsRecord: Sendable {
    /// Stored element type: `.float32`, `.float16`, `.bfloat16` or `.int64`.
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

/// IEEE half → float.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F), mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        return Float(bitPattern: sign) + (sign != 0 ? -1 : 1) * Float(mantissa) * 0x1p-24
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | UInt32(exponent + 112) << 23 | mantissa << 13)
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
