import Foundation
import Testing

/// `usi convert` from PyTorch checkpoints (fixtures of Tests/USICoreTests/Fixtures/pth).
@Suite("usi convert from .pth")
struct ConvertPyTorchTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../USICoreTests/Fixtures/pth").standardized

    /// Converting `input` and the expected safetensors written by torch's side, both with
    /// `--dtype keep`, must give byte-identical files (the same writer, the same tensors).
    @Test("convert x.pth y.safetensors gives torch's tensors bit for bit", arguments: [
        ("tiny.pth", [String](), "tiny.safetensors"), ("tiny_legacy.pth", [], "tiny.safetensors"),
        ("dtypes.pth", [], "dtypes.safetensors"), ("nested.pth", ["--key", "state_dict_ema"], "nested_ema.safetensors"),
    ])
    func convert(_ input: String, _ options: [String], _ expected: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("usi-pth-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("y.safetensors").path, reference = dir.appendingPathComponent("ref.safetensors").path
        let converted = try CLITests.usi(["convert", Self.fixtures.appendingPathComponent(input).path, out, "--dtype", "keep"] + options)
        #expect(converted.status == 0, "convert failed: \(converted.error)")
        let again = try CLITests.usi(["convert", Self.fixtures.appendingPathComponent(expected).path, reference, "--dtype", "keep"])
        #expect(again.status == 0, "convert of the expected file failed: \(again.error)")
        let a = try Data(contentsOf: URL(fileURLWithPath: out)), b = try Data(contentsOf: URL(fileURLWithPath: reference))
        #expect(!a.isEmpty && a == b, "\(input) differs from \(expected)")
    }

    @Test("a hostile .pth is refused with the callable named, exit non-zero")
    func hostile() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("usi-pth-hostile-\(getpid()).safetensors").path
        let result = try CLITests.usi(["convert", Self.fixtures.appendingPathComponent("hostile_zip.pth").path, out])
        #expect(result.status != 0)
        #expect(result.error.contains("refusing to load: the pickle calls os.system"), "\(result.error)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
