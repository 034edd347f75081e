import Foundation

/// An error reading a PyTorch checkpoint; the message names the file and the problem.
public struct PyTorchCheckpointError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, for a person.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The tensors of a PyTorch checkpoint (`torch.save`), read without Python and without
/// running the pickle in it.
///
/// Both formats are read: the zip format of torch ≥ 1.6 (`<archive>/data.pkl` and one
/// `<archive>/data/<key>` entry per storage) and the legacy format (five pickles one after
/// another, then each storage's bytes behind an 8-byte element count). The pickle goes
/// through ``RestrictedUnpickler``, which rebuilds containers and tensors only and refuses
/// any other global or opcode (see Docs/RELIABILITY.md).
///
/// Which dict holds the weights: `key` when given (e.g. `state_dict_ema`, `model_ema`; a
/// dotted path such as `model.backbone` descends); otherwise `state_dict`, then `model`, when
/// the top level is a dict that has one holding tensors; otherwise the top level itself.
/// Entries that are not tensors (`epoch`, `arch`, an optimizer's state…) are ignored. When
/// every name starts with `module.` (a model wrapped in DistributedDataParallel), the prefix
/// is removed.
///
/// Strided views are made contiguous, so each record is a plain PyTorch-layout tensor; views
/// sharing one storage each get their own copy. Every size, stride and offset is checked
/// against its storage with overflow-reporting arithmetic, a view may hold no more elements
/// than its storage, and all records together at most ``maximumExpansion`` times the file's
/// size.
public struct PyTorchCheckpoint: Sendable {
    /// The tensors by name, in their dtype and PyTorch-layout shape.
    public let tensors: [String: SafeTensorsRecord]
    /// The nested key the tensors came from (`state_dict`, `model`…), nil for the top level.
    public let selectedKey: String?
    /// Where the file came from (for messages).
    public let source: String

    /// How many times the file's size the rebuilt tensors may take (shared storages are
    /// copied once per view).
    public static let maximumExpansion = 8
    /// How deep a `key` path or the search for tensors descends.
    static let maximumDepth = 64

    /// Whether `prefix` (the first 9 or more bytes of a file) starts like a checkpoint
    /// `torch.save` writes: a zip archive, or a protocol 2–5 pickle. A safetensors file whose
    /// header is 640 bytes long also starts with 0x80 0x02 (its little-endian length), but
    /// always has the header's `{` at byte 8, which is how the two are told apart.
    public static func isCheckpoint(_ prefix: Data) -> Bool {
        let bytes = Array(prefix.prefix(9))
        if bytes.starts(with: ZipArchive.magic) { return true }
        guard bytes.count >= 2, bytes[0] == 0x80, (2...5).contains(bytes[1]) else { return false }
        return !(bytes.count >= 9 && bytes[8] == UInt8(ascii: "{"))
    }

    /// Reads the checkpoint at `url`; `key` chooses the nested dict (see the type's discussion).
    public init(contentsOf url: URL, key: String? = nil) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw PyTorchCheckpointError("cannot read \(url.path): \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.path, key: key)
    }

