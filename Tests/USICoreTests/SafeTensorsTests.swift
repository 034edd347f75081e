import Foundation
import Testing
import USICore

@Suite("safetensors I/O")
struct SafeTensorsTests {
    static func temporaryURL(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("usi-st-\(getpid())-\(name).safetensors")
    }

    @Test("a file written by Python's safetensors loads, with metadata")
    func readsPythonFile() throws {
        let file = try fixture("linear")
        #expect(file.metadata["generator"]?.contains("torch") == true)
        #expect(try file.tensor("linear.weight").shape == [6, 10])
    }

    @Test("round trip of F32, F16, BF16 and I64 with metadata, written atomically")
    func roundTrip() throws {
        let values: [Float] = [0, 1, -2.5, 3.140625, 65504, 1e-7, -0.0009765625, 1234.5]
        let t = Tensor(shape: [2, 4], values: values)
        let url = Self.temporaryURL("roundtrip")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write([
            "a": SafeTensorsRecord(t),
            "b": SafeTensorsRecord(t, dtype: .float16),
            "c": SafeTensorsRecord(t, dtype: .bfloat16),
            "n": SafeTensorsRecord(int64: [42], shape: []),
        ], metadata: ["format": "pt", "classes": "10"], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.metadata == ["format": "pt", "classes": "10"])
        #expect(try file.tensor("a").toArray() == values)
        #expect(try file.integers("n") == [42])
        #expect(try file.tensor("n").shape == [])
        let half = try file.tensor("b").toArray(), brain = try file.tensor("c").toArray()
        for (i, v) in values.enumerated() {
            #expect(abs(half[i] - v) <= abs(v) * 1e-3 + 1e-7, "F16 \(v) -> \(half[i])")
            #expect(abs(brain[i] - v) <= abs(v) * 8e-3, "BF16 \(v) -> \(brain[i])")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
            .filter { $0.contains(url.lastPathComponent) && $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }

    static func header(_ json: String, data: Int) -> Data {
        var out = Data()
        withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(Data(json.utf8))
        out.append(Data(count: data))
        return out
    }

    static let malformed: [(String, Data, String)] = [
        ("empty file", Data(), "truncated"),
        ("truncated header", header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 8).prefix(20), "truncated"),
        ("truncated data", header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 4), "truncated"),
        ("oversized header", { var d = Data(); withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { d.append(contentsOf: $0) }; return d }(), "exceeds"),
        ("not JSON", header("{nope", data: 0), "JSON"),
        ("overlapping offsets", header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8), "overlaps"),
        ("size does not match shape", header(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8), "needs 12 bytes"),
        ("unknown dtype", header(#"{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, data: 2), "unsupported dtype"),
        ("hole", header(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8), "gap"),
    ]

    @Test("malformed files throw clear errors", arguments: malformed.indices)
    func rejectsMalformed(_ index: Int) {
        let (name, data, message) = Self.malformed[index]
        do {
            _ = try SafeTensorsFile(data: data, source: name)
            Issue.record("\(name): accepted")
        } catch let error as SafeTensorsError {
            #expect(error.description.contains(message), "\(name): \(error.description)")
        } catch {
            Issue.record("\(name): unexpected error \(error)")
        }
    }

    @Test("a missing file and a missing tensor name throw")
    func missing() throws {
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(contentsOf: URL(fileURLWithPath: "/nonexistent/x.safetensors")) }
        let file = try fixture("linear")
        #expect(throws: SafeTensorsError.self) { try file.tensor("no.such.tensor") }
        #expect(throws: SafeTensorsError.self) { try file.integers("linear.weight") }
    }
}

extension SafeTensorsTests {
    /// The tensors of `Fixtures/swift_written.safetensors`: F32, F16, BF16 and I64, with metadata.
    static func pythonCheckRecords() -> (records: [String: SafeTensorsRecord], metadata: [String: String]) {
        let values = (0..<24).map { Float($0) * 0.25 - 3 }
        let t = Tensor(shape: [2, 3, 4], values: values)
        return ([
            "layer.weight": SafeTensorsRecord(t),
            "layer.half": SafeTensorsRecord(t, dtype: .float16),
            "layer.brain": SafeTensorsRecord(t, dtype: .bfloat16),
            "bn.num_batches_tracked": SafeTensorsRecord(int64: [7], shape: []),
        ], ["writer": "usi-swift", "note": "checked by Tools/fixtures/check_swift_written.py"])
    }

    @Test("our writer produces exactly the committed file that Python's safetensors loads")
    func writesPythonReadableFile() throws {
        let (records, metadata) = Self.pythonCheckRecords()
        let ours = try SafeTensors.encode(records, metadata: metadata)
        if ProcessInfo.processInfo.environment["USI_WRITE_FIXTURE"] == "1" {
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("Fixtures/swift_written.safetensors")
            try ours.write(to: source)
            return
        }
        let url = try #require(Bundle.module.url(forResource: "swift_written", withExtension: "safetensors", subdirectory: "Fixtures"))
        #expect(ours == (try Data(contentsOf: url)), "regenerate with: USI_WRITE_FIXTURE=1 Scripts/test --filter writesPythonReadableFile")
    }
}

