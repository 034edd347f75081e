import Foundation
import Testing

/// `usi compare` end to end on a tiny slice of the embedded default (2 models, 4 steps each):
/// the outputs, the stored-logits equality with the live teacher, and resume after an
/// interruption.
@Suite("usi compare", .serialized)
struct CompareCLITests {
    static func directory(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("usi-compare-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    /// Two models, 128 training and 64 validation images, batch 32, one epoch.
    static func arguments(output: URL, models: String = "mobilenetv3_small_050,resnet10t") -> [String] {
        ["compare", "--models", models, "--epochs", "1", "--batch-size", "32", "--train-images", "128",
         "--validation-images", "64", "--output", output.path, "--speed-seconds", "0.1", "--threads", "2"]
    }

    static func bytes(_ url: URL, _ file: String) throws -> Data { try Data(contentsOf: url.appendingPathComponent(file)) }

    @Test("outputs present and well-formed; the stored-logits student equals the live teacher's bit for bit")
    func endToEnd() throws {
        let stored = Self.directory("stored"), live = Self.directory("live")
        defer { for d in [stored, live] { try? FileManager.default.removeItem(at: d) } }
        let run = try CLITests.usi(Self.arguments(output: stored))
        #expect(run.status == 0, "compare failed: \(run.error)")
        #expect(run.output.contains("model 1 of 2: mobilenetv3_small_050") && run.output.contains("model 2 of 2: resnet10t"))
        #expect(run.output.contains("Pareto front: "))
        for model in ["mobilenetv3_small_050", "resnet10t"] {
            for file in ["best.safetensors", "last.safetensors", "metrics.jsonl", "config.json", "report.html", "commit.json"] {
                #expect(FileManager.default.fileExists(atPath: stored.appendingPathComponent("\(model)/\(file)").path), "\(model)/\(file) missing")
            }
        }
        let json = try #require(try JSONSerialization.jsonObject(with: Self.bytes(stored, "compare.json")) as? [String: Any])
        #expect(json["complete"] as? Bool == true)
        let rows = try #require(json["rows"] as? [[String: Any]])
        #expect(rows.map { $0["model"] as? String } == ["mobilenetv3_small_050", "resnet10t"])
        for row in rows {
            #expect(row["input_size"] as? Int == 32)
            for key in ["top1", "top5", "images_per_second", "ms_per_image_batch1", "gflops", "training_minutes"] {
                #expect((row[key] as? Double).map { $0 >= 0 && $0.isFinite } == true, "\(key) in \(row)")
            }
            #expect((row["params"] as? Int ?? 0) > 100_000)
            #expect(row["ema"] is Bool && row["pareto"] is Bool)
        }
        // The first model ran the teacher (4 batches), the second read all 4 back.
        #expect(rows.map { $0["teacher_logits"] as? String } == ["live", "stored"])
        #expect(rows.map { $0["batches_stored"] as? Int } == [0, 4])
        let sharing = try #require(json["teacher_logits"] as? [String: Any])
        #expect((sharing["teacher_share"] as? Double ?? 0) > 0)
        let csv = String(decoding: try Self.bytes(stored, "compare.csv"), as: UTF8.self).split(separator: "\n")
        #expect(csv.count == 3 && csv[0].hasPrefix("model,input_size,top1,top5,ema,images_per_second,ms_per_image_batch1,params,gflops,training_minutes"))
        let html = String(decoding: try Self.bytes(stored, "compare.html"), as: UTF8.self)
        #expect(html.contains("<svg") && html.contains("resnet10t") && html.contains("Pareto front") && !html.contains("<script"))

        let liveRun = try CLITests.usi(Self.arguments(output: live) + ["--live-teacher"])
        #expect(liveRun.status == 0, "live compare failed: \(liveRun.error)")
        for model in ["mobilenetv3_small_050", "resnet10t"] {
            for file in ["best.safetensors", "last.safetensors"] {
                #expect(try Self.bytes(stored, "\(model)/\(file)") == Self.bytes(live, "\(model)/\(file)"),
                        "\(model)/\(file): stored teacher logits gave other weights than the live teacher")
            }
        }
    }

    @Test("an interrupted comparison resumes: the finished model is kept, the unfinished one continues exactly")
    func resume() throws {
        let reference = Self.directory("reference"), interrupted = Self.directory("interrupted")
        defer { for d in [reference, interrupted] { try? FileManager.default.removeItem(at: d) } }
        let full = try CLITests.usi(Self.arguments(output: reference) + ["--checkpoint-minutes", "0.000001"])
        #expect(full.status == 0, "compare failed: \(full.error)")
        // 4 steps of the first model, then 2 of the second, a mid-epoch checkpoint after each step.
        let cut = try CLITests.usi(Self.arguments(output: interrupted) + ["--checkpoint-minutes", "0.000001", "--cancel-after-steps", "6"])
        #expect(cut.status != 0)
        #expect(cut.error.contains("cancelled"), "\(cut.error)")
        let partial = try #require(try JSONSerialization.jsonObject(with: Self.bytes(interrupted, "compare.json")) as? [String: Any])
        #expect(partial["complete"] as? Bool == false)
        #expect((partial["rows"] as? [[String: Any]])?.count == 1)
        let firstModel = try Self.bytes(interrupted, "mobilenetv3_small_050/best.safetensors")
        let resumed = try CLITests.usi(Self.arguments(output: interrupted) + ["--checkpoint-minutes", "0.000001", "--resume"])
        #expect(resumed.status == 0, "resume failed: \(resumed.error)")
        #expect(resumed.output.contains("model 1 of 2: mobilenetv3_small_050: finished in an earlier run, kept"))
        #expect(try Self.bytes(interrupted, "mobilenetv3_small_050/best.safetensors") == firstModel)
        for file in ["best.safetensors", "last.safetensors"] {
            #expect(try Self.bytes(interrupted, "resnet10t/\(file)") == Self.bytes(reference, "resnet10t/\(file)"),
                    "resnet10t/\(file) after resume differs from the uninterrupted comparison")
        }
        let json = try #require(try JSONSerialization.jsonObject(with: Self.bytes(interrupted, "compare.json")) as? [String: Any])
        #expect(json["complete"] as? Bool == true && (json["rows"] as? [[String: Any]])?.count == 2)
    }

    @Test("a model with its own input size gets the live teacher and is timed at its size; bad specs are refused")
    func ownInputSize() throws {
        let output = Self.directory("size")
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try CLITests.usi(Self.arguments(output: output, models: "mobilenetv3_small_050,mobilenetv3_small_050@48"))
        #expect(run.status == 0, "compare failed: \(run.error)")
        let json = try #require(try JSONSerialization.jsonObject(with: Self.bytes(output, "compare.json")) as? [String: Any])
        let rows = try #require(json["rows"] as? [[String: Any]])
        #expect(rows.map { $0["input_size"] as? Int } == [32, 48])
        #expect(rows.map { $0["teacher_logits"] as? String } == ["live", "live"])
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("mobilenetv3_small_050@48/best.safetensors").path))
        let bad = try CLITests.usi(Self.arguments(output: output, models: "resnet10t@x"))
        #expect(bad.status != 0 && bad.error.contains("the size after @"), "\(bad.error)")
    }
}