    /// Reads checkpoint bytes.
    public init(data: Data, source: String = "<memory>", key: String? = nil) throws {
        self.source = source
        let unpickler = RestrictedUnpickler(source: source)
        defer { unpickler.arena.release() }
        let (root, storages) = data.starts(with: ZipArchive.magic)
            ? try Self.readZip(data, unpickler, source: source) : try Self.readLegacy(data, unpickler, source: source)
        let (dict, selected) = try Self.select(root, key: key, source: source)
        var budget = Self.maximumExpansion.multipliedReportingOverflow(by: max(data.count, 1 << 16))
        if budget.overflow { budget.partialValue = .max }
        var tensors: [String: SafeTensorsRecord] = [:]
        for (name, value) in dict {
            guard case .tensor(let view) = value else { continue }
            tensors[name] = try Self.materialise(view, name: name, storages: storages, budget: &budget.partialValue, source: source)
        }
        guard !tensors.isEmpty else {
            throw PyTorchCheckpointError("\(source): no tensors in \(selected.map { "'\($0)'" } ?? "the checkpoint")")
        }
        if tensors.keys.allSatisfy({ $0.hasPrefix("module.") }) {
            tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst(7)), $0.value) })
        }
        self.tensors = tensors
        self.selectedKey = selected
    }

    /// The tensors as an in-memory ``SafeTensorsFile`` (no metadata), for code that loads weights.
    public func safeTensorsFile() throws -> SafeTensorsFile {
        try SafeTensorsFile(data: SafeTensors.encode(tensors), source: source)
    }

    // MARK: - Formats

    /// The zip format: one pickle, storages as entries `<archive>/data/<key>`.
    private static func readZip(_ data: Data, _ unpickler: RestrictedUnpickler, source: String) throws -> (PickleValue, [String: Data]) {
        let zip = try ZipArchive(data: data, source: source)
        // The archive's one top-level folder is named by torch.save after the file (or
        // "archive"); data.pkl sits directly inside it.
        let pickles = zip.entries.filter { $0.name.hasSuffix("/data.pkl") && $0.name.dropLast(9).firstIndex(of: "/") == nil }
        guard pickles.count == 1, let pickle = pickles.first else {
            throw PyTorchCheckpointError("\(source): a zip archive but not a PyTorch checkpoint (\(pickles.count) <archive>/data.pkl entries)")
        }
        let prefix = String(pickle.name.dropLast(8))
        if let order = zip.entry(named: prefix + "byteorder") {
            let text = String(decoding: try zip.contents(of: order), as: UTF8.self)
            guard text == "little" else { throw PyTorchCheckpointError("\(source): byte order '\(text.prefix(20))' is not little-endian") }
        }
        var storages: [String: Data] = [:]
        var unpickler = unpickler
        unpickler.persistentLoad = { id in
            let storage = try storageReference(id)
            if storages[storage.key] == nil {
                guard let entry = zip.entry(named: prefix + "data/" + storage.key) else {
                    throw RestrictedUnpickler.PickleError.malformed("storage \(storage.key) has no entry \(prefix)data/\(storage.key)")
                }
                storages[storage.key] = try zip.contents(of: entry)
            }
            return .storage(storage)
        }
        let bytes = try zip.contents(of: pickle)
        let root = try bytes.withUnsafeBytes { try unpickler.load($0).value }
        return (root, storages)
    }

    /// The legacy format: magic number, protocol version and system info pickles, the main
    /// pickle, the storage keys, then each storage as an 8-byte little-endian element count
    /// and its bytes.
    private static func readLegacy(_ data: Data, _ unpickler: RestrictedUnpickler, source: String) throws -> (PickleValue, [String: Data]) {
        guard data.count >= 2, data[data.startIndex] == 0x80 else {
            throw PyTorchCheckpointError("\(source): not a PyTorch checkpoint (neither a zip archive nor a pickle)")
        }
        var references: [String: PickleStorage] = [:]
        var unpickler = unpickler
        return try data.withUnsafeBytes { raw in
            let (magic, afterMagic) = try unpickler.load(raw)
            // 0x1950a86a20f9469cfc6c, torch's legacy magic number, little-endian.
            guard case .bigInt(let magicBytes) = magic, magicBytes == [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19] else {
                throw PyTorchCheckpointError("\(source): a pickle but not a torch.save checkpoint (wrong magic number)")
            }
            let (version, afterVersion) = try unpickler.load(raw, from: afterMagic)
            guard case .int(1001) = version else { throw PyTorchCheckpointError("\(source): unsupported legacy protocol version") }
            let (info, afterInfo) = try unpickler.load(raw, from: afterVersion)
            if case .dict(let system) = info, case .bool(false)? = system["little_endian"] {
                throw PyTorchCheckpointError("\(source): written on a big-endian machine; not supported")
            }
            unpickler.persistentLoad = { id in
                let storage = try storageReference(id)
                // The sixth field, view_metadata, is None except in files of torch < 1.0.
                if case .tuple(let items) = id, items.count > 5, !isNone(items[5]) {
                    throw RestrictedUnpickler.PickleError.malformed("storage views (view_metadata) of torch < 1.0 are not supported")
                }
                references[storage.key] = storage
                return .storage(storage)
            }
            let (root, afterMain) = try unpickler.load(raw, from: afterInfo)
            let (keyList, afterKeys) = try unpickler.load(raw, from: afterMain)
            guard case .list(let keys) = keyList else { throw PyTorchCheckpointError("\(source): storage key list missing") }
            let reader = ByteReader(data: data, source: source)
            var at = afterKeys
            var storages: [String: Data] = [:]
            for item in keys.items {
                guard case .string(let key) = item, let reference = references[key] else {
                    throw PyTorchCheckpointError("\(source): storage key list names a storage the pickle does not use")
                }
                let count = try reader.int64(at, field: "storage \(key) element count")
                let (bytes, overflow) = count.multipliedReportingOverflow(by: reference.dtype.size)
                guard !overflow else { throw PyTorchCheckpointError("\(source): storage \(key) of \(count) elements is too large") }
                storages[key] = try reader.bytes(at + 8, count: bytes)
                at += 8 + bytes
            }
            return (root, storages)
        }
    }

    private static func isNone(_ value: PickleValue) -> Bool { if case .none = value { true } else { false } }

    /// `('storage', torch.FloatStorage, key, location, numel, …)` as a ``PickleStorage``.
    private static func storageReference(_ id: PickleValue) throws -> PickleStorage {
        guard case .tuple(let items) = id, items.count >= 5, case .string("storage") = items[0],
              case .global(let type) = items[1], case .string(let key) = items[2], case .int(let count) = items[4] else {
            throw RestrictedUnpickler.PickleError.refused("uses a persistent id that is not a torch storage")
        }
        guard let dtype = RestrictedUnpickler.storageTypes[type] else {
            throw RestrictedUnpickler.PickleError.refused("uses \(type) as a storage type")
        }
        guard count >= 0, count <= Int64(Int.max) else { throw RestrictedUnpickler.PickleError.malformed("storage \(key) has \(count) elements") }
        return PickleStorage(dtype: dtype, key: key, count: Int(count))
    }

    // MARK: - Selecting the weights

    /// The (name, value) pairs of the dict that holds the weights, and its key.
    private static func select(_ root: PickleValue, key: String?, source: String) throws -> ([(String, PickleValue)], String?) {
        func pairs(_ dict: PickleDict) -> [(String, PickleValue)] {
            dict.pairs.compactMap { if case .string(let k) = $0.key { (k, $0.value) } else { nil } }
        }
        func hasTensors(_ value: PickleValue?) -> Bool {
            guard case .dict(let dict)? = value else { return false }
            return dict.pairs.contains { if case .tensor = $0.value { true } else { false } }
        }
        guard case .dict(let top) = root else {
            throw PyTorchCheckpointError("\(source): the checkpoint holds a \(root.kind), not a dict of tensors")
        }
        if let key {
            var current = top
            let parts = key.split(separator: ".").map(String.init)
            guard !parts.isEmpty, parts.count <= maximumDepth else { throw PyTorchCheckpointError("\(source): invalid key '\(key)'") }
            for part in parts {
                guard case .dict(let next)? = current[part] else {
                    let available = pairs(current).filter { if case .dict = $0.1 { true } else { false } }.map(\.0)
                    throw PyTorchCheckpointError("\(source): no dict '\(part)' in the checkpoint (dicts here: \(available.isEmpty ? "none" : available.joined(separator: ", ")))")
                }
                current = next
            }
            return (pairs(current), key)
        }
        for candidate in ["state_dict", "model"] where hasTensors(top[candidate]) {
            if case .dict(let dict)? = top[candidate] { return (pairs(dict), candidate) }
        }
        return (pairs(top), nil)
    }

    // MARK: - Tensors

    /// The contiguous bytes of a strided view, every index checked against its storage.
    private static func materialise(_ view: PickleTensor, name: String, storages: [String: Data], budget: inout Int,
                                    source: String) throws -> SafeTensorsRecord {
        func fail(_ message: String) -> PyTorchCheckpointError { PyTorchCheckpointError("\(source): tensor '\(name)': \(message)") }
        let dtype = view.storage.dtype, size = dtype.size
        guard let storage = storages[view.storage.key] else { throw fail("storage \(view.storage.key) is missing") }
        let (storageBytes, o1) = view.storage.count.multipliedReportingOverflow(by: size)
        guard !o1, storageBytes <= storage.count else {
            throw fail("storage \(view.storage.key) claims \(view.storage.count) elements, the file holds \(storage.count / size)")
        }
        var count = 1, last = view.offset  // the highest element index the view touches
        for (d, s) in zip(view.shape, view.strides) {
            let (c, o2) = count.multipliedReportingOverflow(by: d)
            guard !o2 else { throw fail("shape \(view.shape) has more elements than an Int can count") }
            count = c
            if d > 0 {
                let (span, o3) = (d - 1).multipliedReportingOverflow(by: s)
                let (end, o4) = last.addingReportingOverflow(span)
                guard !o3, !o4 else { throw fail("stride \(view.strides) overflows") }
                last = end
            }
        }
        if count > 0 {
            guard last < view.storage.count else {
                throw fail("shape \(view.shape), stride \(view.strides) and offset \(view.offset) reach past its \(view.storage.count)-element storage")
            }
            // A view with more elements than its storage repeats elements (a stride-0
            // expand); refusing it keeps every record no larger than bytes in the file.
            guard count <= view.storage.count else { throw fail("a broadcast view (\(count) elements of a \(view.storage.count)-element storage)") }
        }
        let byteCount = count * size
        guard byteCount <= budget else { throw fail("the rebuilt tensors would exceed \(maximumExpansion)× the file's size") }
        budget -= byteCount
        var out = Data(count: byteCount)
        storage.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                guard count > 0, let from = src.baseAddress, let to = dst.baseAddress else { return }
                // Row-major walk over the view; the innermost dimension copies a run when contiguous.
                let rank = view.shape.count
                var index = [Int](repeating: 0, count: rank)
                let inner = rank == 0 ? 1 : view.shape[rank - 1]
                let innerStride = rank == 0 ? 1 : view.strides[rank - 1]
                var written = 0
                while written < byteCount {
                    var element = view.offset
                    for i in 0..<max(rank - 1, 0) { element += index[i] * view.strides[i] }
                    if innerStride == 1 {
                        (to + written).copyMemory(from: from + element * size, byteCount: inner * size)
                        written += inner * size
                    } else {
                        for j in 0..<inner {
                            (to + written).copyMemory(from: from + (element + j * innerStride) * size, byteCount: size)
                            written += size
                        }
                    }
                    var dim = rank - 2
                    while dim >= 0 {
                        index[dim] += 1
                        if index[dim] < view.shape[dim] { break }
                        index[dim] = 0
                        dim -= 1
                    }
                }
            }
        }
        return SafeTensorsRecord(dtype: dtype, shape: view.shape, bytes: out)
    }
}

extension SafeTensorsFile {
    /// Opens weights in either format this library reads: a safetensors file, or a PyTorch
    /// checkpoint (`.pth`/`.pt`/`.bin`, told apart by its first bytes, not its name) rebuilt
    /// in memory by ``PyTorchCheckpoint``. `key` picks a checkpoint's nested dict and is an
    /// error for a safetensors file.
    public init(weightsAt url: URL, key: String? = nil) throws {
        let prefix: Data
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            prefix = try handle.read(upToCount: 9) ?? Data()
        } catch {
            throw SafeTensorsError("cannot read \(url.path): \(error.localizedDescription)")
        }
        if PyTorchCheckpoint.isCheckpoint(prefix) {
            self = try PyTorchCheckpoint(contentsOf: url, key: key).safeTensorsFile()
        } else {
            if key != nil { throw SafeTensorsError("\(url.path): a key selects a dict in a PyTorch checkpoint; this is a safetensors file") }
            try self.init(contentsOf: url)
        }
    }
}
