import Foundation
import Testing
@testable import USICore

/// The PyTorch checkpoint reader against `torch.save` output in both formats
/// (Tools/fixtures/make_pth_fixtures.py writes the fixtures and the expected values).
@Suite("PyTorch checkpoints")
struct PyTorchCheckpointTests {
    static func url(_ file: String) throws -> URL {
        let name = (file as NSString).deletingPathExtension, ext = (file as NSString).pathExtension
        return try #require(Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Fixtures/pth"), "missing fixture \(file)")
    }

    /// Every tensor of `checkpoint` equals the expected file's bit for bit, in dtype and shape.
    static func expectEqual(_ checkpoint: PyTorchCheckpoint, _ expectedFile: String) throws {
        let expected = try SafeTensorsFile(contentsOf: url(expectedFile))
        #expect(checkpoint.tensors.keys.sorted() == expected.names)
        for name in expected.names {
            let want = try expected.record(name)
            let got = try #require(checkpoint.tensors[name], "\(name) missing")
            #expect(got.dtype == want.dtype, "\(name) dtype")
            #expect(got.shape == want.shape, "\(name) shape")
            #expect(got.bytes == want.bytes, "\(name) values")
        }
    }

    @Test("state_dicts in both formats, every dtype, strided and shared views", arguments: [
        ("tiny.pth", "tiny.safetensors"), ("tiny_legacy.pth", "tiny.safetensors"), ("tiny_deflated.pth", "tiny.safetensors"),
        ("dtypes.pth", "dtypes.safetensors"), ("dtypes_legacy.pth", "dtypes.safetensors"),
        ("ddp.pth", "tiny.safetensors"), ("ddp_legacy.pth", "tiny.safetensors"),
    ])
    func matchesTorch(_ file: String, _ expected: String) throws {
        let checkpoint = try PyTorchCheckpoint(contentsOf: Self.url(file))
        try Self.expectEqual(checkpoint, expected)
        #expect(checkpoint.selectedKey == nil)
    }

    @Test("num_batches_tracked stays int64")
    func integerBuffer() throws {
        let file = try SafeTensorsFile(weightsAt: Self.url("tiny_legacy.pth"))
        #expect(file.entries["bn1.num_batches_tracked"]?.dtype == .int64)
        #expect(try file.integers("bn1.num_batches_tracked") == [7])
        #expect(file.entries["bn1.num_batches_tracked"]?.shape == [])
    }

    @Test("nested checkpoints: state_dict, then model; the EMA only when asked", arguments: ["nested.pth", "nested_legacy.pth"])
    func nested(_ file: String) throws {
        let plain = try PyTorchCheckpoint(contentsOf: Self.url(file))
        #expect(plain.selectedKey == "state_dict")
        try Self.expectEqual(plain, "tiny.safetensors")
        let ema = try PyTorchCheckpoint(contentsOf: Self.url(file), key: "state_dict_ema")
        #expect(ema.selectedKey == "state_dict_ema")
        try Self.expectEqual(ema, "nested_ema.safetensors")
        let error = #expect(throws: PyTorchCheckpointError.self) { try PyTorchCheckpoint(contentsOf: Self.url(file), key: "model_ema") }
        #expect(error?.description.contains("dicts here: state_dict, state_dict_ema, optimizer") == true, "\(String(describing: error))")
    }

    @Test("a checkpoint under 'model'", arguments: ["model_key.pth", "model_key_legacy.pth"])
    func modelKey(_ file: String) throws {
        let checkpoint = try PyTorchCheckpoint(contentsOf: Self.url(file))
        #expect(checkpoint.selectedKey == "model")
        try Self.expectEqual(checkpoint, "tiny.safetensors")
    }

