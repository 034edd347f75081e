import Foundation

/// The complete state of a run after an epoch, in one safetensors file:
/// `model.*` (the student's state dict, PyTorch layout), `ema.*` (EMA averages),
/// `optimizer.*` (AdamW moments and step counts), and metadata with the epoch, the EMA step
/// count, the configuration and the class names. The data order and augmentation are
/// functions of (seed, epoch, sample), so nothing else is needed to continue exactly.
enum TrainingCheckpoint {
    struct State {
        var epoch: Int
        var config: USIConfig
        /// The teacher's architecture (nil: trained without one); `.none` for a checkpoint
        /// written before the field existed.
        var teacher: String??
    }

    static func encode(student: any Backbone, optimizer: AdamW, ema: ExponentialMovingAverage?, epoch: Int,
                       config: USIConfig, classNames: [String], teacher: String?) throws -> Data {
        var records: [String: SafeTensorsRecord] = [:]
        for (key, record) in student.stateDict() { records["model." + key] = record }
        records.merge(optimizer.exportState().safeTensorsRecords(prefix: "optimizer."), uniquingKeysWith: { a, _ in a })
        if let ema {
            for (key, tensor) in ema.exportState() { records["ema." + key] = SafeTensorsRecord(tensor) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let metadata = [
            "format": "usi-checkpoint-1",
            "epoch": String(epoch),
            "ema_steps": String(ema?.stepCount ?? 0),
            "architecture": student.config.architecture,
            "config": String(decoding: try encoder.encode(config), as: UTF8.self),
            "class_names": String(decoding: try encoder.encode(classNames), as: UTF8.self),
            "teacher": teacher ?? "",
        ]
        return try SafeTensors.encode(records, metadata: metadata)
    }

    /// Restores model, optimiser and EMA from `url`; nil when there is no such file.
    static func load(from url: URL, student: any Backbone, optimizer: AdamW, ema: ExponentialMovingAverage?) throws -> State? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let file = try SafeTensorsFile(contentsOf: url)
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
        return State(epoch: epoch, config: config, teacher: teacher)
    }
}
