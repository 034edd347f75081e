import Foundation

/// Keeps a run's checkpoints in one directory: `last.safetensors` after every save and
/// `checkpoint-best.safetensors` for the best by a metric; with `keepBest` > 1 also the best
/// few as `checkpoint-epochN.safetensors`. Every file is written atomically, so a crash at any moment leaves the previous good
/// checkpoint in place.
public struct CheckpointStore: Sendable {
    /// Where checkpoints live.
    public let directory: URL
    /// How many best checkpoints to keep.
    public let keepBest: Int

    /// File of the most recent checkpoint.
    public var lastURL: URL { directory.appendingPathComponent("last.safetensors") }
    /// File of the best checkpoint so far.
    public var bestURL: URL { directory.appendingPathComponent("checkpoint-best.safetensors") }

    /// Creates the store (and the directory).
    public init(directory: URL, keepBest: Int = 1) throws {
        self.directory = directory
        self.keepBest = max(keepBest, 1)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    private var indexURL: URL { directory.appendingPathComponent("checkpoints.json") }

    /// A ranked checkpoint.
    public struct Ranked: Codable, Sendable, Equatable {
        /// File name inside the directory.
        public var file: String
        /// Epoch it was taken at.
        public var epoch: Int
        /// Higher is better (e.g. top-1).
        public var metric: Double
    }

    /// The kept best checkpoints, best first.
    public func ranking() -> [Ranked] {
        guard let data = try? Data(contentsOf: indexURL),
              let list = try? JSONDecoder().decode([Ranked].self, from: data) else { return [] }
        return list
    }

    /// Saves `data` as the last checkpoint and, when `metric` ranks among the best, as a best one.
    /// Returns `true` when it became the new best.
    @discardableResult
    public func save(_ data: Data, epoch: Int, metric: Double) throws -> Bool {
        try AtomicFile.write(data, to: lastURL)
        var list = ranking()
        let qualifies = list.count < keepBest || metric > (list.last?.metric ?? -.infinity)
        guard qualifies else { return false }
        let name = keepBest == 1 ? bestURL.lastPathComponent : "checkpoint-epoch\(epoch).safetensors"
        if keepBest > 1 { try AtomicFile.write(data, to: directory.appendingPathComponent(name)) }
        list.removeAll { $0.file == name }
        list.append(Ranked(file: name, epoch: epoch, metric: metric))
        list.sort { $0.metric > $1.metric || ($0.metric == $1.metric && $0.epoch < $1.epoch) }
        for dropped in list.dropFirst(keepBest) where dropped.file != bestURL.lastPathComponent {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(dropped.file))
        }
        list = Array(list.prefix(keepBest))
        let isBest = list.first?.file == name
        if isBest { try AtomicFile.write(data, to: bestURL) }
        try AtomicFile.write(JSONEncoder().encode(list), to: indexURL)
        return isBest
    }
}
