import Foundation
import Testing

/// `usi train` killed with SIGKILL at many moments, then resumed: the run directory must end
/// exactly as an uninterrupted run's (the same `last.safetensors` and `best.safetensors` bytes,
/// the same `metrics.jsonl` but for timings), with no temporary files left; and two runs never
/// share a directory.
@Suite("usi train interrupted", .serialized)
struct InterruptionTests {
    /// 21 training and 7 validation images (the darknet photos, each three times in train/).
    static func makeFolder() throws -> URL {
        let photos = try FileManager.default.contentsOfDirectory(atPath: "/usr/share/darknet/data").filter { $0.hasSuffix(".jpg") }.sorted()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("usi-kill-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        for (i, photo) in photos.enumerated() {
            let label = i % 2 == 0 ? "even" : "odd"
            for split in ["train", "val"] {
                try FileManager.default.createDirectory(at: root.appendingPathComponent("\(split)/\(label)"), withIntermediateDirectories: true)
            }
            let source = "/usr/share/darknet/data/\(photo)"
            for copy in 0..<3 {
                try FileManager.default.copyItem(atPath: source, toPath: root.appendingPathComponent("train/\(label)/\(copy)-\(photo)").path)
            }
            try FileManager.default.copyItem(atPath: source, toPath: root.appendingPathComponent("val/\(label)/\(photo)").path)
        }
        return root
    }

    /// 5 steps an epoch, 2 epochs, a mid-epoch checkpoint after nearly every step.
    static func arguments(_ root: URL, output: URL) -> [String] {
        ["train", root.path, "--model", "mobilenetv3_small_050", "--no-kd", "--epochs", "2", "--batch-size", "4",
         "--input-size", "32", "--seed", "3", "--threads", "1", "--workers", "1", "--checkpoint-minutes", "0.000001",
         "--output", output.path]
    }

    static func start(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = CLITests.executable
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// The directory's visible state: names with sizes and modification times.
    static func snapshot(_ directory: URL) -> [String] {
        let names = (try? FileManager.default.subpathsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().map { name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)
            let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
            let time = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(name) \(size) \(time)"
        }
    }

    /// Runs the training and kills it with SIGKILL at the `k`-th change of its directory.
    static func killed(atChange k: Int, arguments: [String], directory: URL) throws -> Bool {
        let process = try start(arguments)
        var last = snapshot(directory), changes = 0
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline {
            let now = snapshot(directory)
            if now != last {
                changes += 1
                last = now
                if changes == k {
                    kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                    return true
                }
            }
            usleep(200)
        }
        process.waitUntilExit()
        return false
    }

    static func metricsWithoutTimings(_ run: URL) throws -> [String] {
        try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map { line in
            var object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            for timing in ["seconds", "img_s"] { object.removeValue(forKey: timing) }
            return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    @Test("a run killed at any moment resumes to the same files as an uninterrupted run")
    func killAnywhere() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let reference = root.appendingPathComponent("reference")
        let straight = try CLITests.usi(Self.arguments(root, output: reference))
        try #require(straight.status == 0, "reference run failed: \(straight.error)")
        let expectedLast = try Data(contentsOf: reference.appendingPathComponent("last.safetensors"))
        let expectedBest = try Data(contentsOf: reference.appendingPathComponent("best.safetensors"))
        let expectedMetrics = try Self.metricsWithoutTimings(reference)

        // Kill points: every few changes of the run directory, through both epochs.
        var killedRuns = 0
        for k in stride(from: 1, through: 90, by: 4) {
            let run = root.appendingPathComponent("killed-\(k)")
            let arguments = Self.arguments(root, output: run)
            guard try Self.killed(atChange: k, arguments: arguments, directory: run) else { break }  // finished first
            killedRuns += 1
            let resumed = try CLITests.usi(arguments + ["--resume"])
            #expect(resumed.status == 0, "resume after kill at change \(k) failed: \(resumed.error)")
            #expect(try Data(contentsOf: run.appendingPathComponent("last.safetensors")) == expectedLast,
                    "last.safetensors differs after a kill at change \(k)")
            #expect(try Data(contentsOf: run.appendingPathComponent("best.safetensors")) == expectedBest,
                    "best.safetensors differs after a kill at change \(k)")
            #expect(try Self.metricsWithoutTimings(run) == expectedMetrics, "metrics.jsonl differs after a kill at change \(k)")
            let leftovers = (try FileManager.default.subpathsOfDirectory(atPath: run.path)).filter {
                $0.contains(".tmp-") || ($0.hasPrefix(".staging/") && !$0.isEmpty)
            }
            #expect(leftovers.isEmpty, "temporary files left after a kill at change \(k): \(leftovers)")
            try? FileManager.default.removeItem(at: run)
        }
        print("killed and resumed \(killedRuns) runs")
        #expect(killedRuns >= 8, "the run finished before enough kill points: \(killedRuns)")
    }

    @Test("a damaged checkpoint is refused on resume; nothing committed yet starts from scratch")
    func damagedAndEmpty() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run")
        var arguments = Self.arguments(root, output: run)
        arguments[arguments.firstIndex(of: "2")!] = "1"  // one epoch
        let fresh = try CLITests.usi(arguments + ["--resume"])
        #expect(fresh.status == 0 && fresh.error.contains("starting from scratch"), "resume with nothing: \(fresh.error)")

        // Flip one bit in the middle of last.safetensors.
        let last = run.appendingPathComponent("last.safetensors")
        var bytes = try Data(contentsOf: last)
        bytes[bytes.count / 2] ^= 0x10
        try bytes.write(to: last)
        let damaged = try CLITests.usi(arguments + ["--resume"])
        #expect(damaged.status != 0 && damaged.error.contains("damaged"), "flipped bit: \(damaged.error)")
    }

    @Test("a second run into the same directory is refused with the owner's PID")
    func lock() throws {
        let root = try Self.makeFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run")
        var arguments = Self.arguments(root, output: run)
        arguments[arguments.firstIndex(of: "2")!] = "50"
        let first = try Self.start(arguments)
        defer { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() }
        let lockFile = run.appendingPathComponent(".lock")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && ((try? String(contentsOf: lockFile, encoding: .utf8)) ?? "").isEmpty { usleep(10_000) }
        let second = try CLITests.usi(arguments)
        #expect(second.status != 0, "the second run was not refused")
        #expect(second.error.contains("another run (PID \(first.processIdentifier))"), "\(second.error)")
    }
}
