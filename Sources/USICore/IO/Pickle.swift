import Foundation

/// A value rebuilt by ``RestrictedUnpickler``: Python containers and scalars, plus the few
/// torch objects a checkpoint needs. Nothing here is ever called or executed.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes (the legacy
    /// format's magic number is one).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes(Data)
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A whitelisted global (`collections.OrderedDict`, `torch.FloatStorage`…), by its
    /// qualified name; only ever looked up in a table, never resolved to code.
    case global(String)
    /// A torch storage named by a persistent id.
    case storage(PickleStorage)
    /// A tensor view of a storage.
    case tensor(PickleTensor)
    /// An object this reader keeps without interpreting (`argparse.Namespace`, the `args`
    /// of a timm train checkpoint): its construction arguments are dropped.
    case opaque(String)

    var kind: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .tuple: "tuple"
        case .list: "list"
        case .dict: "dict"
        case .global(let name): name
        case .storage: "storage"
        case .tensor: "tensor"
        case .opaque(let name): name
        }
    }
}

/// A list, shared by reference as Python's are (the memo may hand it out twice).
final class PickleList { var items: [PickleValue] = [] }

/// Every container one unpickling made. A pickle can put a list into itself (memo + APPEND),
/// which reference counting never frees: ``release()`` empties them all once the result has
/// been read, so hostile cycles cost no more than the file's own size, and only briefly.
final class PickleArena {
    fileprivate var lists: [PickleList] = []
    fileprivate var dicts: [PickleDict] = []
    func release() {
        for list in lists { list.items = [] }
        for dict in dicts { dict.removeAll() }
        lists = []
        dicts = []
    }
}

/// A dict in insertion order; string keys are indexed (a state_dict's keys are strings).
final class PickleDict {
    private(set) var pairs: [(key: PickleValue, value: PickleValue)] = []
    private var index: [String: Int] = [:]

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let name) = key {
            if let at = index[name] { pairs[at].value = value; return }
            index[name] = pairs.count
        }
        pairs.append((key, value))
    }

    subscript(_ name: String) -> PickleValue? { index[name].map { pairs[$0].value } }

    fileprivate func removeAll() {
        pairs = []
        index = [:]
    }
}

