import Foundation
import Testing
@testable import USIData

/// Replays the fuzzing seed corpora and every committed fuzzing regression
/// (`Fuzz/Corpus/<target>`, `Fuzz/Regressions/<target>`) through the same calls as the fuzz
/// targets, so that an input that once crashed a reader fails the ordinary test run. Each
/// file must load or throw a `DataError`; a trap stops the test process.
@Suite("fuzz corpus replay")
struct FuzzCorpusReplayTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz").path

    static func inputs(_ target: String) -> [String] {
        ["Corpus", "Regressions"].flatMap { folder -> [String] in
            let directory = "\(fuzzDirectory)/\(folder)/\(target)"
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            return names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".md") }.sorted().map { "\(directory)/\($0)" }
        }
    }

    @Test("the JPEG corpus decodes or throws, and the decoder stays usable")
    func jpeg() throws {
        let files = Self.inputs("jpeg")
        #expect(files.count >= 14)
        let limits = try ImageLimits(maximumPixels: 1 << 16, maximumFileBytes: 1 << 20)
        let decoder = try JPEGDecoder(limits: limits), workspace = try TransformWorkspace(imageLimits: limits)
        let evalTransform = try EvalTransform(size: 24, cropPercentage: 0.875)
        let trainTransform = try TrainTransform(size: 20)
        let reference = try readBytes(fixturesDirectory + "/small_baseline.jpg")
        let expected = try decoder.decode(reference, name: "reference").image
        var decodedCount = 0
        for path in files {
            let bytes = try readBytes(path)
            for scale in [1, 2, 4, 8] {
                do { _ = try decoder.decode(bytes, name: path, scaleDenominator: scale); decodedCount += 1 } catch is DataError {}
            }
            var generator = RandomGenerator(seed: 7)
            do { _ = try evalTransform.apply(.encoded(bytes: bytes, name: path), generator: &generator, workspace: workspace) } catch is DataError {}
            do { _ = try trainTransform.apply(.encoded(bytes: bytes, name: path), generator: &generator, workspace: workspace) } catch is DataError {}
            #expect(try decoder.decode(reference, name: "reference").image == expected, "decoder broken after \(path)")
        }
        #expect(decodedCount >= 4 * 11)  // the 11 supported seeds decode at every scale
    }

    @Test("the IDX corpus reads or throws")
    func idx() throws {
        let files = Self.inputs("idx")
        #expect(files.count >= 5)
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var datasets = 0
        for path in files {
            // The fuzz target's input format: a big-endian u16 split, then the two files.
            let bytes = try readBytes(path)
            guard bytes.count >= 2 else { continue }
            let split = min(bytes.count - 2, Int(bytes[0]) << 8 | Int(bytes[1]))
            try writeBytes(Array(bytes[2..<(2 + split)]), to: dir.file("images"))
            try writeBytes(Array(bytes[(2 + split)...]), to: dir.file("labels"))
            for name in ["images", "labels"] {
                do { _ = try IDXFile(contentsOf: dir.file(name)) } catch is DataError {}
            }
            do {
                let dataset = try IDXDataset(imagesPath: dir.file("images"), labelsPath: dir.file("labels"))
                for index in 0..<dataset.count { _ = try dataset.source(at: index) }
                datasets += 1
            } catch is DataError {}
        }
        #expect(datasets >= 5)  // every seed is a valid pair
    }
}
