import Foundation

/// One model of a comparison, as `compare.json` and `compare.csv` list it.
public struct ComparisonRow: Codable, Sendable, Equatable {
    /// As given on the command line (`levit_128s@64`); also its run directory's name.
    public var model: String
    /// The architecture.
    public var architecture: String
    /// Side the model was trained and timed at.
    public var inputSize: Int
    /// Best validation top-1 (%) of model or EMA.
    public var top1: Double
    /// Top-5 (%) of the same weights.
    public var top5: Double
    /// Whether the best weights are the EMA's.
    public var isEMA: Bool
    /// The epoch of the best weights.
    public var bestEpoch: Int
    /// Inference images/s at batch ``ComparisonSpeedSettings/throughputBatch`` (BatchNorm folded).
    public var imagesPerSecond: Double
    /// Median milliseconds per image at batch 1 (BatchNorm folded).
    public var latencyMilliseconds: Double
    /// Parameters.
    public var parameters: Int
    /// Giga multiply-accumulates per image, the unit timm's, fvcore's and the paper's tables
    /// call GFLOPs (resnet18 at 224: 1.82).
    public var gflops: Double
    /// Minutes of training (the epochs' wall time, summed over interruptions).
    public var trainingMinutes: Double
    /// Where the teacher's logits came from: `live`, `stored` (all from the store), `mixed`,
    /// or `none` (no teacher).
    public var teacherLogits: String
    /// Whether the model is on the Pareto front of top-1 against images/s.
    public var onParetoFront: Bool
    /// Training batches whose teacher logits came from the store / from the live teacher
    /// (timed through the store), and the seconds the live teacher took for them.
    public var batchesStored = 0, batchesLive = 0, teacherSeconds = 0.0

    enum CodingKeys: String, CodingKey {
        case model, architecture, inputSize = "input_size", top1, top5, isEMA = "ema", bestEpoch = "best_epoch"
        case imagesPerSecond = "images_per_second", latencyMilliseconds = "ms_per_image_batch1", parameters = "params", gflops
        case trainingMinutes = "training_minutes", teacherLogits = "teacher_logits", onParetoFront = "pareto"
        case batchesStored = "batches_stored", batchesLive = "batches_live", teacherSeconds = "teacher_seconds"
    }

    /// Makes a row (not yet placed on or off the front).
    public init(model: String, architecture: String, inputSize: Int, top1: Double, top5: Double, isEMA: Bool, bestEpoch: Int,
                imagesPerSecond: Double, latencyMilliseconds: Double, parameters: Int, gflops: Double,
                trainingMinutes: Double, teacherLogits: String) {
        self.model = model
        self.architecture = architecture
        self.inputSize = inputSize
        self.top1 = top1
        self.top5 = top5
        self.isEMA = isEMA
        self.bestEpoch = bestEpoch
        self.imagesPerSecond = imagesPerSecond
        self.latencyMilliseconds = latencyMilliseconds
        self.parameters = parameters
        self.gflops = gflops
        self.trainingMinutes = trainingMinutes
        self.teacherLogits = teacherLogits
        onParetoFront = false
    }
}

/// How the teacher's logits were shared across the comparison, and what it saved.
public struct TeacherLogitsSummary: Codable, Sendable, Equatable {
    /// Seconds the live teacher ran during training, over all models.
    public var teacherSeconds: Double
    /// Batches served from the store / computed live, over all models.
    public var batchesStored: Int, batchesLive: Int
    /// Training seconds of the models that ran the teacher live for every batch.
    public var liveTrainingSeconds: Double
    /// The teacher's share of a live model's training time (teacher seconds per live batch ×
    /// live batches of those models ÷ their training seconds).
    public var teacherShare: Double
    /// Teacher seconds the stored batches did not spend (stored batches × seconds per live batch).
    public var secondsSaved: Double
    /// Bytes of the store files.
    public var storeBytes: Int

    /// The summary of `rows` (nil when no batch went through a store).
    public init?(rows: [ComparisonRow], storeBytes: Int) {
        let live = rows.filter { $0.batchesLive > 0 && $0.batchesStored == 0 }
        let batchesLive = rows.reduce(0) { $0 + $1.batchesLive }, batchesStored = rows.reduce(0) { $0 + $1.batchesStored }
        guard batchesLive + batchesStored > 0 else { return nil }
        teacherSeconds = rows.reduce(0) { $0 + $1.teacherSeconds }
        self.batchesLive = batchesLive
        self.batchesStored = batchesStored
        liveTrainingSeconds = live.reduce(0) { $0 + $1.trainingMinutes * 60 }
        let liveTeacherSeconds = live.reduce(0) { $0 + $1.teacherSeconds }
        teacherShare = liveTrainingSeconds > 0 ? liveTeacherSeconds / liveTrainingSeconds : 0
        secondsSaved = batchesLive > 0 ? Double(batchesStored) * teacherSeconds / Double(batchesLive) : 0
        self.storeBytes = storeBytes
    }

    enum CodingKeys: String, CodingKey {
        case teacherSeconds = "teacher_seconds", batchesStored = "batches_stored", batchesLive = "batches_live"
        case liveTrainingSeconds = "live_training_seconds", teacherShare = "teacher_share", secondsSaved = "seconds_saved"
        case storeBytes = "store_bytes"
    }
}

