import Foundation

/// A comparison's directory: one run directory per model (`<model>/`), the teacher-logits
/// stores (`teacher-logits/`) and `compare.json`, `compare.csv`, `compare.html`. Holds the
/// directory's lock (as a run does), so two comparisons cannot share a store.
public final class ComparisonOutput {
    /// The directory.
    public let directory: URL
    private let lock: RunOutput

    /// Creates the directory if needed and takes its lock (refused, naming the owner's PID,
    /// while another comparison writes there).
    public init(directory: URL) throws {
        self.directory = directory
        lock = try RunOutput(directory: directory)
    }

    /// `compare.json`.
    public var reportURL: URL { directory.appendingPathComponent("compare.json") }
    /// Where the teacher-logits stores are.
    public var storeDirectory: URL { directory.appendingPathComponent("teacher-logits") }

    /// The run directory of `model`.
    public func runDirectory(of model: ComparisonModel) -> URL { directory.appendingPathComponent(model.description) }

    /// Whether `model`'s run has committed anything (so that `--resume` continues it).
    public func hasCommittedRun(_ model: ComparisonModel) -> Bool {
        FileManager.default.fileExists(atPath: runDirectory(of: model).appendingPathComponent("commit.json").path)
    }

    /// The report of an earlier, interrupted comparison, or nil when there is none.
    public func previousReport() throws -> ComparisonReport? {
        guard FileManager.default.fileExists(atPath: reportURL.path) else { return nil }
        return try ComparisonReport.read(reportURL)
    }

    /// Writes `compare.json`, `compare.csv`, `compare.html` and `compare.svg` (the page's
    /// chart alone, for documents that embed it), each atomically.
    public func write(_ report: ComparisonReport) throws {
        let files: [(String, Data)] = [
            ("compare.json", try report.json()),
            ("compare.csv", Data(report.csv().utf8)),
            ("compare.html", Data(ComparisonPage(report: report).html().utf8)),
            ("compare.svg", Data(ComparisonPage(report: report).svg().utf8)),
        ]
        for (name, data) in files {
            let url = directory.appendingPathComponent(name)
            do { try data.write(to: url, options: .atomic) } catch {
                throw TrainingError.invalidConfiguration("cannot write \(url.path): \(error.localizedDescription)")
            }
        }
    }

    /// Bytes of the teacher-logits store files.
    public var storeBytes: Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: storeDirectory.path)) ?? []
        return names.reduce(0) { total, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: storeDirectory.appendingPathComponent(name).path)
            return total + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }
}

extension TeacherLogitsKey {
    /// The CRC-32 (hex) of a teacher's weights file, which identifies the teacher in the key.
    public static func weightsChecksum(of url: URL) throws -> String {
        do {
            return String(format: "crc32:%08x", Checksum.crc32(try Data(contentsOf: url, options: .mappedIfSafe)))
        } catch {
            throw TrainingError.invalidConfiguration("cannot read the teacher weights \(url.path): \(error.localizedDescription)")
        }
    }
}
