import CZlib
import Foundation

/// The teacher's logits on every batch of a run, kept on disk so that the other students of a
/// comparison — who see the very same batches — do not run the teacher again.
///
/// A ``TeacherLogitsSource``: the first run through a key computes the teacher's logits and
/// appends them; every later one reads them back. A stored batch is served only when the
/// student's images are the ones it was stored for (a CRC-32 of the images is kept per batch);
/// otherwise — and past the size bound — the live teacher runs.
///
/// What is kept per image (the decision and its measurement: Docs/DECISIONS.md):
/// - **all logits**, as FP32, when there are at most ``allLogitsClassLimit`` classes. A student
///   trained from them is the live teacher's student bit for bit.
/// - **the top-k probabilities and their class indices** otherwise (as TinyViT stores them);
///   the rest of the probability mass is spread evenly over the other classes, and the logits
///   given back are the logs of those probabilities (softmax gives the probabilities back).
///
/// File format (`<key>.usilogits`, little-endian):
/// ```
/// header:  "USILOGIT" | u32 version (1) | u32 key length L | L bytes key JSON
///          | u32 classes | u32 k (0 = all logits) | u32 CRC-32 of everything before
/// record:  u32 step | u32 shard | u32 rows | u32 CRC-32 of the images
///          | payload: rows·classes f32 logits, or rows·k f32 probabilities + rows·k u16 indices
///          | u32 CRC-32 of the record's bytes before it
/// ```
/// Records are appended in training order. A record cut short by a kill is dropped when the
/// store is opened again; a record or header that does not check out is an error that names
/// the file.
public final class TeacherLogitsStore: TeacherLogitsSource {
    /// Classes up to which every logit is stored (10 classes: 40 bytes per image).
    public static let allLogitsClassLimit = 100
    /// Probabilities kept per image above ``allLogitsClassLimit`` classes when none is given.
    public static let defaultTopK = 100
    /// Bytes a store may grow to (4 GiB by default); past it the live teacher runs.
    public let byteLimit: Int
    /// The store's file.
    public let url: URL
    /// What the logits were computed under.
    public let key: TeacherLogitsKey
    /// Classes of the teacher.
    public let classes: Int
    /// Probabilities kept per image, or 0 for all logits.
    public let topK: Int

    /// Batches served from the file / computed by the live teacher since the store was opened.
    public private(set) var served = 0, computed = 0
    /// Seconds spent in the live teacher since the store was opened (its share of a run).
    public private(set) var teacherSeconds = 0.0
    /// Batches whose images did not match the stored ones (served live instead).
    public private(set) var mismatches = 0

    private let handle: FileHandle
    private var index: [Position: Entry] = [:]
    private var end: UInt64
    private let evaluations: TeacherEvaluationCache
    private struct Position: Hashable { var step: Int, shard: Int }
    private struct Entry { var offset: UInt64, rows: Int, imagesCRC: UInt32 }

    private static let magic = Array("USILOGIT".utf8)
    private static let version: UInt32 = 1
    private static let recordHeaderBytes = 16
    /// Rows per record at most (a bound that a damaged header cannot get past).
    private static let maximumRows = 1 << 16