/// How speed was measured (the same for every model).
public struct ComparisonSpeedSettings: Codable, Sendable, Equatable {
    /// Batch of the throughput figure (64, as the paper).
    public var throughputBatch = 64
    /// Batch of the latency figure (1).
    public var latencyBatch = 1
    /// Compute threads.
    public var threads: Int
    /// Minimum seconds each figure is measured for (its median over the runs).
    public var minimumSeconds: Double

    enum CodingKeys: String, CodingKey {
        case throughputBatch = "throughput_batch", latencyBatch = "latency_batch", threads, minimumSeconds = "minimum_seconds"
    }

    /// The settings for `threads` threads.
    public init(threads: Int, minimumSeconds: Double = 2) {
        self.threads = threads
        self.minimumSeconds = minimumSeconds
    }
}

/// `compare.json`: the comparison's settings and one row per finished model; `complete` once
/// every listed model is in it (a resumed comparison keeps the finished rows).
public struct ComparisonReport: Codable, Sendable, Equatable {
    /// The dataset.
    public var data: String
    /// The models in the order given.
    public var models: [String]
    /// Epochs before cooldown, batch size, common input size, seed, teacher.
    public var epochs: Int, batchSize: Int, inputSize: Int?, seed: UInt64
    /// The teacher's architecture (nil without distillation).
    public var teacher: String?
    /// The teacher's validation top-1 (%).
    public var teacherTop1: Double?
    /// How speed was measured.
    public var speed: ComparisonSpeedSettings
    /// What GFLOPs count.
    public var flopConvention = "multiply-accumulates of convolutions and matrix products (timm/fvcore/paper convention)"
    /// Finished models.
    public var rows: [ComparisonRow]
    /// Teacher-logits sharing, once a model has trained.
    public var teacherLogits: TeacherLogitsSummary?
    /// Whether every model has finished.
    public var complete: Bool

    enum CodingKeys: String, CodingKey {
        case data, models, epochs, batchSize = "batch_size", inputSize = "input_size", seed, teacher
        case teacherTop1 = "teacher_top1", speed, flopConvention = "flop_convention", rows, teacherLogits = "teacher_logits", complete
    }

    /// A report of `models` with no finished row yet.
    public init(data: String, models: [String], epochs: Int, batchSize: Int, inputSize: Int?, seed: UInt64,
                teacher: String?, speed: ComparisonSpeedSettings) {
        self.data = data
        self.models = models
        self.epochs = epochs
        self.batchSize = batchSize
        self.inputSize = inputSize
        self.seed = seed
        self.teacher = teacher
        self.speed = speed
        rows = []
        complete = false
    }

    /// Models on the Pareto front of top-1 against images/s, fastest first.
    public var paretoFront: [ComparisonRow] {
        Pareto.front(rows.map { (accuracy: $0.top1, speed: $0.imagesPerSecond) }).map { rows[$0] }
    }

    /// Marks every row on or off the front.
    public mutating func updateFront() {
        let front = Set(Pareto.front(rows.map { (accuracy: $0.top1, speed: $0.imagesPerSecond) }))
        for i in rows.indices { rows[i].onParetoFront = front.contains(i) }
    }

    /// The report as pretty JSON.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Reads `compare.json`; a damaged file is an error that names it.
    public static func read(_ url: URL) throws -> ComparisonReport {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainingError.invalidData("cannot read \(url.path): \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(ComparisonReport.self, from: data)
        } catch {
            throw TrainingError.invalidData("\(url.path) is not a comparison report (\(error)); delete it or choose another --output")
        }
    }

    /// `compare.csv`: one line per model with the table's columns.
    public func csv() -> String {
        var lines = ["model,input_size,top1,top5,ema,images_per_second,ms_per_image_batch1,params,gflops,training_minutes,pareto"]
        for r in rows {
            let fields = [csvField(r.model), "\(r.inputSize)", f(r.top1, 2), f(r.top5, 2), r.isEMA ? "yes" : "no",
                          f(r.imagesPerSecond, 1), f(r.latencyMilliseconds, 3), "\(r.parameters)", f(r.gflops, 4),
                          f(r.trainingMinutes, 2), r.onParetoFront ? "yes" : "no"]
            lines.append(fields.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    private func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
}

/// The Pareto front of accuracy against speed: the points that no other point beats on one
/// axis without losing on the other.
public enum Pareto {
    /// Indices of the points on the front, by speed descending. A point is dominated when
    /// another is at least as accurate and at least as fast and strictly better in one; equal
    /// points are all on the front.
    public static func front(_ points: [(accuracy: Double, speed: Double)]) -> [Int] {
        let indices = points.indices.filter { i in
            !points.indices.contains { j in
                j != i && points[j].accuracy >= points[i].accuracy && points[j].speed >= points[i].speed
                    && (points[j].accuracy > points[i].accuracy || points[j].speed > points[i].speed)
            }
        }
        return indices.sorted { points[$0].speed > points[$1].speed }
    }
}