    @Test("weightsAt: opens both formats; a key is an error for safetensors")
    func weightsAt() throws {
        let fromTorch = try SafeTensorsFile(weightsAt: Self.url("tiny.pth"))
        let fromFile = try SafeTensorsFile(weightsAt: Self.url("tiny.safetensors"))
        #expect(fromTorch.names == fromFile.names)
        for name in fromFile.names { #expect(try fromTorch.record(name).bytes == fromFile.record(name).bytes) }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(weightsAt: Self.url("tiny.safetensors"), key: "state_dict") }
    }

    @Test("a safetensors file with a 640-byte header (it starts 0x80 0x02, like a pickle) still opens as safetensors")
    func safetensorsThatLooksLikeAPickle() throws {
        let record = SafeTensorsRecord(dtype: .float32, shape: [1], bytes: Data(count: 4))
        let encoded = try #require((0..<700).lazy.map { n in try? SafeTensors.encode(["w": record], metadata: ["pad": String(repeating: "x", count: n)]) }
            .first { $0?.prefix(2) == Data([0x80, 0x02]) } ?? nil)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("usi-640-\(getpid()).safetensors")
        try encoded.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(!PyTorchCheckpoint.isCheckpoint(encoded))
        #expect(try SafeTensorsFile(weightsAt: url).names == ["w"])
    }

    @Test("hostile pickles are refused, naming the callable, and nothing runs", arguments: [
        ("hostile_system.pkl", "posix.system"), ("hostile_eval.pkl", "builtins.eval"),
        ("hostile_popen.pkl", "subprocess.Popen"), ("hostile_stack_global.pkl", "builtins.exec"),
        ("hostile_zip.pth", "os.system"),
    ])
    func hostile(_ file: String, _ callable: String) throws {
        try? FileManager.default.removeItem(atPath: "/tmp/usi-pwned")
        let error = #expect(throws: PyTorchCheckpointError.self) { try PyTorchCheckpoint(contentsOf: Self.url(file)) }
        let message = error?.description ?? ""
        #expect(message.contains("refusing to load: the pickle calls \(callable)"), "\(message)")
        #expect(message.contains("only tensors and containers are accepted"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/usi-pwned"))
    }

    /// Raw pickle bytes through the machine (as the legacy format's first pickle).
    static func unpickle(_ bytes: [UInt8]) throws -> PickleValue {
        let unpickler = RestrictedUnpickler(source: "test")
        defer { unpickler.arena.release() }
        return try bytes.withUnsafeBytes { try unpickler.load($0).value }
    }

