import Foundation
import Testing
@testable import USIData

@Suite("Data benchmark")
struct BenchmarkTests {
    @Test("reports the JSON shape the CLI prints", .enabled(if: fileExists(darknetDirectory)))
    func report() throws {
        let report = try DataBenchmark.run(directory: darknetDirectory, size: 64, workerCounts: [1, 2],
                                           samples: 16, batchSize: 8)
        #expect(report.images == listJPEGs(darknetDirectory).count)
        #expect(report.results.map(\.workers) == [1, 2])
        #expect(report.results.allSatisfy { $0.imagesPerSecond > 0 })
        let json = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as! [String: Any]
        #expect(json["size"] as? Int == 64)
        let first = (json["results"] as! [[String: Any]])[0]
        #expect(first["workers"] as? Int == 1 && first["img_s"] is Double)
    }

    @Test("an empty or missing folder is a clear error")
    func errors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        #expect { try DataBenchmark.run(directory: dir.path) } throws: { "\($0)".contains("no image files (jfif, jpe, jpeg, jpg)") }
        #expect { try DataBenchmark.run(directory: dir.file("missing")) } throws: { "\($0)".contains("no such directory") }
    }
}
