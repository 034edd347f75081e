import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A run's directory: `config.json`, `metrics.jsonl`, `last.safetensors` (the full training
/// state), `checkpoint-best.safetensors`, `best.safetensors` (timm-loadable weights),
/// `report.html` and `commit.json`, the manifest of the last committed epoch.
///
/// One run owns the directory: it holds an exclusive `flock` on `.lock` (which names its PID)
/// for as long as it lives, and a second run into the same directory is refused.
///
/// An epoch's outputs are committed all or nothing. They are first written in full under
/// `.staging/`, then `commit.json` is replaced atomically — the commit point — and only then
/// moved into place. A run killed before the commit point keeps the previous epoch's files; a
/// run killed after it finishes the move when it resumes, because the manifest says what the
/// epoch wrote (files, their CRC-32s, and its `metrics.jsonl` line).
final class RunOutput {
    let directory: URL
    private let lockDescriptor: Int32

    var configURL: URL { file("config.json") }
    var metricsURL: URL { file("metrics.jsonl") }
    var bestWeightsURL: URL { file("best.safetensors") }
    var reportURL: URL { file("report.html") }
    var lastCheckpointURL: URL { file("last.safetensors") }
    var bestCheckpointURL: URL { file("checkpoint-best.safetensors") }
    var partialCheckpointURL: URL { file("partial.safetensors") }
    private var manifestURL: URL { file("commit.json") }
    private var stagingURL: URL { file(".staging") }

