import Foundation
import Testing
import USI

/// A small CNN for fast training tests (any `Backbone` trains the same way).
final class SmallNet: Module, HeadedBackbone {
    private(set) var config: BackboneConfig
    let conv1: Conv2d, bn1: BatchNorm, conv2: Conv2d, bn2: BatchNorm
    private(set) var fc: Linear
    /// Makes the logits NaN from this forward call on (to test the NaN guard).
    var poisonAfterCalls: Int?
    private var calls = 0

    /// Dropout before `fc` and drop-path on the features when `stochastic`.
    @ModuleInfo(key: "drop") var dropout: Dropout? = nil
    @ModuleInfo(key: "drop_path") var dropPath: DropPath? = nil

    init(classes: Int = 10, inputChannels: Int = 1, inputSize: Int = 28, stochastic: Bool = false) {
        config = BackboneConfig(architecture: "smallnet", classes: classes, inputChannels: inputChannels,
                                inputSize: inputSize, cropFraction: 1, interpolation: .bilinear)
        conv1 = Conv2d(inputChannels: inputChannels, outputChannels: 16, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
        bn1 = BatchNorm(16)
        conv2 = Conv2d(inputChannels: 16, outputChannels: 32, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
        bn2 = BatchNorm(32)
        fc = Linear(inputFeatures: 32, outputFeatures: classes)
        dropout = stochastic ? Dropout(probability: 0.2) : nil
        dropPath = stochastic ? DropPath(probability: 0.1) : nil
        super.init()
    }

    func forwardFeatures(_ x: Tensor) -> Tensor {
        let y = relu(bn2(conv2(relu(bn1(conv1(x))))))
        return dropPath.map { $0(y) } ?? y
    }

    func forwardHead(_ features: Tensor, preLogits: Bool) -> Tensor {
        var pooled = globalAvgPool2d(features)
        if preLogits { return pooled }
        if let dropout { pooled = dropout(pooled) }
        calls += 1
        let logits = fc(pooled)
        if let limit = poisonAfterCalls, calls > limit, isTraining { return logits * Float.nan }
        return logits
    }

    func resetClassifier(classes: Int) {
        fc = Linear(inputFeatures: 32, outputFeatures: classes)
        config.classes = classes
    }

    var classifierPrefixes: [String] { ["fc."] }
}

/// A Fashion-MNIST slice: `trainCount` training and `validationCount` test images.
func fashionSlice(train trainCount: Int, validation validationCount: Int) throws -> TrainingData {
    try TrainingData(train: DatasetSubset(IDXDataset.fashionMNIST(split: .train), first: trainCount),
                     validation: DatasetSubset(IDXDataset.fashionMNIST(split: .test), first: validationCount),
                     name: "Fashion-MNIST slice")
}

/// The lines of a run's `metrics.jsonl` as JSON objects.
func metricsObjects(_ run: URL) throws -> [[String: Any]] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
}

func temporaryDirectory(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("usi-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try? FileManager.default.removeItem(at: url)
    return url
}

@Suite("USITrainer", .serialized)
struct TrainerTests {
    init() { Threading.setThreadCount(2) }

    /// The same two-conv network, data, schedule and augmentation in PyTorch reaches 43.3–47.7 % after
    /// 2 epochs over seeds 1–7 (Tools/fixtures/check_smallnet_training.py); ours reaches 46.3 %. Chance is
    /// 10 %. The bar sits below PyTorch's seed spread because float rounding differs between CPUs and a
    /// run this short amplifies it.
    @Test("a short real run learns Fashion-MNIST (≥ 40 % top-1 on 1 000 test images, like PyTorch) and writes its outputs")
    func learns() throws {
        let data = try fashionSlice(train: 6000, validation: 1000)
        var config = USIConfig.plain(epochs: 2, batchSize: 64)
        config.seed = 1
        let output = temporaryDirectory("learns")
        defer { try? FileManager.default.removeItem(at: output) }
        let trainer = try USITrainer(student: Initialization.withSeed(1) { SmallNet() }, distiller: nil, data: data,
                                     config: config, outputDirectory: output)
        let report = try trainer.fit()
        print("plain SmallNet, 2 epochs on 6000 images: top-1 \(report.bestTop1)")
        #expect(report.bestTop1 >= 40)
        for file in ["config.json", "metrics.jsonl", "last.safetensors", "checkpoint-best.safetensors", "best.safetensors", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent(file).path), "\(file) missing")
        }
        let lines = try metricsObjects(output)
        // 6000 / 64 = 93 steps per epoch: interval lines at steps 50 and 93, then the epoch line.
        let epochLines = lines.filter { $0["top1"] != nil }, intervalLines = lines.filter { $0["top1"] == nil }
        #expect(epochLines.count == trainer.totalEpochs)
        #expect(intervalLines.map { $0["step"] as? Int } == Array(repeating: [50, 93], count: trainer.totalEpochs).flatMap { $0 })
        #expect(lines.count == 3 * trainer.totalEpochs && lines[2]["top1"] != nil)
        for key in ["epoch", "lr", "train_loss", "top1", "top5", "seconds"] { #expect(epochLines[0][key] != nil, "epoch lines lack \(key)") }
        for key in ["epoch", "step", "steps_per_epoch", "loss", "loss_avg", "lr", "img_s"] {
            #expect(intervalLines[0][key] != nil, "interval lines lack \(key)")
        }
        let html = try String(contentsOf: output.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("Validation top-1"))
        // best.safetensors is a plain state dict that loads strictly into a fresh model.
        let fresh = SmallNet()
        try fresh.load(contentsOf: output.appendingPathComponent("best.safetensors"))
    }

    @Test("a killed run resumes bit-identically (also with dropout and drop-path)", arguments: [false, true])
    func resume(stochastic: Bool) throws {
        let data = try fashionSlice(train: 1536, validation: 256)
        var config = USIConfig.usi(epochs: 2, batchSize: 64)
        config.seed = 7
        func model() -> SmallNet { Initialization.withSeed(3) { SmallNet(stochastic: stochastic) } }

        let straight = temporaryDirectory("straight")
        let interrupted = temporaryDirectory("interrupted")
        defer { for u in [straight, interrupted] { try? FileManager.default.removeItem(at: u) } }
        let a = try USITrainer(student: model(), distiller: nil, data: data, config: config, outputDirectory: straight)
        a.logInterval = 10
        _ = try a.fit()

        // Killed in the middle of the second epoch, after an interval line that the resumed run
        // writes again: the resumed file must not keep the stale one.
        let b = try USITrainer(student: model(), distiller: nil, data: data, config: config, outputDirectory: interrupted)
        b.logInterval = 10
        b.onEvent = { [b] event in if case let .step(p) = event, p.epoch == 1, p.step == 15 { b.cancel() } }
        #expect(throws: TrainingError.cancelled) { try b.fit() }
        let c = try USITrainer(student: model(), distiller: nil, data: data, config: config, outputDirectory: interrupted)
        c.logInterval = 10
        _ = try c.fit(resume: true)

        let x = try SafeTensorsFile(contentsOf: straight.appendingPathComponent("last.safetensors"))
        let y = try SafeTensorsFile(contentsOf: interrupted.appendingPathComponent("last.safetensors"))
        #expect(x.names == y.names)
        for name in x.names {
            #expect(try x.tensor(name).toArray() == y.tensor(name).toArray(), "\(name) differs after resume")
        }
        // Every line but its timings: epoch lines (loss, accuracy) and interval lines (step, loss).
        func losses(_ lines: [[String: Any]]) -> [String] {
            lines.map { o in "\(o["epoch"]!) \(o["step"] ?? "-") \(o["loss"] ?? o["train_loss"]!) \(o["top1"] ?? "-")" }
        }
        let straightLines = try metricsObjects(straight)
        #expect(straightLines.count == 2 * 4)  // 24 steps per epoch: interval lines at 10, 20, 24, then the epoch line
        #expect(losses(straightLines) == losses(try metricsObjects(interrupted)))
    }

    @Test("a NaN loss stops training with a clear error and keeps the last good checkpoint")
    func nanLoss() throws {
        let data = try fashionSlice(train: 640, validation: 128)
        var config = USIConfig.plain(epochs: 3, batchSize: 64)
        config.seed = 2
        let output = temporaryDirectory("nan")
        defer { try? FileManager.default.removeItem(at: output) }
        let net = SmallNet()
        net.poisonAfterCalls = 12  // the first epoch (10 steps) completes, the second fails
        let trainer = try USITrainer(student: net, distiller: nil, data: data, config: config, outputDirectory: output)
        do {
            _ = try trainer.fit()
            Issue.record("training with NaN logits did not stop")
        } catch let error as TrainingError {
            guard case let .nonFiniteLoss(epoch, _, checkpoint) = error else { Issue.record("wrong error \(error)"); return }
            #expect(epoch == 1)
            #expect(checkpoint == output.appendingPathComponent("last.safetensors").path)
            #expect(error.description.contains("NaN"))
            let file = try SafeTensorsFile(contentsOf: output.appendingPathComponent("last.safetensors"))
            #expect(file.metadata["epoch"] == "0")
            #expect(try !file.tensor("model.fc.weight").hasNonFinite)
        }
    }

    @Test("a teacher distils through the Distiller; input re-normalisation is exact")
    func distillation() throws {
        let teacher = Initialization.withSeed(5) { SmallNet(inputChannels: 3, inputSize: 28) }
        // A grey student batch in the student's normalisation maps to the teacher's RGB one.
        var student = BackboneConfig(architecture: "s", classes: 10, inputChannels: 1, inputSize: 28, mean: [0.3], standardDeviation: [0.4])
        student.cropFraction = 1
        let distiller = try Distiller(teacher: teacher, student: student)
        #expect(teacher.isTraining == false)
        #expect(teacher.namedParameters().allSatisfy { !$0.tensor.requiresGrad })
        let pixel: Float = 0.7
        let x = Tensor(shape: [1, 28, 28, 1], repeating: (pixel - 0.3) / 0.4)
        let t = distiller.teacherInput(x).toArray()
        let c = teacher.config
        for channel in 0..<3 {
            #expect(abs(t[channel] - (pixel - c.mean[channel]) / c.standardDeviation[channel]) < 1e-5)
        }
        // Loss = CE + 5·KL, and KD-only leaves out the CE.
        let logits = randomLogits(seed: 1), teacherLogits = randomLogits(seed: 2)
        let targets = Tensor(shape: [4, 10], repeating: 0.1)
        let full = Distiller.loss(studentLogits: logits, teacherLogits: teacherLogits, targets: targets).item
        let kdOnly = Distiller.loss(studentLogits: logits, teacherLogits: teacherLogits, targets: targets, distillationOnly: true).item
        let ce = crossEntropy(logits, softTargets: targets).item
        let kl = klDivergence(student: logits, teacher: teacherLogits).item
        #expect(abs(full - (ce + 5 * kl)) < 1e-5)
        #expect(abs(kdOnly - 5 * kl) < 1e-5)
    }

    func randomLogits(seed: UInt64) -> Tensor {
        var g = RandomGenerator(seed: seed)
        return Tensor(shape: [4, 10], values: (0..<40).map { _ in Float(g.normal()) })
    }

    @Test("an ImageFolder of real JPEGs trains through the same path")
    func imageFolder() throws {
        let photos = try FileManager.default.contentsOfDirectory(atPath: "/usr/share/darknet/data").filter { $0.hasSuffix(".jpg") }.sorted()
        try #require(photos.count >= 4, "the darknet package's photos are needed")
        let root = temporaryDirectory("folder")
        defer { try? FileManager.default.removeItem(at: root) }
        for split in ["train", "val"] {
            for (i, photo) in photos.enumerated() {
                let dir = root.appendingPathComponent("\(split)/\(i % 2 == 0 ? "even" : "odd")")
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: "/usr/share/darknet/data/\(photo)", toPath: dir.appendingPathComponent(photo).path)
            }
        }
        let data = try TrainingData.imageFolder(root: root.path)
        #expect(data.classNames == ["even", "odd"])
        let config = USIConfig.usi(epochs: 1, batchSize: 4)
        let trainer = try USITrainer(student: SmallNet(classes: 2, inputChannels: 3, inputSize: 64), distiller: nil, data: data,
                                     config: config)
        let report = try trainer.fit()
        #expect(report.epochs.count == trainer.totalEpochs)
        #expect(report.epochs.allSatisfy { $0.trainLoss.isFinite })
    }

