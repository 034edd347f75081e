import ArgumentParser
import Foundation
import USI

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a backbone with the USI recipe (or the plain baseline).",
        discussion: """
        With no DATA, trains on Fashion-MNIST (Debian's dataset-fashion-mnist) at 32×32 grey with the bundled \
        teacher. DATA is a folder with train/<class>/*.jpg and val/<class>/*.jpg (or validation/); PNG and WebP files are read too.
        The run directory gets config.json, metrics.jsonl, last.safetensors (the full training state), \
        best.safetensors (timm-loadable weights of the better of model and EMA) and report.html.
        """)

    @Argument(help: "Image folder (train/ and val/), or omit for the embedded Fashion-MNIST default.")
    var data: String?
    @Option(help: "Student architecture (`usi models` lists them).")
    var model = EmbeddedDefault.studentArchitecture
    @Option(help: "Teacher architecture (with --teacher-weights).")
    var teacher: String?
    @Option(help: "Teacher weights (safetensors or a PyTorch .pth checkpoint, timm names, trained on the same classes; `usi teacher` makes them from pretrained weights).")
    var teacherWeights: String?
    @Option(help: "Precision of the teacher's GEMM inputs, fp32 or bf16 (FP32 accumulation). Default: bf16 on CPUs with AVX512-BF16, fp32 elsewhere.")
    var teacherPrecision: InferencePrecision = .teacherDefault
    @Option(help: "Start the student from these weights (e.g. timm ImageNet weights); a classifier of another size is re-initialised.")
    var initialWeights: String?
    @Flag(help: "Train without a teacher (the same recipe, cross-entropy only).")
    var noKd = false
    @Option(help: "usi or plain.")
    var recipe: USIConfig.Recipe = .usi
    @Option(help: "Epochs (before cooldown). Default: 5 on the embedded default, 300 otherwise.")
    var epochs: Int?
    @Option(help: "Images per step.")
    var batchSize = 128
    @Option(help: "Input side in pixels. Default: 32 on the embedded default, the model's otherwise.")
    var inputSize: Int?
    @Option(help: "Run directory.")
    var output = "runs/usi"
    @Flag(help: "Continue the run in --output from its last committed checkpoint (from scratch when there is none yet).")
    var resume = false
    @Option(help: "Minutes between mid-epoch checkpoints, which --resume continues from exactly (0 = only at the end of each epoch).")
    var checkpointMinutes: Double = 30
    @Option(help: "Random seed.")
    var seed: UInt64 = 0
    @Option(help: ArgumentHelp("Research only: override the recipe's run-length knob r in (0, 1] (default √(epochs/300)).",
                               visibility: .hidden))
    var runScale: Double?
    @Option(name: .customLong("research-override"),
            help: ArgumentHelp("Research only: replace one resolved recipe setting, NAME=VALUE (repeatable).",
                               visibility: .hidden))
    var researchOverrides: [String] = []
    @Option(help: "Data-loading threads.")
    var workers = 2
    @Option(help: ArgumentHelp("Use only the first N training images (short trials, tests).", visibility: .hidden))
    var trainImages: Int?
    @Option(help: ArgumentHelp("Use only the first N validation images (short trials, tests).", visibility: .hidden))
    var validationImages: Int?
    @Option(help: "Steps between the progress lines of metrics.jsonl.")
    var logInterval = 50
    @Option(help: "Train as N data-parallel ranks would, in this one process: each batch in N shards with their own BatchNorm statistics and mixing pairs, gradients averaged (reproduces `mpirun -np N`).")
    var emulateRanks = 1
    @Flag(help: "Data-parallel: BatchNorm statistics over the whole global batch (all ranks' and emulated shards' rows), as PyTorch's SyncBatchNorm; default: per rank, as DDP.")
    var syncBn = false
    @Option(help: ArgumentHelp("MiB per gradient bucket of a data-parallel step (DDP's 25; for tests and experiments).", visibility: .hidden))
    var gradientBucketMib = Double(GradientBuckets.defaultBucketBytes) / 1_048_576
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if noKd && (teacher != nil || teacherWeights != nil) { throw ValidationError("--no-kd contradicts --teacher/--teacher-weights") }
        if recipe == .plain && (teacher != nil || teacherWeights != nil) {
            throw ValidationError("--recipe plain is the baseline without a teacher; drop --teacher/--teacher-weights or use --recipe usi")
        }
        // --teacher-weights alone is enough when the file's metadata names the architecture.
        if teacher != nil && teacherWeights == nil { throw ValidationError("--teacher needs --teacher-weights") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if batchSize < 2 { throw ValidationError("--batch-size must be at least 2") }
        if let inputSize, inputSize < 8 { throw ValidationError("--input-size must be at least 8") }
        if workers < 1 { throw ValidationError("--workers must be at least 1") }
        if logInterval < 1 { throw ValidationError("--log-interval must be at least 1") }
        if emulateRanks < 1 { throw ValidationError("--emulate-ranks must be at least 1") }
        if !(gradientBucketMib > 0 && gradientBucketMib <= 4096) { throw ValidationError("--gradient-bucket-mib must be in (0, 4096]") }
        if let trainImages, trainImages < 2 { throw ValidationError("--train-images must be at least 2") }
        if let validationImages, validationImages < 1 { throw ValidationError("--validation-images must be at least 1") }
        if !(checkpointMinutes >= 0 && checkpointMinutes <= 1e6) { throw ValidationError("--checkpoint-minutes must be in 0…1000000") }
    }

    func run() throws {
        try threadOptions.apply()
        // Under mpirun/srun, the Open MPI communicator; otherwise one process, nothing loaded.
        let communicator = try Distributed.communicator()
        let shards = communicator.size * emulateRanks
        if batchSize % shards != 0 {
            throw ValidationError("--batch-size \(batchSize) is the global batch of all \(shards) ranks and must be a multiple of \(shards) (per-rank batch = global / ranks); use --batch-size \(max(shards, batchSize / shards * shards))")
        }
        let embedded = data == nil || data == "fashion-mnist"
        var trainingData = try loadTrainingData(data)
        if trainImages != nil || validationImages != nil {
            let train = try trainImages.map { try DatasetSubset(trainingData.train, first: min($0, trainingData.train.count)) }
            let validation = try validationImages.map {
                try DatasetSubset(trainingData.validation, first: min($0, trainingData.validation.count))
            }
            trainingData = try TrainingData(train: train ?? trainingData.train, validation: validation ?? trainingData.validation,
                                            name: trainingData.name, evaluationCropFraction: trainingData.evaluationCropFraction)
        }
        let classes = trainingData.classNames.count
        let channels = embedded ? EmbeddedDefault.inputChannels : 3
        let size = inputSize ?? (embedded ? EmbeddedDefault.inputSize : nil)
        let student = try Models.create(model, classes: classes, inputChannels: channels, inputSize: size, seed: seed)
        if let initialWeights {
            let report = try student.load(SafeTensorsFile(weightsAt: URL(fileURLWithPath: initialWeights)), strict: false,
                                          skippingMismatchedPrefixes: student.classifierKeyPrefixes)
            print("initial weights \(initialWeights): \(report)")
        }

        var config = recipe == .usi ? USIConfig.usi(epochs: epochs ?? (embedded ? EmbeddedDefault.epochs : 300), batchSize: batchSize)
                                    : USIConfig.plain(epochs: epochs ?? (embedded ? EmbeddedDefault.epochs : 300), batchSize: batchSize)
        config.seed = seed
        if syncBn { config.syncBatchNorm = true }
        config.workers = workers
        var research = ResearchOverrides()
        research.runScale = runScale
        for item in researchOverrides {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let value = Double(parts[1]) else {
                throw ValidationError("--research-override expects NAME=VALUE, got \(item)")
            }
            try research.set(parts[0], to: value)
        }
        config.research = research == ResearchOverrides() ? nil : research
        // The plain baseline is compared with USI without a teacher; --no-kd drops it from USI.
        let distiller = recipe == .usi && !noKd ? try makeDistiller(embedded: embedded, student: student.config) : nil
        // Rank 0 owns the outputs (run directory, progress, summary); the other ranks write nothing.
        let trainer = try USITrainer(student: student, distiller: distiller, data: trainingData, config: config,
                                     outputDirectory: communicator.isRoot ? URL(fileURLWithPath: output) : nil,
                                     communicator: communicator, emulatedRanks: emulateRanks)
        trainer.checkpointInterval = checkpointMinutes > 0 ? .milliseconds(Int64(checkpointMinutes * 60_000)) : nil
        trainer.logInterval = logInterval
        trainer.step.gradientBucketBytes = max(4, Int(gradientBucketMib * 1_048_576))
        guard communicator.isRoot else {
            trainer.logger.logLevel = .error
            _ = try trainer.fit(resume: resume)
            return
        }
        let display = ProgressDisplay(totalEpochs: trainer.totalEpochs)
        trainer.onEvent = { display.handle($0) }
        if communicator.size > 1 {
            print("data-parallel: \(communicator.size) ranks × \(emulateRanks) shard(s), \(batchSize / shards) images per shard, global batch \(batchSize)")
        }
        let report = try trainer.fit(resume: resume)
        print("")
        print("student \(model): best top-1 \(format(report.bestTop1, digits: 2)) % (top-5 \(format(report.bestTop5, digits: 2)) %, epoch \(report.bestEpoch)\(report.bestIsEMA ? ", EMA weights" : ""))")
        if let teacherTop1 = report.teacherTop1 {
            print("teacher \(distiller!.teacher.config.architecture): top-1 \(format(teacherTop1, digits: 2)) %")
        }
        if let weights = report.bestWeightsPath { print("weights: \(weights)") }
        if let page = report.reportPath { print("report: \(page)") }
    }

    private func makeDistiller(embedded: Bool, student: BackboneConfig) throws -> Distiller {
        if let teacherWeights {
            let teacherModel: any Backbone
            do {
                let file = try SafeTensorsFile(weightsAt: URL(fileURLWithPath: teacherWeights))
                // A timm state_dict carries no metadata: then the teacher has the student's classes and size.
                let metadata = try WeightsMetadata(file.metadata, source: teacherWeights)
                teacherModel = try Models.create(fromWeights: file, source: teacherWeights, architecture: teacher,
                                                 classes: metadata.classes ?? student.classes,
                                                 inputSize: metadata.inputSize ?? inputSize).model
            } catch let error as StateDictError {
                // A classifier of another size is a teacher for other classes: say how to make one for these.
                let fileClasses = Set(error.report.mismatched.compactMap { $0.module.first == student.classes ? $0.file.first : nil })
                if let teacher, fileClasses.count == 1, error.report.mismatched.allSatisfy({ $0.module.first == student.classes }) {
                    throw teacherClassMismatch(data: data, architecture: teacher, weights: teacherWeights,
                                               teacherClasses: fileClasses.first!, dataClasses: student.classes)
                }
                throw ValidationError("teacher weights \(teacherWeights) do not fit \(teacher ?? "the named architecture"): \(error.report)")
            }
            if teacherModel.config.classes != student.classes {
                throw teacherClassMismatch(data: data, architecture: teacherModel.config.architecture, weights: teacherWeights,
                                           teacherClasses: teacherModel.config.classes, dataClasses: student.classes)
            }
            return try Distiller(teacher: teacherModel, student: student, precision: teacherPrecision)
        }
        guard embedded else {
            throw ValidationError("name a teacher for your data (--teacher NAME --teacher-weights FILE) or train without one (--no-kd)")
        }
        guard EmbeddedDefault.teacherWeightsURL != nil else {
            throw ValidationError("the bundled Fashion-MNIST teacher (\(EmbeddedDefault.teacherFileName)) is missing; pass --teacher/--teacher-weights or --no-kd")
        }
        return try Distiller(teacher: EmbeddedDefault.teacher(), student: student, precision: teacherPrecision)
    }
}

extension USIConfig.Recipe: ExpressibleByArgument {}