/// A storage reference: `('storage', torch.FloatStorage, key, location, numel)`.
struct PickleStorage {
    var dtype: SafeTensorsDType
    var key: String
    var count: Int
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, …)`.
struct PickleTensor {
    var storage: PickleStorage
    var offset: Int
    var shape: [Int]
    var strides: [Int]
}

/// A pickle machine for protocols 2–5 that rebuilds only containers, scalars and torch
/// tensors. A pickle is a program: `GLOBAL os system` + `REDUCE` runs a shell command in
/// Python's unpickler. This one has no way to run anything: globals are names checked against
/// ``allowedGlobals``, `REDUCE` is a table of the handful of torch/collections callables whose
/// effect it reproduces, and every other global or opcode (INST, OBJ, EXT*, NEWOBJ_EX, sets,
/// protocol-0 text opcodes) is refused with an error naming it.
///
/// Bounds: the stack, the mark stack and the memo are limited (``maximumStack``,
/// ``maximumMemo``), every length is checked against the bytes left, integers wider than
/// 64 bits are kept as bytes and never converted, and the machine is a loop (no recursion).
struct RestrictedUnpickler {
    static let maximumStack = 1 << 20
    static let maximumMemo = 1 << 20
    /// How deeply tuples may nest. Releasing a value is recursive, so a million nested
    /// tuples (two bytes each) would overflow the stack when freed; torch nests three deep.
    /// Lists and dicts need no bound: the arena empties them one by one.
    static let maximumNesting = 256
    static let refusal = "a .pth is code and only tensors and containers are accepted"

    /// Globals a torch checkpoint names; anything else is refused.
    static let allowedGlobals: Set<String> = Set(callables + storageTypes.keys + dtypeNames + opaqueTypes)
    static let callables = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
                            "torch._utils._rebuild_parameter", "torch.Size"]
    static let storageTypes: [String: SafeTensorsDType] = [
        "torch.FloatStorage": .float32, "torch.HalfStorage": .float16, "torch.BFloat16Storage": .bfloat16,
        "torch.DoubleStorage": .float64, "torch.LongStorage": .int64, "torch.IntStorage": .int32,
        "torch.ShortStorage": .int16, "torch.CharStorage": .int8, "torch.ByteStorage": .uint8, "torch.BoolStorage": .bool,
    ]
    static let dtypeNames = ["torch.float32", "torch.float16", "torch.bfloat16", "torch.float64", "torch.int64",
                             "torch.int32", "torch.int16", "torch.int8", "torch.uint8", "torch.bool"]
    /// Kept as inert placeholders: timm's train checkpoints store their `args` as one.
    static let opaqueTypes = ["argparse.Namespace"]

    let source: String
    /// Owns the containers of every pickle this machine loads; release it when done.
    let arena = PickleArena()
    /// Turns a persistent id (the argument of BINPERSID) into a value; for torch, a storage.
    var persistentLoad: (PickleValue) throws -> PickleValue = { _ in
        throw PickleError.refused("a persistent id outside a torch checkpoint")
    }

    enum PickleError: Error {
        case refused(String)
        case malformed(String)
    }

    private func error(_ problem: PickleError, at offset: Int) -> PyTorchCheckpointError {
        switch problem {
        case .refused(let what): PyTorchCheckpointError("\(source): refusing to load: the pickle \(what) (byte \(offset)); \(Self.refusal)")
        case .malformed(let what): PyTorchCheckpointError("\(source): malformed pickle at byte \(offset): \(what)")
        }
    }

    /// Runs the pickle starting at `start` in `bytes` to its STOP; returns the value and the
    /// offset just past the STOP (the legacy format puts several pickles one after another).
    func load(_ bytes: UnsafeRawBufferPointer, from start: Int = 0) throws -> (value: PickleValue, end: Int) {
        var position = start
        var opcodeAt = start
        do {
            return try run(bytes, &position, &opcodeAt)
        } catch let problem as PickleError {
            throw error(problem, at: opcodeAt)
        }
    }

    private func run(_ bytes: UnsafeRawBufferPointer, _ position: inout Int, _ opcodeAt: inout Int) throws -> (value: PickleValue, end: Int) {
        var stack: [PickleValue] = []
        // Each stack entry's tuple nesting, and the deepest entry popped since the last reset.
        var depths: [Int] = []
        var popped = 0
        var marks: [Int] = []
        var memo: [Int: (value: PickleValue, depth: Int)] = [:]
        let count = bytes.count

        func take(_ n: Int) throws -> UnsafeRawBufferPointer {
            guard n >= 0, n <= count - position else {
                throw PickleError.malformed("needs \(n) bytes, \(count - position) left (truncated)")
            }
            defer { position += n }
            return UnsafeRawBufferPointer(rebasing: bytes[position ..< position + n])
        }
        func u8() throws -> Int { Int(try take(1)[0]) }
        func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
            T(littleEndian: try take(MemoryLayout<T>.size).loadUnaligned(as: T.self))
        }
        func length<T: FixedWidthInteger>(_: T.Type) throws -> Int {
            let n = try le(T.self)
            guard n >= 0, UInt64(n) <= UInt64(count - position) else {
                throw PickleError.malformed("length \(n) overruns the \(count - position) bytes left (truncated)")
            }
            return Int(n)
        }
        func push(_ value: PickleValue, depth: Int = 0) throws {
            guard stack.count < Self.maximumStack else { throw PickleError.malformed("stack deeper than \(Self.maximumStack)") }
            guard depth <= Self.maximumNesting else { throw PickleError.malformed("tuples nested deeper than \(Self.maximumNesting)") }
            stack.append(value)
            depths.append(depth)
        }
        func pop() throws -> PickleValue {
            guard let last = stack.popLast() else { throw PickleError.malformed("stack underflow") }
            popped = max(popped, depths.removeLast())
            if let mark = marks.last, stack.count < mark { throw PickleError.malformed("pop across a MARK") }
            return last
        }
        /// Pushes a value built from what was popped since `popped` was last reset.
        func pushBuilt(_ value: PickleValue, nesting: Int) throws {
            let depth = popped + nesting
            popped = 0
            try push(value, depth: depth)
        }
        func top() throws -> PickleValue {
            guard let last = stack.last else { throw PickleError.malformed("stack underflow") }
            return last
        }
        func popMark() throws -> [PickleValue] {
            guard let mark = marks.popLast() else { throw PickleError.malformed("no MARK") }
            let items = Array(stack[mark...])
            popped = max(popped, depths[mark...].max() ?? 0)
            stack.removeSubrange(mark...)
            depths.removeSubrange(mark...)
            return items
        }
        func string(_ raw: UnsafeRawBufferPointer) throws -> String {
            guard let text = String(validating: raw, as: UTF8.self) else { throw PickleError.malformed("string is not UTF-8") }
            return text
        }
        func put(_ index: Int) throws {
            guard memo.count < Self.maximumMemo || memo[index] != nil else {
                throw PickleError.malformed("memo larger than \(Self.maximumMemo) entries")
            }
            memo[index] = (try top(), depths[depths.count - 1])
        }
        func get(_ index: Int) throws {
            guard let entry = memo[index] else { throw PickleError.malformed("memo entry \(index) used before it is set") }
            try push(entry.value, depth: entry.depth)
        }
        func global(_ module: String, _ name: String) throws {
            let qualified = "\(module).\(name)"
            guard Self.allowedGlobals.contains(qualified) else { throw PickleError.refused("calls \(qualified)") }
            try push(.global(qualified))
        }
        func newList() -> PickleList { let list = PickleList(); arena.lists.append(list); return list }
        func newDict() -> PickleDict { let dict = PickleDict(); arena.dicts.append(dict); return dict }
        func line() throws -> String {
            var end = position
            while end < count, bytes[end] != 0x0A { end += 1 }
            guard end < count else { throw PickleError.malformed("unterminated GLOBAL name (truncated)") }
            let text = try string(UnsafeRawBufferPointer(rebasing: bytes[position ..< end]))
            position = end + 1
            return text
        }

        while true {
            opcodeAt = position
            popped = 0
            let opcode = UInt8(try u8())
            switch opcode {
            case 0x80: _ = try u8()  // PROTO: any 2–5 stream uses only the opcodes below
            case 0x95: _ = try le(UInt64.self)  // FRAME: a length hint, the bytes follow inline
            case 0x2E:  // STOP
                guard marks.isEmpty else { throw PickleError.malformed("STOP inside a MARK") }
                guard stack.count == 1 else { throw PickleError.malformed("STOP with \(stack.count) values on the stack") }
                return (stack[0], position)
            case 0x28:  // MARK
                guard marks.count < Self.maximumStack else { throw PickleError.malformed("too many MARKs") }
                marks.append(stack.count)
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: try push(try top(), depth: depths.last ?? 0)  // DUP
            case 0x4E: try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case 0x4A: try push(.int(Int64(try le(Int32.self))))  // BININT
            case 0x4B: try push(.int(Int64(try u8())))  // BININT1
            case 0x4D: try push(.int(Int64(try le(UInt16.self))))  // BININT2
            case 0x8A, 0x8B:  // LONG1, LONG4: little-endian two's complement
                let n = opcode == 0x8A ? try u8() : try length(Int32.self)
                let raw = Array(try take(n))
                if n <= 8 {
                    var value: UInt64 = 0
                    for (i, b) in raw.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
                    if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 { value |= ~0 << (8 * UInt64(n)) }  // sign-extend
                    try push(.int(Int64(bitPattern: value)))
                } else {
                    try push(.bigInt(raw))
                }
            case 0x47: try push(.float(Double(bitPattern: UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self)))))
            case 0x58: try push(.string(try string(try take(try length(UInt32.self)))))  // BINUNICODE
            case 0x8C: try push(.string(try string(try take(try u8()))))  // SHORT_BINUNICODE
            case 0x8D: try push(.string(try string(try take(try length(UInt64.self)))))  // BINUNICODE8
            case 0x54: try push(.string(String(decoding: try take(try length(Int32.self)), as: UTF8.self)))  // BINSTRING
            case 0x55: try push(.string(String(decoding: try take(try u8()), as: UTF8.self)))  // SHORT_BINSTRING
            case 0x43: try push(.bytes(Data(try take(try u8()))))  // SHORT_BINBYTES
            case 0x42: try push(.bytes(Data(try take(try length(UInt32.self)))))  // BINBYTES
            case 0x8E: try push(.bytes(Data(try take(try length(UInt64.self)))))  // BINBYTES8
            case 0x29: try push(.tuple([]))
            case 0x74: try pushBuilt(.tuple(try popMark()), nesting: 1)
            case 0x85: let a = try pop(); try pushBuilt(.tuple([a]), nesting: 1)
            case 0x86: let b = try pop(), a = try pop(); try pushBuilt(.tuple([a, b]), nesting: 1)
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); try pushBuilt(.tuple([a, b, c]), nesting: 1)
            case 0x5D: try push(.list(newList()))
            case 0x6C: let list = newList(); list.items = try popMark(); try push(.list(list))  // LIST
            case 0x61, 0x65:  // APPEND, APPENDS
                let items = opcode == 0x61 ? [try pop()] : try popMark()
                guard case .list(let list) = try top() else { throw PickleError.malformed("APPEND to a \(try top().kind)") }
                list.items.append(contentsOf: items)
            case 0x7D: try push(.dict(newDict()))
            case 0x64, 0x73, 0x75:  // DICT, SETITEM, SETITEMS
                let items: [PickleValue]
                if opcode == 0x73 { let v = try pop(), k = try pop(); items = [k, v] } else { items = try popMark() }
                guard items.count % 2 == 0 else { throw PickleError.malformed("odd number of items for a dict") }
                let dict: PickleDict
                if opcode == 0x64 { dict = newDict(); try push(.dict(dict)) } else {
                    guard case .dict(let target) = try top() else { throw PickleError.malformed("SETITEM on a \(try top().kind)") }
                    dict = target
                }
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
            case 0x71: try put(try u8())  // BINPUT
            case 0x72: try put(Int(try le(UInt32.self)))  // LONG_BINPUT
            case 0x94: try put(memo.count)  // MEMOIZE
            case 0x68: try get(try u8())  // BINGET
            case 0x6A: try get(Int(try le(UInt32.self)))  // LONG_BINGET
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                try global(module, name)
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let m) = module, case .string(let n) = name else {
                    throw PickleError.malformed("STACK_GLOBAL needs two strings")
                }
                try global(m, n)
            case 0x51:  // BINPERSID
                try push(try persistentLoad(try pop()))
            case 0x52:  // REDUCE
                let arguments = try pop(), callable = try pop()
                guard case .tuple(let args) = arguments else { throw PickleError.malformed("REDUCE arguments are a \(arguments.kind)") }
                let result = try Self.reduce(callable, args)
                if case .dict(let dict) = result { arena.dicts.append(dict) }
                try pushBuilt(result, nesting: 0)  // torch.Size returns its argument
            case 0x81:  // NEWOBJ: only the inert placeholders
                _ = try pop()
                let cls = try pop()
                guard case .global(let name) = cls, Self.opaqueTypes.contains(name) else {
                    throw PickleError.refused("instantiates \(cls.kind) (NEWOBJ)")
                }
                try push(.opaque(name))
            case 0x62:  // BUILD: sets an object's state; kept only for inert objects, state dropped
                _ = try pop()
                switch try top() {
                case .dict, .opaque: break  // a state_dict's `_metadata`, a Namespace's fields
                case let other: throw PickleError.refused("calls BUILD on a \(other.kind)")
                }
            default:
                throw PickleError.refused("uses opcode \(Self.opcodeName(opcode)) (0x\(String(opcode, radix: 16)))")
            }
        }
    }

    /// The effect of calling a whitelisted callable, reproduced without calling anything.
    static func reduce(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let name) = callable else { throw PickleError.refused("calls a \(callable.kind) (REDUCE)") }
        switch name {
        case "collections.OrderedDict":
            guard args.isEmpty else { throw PickleError.refused("calls collections.OrderedDict with arguments") }
            return .dict(PickleDict())
        case "torch.Size":
            guard args.count == 1, case .tuple = args[0] else { throw PickleError.malformed("torch.Size needs one tuple") }
            return args[0]
        case "torch._utils._rebuild_parameter":
            guard args.count >= 1, case .tensor = args[0] else { throw PickleError.malformed("_rebuild_parameter needs a tensor") }
            return args[0]
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard args.count >= 4, case .storage(let storage) = args[0], case .int(let offset) = args[1] else {
                throw PickleError.malformed("\(name) needs (storage, offset, size, stride, …)")
            }
            func ints(_ value: PickleValue, _ field: String) throws -> [Int] {
                guard case .tuple(let items) = value else { throw PickleError.malformed("\(name): \(field) is a \(value.kind)") }
                return try items.map {
                    guard case .int(let v) = $0, v >= 0, v <= Int64(Int.max) else {
                        throw PickleError.malformed("\(name): \(field) holds \($0.kind) that is not a non-negative int")
                    }
                    return Int(v)
                }
            }
            let shape = try ints(args[2], "size"), strides = try ints(args[3], "stride")
            guard shape.count == strides.count else { throw PickleError.malformed("\(name): size and stride differ in length") }
            guard offset >= 0 else { throw PickleError.malformed("\(name): negative storage offset") }
            return .tensor(PickleTensor(storage: storage, offset: Int(offset), shape: shape, strides: strides))
        default:
            // Storage types, dtypes and placeholders are names to look up, not things to call.
            throw PickleError.refused("calls \(name) (REDUCE)")
        }
    }

    static func opcodeName(_ opcode: UInt8) -> String {
        switch opcode {
        case 0x69: "INST"
        case 0x6F: "OBJ"
        case 0x82: "EXT1"
        case 0x83: "EXT2"
        case 0x84: "EXT4"
        case 0x92: "NEWOBJ_EX"
        case 0x8F: "EMPTY_SET"
        case 0x90: "ADDITEMS"
        case 0x91: "FROZENSET"
        case 0x96: "BYTEARRAY8"
        case 0x97: "NEXT_BUFFER"
        case 0x98: "READONLY_BUFFER"
        case 0x50: "PERSID"
        case 0x49: "INT"
        case 0x4C: "LONG"
        case 0x46: "FLOAT"
        case 0x53: "STRING"
        case 0x56: "UNICODE"
        case 0x70: "PUT"
        case 0x67: "GET"
        default: "unknown"
        }
    }
}