    @Test("configurations and data that cannot work are refused with clear errors")
    func invalid() throws {
        let data = try fashionSlice(train: 128, validation: 64)
        #expect(throws: TrainingError.self) { try USITrainer(student: SmallNet(classes: 5), distiller: nil, data: data, config: .plain(epochs: 1)) }
        #expect(throws: TrainingError.self) { try USITrainer(student: SmallNet(), distiller: nil, data: data, config: .plain(epochs: 0)) }
        // A teacher of other classes, or of channels that cannot be adapted, is refused when the distiller is made.
        #expect(throws: TrainingError.self) { try Distiller(teacher: SmallNet(classes: 3), student: SmallNet().config) }
        #expect(throws: TrainingError.self) {
            try Distiller(teacher: SmallNet(inputChannels: 3), student: SmallNet(inputChannels: 2).config)
        }
        // A distiller made for another student.
        let other = SmallNet(inputSize: 32)
        #expect(throws: TrainingError.self) {
            try USITrainer(student: SmallNet(), distiller: Distiller(teacher: SmallNet(), student: other.config), data: data,
                           config: .usi(epochs: 1))
        }
        // A batch larger than the training set would train zero steps.
        #expect(throws: TrainingError.self) { try USITrainer(student: SmallNet(), distiller: nil, data: data, config: .plain(epochs: 1, batchSize: 256)) }
        #expect(throws: (any Error).self) { try TrainingData.imageFolder(root: "/nonexistent/folder") }
    }

    @Test("fit() is the public step plus a policy: a loop of TrainingSteps reproduces it bit for bit")
    func stepReproducesFit() throws {
        let data = try fashionSlice(train: 640, validation: 128)
        var config = USIConfig.usi(epochs: 2, batchSize: 64)
        config.seed = 4
        func model() -> SmallNet { Initialization.withSeed(9) { SmallNet(stochastic: true) } }
        func teacher() -> SmallNet { Initialization.withSeed(10) { SmallNet() } }

        let viaFit = model()
        let trainer = try USITrainer(student: viaFit, distiller: Distiller(teacher: teacher(), student: viaFit.config),
                                     data: data, config: config)
        _ = try trainer.fit()

        let viaStep = model()
        let recipe = config.resolved(trainingSamples: data.train.count, imageSize: viaStep.config.inputSize)
        let step = try TrainingStep(student: viaStep, distiller: Distiller(teacher: teacher(), student: viaStep.config),
                                    config: config, recipe: recipe)
        let loader = try recipe.makeTrainingLoader(data: data.train, student: viaStep.config, config: config)
        var index = 0
        var losses: [Double] = []
        for epoch in 0..<step.totalEpochs {
            let batches = loader.batches(epoch: epoch)
            while let batch = try batches.next() {
                losses.append(try step(batch, step: index).loss)
                index += 1
            }
        }
        #expect(index == recipe.stepsPerEpoch * step.totalEpochs)
        #expect(losses.allSatisfy { $0.isFinite })
        for (a, b) in zip(viaFit.namedTensors(), viaStep.namedTensors()) {
            #expect(a.name == b.name)
            #expect(a.tensor.toArray() == b.tensor.toArray(), "\(a.name) differs between fit() and the step loop")
        }
    }

    @Test("stored teacher logits give the same step as the live teacher")
    func storedTeacherLogits() throws {
        let data = try fashionSlice(train: 256, validation: 64)
        let config = USIConfig.usi(epochs: 1, batchSize: 64)
        let recipe = config.resolved(trainingSamples: data.train.count, imageSize: 28)
        let teacher = Initialization.withSeed(10) { SmallNet() }
        let a = Initialization.withSeed(9) { SmallNet() }, b = Initialization.withSeed(9) { SmallNet() }
        let distiller = try Distiller(teacher: teacher, student: a.config)
        let live = try TrainingStep(student: a, distiller: distiller, config: config, recipe: recipe)
        let stored = try TrainingStep(student: b, distiller: nil, config: config, recipe: recipe)
        let batch = try #require(try recipe.makeTrainingLoader(data: data.train, student: a.config, config: config).batches(epoch: 0).next())
        let logits = distiller.logits(for: batch.tensor())
        let x = try live(batch, step: 0), y = try stored(batch, step: 0, teacherLogits: logits)
        #expect(x.loss == y.loss)
        #expect(a.fc.weight.toArray() == b.fc.weight.toArray())
    }

    @Test("the report says whether a teacher was used, from the distiller alone")
    func honestReport() throws {
        let data = try fashionSlice(train: 128, validation: 64)
        for withTeacher in [false, true] {
            let output = temporaryDirectory("honest")
            defer { try? FileManager.default.removeItem(at: output) }
            let student = SmallNet()
            let distiller = withTeacher ? try Distiller(teacher: SmallNet(), student: student.config) : nil
            let trainer = try USITrainer(student: student, distiller: distiller, data: data,
                                         config: .usi(epochs: 1, batchSize: 64), outputDirectory: output)
            _ = try trainer.fit()
            let html = try String(contentsOf: output.appendingPathComponent("report.html"), encoding: .utf8)
            #expect(html.contains("with knowledge distillation from smallnet") == withTeacher)
            #expect(html.contains("without a teacher") == !withTeacher)
            let metadata = try WeightsMetadata(SafeTensorsFile(contentsOf: output.appendingPathComponent("best.safetensors")).metadata,
                                               source: "best.safetensors")
            #expect(metadata.architecture == "smallnet" && metadata.classes == 10 && metadata.classNames?.count == 10)
        }
    }
}
