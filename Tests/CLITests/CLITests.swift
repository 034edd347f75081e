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

/// Hostile and broken inputs to `predict` and `eval` (issue 11): one bad image among good ones,
/// non-finite weights and logits, control characters in names.
extension CLITests {
    static let model = "mobilenetv3_small_050"

    /// Trains the tiny model of ``workflow()`` into `root/run` and returns its best weights.
    static func tinyWeights(_ root: URL) throws -> String {
        let run = root.appendingPathComponent("run").path
        let train = try usi(["train", root.path, "--model", model, "--no-kd", "--epochs", "1", "--batch-size", "4",
                             "--input-size", "32", "--output", run, "--threads", "2"])
        try #require(train.status == 0, "setup run failed: \(train.error)")
        return run + "/best.safetensors"
    }

    /// A copy of a safetensors file with metadata entries replaced and every value of some F32
    /// tensors set to one number.
    static func rewrite(_ path: String, to output: String, metadata: [String: String] = [:],
                        fill: [String: Float] = [:]) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
        var body = data.subdata(in: (8 + length)..<data.count)
        for (name, value) in fill {
            let entry = try #require(header[name] as? [String: Any])
            try #require(entry["dtype"] as? String == "F32")
            let offsets = try #require(entry["data_offsets"] as? [Int])
            for offset in stride(from: offsets[0], to: offsets[1], by: 4) {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { body.replaceSubrange(offset..<(offset + 4), with: $0) }
            }
        }
        var meta = header["__metadata__"] as? [String: String] ?? [:]
        for (key, value) in metadata { meta[key] = value }
        header["__metadata__"] = meta
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        data = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        data.append(body)
        try data.write(to: URL(fileURLWithPath: output))
    }

    /// `bytes` of a baseline JPEG with its frame's sample precision set to 12 (libjpeg-turbo
    /// 2.x refuses it, and used to be left unable to decode the next file).
    static func twelveBit(_ bytes: Data) throws -> Data {
        var out = bytes
        var i = 2
        while i + 4 <= out.count {
            let marker = out[i + 1], length = Int(out[i + 2]) << 8 | Int(out[i + 3])
            if marker == 0xC0 { out[i + 4] = 12; return out }
            i += 2 + length
        }
        throw CocoaError(.fileReadCorruptFile)
    }

    @Test("predict good bad good: reports each bad file, answers for the good ones, exits non-zero")
    func predictBadInTheMiddle() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let weights = try Self.tinyWeights(root)
        let good = "/usr/share/darknet/data/dog.jpg", other = "/usr/share/darknet/data/horses.jpg"
        let corrupt = root.appendingPathComponent("corrupt.jpg").path
        try Data("this is not a JPEG".utf8).write(to: URL(fileURLWithPath: corrupt))
        let twelve = root.appendingPathComponent("twelve-bit.jpg").path
        try Self.twelveBit(try Data(contentsOf: URL(fileURLWithPath: good))).write(to: URL(fileURLWithPath: twelve))
        let missing = root.appendingPathComponent("missing.jpg").path
        let files = [good, corrupt, other, twelve, good, missing, other]
        let text = try Self.usi(["predict"] + files + ["--model", Self.model, "--weights", weights, "--top", "1"])
        #expect(text.status == 1, "status \(text.status): \(text.error)")
        // Four answers, in order, each the same as when the file is predicted alone.
        let answered = text.output.split(separator: "\n").filter { !$0.hasPrefix(" ") }
        #expect(answered == [good, other, good, other].map { Substring($0) }, "\(text.output)")
        let alone = try Self.usi(["predict", good, "--model", Self.model, "--weights", weights, "--top", "1"])
        #expect(alone.status == 0)
        #expect(text.output.hasPrefix(alone.output), "\(text.output) vs \(alone.output)")
        for bad in [corrupt, twelve, missing] { #expect(text.error.contains(bad), "\(bad) not reported: \(text.error)") }
        #expect(text.error.contains("precision 12"))
        #expect(text.error.contains("3 of 7 images failed"))

        let json = try Self.usi(["predict"] + files + ["--model", Self.model, "--weights", weights, "--json"])
        #expect(json.status == 1)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["image"] as? String } == files)
        #expect(rows.map { $0["error"] == nil } == [true, false, true, false, true, false, true])
        #expect(rows.map { ($0["predictions"] as? [Any])?.isEmpty } == [false, true, false, true, false, true, false])
    }

    @Test("NaN weights, and finite weights whose logits overflow, are errors in eval and predict")
    func nonFiniteWeightsAndLogits() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let weights = try Self.tinyWeights(root)
        let nan = root.appendingPathComponent("nan.safetensors").path
        try Self.rewrite(weights, to: nan, fill: ["classifier.weight": .nan])
        let overflow = root.appendingPathComponent("overflow.safetensors").path
        try Self.rewrite(weights, to: overflow, fill: ["conv_head.weight": 3e38, "conv_head.bias": 3e38, "classifier.weight": 3e38])
        let photo = "/usr/share/darknet/data/dog.jpg"
        for (file, message) in [(nan, "'classifier.weight' holds NaN"), (overflow, "logits")] {
            let eval = try Self.usi(["eval", root.path, "--model", Self.model, "--weights", file, "--json"])
            #expect(eval.status != 0 && eval.error.contains(message), "eval \(file): \(eval.status) \(eval.output) \(eval.error)")
            #expect(!eval.output.contains("top1"))
            let predict = try Self.usi(["predict", photo, "--model", Self.model, "--weights", file])
            #expect(predict.status != 0 && predict.error.contains(message), "predict \(file): \(predict.output) \(predict.error)")
        }
        // The untouched weights still evaluate.
        let eval = try Self.usi(["eval", root.path, "--model", Self.model, "--weights", weights, "--json"])
        #expect(eval.status == 0, "\(eval.error)")
    }

    @Test("predict removes control characters (ANSI escapes, newlines, bidi overrides) from names it prints as text")
    func controlCharactersStripped() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let weights = try Self.tinyWeights(root)
        let hostile = root.appendingPathComponent("hostile.safetensors").path
        let names = ["\u{1B}[31mred\u{1B}[0m\u{1B}]0;title\u{07}", "two\nlines\r\u{202E}desrever\u{9B}2J"]
        let encoded = String(decoding: try JSONSerialization.data(withJSONObject: names), as: UTF8.self)
        try Self.rewrite(weights, to: hostile, metadata: ["class_names": encoded])
        let photo = root.appendingPathComponent("photo\u{1B}[2J.jpg").path
        try FileManager.default.copyItem(atPath: "/usr/share/darknet/data/dog.jpg", toPath: photo)
        let text = try Self.usi(["predict", photo, "--model", Self.model, "--weights", hostile])
        #expect(text.status == 0, "\(text.error)")
        let forbidden = text.output.unicodeScalars.filter { s in
            (s.value < 0x20 && s != "\n") || (0x7F...0x9F).contains(s.value) || (0x202A...0x202E).contains(s.value)
        }
        #expect(forbidden.isEmpty, "control characters printed: \(forbidden.map { String($0.value, radix: 16) })")
        #expect(text.output.contains("[31mred[0m]0;title") && text.output.contains("twolinesdesrever2J"), "\(text.output)")
        #expect(text.output.contains("photo[2J.jpg"))
        #expect(text.output.split(separator: "\n").count == 3)  // the path and two classes, no forged lines
        // JSON keeps the names exactly (escaped by the encoder).
        let json = try Self.usi(["predict", photo, "--model", Self.model, "--weights", hostile, "--json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]])
        let printed = (rows.first?["predictions"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(Set(printed ?? []) == Set(names))
    }
}
