import Foundation
import Testing

/// `USI_CPU` caps the kernels' instruction-set dispatch for a whole process (read once).
@Suite("USI_CPU")
struct DispatchCLITests {
    /// The level `usi bench kernels --json` reports running at, with `USI_CPU` set to `cap`
    /// (nil: unset), and the CPU's own.
    static func levels(cap: String?) throws -> (used: String, detected: String) {
        let process = Process()
        process.executableURL = CLITests.executable
        process.arguments = ["bench", "kernels", "--json", "--sgemm-size", "64", "--threads", "1"]
        var environment = ProcessInfo.processInfo.environment
        environment["USI_CPU"] = cap
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (try #require(json["cpu_level"] as? String), try #require(json["detected_cpu_level"] as? String))
    }

    /// Each run measures the kernels briefly (about 7 s on 2 cores; speed is not checked).
    @Test func capsTheLevel() throws {
        let order = ["baseline", "avx2", "avx512", "avx512bf16"]
        let free = try Self.levels(cap: nil)
        #expect(free.used == free.detected)
        let baseline = try Self.levels(cap: "baseline")
        #expect(baseline.used == "baseline" && baseline.detected == free.detected)
        // A value that is not a level caps nothing.
        #expect(try Self.levels(cap: "fastest").used == free.detected)
        #expect(order.contains(free.detected))
    }
}
