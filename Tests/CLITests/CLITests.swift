import Foundation
import Testing

/// End-to-end tests of the `usi` executable: train → checkpoint → resume → eval → predict on a
/// folder of real JPEGs, and the errors a user meets with bad input.
@Suite("usi command line", .serialized)
struct CLITests {
    /// The `usi` binary next to the test bundle (both are in the build's products folder).
    static let executable: URL = {
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                          Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        for dir in candidates {
            let url = dir.appendingPathComponent("usi")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return candidates[0].appendingPathComponent("usi")
    }()

    struct Result {
        var status: Int32
        var output: String
        var error: String
    }

    @discardableResult
    static func usi(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self),
                      error: String(decoding: errData, as: UTF8.self))
    }

    /// train/{even,odd} and val/{even,odd} of the darknet photos.
    static func makeFolder() throws -> URL {
        let photos = try FileManager.default.contentsOfDirectory(atPath: "/usr/share/darknet/data").filter { $0.hasSuffix(".jpg") }.sorted()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("usi-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        for split in ["train", "val"] {
            for (i, photo) in photos.enumerated() {
                let dir = root.appendingPathComponent("\(split)/\(i % 2 == 0 ? "even" : "odd")")
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: "/usr/share/darknet/data/\(photo)", toPath: dir.appendingPathComponent(photo).path)
            }
        }
        return root
    }

    @Test("train → checkpoint → resume → eval → predict")
    func workflow() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run").path
        let common = ["--model", "mobilenetv3_small_050", "--no-kd", "--epochs", "1", "--batch-size", "4", "--input-size", "32",
                      "--output", run, "--threads", "2"]
        let train = try Self.usi(["train", root.path] + common)
        #expect(train.status == 0, "train failed: \(train.error)")
        #expect(train.output.contains("best top-1"))
        #expect(train.output.contains("report.html"))
        for file in ["last.safetensors", "best.safetensors", "metrics.jsonl", "config.json", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: "\(run)/\(file)"), "\(file) missing")
        }
        let resumed = try Self.usi(["train", root.path] + common + ["--resume"])
        #expect(resumed.status == 0, "resume failed: \(resumed.error)")
        let weights = "\(run)/best.safetensors"
        let eval = try Self.usi(["eval", root.path, "--model", "mobilenetv3_small_050", "--weights", weights, "--json"])
        #expect(eval.status == 0, "eval failed: \(eval.error)")
        let json = try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any]
        #expect(json?["count"] as? Int == 7)
        #expect(json?["top1"] is Double && json?["top5"] is Double)
        let photo = "/usr/share/darknet/data/dog.jpg"
        let predict = try Self.usi(["predict", photo, "--model", "mobilenetv3_small_050", "--weights", weights, "--top", "2"])
        #expect(predict.status == 0, "predict failed: \(predict.error)")
        #expect(predict.output.contains("even") || predict.output.contains("odd"), "class names from metadata: \(predict.output)")
    }

    @Test("bad inputs give clear errors, not crashes")
    func badInputs() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let quick = ["--no-kd", "--epochs", "1", "--batch-size", "4", "--input-size", "32", "--output", root.appendingPathComponent("r").path]

        let missing = try Self.usi(["train", "/nonexistent/data"] + quick)
        #expect(missing.status != 0 && missing.error.contains("does not exist"), "missing folder: \(missing.error)")

        let unknown = try Self.usi(["train", root.path, "--model", "resnet9000"] + quick)
        #expect(unknown.status != 0 && unknown.error.contains("unknown model 'resnet9000'"), "unknown model: \(unknown.error)")

        let empty = root.appendingPathComponent("train/empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let emptyClass = try Self.usi(["train", root.path] + quick)
        #expect(emptyClass.status != 0 && emptyClass.error.contains("empty"), "empty class: \(emptyClass.error)")
        try FileManager.default.removeItem(at: empty)

        // Weights of another architecture as the teacher.
        let wrong = root.appendingPathComponent("wrong.safetensors")
        let train = try Self.usi(["train", root.path, "--model", "mobilenetv3_small_050"] + quick)
        try #require(train.status == 0, "setup run failed: \(train.error)")
        try FileManager.default.copyItem(atPath: root.appendingPathComponent("r/best.safetensors").path, toPath: wrong.path)
        let teacher = try Self.usi(["train", root.path, "--teacher", "resnet10t", "--teacher-weights", wrong.path,
                                    "--epochs", "1", "--batch-size", "4", "--input-size", "32", "--output", root.appendingPathComponent("t").path])
        #expect(teacher.status != 0 && teacher.error.contains("do not fit"), "mismatched teacher: \(teacher.error)")

        let corrupt = root.appendingPathComponent("corrupt.jpg")
        try Data("this is not a JPEG".utf8).write(to: corrupt)
        let predict = try Self.usi(["predict", corrupt.path, "--model", "mobilenetv3_small_050", "--weights", wrong.path])
        #expect(predict.status != 0 && predict.error.contains("corrupt.jpg"), "corrupt image: \(predict.error)")
    }

    @Test("bench commands print the documented JSON shapes")
    func benchJSON() throws {
        let models = try Self.usi(["bench", "--models", "resnet10t", "--batch", "2", "--input-size", "32", "--json"])
        #expect(models.status == 0, "bench models failed: \(models.error)")
        let m = try JSONSerialization.jsonObject(with: Data(models.output.utf8)) as? [String: Any]
        let row = (m?["models"] as? [[String: Any]])?.first
        #expect(m?["threads"] is Int && row?["name"] as? String == "resnet10t" && row?["infer_img_s"] is Double)
        #expect(row?.keys.contains("train_img_s") == true && row?["batch"] as? Int == 2 && row?["input_size"] as? Int == 32)

        let kernels = try Self.usi(["bench", "kernels", "--json", "--sgemm-size", "256"])
        #expect(kernels.status == 0, "bench kernels failed: \(kernels.error)")
        let k = try JSONSerialization.jsonObject(with: Data(kernels.output.utf8)) as? [String: Any]
        #expect(k?["threads"] is Int && k?["sgemm_gflops"] is Double)
        let layers = k?["layers"] as? [[String: Any]] ?? []
        #expect(layers.count == 6)
        for layer in layers {
            for key in ["name", "fwd_gflops", "bwd_gflops", "fwd_fraction", "bwd_fraction"] {
                #expect(layer[key] != nil, "kernels JSON lacks \(key)")
            }
        }
    }
}
