import Foundation

/// The complete state of a run after an epoch, in one safetensors file:
/// `model.*` (the student's state dict, PyTorch layout), `ema.*` (EMA averages),
/// `optimizer.*` (AdamW moments and step counts), and metadata with the epoch, the EMA step
/// count, the configuration and the class names. The data order and augmentation are
/// functions of (seed, epoch, sample), so nothing else is needed to continue exactly.
enum TrainingCheckpoint {
    /// How far into an epoch a mid-epoch checkpoint is, with the epoch's running sums.
    struct Progress: Codable, Equatable {
        var step: Int
        var lossSum: Double
        var lossCount: Int
        var images: Int
        var seconds: Double
        var learningRate: Double
        var skippedImages: Int
    }

    struct State {
        var epoch: Int
        var config: USIConfig
        /// Set for a mid-epoch checkpoint of epoch `epoch + 1`.
        var progress: Progress?
        /// The teacher's architecture (nil: trained without one); `.none` for a checkpoint
        /// written before the field existed.
        var teacher: String??
        /// Shards of every global batch in the run that wrote it (MPI ranks × emulated ranks);
        /// nil for a checkpoint written before the field existed.
        var shards: Int? = nil
        /// The MPI world size of that run; nil before the field existed.
        var ranks: Int? = nil
    }

    static func encode(student: any Backbone, optimizer: AdamW, ema: ExponentialMovingAverage?, epoch: Int,
                       config: USIConfig, classNames: [String], teacher: String?, progress: Progress? = nil,
                       ranks: Int = 1, shards: Int = 1) throws -> Data {
        var records: [String: SafeTensorsRecord] = [:]
        for (key, record) in student.stateDict() { records["model." + key] = record }
        records.merge(optimizer.exportState().safeTensorsRecords(prefix: "optimizer."), uniquingKeysWith: { a, _ in a })
        if let ema {
            for (key, tensor) in ema.exportState() { records["ema." + key] = SafeTensorsRecord(tensor) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var metadata = [
            "format": "usi-checkpoint-1",
            "epoch": String(epoch),
            "ema_steps": String(ema?.stepCount ?? 0),
            "architecture": student.config.architecture,
            "config": String(decoding: try encoder.encode(config), as: UTF8.self),
            "class_names": String(decoding: try encoder.encode(classNames), as: UTF8.self),
            "teacher": teacher ?? "",
            "ranks": String(ranks),
            "shards": String(shards),
        ]
        if let progress { metadata["progress"] = String(decoding: try encoder.encode(progress), as: UTF8.self) }
        return try SafeTensors.encode(records, metadata: metadata)
    }

    /// Checks the numbers a resume acts on: the epoch within the run, a mid-epoch position
    /// within its epoch and running sums that are finite and not negative. A checkpoint
    /// passes its checksum only if we wrote it, but a hand-made one must still be refused,
    /// not trap in the loop bounds or the clock arithmetic.
    static func validate(_ state: State, totalEpochs: Int, stepsPerEpoch: Int) throws {
        func refuse(_ field: String, _ value: Any) -> TrainingError {
            TrainingError.invalidData("the checkpoint's \(field) is out of range (\(value))")
        }
        guard (-1..<max(totalEpochs, 0)).contains(state.epoch) else { throw refuse("epoch", state.epoch) }
        guard let p = state.progress else { return }
        guard (0..<stepsPerEpoch).contains(p.step) else { throw refuse("progress.step", p.step) }
        guard p.lossCount >= 0, p.images >= 0, p.skippedImages >= 0 else { throw refuse("progress counts", "\(p.lossCount), \(p.images), \(p.skippedImages)") }
        guard p.lossSum.isFinite, p.learningRate.isFinite, p.seconds.isFinite, p.seconds >= 0, p.seconds < 1e9 else {
            throw refuse("progress sums", "\(p.lossSum), \(p.learningRate), \(p.seconds)")
        }
    }

    /// Restores model, optimiser and EMA from checkpoint bytes already read (and verified).
    static func load(_ data: Data, source: URL, student: any Backbone, optimizer: AdamW,
                     ema: ExponentialMovingAverage?) throws -> State {
        try load(SafeTensorsFile(data: data, source: source.path), student: student, optimizer: optimizer, ema: ema)
    }

    private static func load(_ file: SafeTensorsFile, student: any Backbone, optimizer: AdamW,
                             ema: ExponentialMovingAverage?) throws -> State {
        let url = URL(fileURLWithPath: file.source)
        guard file.metadata["format"] == "usi-checkpoint-1", let epoch = file.metadata["epoch"].flatMap(Int.init),
              let configText = file.metadata["config"] else {
            throw TrainingError.invalidData("\(url.path) is not a USI training checkpoint")
        }
        let config = try JSONDecoder().decode(USIConfig.self, from: Data(configText.utf8))
        try student.load(file, strict: true, keyPrefix: "model.")
        try optimizer.importState(OptimizerState(file: file, prefix: "optimizer."))
        if let ema {
            var averages: [String: Tensor] = [:]
            for name in file.names where name.hasPrefix("ema.") { averages[String(name.dropFirst(4))] = try file.tensor(name) }
            try ema.importState(averages, stepCount: Int(file.metadata["ema_steps"] ?? "0") ?? 0)
        }
        let teacher: String?? = file.metadata["teacher"].map { $0.isEmpty ? nil : $0 }
        let progress = try file.metadata["progress"].map { try JSONDecoder().decode(Progress.self, from: Data($0.utf8)) }
        return State(epoch: epoch, config: config, progress: progress, teacher: teacher,
                     shards: file.metadata["shards"].flatMap(Int.init), ranks: file.metadata["ranks"].flatMap(Int.init))
    }
}
