import Foundation

/// A run's directory: `config.json`, `metrics.jsonl`, checkpoints (`last.safetensors`,
/// `checkpoint-best.safetensors`, `checkpoint-epochN.safetensors`), `best.safetensors`
/// (timm-loadable weights) and `report.html`.
struct RunOutput {
    let directory: URL
    let checkpoints: CheckpointStore

    var configURL: URL { directory.appendingPathComponent("config.json") }
    var metricsURL: URL { directory.appendingPathComponent("metrics.jsonl") }
    var bestWeightsURL: URL { directory.appendingPathComponent("best.safetensors") }
    var reportURL: URL { directory.appendingPathComponent("report.html") }

    init(directory: URL) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.invalidConfiguration("cannot create output directory \(directory.path): \(error.localizedDescription)")
        }
        checkpoints = try CheckpointStore(directory: directory, keepBest: 1)
    }

    struct RunConfig: Codable {
        var config: USIConfig
        var recipe: ResolvedRecipe
        var student: BackboneConfig
        var teacher: BackboneConfig?
        var dataset: String
        var trainingSamples: Int
        var validationSamples: Int
        var classNames: [String]
    }

    /// Writes `config.json` and starts a fresh `metrics.jsonl`.
    func start(config: USIConfig, recipe: ResolvedRecipe, student: BackboneConfig, teacher: BackboneConfig?,
               data: TrainingData) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let run = RunConfig(config: config, recipe: recipe, student: student, teacher: teacher, dataset: data.name,
                            trainingSamples: data.train.count, validationSamples: data.validation.count,
                            classNames: data.classNames)
        try AtomicFile.write(encoder.encode(run), to: configURL)
        try AtomicFile.write(Data(), to: metricsURL)
    }

    /// Appends one line (an epoch's or a log interval's metrics) to `metrics.jsonl`.
    func append(_ metrics: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = try encoder.encode(metrics)
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

    /// Drops the lines of epochs after `epoch` — the part of an interrupted epoch that a resumed
    /// run trains again — so that the file reads as if the run had not stopped.
    func truncateMetrics(after epoch: Int) throws {
        struct EpochOnly: Decodable { var epoch: Int }
        let kept = metricsLines().filter { line in
            (try? JSONDecoder().decode(EpochOnly.self, from: Data(line.utf8)))
                .map { $0.epoch <= epoch } ?? false
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