    /// Creates the directory if needed and takes its lock.
    init(directory: URL) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.invalidConfiguration("cannot create output directory \(directory.path): \(error.localizedDescription)")
        }
        let lockPath = directory.appendingPathComponent(".lock").path
        let fd = open(lockPath, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else {
            throw TrainingError.invalidConfiguration("cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            let owner = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            throw TrainingError.invalidConfiguration(
                "another run (PID \(owner)) is writing to \(directory.path); wait for it or choose another --output")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        lockDescriptor = fd
        removeLeftovers()
    }

    deinit {
        flock(lockDescriptor, LOCK_UN)
        close(lockDescriptor)
    }

    private func file(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// Temporary files of killed runs (`.name.tmp-PID`) are not outputs; the lock says no other
    /// run is writing them.
    private func removeLeftovers() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix(".") && name.contains(".tmp-") {
            try? FileManager.default.removeItem(at: file(name))
        }
    }

    struct RunConfig: Codable {
        var config: USIConfig
        var recipe: ResolvedRecipe
        var student: BackboneConfig
        var teacher: BackboneConfig?
        var teacherPrecision: InferencePrecision?
        var dataset: String
        var trainingSamples: Int
        var validationSamples: Int
        var classNames: [String]
    }

    /// Starts a fresh run: writes `config.json`, an empty `metrics.jsonl`, and removes the
    /// manifest and checkpoints of an earlier run in the directory.
    func start(config: USIConfig, recipe: ResolvedRecipe, student: BackboneConfig, teacher: BackboneConfig?,
               teacherPrecision: InferencePrecision?, data: TrainingData) throws {
        for url in [manifestURL, partialCheckpointURL, stagingURL] { try? FileManager.default.removeItem(at: url) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let run = RunConfig(config: config, recipe: recipe, student: student, teacher: teacher,
                            teacherPrecision: teacherPrecision, dataset: data.name,
                            trainingSamples: data.train.count, validationSamples: data.validation.count,
                            classNames: data.classNames)
        try AtomicFile.write(encoder.encode(run), to: configURL)
        try AtomicFile.write(Data(), to: metricsURL)
    }

    // MARK: - Commits

    /// What a commit wrote: the epoch, each file with its CRC-32, the epoch's metrics line and,
    /// for a mid-epoch checkpoint, its position.
    struct Manifest: Codable, Equatable {
        struct File: Codable, Equatable {
            var name: String
            var crc32: UInt32
            var bytes: Int
        }
        /// The last complete epoch (-1 when only a mid-epoch checkpoint of epoch 0 exists).
        var epoch: Int
        var files: [File]
        /// The epoch's line of `metrics.jsonl` (nil for a mid-epoch commit).
        var metricsLine: String?
        /// Steps of the next epoch that `partial.safetensors` has trained (nil = none).
        var partialStep: Int?

        /// Decodes and checks a manifest: file names are plain names inside the run directory,
        /// sizes and positions are not negative.
        static func decode(_ data: Data, source: String) throws -> Manifest {
            let manifest: Manifest
            do {
                manifest = try JSONDecoder().decode(Manifest.self, from: data)
            } catch {
                throw TrainingError.invalidData("\(source) is damaged: \(error)")
            }
            for file in manifest.files {
                guard !file.name.isEmpty, !file.name.contains("/"), !file.name.hasPrefix("."), file.bytes >= 0 else {
                    throw TrainingError.invalidData("\(source) is damaged: it names the file '\(file.name)' of \(file.bytes) bytes")
                }
            }
            guard manifest.epoch >= -1, (manifest.partialStep ?? 0) >= 0 else {
                throw TrainingError.invalidData("\(source) is damaged: epoch \(manifest.epoch), step \(manifest.partialStep ?? 0)")
            }
            return manifest
        }
    }

    /// The manifest of the last commit, or nil when the run has committed nothing.
    func manifest() throws -> Manifest? {
        guard let data = try? Data(contentsOf: manifestURL) else { return nil }
        return try Manifest.decode(data, source: manifestURL.path)
    }

    /// Commits an epoch (or a mid-epoch checkpoint when `metricsLine` is nil): `files` are
    /// written to `.staging/`, the manifest is replaced, then the files are moved into place
    /// and the metrics line appended.
    /// The files of `previous` that are not written again stay named in the new manifest, so
    /// that it always names every file a resume may read.
    @discardableResult
    func commit(epoch: Int, files: [(name: String, data: Data)], metricsLine: String?, partialStep: Int?,
                carrying previous: Manifest?) throws -> Manifest {
        try FileManager.default.createDirectory(at: stagingURL, withIntermediateDirectories: true)
        var entries = (previous?.files ?? []).filter { old in
            !files.contains { $0.name == old.name } && (partialStep != nil || old.name != partialCheckpointURL.lastPathComponent)
        }
        for (name, data) in files {
            try AtomicFile.write(data, to: stagingURL.appendingPathComponent(name))
            entries.append(Manifest.File(name: name, crc32: Checksum.crc32(data), bytes: data.count))
        }
        let manifest = Manifest(epoch: epoch, files: entries, metricsLine: metricsLine, partialStep: partialStep)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(manifest), to: manifestURL)  // the commit point
        try apply(manifest)
        return manifest
    }

    /// Moves a committed manifest's staged files into place and makes sure its metrics line is
    /// in `metrics.jsonl`, once. Idempotent: resuming calls it again after a kill.
    func apply(_ manifest: Manifest) throws {
        let staged = (try? FileManager.default.contentsOfDirectory(atPath: stagingURL.path)) ?? []
        for name in staged {
            let url = stagingURL.appendingPathComponent(name)
            // A staged file the manifest does not name with these bytes belongs to a later
            // epoch that was never committed.
            guard let entry = manifest.files.first(where: { $0.name == name }),
                  let data = try? Data(contentsOf: url), data.count == entry.bytes, Checksum.crc32(data) == entry.crc32 else {
                try? FileManager.default.removeItem(at: url)
                continue
            }
            guard rename(url.path, file(name).path) == 0 else {
                throw TrainingError.invalidData("cannot move \(url.path) into place: \(String(cString: strerror(errno)))")
            }
        }
        if manifest.partialStep == nil { try? FileManager.default.removeItem(at: partialCheckpointURL) }
        let directoryDescriptor = open(directory.path, O_RDONLY)
        if directoryDescriptor >= 0 { fsync(directoryDescriptor); close(directoryDescriptor) }
        guard let line = manifest.metricsLine else { return }
        struct EpochLine: Decodable { var epoch: Int; var top1: Double? }
        let lines = metricsLines()
        let present = lines.contains { text in
            (try? JSONDecoder().decode(EpochLine.self, from: Data(text.utf8))).map { $0.epoch == manifest.epoch && $0.top1 != nil } ?? false
        }
        if !present { try appendLine(line) }
    }

    /// Checks a committed file against the manifest's CRC-32 and returns its bytes.
    func verifiedContents(of name: String, in manifest: Manifest) throws -> Data {
        let url = file(name)
        guard let entry = manifest.files.first(where: { $0.name == name }) else {
            throw TrainingError.invalidData("\(manifestURL.path) does not name \(name)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TrainingError.invalidData("cannot read \(url.path): \(error.localizedDescription)")
        }
        guard data.count == entry.bytes, Checksum.crc32(data) == entry.crc32 else {
            throw TrainingError.invalidData(
                "\(url.path) is damaged: its checksum does not match the one recorded when it was written (\(manifestURL.lastPathComponent))")
        }
        return data
    }

    // MARK: - Metrics and report

    /// Appends one line (an epoch's or a log interval's metrics) to `metrics.jsonl`.
    func append(_ metrics: some Encodable) throws {
        try appendLine(Self.line(metrics))
    }

    /// `metrics` as one JSON line (sorted keys).
    static func line(_ metrics: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(metrics), as: UTF8.self)
    }

    private func appendLine(_ text: String) throws {
        var line = Data(text.utf8)
        line.append(0x0A)
        let handle = try FileHandle(forWritingTo: metricsURL)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
        try handle.synchronize()
    }

    /// The epoch lines recorded so far (for resuming).
    func readMetrics() -> [EpochMetrics] {
        metricsLines().compactMap { try? JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
    }

    /// Keeps the lines of epochs up to `epoch` and, when `partialStep` is given, the interval
    /// lines of epoch `epoch + 1` up to that step — what the run had written when it reached
    /// the point it resumes from — so that the file reads as if the run had not stopped.
    func truncateMetrics(after epoch: Int, partialStep: Int? = nil) throws {
        struct Position: Decodable { var epoch: Int; var step: Int? }
        let kept = metricsLines().filter { line in
            guard let p = try? JSONDecoder().decode(Position.self, from: Data(line.utf8)) else { return false }
            if p.epoch <= epoch { return true }
            if let partialStep, p.epoch == epoch + 1, let step = p.step { return step <= partialStep }
            return false
        }
        try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: metricsURL)
    }

    private func metricsLines() -> [String] {
        guard let text = try? String(contentsOf: metricsURL, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// Rewrites `report.html`.
    func writeReport(history: [EpochMetrics], teacherTop1: Double?, config: USIConfig, recipe: ResolvedRecipe,
                     student: BackboneConfig, teacher: BackboneConfig?, data: TrainingData, totalEpochs: Int) throws {
        let html = RunReportPage(history: history, teacherTop1: teacherTop1, config: config, recipe: recipe,
                                 student: student, teacher: teacher, dataset: data.name, totalEpochs: totalEpochs).html()
        try AtomicFile.write(Data(html.utf8), to: reportURL)
    }
}
