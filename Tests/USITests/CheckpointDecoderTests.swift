import Foundation
import Testing
@_spi(Fuzzing) import USI

/// The decoders of a run directory's files refuse hand-made values that would trap later
/// (loop bounds, clock arithmetic, counters), and the fuzzing corpus and regressions of
/// `fuzz-checkpoint` replay without a crash.
@Suite("checkpoint and manifest decoders")
struct CheckpointDecoderTests {
    /// A checkpoint of the fuzz student with some metadata replaced and, optionally, some of its
    /// integer tensors (optimizer and EMA counters) rewritten.
    func checkpoint(replacing changes: [String: String], midEpoch: Bool = true,
                    integers rewrite: (String, [Int64]) -> [Int64] = { $1 }) throws -> Data {
        let original = try SafeTensorsFile(data: DecoderEntryPoints.encodeCheckpoint(of: DecoderEntryPoints.makeStudent(), steps: 2, midEpoch: midEpoch),
                                           source: "test")
        var records: [String: SafeTensorsRecord] = [:]
        for name in original.names {
            switch original.entries[name]!.dtype {
            case .float32: records[name] = SafeTensorsRecord(try original.tensor(name))
            default: records[name] = SafeTensorsRecord(int64: rewrite(name, try original.integers(name)), shape: original.entries[name]!.shape)
            }
        }
        return try SafeTensors.encode(records, metadata: original.metadata.merging(changes) { $1 })
    }

    @Test("a real checkpoint restores, with and without EMA")
    func restores() throws {
        let data = try checkpoint(replacing: [:])
        #expect(try DecoderEntryPoints.restoreCheckpoint(data, into: DecoderEntryPoints.makeStudent(), withEMA: true) == 1)
        #expect(try DecoderEntryPoints.restoreCheckpoint(data, into: DecoderEntryPoints.makeStudent(), withEMA: false) == 1)
    }

    @Test("epochs outside the run and positions outside the epoch are refused", arguments: [
        ["epoch": "4"], ["epoch": "-2"], ["epoch": "9223372036854775807"],
        ["progress": #"{"step":-1,"lossSum":1,"lossCount":1,"images":1,"seconds":1,"learningRate":0.001,"skippedImages":0}"#],
        ["progress": #"{"step":1,"lossSum":1,"lossCount":-5,"images":1,"seconds":1,"learningRate":0.001,"skippedImages":0}"#],
        ["progress": #"{"step":1,"lossSum":1,"lossCount":1,"images":1,"seconds":1e300,"learningRate":0.001,"skippedImages":0}"#],
        ["ema_steps": "9223372036854775807"],
    ])
    func outOfRange(changes: [String: String]) throws {
        let data = try checkpoint(replacing: changes)
        #expect(throws: (any Error).self) { try DecoderEntryPoints.restoreCheckpoint(data, into: DecoderEntryPoints.makeStudent(), withEMA: true) }
    }

    @Test("an optimizer step counter near Int64.max is refused (the next step would overflow)")
    func hugeCounter() throws {
        let data = try checkpoint(replacing: [:]) { name, values in name.hasSuffix(".step") ? [Int64.max] : values }
        #expect(throws: OptimizerError.self) { try DecoderEntryPoints.restoreCheckpoint(data, into: DecoderEntryPoints.makeStudent(), withEMA: false) }
    }

    @Test("a manifest naming a path outside the run directory, or negative sizes, is refused", arguments: [
        #"{"epoch":0,"files":[{"name":"../../etc/passwd","crc32":1,"bytes":1}]}"#,
        #"{"epoch":0,"files":[{"name":".lock","crc32":1,"bytes":1}]}"#,
        #"{"epoch":0,"files":[{"name":"last.safetensors","crc32":1,"bytes":-1}]}"#,
        #"{"epoch":-7,"files":[]}"#,
        #"{"epoch":0,"files":[],"partialStep":-3}"#,
        #"{"epoch":0,"files":[{"name":"last.safetensors","crc32":99999999999,"bytes":1}]}"#,
    ])
    func badManifest(text: String) {
        #expect(throws: TrainingError.self) { try DecoderEntryPoints.decodeManifest(Data(text.utf8)) }
    }

    @Test("the fuzz-checkpoint corpus and regressions replay: each restores or throws")
    func corpusReplays() throws {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz")
        var restored = 0, files = 0
        for folder in ["Corpus/checkpoint", "Regressions/checkpoint"] {
            let directory = fuzz.appendingPathComponent(folder)
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
            where !name.hasPrefix(".") && !name.hasSuffix(".md") {
                let bytes = try Data(contentsOf: directory.appendingPathComponent(name))
                guard let mode = bytes.first else { continue }
                files += 1
                let rest = bytes.dropFirst()
                switch mode % 3 {
                case 0: if (try? DecoderEntryPoints.restoreCheckpoint(Data(rest), into: DecoderEntryPoints.makeStudent(), withEMA: true)) != nil { restored += 1 }
                case 1: if (try? DecoderEntryPoints.decodeManifest(Data(rest))) != nil { restored += 1 }
                default:
                    if let file = try? SafeTensorsFile(data: Data(rest), source: name),
                       (try? WeightsMetadata(file.metadata, source: name)) != nil { restored += 1 }
                }
            }
        }
        #expect(files >= 4 && restored >= 4)
    }
}