    /// Opens the store for `key` in `directory` (creating both when missing). `topK` applies
    /// above ``allLogitsClassLimit`` classes (default ``defaultTopK``). Throws, naming the
    /// file, when it is not a store, belongs to another key or is damaged.
    public init(directory: URL, key: TeacherLogitsKey, classes: Int, topK: Int? = nil,
                byteLimit: Int = 4 << 30) throws {
        guard classes >= 1, classes <= Int(UInt16.max) + 1 else {
            throw TrainingError.invalidConfiguration("a teacher-logits store holds 1 to 65536 classes, not \(classes)")
        }
        guard (topK ?? 1) >= 1 else { throw TrainingError.invalidConfiguration("--logits-top-k must be at least 1, not \(topK!)") }
        let k = classes <= Self.allLogitsClassLimit ? 0 : min(topK ?? Self.defaultTopK, classes)
        self.key = key
        self.classes = classes
        self.topK = k
        self.byteLimit = byteLimit
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.invalidConfiguration("cannot create \(directory.path): \(error.localizedDescription)")
        }
        url = directory.appendingPathComponent("\(key.fileStem).usilogits")
        evaluations = TeacherEvaluationCache(url: directory.appendingPathComponent("evaluations.json"))
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: Self.header(key: key, classes: classes, topK: k)) else {
                throw TrainingError.invalidConfiguration("cannot create \(url.path)")
            }
        }
        do {
            handle = try FileHandle(forUpdating: url)
        } catch {
            throw TrainingError.invalidConfiguration("cannot open \(url.path): \(error.localizedDescription)")
        }
        end = 0
        try scan()
    }

    deinit { try? handle.close() }

    /// Batches the file holds.
    public var count: Int { index.count }

    /// Bytes of one record of `rows` images.
    private func recordBytes(rows: Int) -> Int {
        Self.recordHeaderBytes + rows * (topK == 0 ? classes * 4 : topK * 6) + 4
    }

    private func damaged(_ why: String) -> TrainingError {
        .invalidData("the teacher-logits store \(url.path) is damaged (\(why)); delete it to recompute the teacher's logits")
    }

    private static func header(key: TeacherLogitsKey, classes: Int, topK: Int) -> Data {
        var data = Data(magic)
        let keyJSON = key.json
        data.appendLittleEndian(version)
        data.appendLittleEndian(UInt32(keyJSON.count))
        data.append(keyJSON)
        data.appendLittleEndian(UInt32(classes))
        data.appendLittleEndian(UInt32(topK))
        data.appendLittleEndian(Checksum.crc32(data))
        return data
    }

    /// Checks the header and indexes the records; drops a last record cut short.
    private func scan() throws {
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: 0)
        let expected = Self.header(key: key, classes: classes, topK: topK)
        let head = try handle.read(upToCount: expected.count) ?? Data()
        guard head.count >= 16, Array(head.prefix(8)) == Self.magic else {
            throw TrainingError.invalidData("\(url.path) is not a teacher-logits store (no USILOGIT header)")
        }
        guard head == expected else {
            // Same file name, other contents: a damaged header, another version, or (never seen) a hash collision.
            let storedVersion = head.littleEndianUInt32(at: 8)
            if storedVersion != Self.version { throw damaged("version \(storedVersion), this program reads \(Self.version)") }
            throw damaged("its header does not match this run's key, classes and k")
        }
        var offset = UInt64(expected.count)
        while offset < size {
            guard size - offset >= UInt64(Self.recordHeaderBytes) else { break }  // cut short by a kill
            try handle.seek(toOffset: offset)
            let header = try handle.read(upToCount: Self.recordHeaderBytes) ?? Data()
            let step = Int(header.littleEndianUInt32(at: 0)), shard = Int(header.littleEndianUInt32(at: 4))
            let rows = Int(header.littleEndianUInt32(at: 8))
            guard rows >= 1, rows <= Self.maximumRows, shard < Self.maximumRows else {
                throw damaged("record at byte \(offset) claims \(rows) rows of shard \(shard)")
            }
            let bytes = UInt64(recordBytes(rows: rows))
            guard size - offset >= bytes else { break }
            index[Position(step: step, shard: shard)] = Entry(offset: offset, rows: rows, imagesCRC: header.littleEndianUInt32(at: 12))
            offset += bytes
        }
        if offset < size {
            // The tail of a record a kill interrupted: never read, overwritten by the next append.
            try handle.truncate(atOffset: offset)
        }
        end = offset
    }

    // MARK: - TeacherLogitsSource

    /// The stored logits of the batch when its images match; else the live teacher's (stored
    /// for next time while the bound allows).
    public func logits(step: Int, shard: Int, images: Tensor, live: () -> Tensor) throws -> Tensor {
        let imagesCRC = Self.crc32(images)
        let position = Position(step: step, shard: shard)
        if let entry = index[position] {
            if entry.imagesCRC == imagesCRC && entry.rows == images.shape[0] {
                served += 1
                return try read(entry)
            }
            mismatches += 1
        }
        let start = ContinuousClock.now
        let logits = live()
        let elapsed = ContinuousClock.now - start
        teacherSeconds += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        computed += 1
        if index[position] == nil, Int(end) + recordBytes(rows: images.shape[0]) <= byteLimit {
            try append(logits, step: step, shard: shard, imagesCRC: imagesCRC)
        }
        return logits
    }

    /// The cached accuracy of the teacher under `key`, or `evaluate`'s (then cached).
    public func teacherEvaluation(_ evaluate: () throws -> EvaluationResult) throws -> EvaluationResult {
        guard let evaluationKey else { return try evaluate() }
        return try evaluations.result(for: evaluationKey, evaluate)
    }

    /// Which evaluation ``teacherEvaluation(_:)`` caches (set it for each student).
    public var evaluationKey: TeacherEvaluationKey?

    // MARK: - Records

    private func append(_ logits: Tensor, step: Int, shard: Int, imagesCRC: UInt32) throws {
        let rows = logits.shape[0]
        precondition(logits.shape == [rows, classes], "teacher logits \(logits.shape) for a \(classes)-class store")
        var record = Data(capacity: recordBytes(rows: rows))
        record.appendLittleEndian(UInt32(step))
        record.appendLittleEndian(UInt32(shard))
        record.appendLittleEndian(UInt32(rows))
        record.appendLittleEndian(imagesCRC)
        let values = logits.toArray()
        if topK == 0 {
            values.withUnsafeBytes { record.append(contentsOf: $0) }
        } else {
            let (probabilities, indices) = TopKLogits.compress(values, rows: rows, classes: classes, k: topK)
            probabilities.withUnsafeBytes { record.append(contentsOf: $0) }
            indices.withUnsafeBytes { record.append(contentsOf: $0) }
        }
        record.appendLittleEndian(Checksum.crc32(record))
        do {
            try handle.seek(toOffset: end)
            try handle.write(contentsOf: record)
        } catch {
            throw TrainingError.invalidConfiguration("cannot write to \(url.path): \(error.localizedDescription)")
        }
        index[Position(step: step, shard: shard)] = Entry(offset: end, rows: rows, imagesCRC: imagesCRC)
        end += UInt64(record.count)
    }

    private func read(_ entry: Entry) throws -> Tensor {
        let bytes = recordBytes(rows: entry.rows)
        try handle.seek(toOffset: entry.offset)
        let record = try handle.read(upToCount: bytes) ?? Data()
        guard record.count == bytes else { throw damaged("record at byte \(entry.offset) is cut short") }
        guard Checksum.crc32(record.prefix(bytes - 4)) == record.littleEndianUInt32(at: bytes - 4) else {
            throw damaged("record at byte \(entry.offset) fails its CRC-32")
        }
        let payload = record.subdata(in: Self.recordHeaderBytes..<(bytes - 4))
        let rows = entry.rows
        if topK == 0 {
            let values: [Float] = payload.copiedElements()
            return Tensor(shape: [rows, classes], values: values)
        }
        let probabilities: [Float] = payload.prefix(rows * topK * 4).copiedElements()
        let indices: [UInt16] = payload.suffix(rows * topK * 2).copiedElements()
        guard indices.allSatisfy({ Int($0) < classes }) else { throw damaged("record at byte \(entry.offset) names a class past \(classes)") }
        let logits = TopKLogits.expand(probabilities: probabilities, indices: indices, rows: rows, classes: classes, k: topK)
        return Tensor(shape: [rows, classes], values: logits)
    }

    /// CRC-32 of a tensor's values.
    static func crc32(_ tensor: Tensor) -> UInt32 {
        var crc = CZlib.crc32(0, nil, 0)
        let raw = UnsafeRawPointer(tensor.pointer).assumingMemoryBound(to: UInt8.self)
        var offset = 0
        let total = tensor.count * 4
        while offset < total {
            let chunk = min(total - offset, 1 << 30)
            crc = CZlib.crc32(crc, raw + offset, uInt(chunk))
            offset += chunk
        }
        return UInt32(crc)
    }
}

extension Data {
    mutating func appendLittleEndian(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// The bytes as an array of `T` (copied, so alignment does not matter).
    func copiedElements<T: BitwiseCopyable>() -> [T] {
        let n = count / MemoryLayout<T>.stride
        return [T](unsafeUninitializedCapacity: n) { buffer, initialized in
            _ = copyBytes(to: UnsafeMutableRawBufferPointer(buffer).bindMemory(to: UInt8.self), count: n * MemoryLayout<T>.stride)
            initialized = n
        }
    }

    func littleEndianUInt32(at offset: Int) -> UInt32 {
        guard offset + 4 <= count else { return 0 }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(self[startIndex + offset + i]) << (8 * i) }
        return value
    }
}
