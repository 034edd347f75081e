import Foundation
import Testing
import USI

/// `usi compare`'s library parts: the teacher-logits store, its bit-identical training, top-k,
/// the Pareto front, model specs and the GFLOP count against timm's figures.
@Suite("Comparison", .serialized)
struct CompareTests {
    init() { Threading.setThreadCount(2) }

    /// A key for a slice run of SmallNet (the store only compares it, so any run's fields do).
    func key(seed: UInt64 = 0, data: TrainingData, student: BackboneConfig = SmallNet().config) throws -> TeacherLogitsKey {
        var config = USIConfig.usi(epochs: 1, batchSize: 64)
        config.seed = seed
        return try TeacherLogitsKey(teacher: SmallNet().config, teacherWeights: "test", precision: .float32, config: config,
                                    recipe: config.resolved(trainingSamples: data.train.count, imageSize: student.inputSize),
                                    student: student, data: data)
    }

    func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
        var g = RandomGenerator(seed: seed)
        return Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(g.normal()) })
    }

    @Test("a student trained from stored logits is bit-identical to one trained with the live teacher")
    func storedEqualsLive() throws {
        let data = try fashionSlice(train: 256, validation: 64)
        let config = USIConfig.usi(epochs: 2, batchSize: 64)
        let stores = temporaryDirectory("store")
        defer { try? FileManager.default.removeItem(at: stores) }
        let storeKey = try key(data: data)
        func train(_ source: TeacherLogitsStore?) throws -> (weights: [[Float]], report: TrainingReport) {
            let teacher = Initialization.withSeed(10) { SmallNet() }
            let student = Initialization.withSeed(9) { SmallNet() }
            let trainer = try USITrainer(student: student, distiller: Distiller(teacher: teacher, student: student.config, precision: .float32),
                                         data: data, config: config)
            trainer.teacherLogitsSource = source
            let report = try trainer.fit()
            return (student.namedTensors().map { $0.tensor.toArray() }, report)
        }
        let live = try train(nil)
        // The first pass through the store computes (and stores) every batch, the second reads them all.
        let recording = try TeacherLogitsStore(directory: stores, key: storeKey, classes: 10)
        let recorded = try train(recording)
        #expect(recording.computed == 8 && recording.served == 0)
        let replaying = try TeacherLogitsStore(directory: stores, key: storeKey, classes: 10)
        #expect(replaying.count == 8)
        let replayed = try train(replaying)
        #expect(replaying.served == 8 && replaying.computed == 0 && replaying.mismatches == 0)
        #expect(recorded.weights == live.weights)
        #expect(replayed.weights == live.weights, "weights from stored logits differ from the live teacher's")
        #expect(replayed.report.bestTop1 == live.report.bestTop1)
    }

    @Test("the store serves a batch only for the images it was stored for, and drops a record cut short")
    func storeGuards() throws {
        let data = try fashionSlice(train: 64, validation: 16)
        let directory = temporaryDirectory("store-guards")
        defer { try? FileManager.default.removeItem(at: directory) }
        let images = randomTensor([4, 28, 28, 1], seed: 1), logits = randomTensor([4, 10], seed: 2)
        var store: TeacherLogitsStore? = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10)
        _ = try store!.logits(step: 0, shard: 0, images: images) { logits }
        _ = try store!.logits(step: 1, shard: 0, images: images) { logits }
        let url = store!.url
        store = nil
        let reopened = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10)
        #expect(try reopened.logits(step: 0, shard: 0, images: images) { Tensor(shape: [4, 10], repeating: 0) }.toArray() == logits.toArray())
        // Other images at the same position: the live teacher, never the stored logits.
        let other = randomTensor([4, 28, 28, 1], seed: 3)
        #expect(try reopened.logits(step: 1, shard: 0, images: other) { Tensor(shape: [4, 10], repeating: 7) }.toArray()
                == [Float](repeating: 7, count: 40))
        #expect(reopened.mismatches == 1)
        // A kill in the middle of an append: the partial record is dropped, the rest stays.
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 50).write(to: url)
        let truncated = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10)
        #expect(truncated.count == 1)
        // Another run's key: its own file.
        let otherKey = try TeacherLogitsStore(directory: directory, key: try key(seed: 1, data: data), classes: 10)
        #expect(otherKey.url != url && otherKey.count == 0)
    }

    @Test("a damaged store is an error that names the file")
    func damagedStore() throws {
        let data = try fashionSlice(train: 64, validation: 16)
        let directory = temporaryDirectory("store-damaged")
        defer { try? FileManager.default.removeItem(at: directory) }
        let images = randomTensor([4, 28, 28, 1], seed: 1)
        var store: TeacherLogitsStore? = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10)
        _ = try store!.logits(step: 0, shard: 0, images: images) { randomTensor([4, 10], seed: 2) }
        let url = store!.url
        store = nil
        var bytes = try Data(contentsOf: url)
        let original = bytes
        // A flipped bit in the logits: the record's CRC-32 catches it when it is read.
        bytes[bytes.count - 20] ^= 0x10
        try bytes.write(to: url)
        let flipped = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10)
        #expect {
            _ = try flipped.logits(step: 0, shard: 0, images: images) { randomTensor([4, 10], seed: 2) }
        } throws: { "\($0)".contains(url.path) && "\($0)".contains("CRC-32") }
        // A damaged header, and a file that is not a store at all.
        bytes = original
        bytes[20] ^= 0xff
        try bytes.write(to: url)
        #expect { _ = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10) } throws: {
            "\($0)".contains(url.path)
        }
        try Data("not a store".utf8).write(to: url)
        #expect { _ = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10) } throws: {
            "\($0)".contains(url.path) && "\($0)".contains("not a teacher-logits store")
        }
        // A record header with an impossible row count.
        bytes = original
        let recordStart = bytes.count - (16 + 4 * 10 * 4 + 4)
        bytes[recordStart + 10] = 0xff
        try bytes.write(to: url)
        #expect { _ = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: 10) } throws: {
            "\($0)".contains(url.path) && "\($0)".contains("rows")
        }
    }

    @Test("top-k: the expanded logits give back the kept probabilities and spread the rest evenly")
    func topK() throws {
        let classes = 200, rows = 3, k = 5
        let logits = randomTensor([rows, classes], seed: 4).toArray().map { $0 * 3 }
        let (probabilities, indices) = TopKLogits.compress(logits, rows: rows, classes: classes, k: k)
        let expanded = TopKLogits.expand(probabilities: probabilities, indices: indices, rows: rows, classes: classes, k: k)
        for row in 0..<rows {
            let original = Array(logits[(row * classes)..<((row + 1) * classes)])
            let best = original.indices.max { original[$0] < original[$1] }!
            #expect(Int(indices[row * k]) == best)
            let restored = Array(expanded[(row * classes)..<((row + 1) * classes)])
            let exps = restored.map { exp(Double($0)) }
            #expect(abs(exps.reduce(0, +) - 1) < 1e-5, "the expanded row is a distribution")
            for j in 0..<k {
                #expect(abs(exps[Int(indices[row * k + j])] - Double(probabilities[row * k + j])) < 1e-6)
            }
        }
        // In a store above 100 classes, the same top-k come back.
        let data = try fashionSlice(train: 64, validation: 16)
        let directory = temporaryDirectory("store-topk")
        defer { try? FileManager.default.removeItem(at: directory) }
        let images = randomTensor([rows, 8, 8, 1], seed: 5)
        let store = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: classes, topK: k)
        #expect(store.topK == k)
        _ = try store.logits(step: 0, shard: 0, images: images) { Tensor(shape: [rows, classes], values: logits) }
        let reopened = try TeacherLogitsStore(directory: directory, key: try key(data: data), classes: classes, topK: k)
        let read = try reopened.logits(step: 0, shard: 0, images: images) { Tensor(shape: [rows, classes], repeating: 0) }
        #expect(read.toArray() == expanded)
    }

    /// The measurement behind the store's choice (Docs/DECISIONS.md): on a real batch — the
    /// embedded default's bundled teacher on 128 augmented Fashion-MNIST images, against a
    /// student — the KL term from top-k probabilities against the exact one.
    @Test("top-k KL error on a real batch of the embedded default")
    func topKErrorOnARealBatch() throws {
        let data = try fashionSlice(train: 256, validation: 16)
        let teacher = try EmbeddedDefault.teacher()
        let student = try EmbeddedDefault.student(seed: 0)
        let distiller = try Distiller(teacher: teacher, student: student.config, precision: .float32)
        let config = USIConfig.usi(epochs: 5, batchSize: 128)
        let recipe = config.resolved(trainingSamples: data.train.count, imageSize: student.config.inputSize)
        let batch = try #require(try recipe.makeTrainingLoader(data: data.train, student: student.config, config: config).batches(epoch: 0).next())
        let images = batch.tensor()
        let teacherLogits = distiller.logits(for: images)
        student.eval()
        // An untrained student, and one halfway to the teacher (its logits mixed with the teacher's).
        let fresh = withoutGradients { student(images) }
        let halfway = (fresh + teacherLogits) * 0.5
        var errors: [Int: Double] = [:]
        for studentLogits in [fresh, halfway] {
            let exact = Double(klDivergence(student: studentLogits, teacher: teacherLogits).item)
            for k in 1...10 {
                let (p, i) = TopKLogits.compress(teacherLogits.toArray(), rows: 128, classes: 10, k: k)
                let approximate = Tensor(shape: [128, 10], values: TopKLogits.expand(probabilities: p, indices: i, rows: 128, classes: 10, k: k))
                let kl = Double(klDivergence(student: studentLogits, teacher: approximate).item)
                errors[k] = max(errors[k] ?? 0, abs(kl - exact) / exact)
            }
        }
        print("top-k relative KL error (worst of fresh and halfway student):",
              (1...10).map { "k=\($0): \(String(format: "%.4f", errors[$0]!))" }.joined(separator: ", "))
        #expect(errors[10]! < 1e-5, "k = classes is exact")
        let smallest = (1...10).first { errors[$0]! < 0.01 }!
        #expect(smallest <= 10)
        print("smallest k within 1 %: \(smallest)")
    }

    @Test("the Pareto front of accuracy against speed")
    func pareto() {
        // a: fast, weak; b: dominated by c; c: balanced; d: slow, best; e: ties c exactly.
        let points: [(accuracy: Double, speed: Double)] = [(70, 1000), (72, 300), (75, 400), (80, 50), (75, 400), (60, 900)]
        #expect(Pareto.front(points) == [0, 2, 4, 3])
        #expect(Pareto.front([]) == [])
        #expect(Pareto.front([(50, 1)]) == [0])
    }

    @Test("model specs: NAME and NAME@SIZE, distinct")
    func specs() throws {
        let models = try ComparisonModel.list("resnet10t, levit_128s@64")
        #expect(models.map(\.architecture) == ["resnet10t", "levit_128s"])
        #expect(models.map(\.inputSize) == [nil, 64])
        #expect(models.map(\.description) == ["resnet10t", "levit_128s@64"])
        #expect(throws: TrainingError.self) { try ComparisonModel.list("resnet10t@abc") }
        #expect(throws: TrainingError.self) { try ComparisonModel.list("resnet10t@4") }
        #expect(throws: TrainingError.self) { try ComparisonModel.list("resnet10t,resnet10t") }
        #expect(throws: TrainingError.self) { try ComparisonModel.list("@64") }
    }

    /// timm's results tables (and fvcore) give resnet18 1.82 and resnet50 4.11 GMACs at 224 —
    /// the unit they and the paper call GFLOPs.
    @Test("GFLOPs are multiply-accumulates and match timm's figures")
    func gflops() throws {
        for (name, expected) in [("resnet18", 1.82), ("resnet50", 4.11)] {
            let model = try Models.create(name, classes: 1000, inputSize: 224)
            let macs = InferenceSpeed.gigaMACs(model)
            #expect(abs(macs - expected) / expected < 0.01, "\(name): \(macs) GMACs, timm \(expected)")
        }
    }

    @Test("compare.csv, compare.json and compare.html from a report")
    func outputs() throws {
        var report = ComparisonReport(data: "Fashion-MNIST", models: ["a", "b@64", "c"], epochs: 2, batchSize: 128, inputSize: 32,
                                      seed: 0, teacher: "resnet10t", speed: ComparisonSpeedSettings(threads: 2))
        report.rows = [
            ComparisonRow(model: "a", architecture: "a", inputSize: 32, top1: 80, top5: 99, isEMA: true, bestEpoch: 1,
                          imagesPerSecond: 5000, latencyMilliseconds: 1, parameters: 1_000_000, gflops: 0.01,
                          trainingMinutes: 1, teacherLogits: "live"),
            ComparisonRow(model: "b@64", architecture: "b", inputSize: 64, top1: 85, top5: 99.5, isEMA: false, bestEpoch: 1,
                          imagesPerSecond: 800, latencyMilliseconds: 3, parameters: 7_000_000, gflops: 0.1,
                          trainingMinutes: 3, teacherLogits: "live"),
            ComparisonRow(model: "c", architecture: "c", inputSize: 32, top1: 78, top5: 98, isEMA: false, bestEpoch: 0,
                          imagesPerSecond: 900, latencyMilliseconds: 2, parameters: 15_000_000, gflops: 0.2,
                          trainingMinutes: 2, teacherLogits: "stored"),
        ]
        report.updateFront()
        #expect(report.paretoFront.map(\.model) == ["a", "b@64"])
        let csv = report.csv().split(separator: "\n")
        #expect(csv.count == 4 && csv[0].hasPrefix("model,input_size,top1,top5,ema,images_per_second,ms_per_image_batch1,params,gflops"))
        #expect(csv[2].hasPrefix("b@64,64,85.00,99.50,no,800.0,3.000,7000000,0.1000,3.00,yes"))
        let decoded = try JSONDecoder().decode(ComparisonReport.self, from: report.json())
        #expect(decoded == report)
        let html = ComparisonPage(report: report).html()
        #expect(html.contains("<svg") && html.contains("<polyline") && html.contains("a → b@64"))
        #expect(!html.contains("<script"))
    }
}