    @Test("refused opcodes and callables are named")
    func refusedOpcodes() throws {
        let p2: [UInt8] = [0x80, 0x02]  // PROTO 2 (a Swift string would encode U+0080 as two bytes)
        let cases: [([UInt8], String)] = [
            (p2 + Array("(ios\nsystem\n.".utf8), "INST"),                       // INST
            ([0x80, 0x02, 0x28, 0x6F, 0x2E], "OBJ"),                                  // OBJ
            ([0x80, 0x02, 0x82, 0x01, 0x2E], "EXT1"),                                 // EXT1
            ([0x80, 0x04, 0x8F, 0x2E], "EMPTY_SET"),
            (p2 + Array("ccollections\nOrderedDict\n)".utf8) + [0x81, 0x2E], "NEWOBJ"), // NEWOBJ on a non-placeholder
            (p2 + Array("ctorch\nFloatStorage\n)R.".utf8), "calls torch.FloatStorage (REDUCE)"),
            (p2 + Array("K\u{01})R.".utf8), "calls a int (REDUCE)"),
            (p2 + Array("K\u{01}}b.".utf8), "BUILD on a int"),
            (p2 + Array("cnt\nsystem\n.".utf8), "calls nt.system"),
        ]
        for (bytes, name) in cases {
            let error = #expect(throws: PyTorchCheckpointError.self) { try Self.unpickle(bytes) }
            #expect(error?.description.contains("refusing to load") == true && error?.description.contains(name) == true,
                    "\(name): \(String(describing: error))")
        }
    }

    @Test("malformed pickles throw")
    func malformed() throws {
        let cases: [[UInt8]] = [
            [], [0x80], [0x80, 0x02, 0x2E],                    // empty, truncated, STOP on an empty stack
            [0x80, 0x02, 0x68, 0x05, 0x2E],                    // BINGET of an unset memo entry
            [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F],        // a string longer than the input
            [0x80, 0x02, 0x4B, 0x01, 0x28, 0x30, 0x30, 0x2E],  // POP across a MARK
            [0x80, 0x02, 0x4B, 0x01, 0x61, 0x2E],              // APPEND to a non-list
            [0x80, 0x02, 0x8B, 0xFF, 0xFF, 0xFF, 0xFF],        // LONG4 with a negative length
            [0x80, 0x02, 0x28, 0x75, 0x2E],                    // SETITEMS without a dict
            Array(repeating: 0x28, count: 1 << 21),            // two million MARKs
            [0x80, 0x02, 0x29] + Array(repeating: 0x85, count: 1 << 20) + [0x2E],  // a million nested tuples
            [0x80, 0x02, 0x29, 0x71, 0x00] + Array(repeating: [0x68, 0x00, 0x85, 0x71, 0x00], count: 1 << 18).joined() + [0x2E],  // through the memo
            [0x80, 0x02, 0x29] + Array(repeating: [0x32, 0x86], count: 1 << 18).joined() + [0x2E],  // DUP-doubled tuples
            [0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x68, 0x00, 0x30], // a list inside itself, then truncated
            [0x80, 0x02] + Array(repeating: 0x5D, count: 1 << 21), // two million lists on the stack
        ]
        for bytes in cases {
            #expect(throws: PyTorchCheckpointError.self) { try Self.unpickle(bytes) }
        }
        // A view past its storage.
        let error = #expect(throws: PyTorchCheckpointError.self) { try PyTorchCheckpoint(contentsOf: Self.url("hostile_view.pth")) }
        #expect(error?.description.contains("reach past its 2-element storage") == true)
    }

    @Test("every truncation and every single-byte change throws or loads, never crashes",
          arguments: ["tiny.pth", "tiny_legacy.pth", "tiny_deflated.pth", "dtypes_legacy.pth"])
    func truncatedAndCorrupted(_ file: String) throws {
        let data = try Data(contentsOf: Self.url(file))
        for length in 0..<data.count {
            #expect(throws: PyTorchCheckpointError.self) { try PyTorchCheckpoint(data: data.prefix(length), source: "cut") }
        }
        var corrupted = data
        for i in stride(from: 0, to: data.count, by: 3) {
            let original = corrupted[i]
            corrupted[i] = original ^ 0x5A
            _ = try? PyTorchCheckpoint(data: corrupted, source: "flip")
            corrupted[i] = original
        }
    }

    @Test("garbage with a zip or pickle signature throws")
    func garbage() throws {
        var generator = SystemRandomNumberGenerator()
        for prefix: [UInt8] in [ZipArchive.magic, [0x80, 0x02], [0x80, 0x04]] {
            for length in [0, 10, 100, 5000] {
                let bytes = prefix + (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                #expect(throws: PyTorchCheckpointError.self) { try PyTorchCheckpoint(data: Data(bytes), source: "garbage") }
            }
        }
        #expect(!PyTorchCheckpoint.isCheckpoint(Data([0x10, 0x00, 0x00, 0x00])))
        #expect(PyTorchCheckpoint.isCheckpoint(Data(ZipArchive.magic)))
    }
}

/// Replays `Fuzz/Corpus/pth` and `Fuzz/Regressions/pth` through the fuzz target's calls: each
/// file loads (and survives the trip to safetensors) or throws.
@Suite("pth fuzz corpus replay")
struct PyTorchFuzzReplayTests {
    @Test("the pth corpus loads or throws")
    func replay() throws {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz")
        var files: [URL] = []
        for folder in ["Corpus/pth", "Regressions/pth"] {
            let directory = fuzz.appendingPathComponent(folder)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            files += names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".md") }.sorted().map { directory.appendingPathComponent($0) }
        }
        #expect(files.count >= 10)
        for url in files {
            do {
                let checkpoint = try PyTorchCheckpoint(contentsOf: url)
                let file = try checkpoint.safeTensorsFile()
                #expect(file.names == checkpoint.tensors.keys.sorted())
            } catch is PyTorchCheckpointError {}
        }
    }
}