/// Headers whose numbers are hostile: every one must throw a `SafeTensorsError` naming the
/// file, the tensor and the field (before this reader checked its arithmetic, the first ones
/// stopped `usi convert` and `usi predict` with SIGILL).
extension SafeTensorsTests {
    static let hostile: [(json: String, data: Int, field: String, message: String)] = [
        (#"{"a":{"dtype":"F32","shape":[3037000500,3037000500],"data_offsets":[0,4]}}"#, 4, "shape", "more elements than an Int"),
        (#"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}}"#, 4, "shape", "more bytes than an Int"),
        (#"{"a":{"dtype":"F64","shape":[1152921504606846976,8],"data_offsets":[0,8]}}"#, 8, "shape", "more"),
        (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4,0],"data_offsets":[0,0]}}"#, 0, "shape", "more elements than an Int"),
        (#"{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}"#, 4, "shape", "not a list of 64-bit integers"),
        (#"{"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}"#, 4, "shape", "not a list of 64-bit integers"),
        (#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}}"#, 4, "shape", "not a list of 64-bit integers"),
        (#"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, 4, "shape", "not a list of 64-bit integers"),
        (#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, 4, "shape", "negative"),
        (#"{"a":{"dtype":"F32","shape":"12","data_offsets":[0,4]}}"#, 4, "shape", "not a list"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[9223372036854775807,9223372036854775811]}}"#, 4, "data_offsets", "not a list of 64-bit integers"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[9223372036854775803,9223372036854775807]}}"#, 4, "gap", "gap"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, 4, "data_offsets", "invalid range"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, 4, "data_offsets", "two offsets"),
        (#"{"a":{"dtype":"F32","shape":[1]}}"#, 4, "data_offsets", "missing"),
        (#"{"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}"#, 4, "dtype", "not a string"),
        (#"{"a":[1,2]}"#, 0, "(entry)", "needs dtype"),
        (#"{"__metadata__":{"k":1}}"#, 0, "__metadata__[k]", "not a string"),
        (#"[1,2,3]"#, 0, "header", "not a JSON object"),
        (String(repeating: "[", count: 100_000), 0, "header", "JSON"),
    ]

    @Test("overflow-shaped and ill-typed headers throw errors naming file, tensor and field", arguments: hostile.indices)
    func rejectsHostileNumbers(_ index: Int) {
        let (json, size, field, message) = Self.hostile[index]
        do {
            _ = try SafeTensorsFile(data: Self.header(json, data: size), source: "hostile-\(index).safetensors")
            Issue.record("\(json): accepted")
        } catch let error as SafeTensorsError {
            #expect(error.description.hasPrefix("hostile-\(index).safetensors: "), "\(error)")
            #expect(error.description.contains(field) && error.description.contains(message), "\(error)")
            if json.hasPrefix(#"{"a""#) { #expect(error.description.contains("'a'") || field == "gap", "\(error)") }
        } catch {
            Issue.record("\(json): unexpected error \(error)")
        }
    }

    @Test("empty tensors at the same offset as a following tensor load in either order")
    func emptyTensorsTie() throws {
        // Python writes a zero-size tensor as [k, k]; before ties were ordered, a file holding
        // one at the start of another tensor failed at random ("overlaps").
        let json = #"{"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},"c":{"dtype":"F32","shape":[0],"data_offsets":[2,2]}}"#
        for _ in 0..<20 {
            var data = Self.header(json, data: 0)
            data.append(contentsOf: [7, 9])
            let file = try SafeTensorsFile(data: data, source: "empty.safetensors")
            #expect(try file.tensor("a").shape == [0, 5])
            #expect(try file.integers("b") == [7, 9])
            #expect(try file.tensor("c").count == 0)
        }
    }
}

extension SafeTensorsTests {
    /// The fuzzing seeds and committed fuzzing regressions (`Fuzz/Corpus/safetensors`,
    /// `Fuzz/Regressions/safetensors`): each loads, with every tensor, or throws a
    /// `SafeTensorsError`; a trap stops the test process.
    @Test("the safetensors fuzz corpus loads or throws")
    func fuzzCorpusReplays() throws {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz")
        var loaded = 0, files = 0
        for folder in ["Corpus/safetensors", "Regressions/safetensors"] {
            let directory = fuzz.appendingPathComponent(folder)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") && !name.hasSuffix(".md") {
                files += 1
                do {
                    let file = try SafeTensorsFile(contentsOf: directory.appendingPathComponent(name))
                    for tensor in file.names { _ = try file.tensor(tensor) }
                    loaded += 1
                } catch is SafeTensorsError {}
            }
        }
        #expect(files >= 6 && loaded >= 6)
    }
}
