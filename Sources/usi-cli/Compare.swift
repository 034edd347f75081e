import ArgumentParser
import Foundation
import USI

/// `usi compare`: the paper's fair speed–accuracy comparison on your data and your CPU — every
/// listed model trained with the same USI command, the teacher run once, speed measured alike.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train several backbones with the same USI command and compare accuracy against CPU speed.",
        discussion: """
        Each model trains into OUTPUT/<model>/ (a normal run directory), one after another, with the same teacher, \
        seed, epochs and data. The teacher's logits on the shared batches are computed once and stored in \
        OUTPUT/teacher-logits/; later students read them back (a model with its own input size, NAME@SIZE, gets the \
        live teacher). Then every model is timed: inference images/s at batch 64 and ms/image at batch 1 (median, \
        BatchNorm folded). Writes OUTPUT/compare.json, compare.csv, compare.html (top-1 against images/s, the \
        Pareto front, the table) and compare.svg (the chart alone). --resume keeps the finished models and continues the unfinished one exactly.
        """)

    @Argument(help: "Image folder (train/ and val/), or omit for the embedded Fashion-MNIST default.")
    var data: String?
    @Option(help: "Comma-separated architectures, each optionally NAME@SIZE with its own input size.")
    var models: String
    @Option(help: "Epochs (before cooldown). Default: 5 on the embedded default, 300 otherwise.")
    var epochs: Int?
    @Option(help: "Images per step.")
    var batchSize = 128
    @Option(help: "Common input side. Default: 32 on the embedded default, each model's otherwise.")
    var inputSize: Int?
    @Option(help: "Teacher architecture (with --teacher-weights).")
    var teacher: String?
    @Option(help: "Teacher weights (safetensors or .pth, timm names, trained on the same classes).")
    var teacherWeights: String?
    @Option(help: "Precision of the teacher's GEMM inputs, fp32 or bf16. Default: bf16 on CPUs with AVX512-BF16, fp32 elsewhere.")
    var teacherPrecision: InferencePrecision = .teacherDefault
    @Flag(help: "Train without a teacher (the same recipe, cross-entropy only).")
    var noKd = false
    @Option(help: "Comparison directory.")
    var output = "runs/compare"
    @Flag(help: "Continue the comparison in --output: finished models are kept, the unfinished one resumes from its last checkpoint.")
    var resume = false
    @Option(help: "Random seed (the same for every model).")
    var seed: UInt64 = 0
    @Option(help: "Data-loading threads.")
    var workers = 2
    @Option(help: "Minutes between mid-epoch checkpoints (0 = only at the end of each epoch).")
    var checkpointMinutes: Double = 30
    @Flag(help: "Run the live teacher for every model instead of storing its logits.")
    var liveTeacher = false
    @Option(help: "Probabilities kept per image in the teacher-logits store above 100 classes (all logits are kept up to 100).")
    var logitsTopK = TeacherLogitsStore.defaultTopK
    @Option(help: "Largest teacher-logits store in GiB; past it the live teacher runs.")
    var logitsStoreGib: Double = 4
    @Option(help: "Seconds each speed figure is measured for at least (the median of the runs is kept).")
    var speedSeconds: Double = 2
    @Option(help: ArgumentHelp("Use only the first N training images (short trials, tests).", visibility: .hidden))
    var trainImages: Int?
    @Option(help: ArgumentHelp("Use only the first N validation images (short trials, tests).", visibility: .hidden))
    var validationImages: Int?
    @Option(help: ArgumentHelp("Tests: cancel the comparison after N training steps in this process (exit status 1).",
                               visibility: .hidden))
    var cancelAfterSteps: Int?
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if noKd && (teacher != nil || teacherWeights != nil) { throw ValidationError("--no-kd contradicts --teacher/--teacher-weights") }
        if teacher != nil && teacherWeights == nil { throw ValidationError("--teacher needs --teacher-weights") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if batchSize < 2 { throw ValidationError("--batch-size must be at least 2") }
        if let inputSize, inputSize < 8 { throw ValidationError("--input-size must be at least 8") }
        if workers < 1 { throw ValidationError("--workers must be at least 1") }
        if logitsTopK < 1 { throw ValidationError("--logits-top-k must be at least 1") }
        if !(logitsStoreGib >= 0 && logitsStoreGib <= 1e6) { throw ValidationError("--logits-store-gib must be in 0…1000000") }
        if !(speedSeconds > 0 && speedSeconds <= 3600) { throw ValidationError("--speed-seconds must be in (0, 3600]") }
        if !(checkpointMinutes >= 0 && checkpointMinutes <= 1e6) { throw ValidationError("--checkpoint-minutes must be in 0…1000000") }
        if let trainImages, trainImages < 2 { throw ValidationError("--train-images must be at least 2") }
        if let validationImages, validationImages < 1 { throw ValidationError("--validation-images must be at least 1") }
        do { _ = try ComparisonModel.list(models) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        try threadOptions.apply()
        let specs = try ComparisonModel.list(models)
        let embedded = data == nil || data == "fashion-mnist"
        let trainingData = try sliced(loadTrainingData(data))
        let classes = trainingData.classNames.count
        let channels = embedded ? EmbeddedDefault.inputChannels : 3
        let commonSize = inputSize ?? (embedded ? EmbeddedDefault.inputSize : nil)
        let teacherSource = noKd ? nil : try teacherWeightsURL(embedded: embedded)
        let teacherChecksum = try teacherSource.map { try TeacherLogitsKey.weightsChecksum(of: $0) }
        let epochCount = epochs ?? (embedded ? EmbeddedDefault.epochs : 300)
        var config = USIConfig.usi(epochs: epochCount, batchSize: batchSize)
        config.seed = seed
        config.workers = workers

        let directory = try ComparisonOutput(directory: URL(fileURLWithPath: output))
        let speedSettings = ComparisonSpeedSettings(threads: Threading.threadCount, minimumSeconds: speedSeconds)
        var report = ComparisonReport(data: trainingData.name, models: specs.map(\.description), epochs: epochCount,
                                      batchSize: batchSize, inputSize: commonSize, seed: seed, teacher: nil, speed: speedSettings)
        if resume, let previous = try directory.previousReport() {
            guard previous.epochs == report.epochs, previous.batchSize == report.batchSize, previous.seed == report.seed,
                  previous.inputSize == report.inputSize, previous.data == report.data else {
                throw ValidationError("--resume: \(directory.reportURL.path) was written by a comparison with other settings (epochs, batch size, seed, input size or data)")
            }
            report.rows = previous.rows.filter { row in specs.contains { $0.description == row.model } }
            report.teacher = previous.teacher
            report.teacherTop1 = previous.teacherTop1
        }
        let stepsTaken = StepCounter()
        for (number, spec) in specs.enumerated() {
            let heading = "model \(number + 1) of \(specs.count): \(spec)"
            if report.rows.contains(where: { $0.model == spec.description }) {
                print("\(heading): finished in an earlier run, kept")
                continue
            }
            print("\n\(heading)")
            let student = try Models.create(spec.architecture, classes: classes, inputChannels: channels,
                                            inputSize: spec.inputSize ?? commonSize, seed: seed)
            let distiller = try teacherSource.map { url in
                try Distiller(teacher: try loadTeacher(url, student: student.config), student: student.config,
                              precision: teacherPrecision)
            }
            let runDirectory = directory.runDirectory(of: spec)
            let trainer = try USITrainer(student: student, distiller: distiller, data: trainingData, config: config,
                                         outputDirectory: runDirectory)
            trainer.checkpointInterval = checkpointMinutes > 0 ? .milliseconds(Int64(checkpointMinutes * 60_000)) : nil
            var store: TeacherLogitsStore?
            if let distiller, let teacherChecksum, !liveTeacher {
                let key = try TeacherLogitsKey(teacher: distiller.teacher.config, teacherWeights: teacherChecksum,
                                               precision: distiller.precision, convolutions: distiller.convolutions,
                                               config: config, recipe: trainer.recipe,
                                               student: student.config, data: trainingData)
                let opened = try TeacherLogitsStore(directory: directory.storeDirectory, key: key, classes: classes,
                                                    topK: logitsTopK, byteLimit: Int(logitsStoreGib * Double(1 << 30)))
                opened.evaluationKey = TeacherEvaluationKey(teacher: distiller.teacher.config, teacherWeights: teacherChecksum,
                                                            precision: distiller.precision, convolutions: distiller.convolutions,
                                                            student: student.config,
                                                            data: trainingData)
                print(opened.count > 0 ? "teacher logits: \(opened.count) stored batches in \(opened.url.lastPathComponent)"
                                       : "teacher logits: live for this model, stored in \(opened.url.lastPathComponent) for the next")
                trainer.teacherLogitsSource = opened
                store = opened
            }
            let display = ProgressDisplay(totalEpochs: trainer.totalEpochs)
            trainer.onEvent = { [cancelAfterSteps, weak trainer] event in
                display.handle(event)
                if case .step = event, let cancelAfterSteps, stepsTaken.increment() >= cancelAfterSteps { trainer?.cancel() }
            }
            let fitted = try trainer.fit(resume: resume && directory.hasCommittedRun(spec))
            print("")
            let speed = InferenceSpeed.measure(try Models.create(spec.architecture, classes: classes, inputChannels: channels,
                                                                 inputSize: student.config.inputSize, seed: seed),
                                               settings: speedSettings)
            var row = ComparisonRow(model: spec.description, architecture: spec.architecture, inputSize: student.config.inputSize,
                                    top1: fitted.bestTop1, top5: fitted.bestTop5, isEMA: fitted.bestIsEMA, bestEpoch: fitted.bestEpoch,
                                    imagesPerSecond: speed.imagesPerSecond, latencyMilliseconds: speed.latencyMilliseconds,
                                    parameters: speed.parameters, gflops: speed.gflops,
                                    trainingMinutes: fitted.epochs.reduce(0) { $0 + $1.seconds } / 60,
                                    teacherLogits: distiller == nil ? "none" : "live")
            if let store {
                row.batchesStored = store.served
                row.batchesLive = store.computed
                row.teacherSeconds = store.teacherSeconds
                row.teacherLogits = store.served == 0 ? "live" : store.computed == 0 ? "stored" : "mixed"
            }
            let accuracy = "top-1 \(format(row.top1, digits: 2)) %" + (row.isEMA ? " (EMA)" : "")
            let timing = "\(format(row.imagesPerSecond, digits: 0)) img/s at batch 64, \(format(row.latencyMilliseconds, digits: 2)) ms at batch 1"
            print("\(spec): \(accuracy), \(timing), \(format(row.gflops, digits: 4)) GFLOPs, teacher logits \(row.teacherLogits)")
            report.teacher = distiller?.teacher.config.architecture
            report.teacherTop1 = fitted.teacherTop1 ?? report.teacherTop1
            report.rows.append(row)
            let order = specs.map(\.description)
            report.rows.sort { a, b in (order.firstIndex(of: a.model) ?? 0) < (order.firstIndex(of: b.model) ?? 0) }
            report.updateFront()
            report.teacherLogits = TeacherLogitsSummary(rows: report.rows, storeBytes: directory.storeBytes)
            try directory.write(report)
        }
        report.complete = report.rows.count == specs.count
        report.updateFront()
        report.teacherLogits = TeacherLogitsSummary(rows: report.rows, storeBytes: directory.storeBytes)
        try directory.write(report)
        printSummary(report, directory: directory)
    }

    private func printSummary(_ report: ComparisonReport, directory: ComparisonOutput) {
        print("\nthreads \(report.speed.threads)")
        print("model".rightPadded(26) + "size".leftPadded(5) + "top-1".leftPadded(8) + "img/s".leftPadded(9)
              + "ms@1".leftPadded(8) + "GFLOPs".leftPadded(9) + "min".leftPadded(7) + "  front")
        for r in report.rows {
            print(r.model.rightPadded(26) + String(r.inputSize).leftPadded(5) + format(r.top1, digits: 2).leftPadded(8)
                  + format(r.imagesPerSecond, digits: 0).leftPadded(9) + format(r.latencyMilliseconds, digits: 2).leftPadded(8)
                  + format(r.gflops, digits: 4).leftPadded(9) + format(r.trainingMinutes, digits: 1).leftPadded(7)
                  + (r.onParetoFront ? "  ●" : ""))
        }
        print("Pareto front: " + report.paretoFront.map(\.model).joined(separator: " → "))
        if let t = report.teacherLogits {
            print("teacher logits: \(t.batchesStored) batches stored, \(t.batchesLive) live; teacher share of a live model's training "
                  + "\(format(t.teacherShare * 100, digits: 0)) %, \(format(t.secondsSaved, digits: 0)) s of teacher time saved")
        }
        print("report: \(directory.directory.appendingPathComponent("compare.html").path)")
    }

    private func sliced(_ data: TrainingData) throws -> TrainingData {
        guard trainImages != nil || validationImages != nil else { return data }
        let train = try trainImages.map { try DatasetSubset(data.train, first: min($0, data.train.count)) }
        let validation = try validationImages.map { try DatasetSubset(data.validation, first: min($0, data.validation.count)) }
        return try TrainingData(train: train ?? data.train, validation: validation ?? data.validation, name: data.name,
                                evaluationCropFraction: data.evaluationCropFraction)
    }

    private func teacherWeightsURL(embedded: Bool) throws -> URL {
        if let teacherWeights { return URL(fileURLWithPath: teacherWeights) }
        guard embedded else {
            throw ValidationError("name a teacher for your data (--teacher NAME --teacher-weights FILE) or compare without one (--no-kd)")
        }
        guard let url = EmbeddedDefault.teacherWeightsURL else {
            throw ValidationError("the bundled Fashion-MNIST teacher (\(EmbeddedDefault.teacherFileName)) is missing; pass --teacher/--teacher-weights or --no-kd")
        }
        return url
    }

    /// A fresh teacher for each student (the distiller folds and packs it for that student).
    private func loadTeacher(_ url: URL, student: BackboneConfig) throws -> any Backbone {
        do {
            let file = try SafeTensorsFile(weightsAt: url)
            let metadata = try WeightsMetadata(file.metadata, source: url.path)
            return try Models.create(fromWeights: file, source: url.path, architecture: teacher,
                                     classes: metadata.classes ?? student.classes,
                                     inputSize: metadata.inputSize ?? inputSize).model
        } catch let error as StateDictError {
            throw ValidationError("teacher weights \(url.path) do not fit \(teacher ?? "the named architecture"): \(error.report)")
        }
    }
}

/// Training steps of a comparison so far (the hidden `--cancel-after-steps` test hook).
final class StepCounter: @unchecked Sendable {
    private var count = 0
    /// Adds one step and returns the total; called on the training thread only.
    func increment() -> Int {
        count += 1
        return count
    }
}
