import Foundation
import Testing
import USI

/// `usi teacher` end to end on a real slice of Fashion-MNIST (300 training and 200 test images
/// written as PNG files): a "pretrained" model for 3 classes becomes a 10-class teacher that
/// `usi train --teacher-weights` accepts alone, and `usi train` with the 3-class file names
/// the `usi teacher` command to run.
@Suite("usi teacher", .serialized)
struct TeacherCLITests {
    static let architecture = "mobilenetv3_small_050"

    /// The slice, the pretrained file (3 classes, seed 77, metadata naming the architecture and
    /// a 32-px input) and the same weights without metadata (as a timm `state_dict`).
    static func makeFixtures() throws -> (root: URL, pretrained: URL, bare: URL) {
        let root = try FashionMNISTFolder.write(train: 300, validation: 200)
        let model = try Models.create(architecture, classes: 3, inputChannels: 3, inputSize: 32, seed: 77)
        let pretrained = root.appendingPathComponent("pretrained.safetensors")
        try model.save(to: pretrained, metadata: WeightsMetadata(describing: model.config).dictionary)
        let bare = root.appendingPathComponent("bare.safetensors")
        try model.save(to: bare)
        return (root, pretrained, bare)
    }

    /// Pearson correlation of two tensors of the same shape.
    static func correlation(_ a: [Float], _ b: [Float]) -> Double {
        let n = Double(a.count)
        let ma = a.reduce(0) { $0 + Double($1) } / n, mb = b.reduce(0) { $0 + Double($1) } / n
        var ab = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) {
            let dx = Double(x) - ma, dy = Double(y) - mb
            ab += dx * dy; aa += dx * dx; bb += dy * dy
        }
        return ab / max((aa * bb).squareRoot(), 1e-30)
    }

    @Test("teacher: pretrained backbone, new 10-class head, metadata; train accepts it alone; a mismatch names the command")
    func teacherWorkflow() throws {
        let (root, pretrained, bare) = try Self.makeFixtures()
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("teacher-run").path
        let teacher = try CLITests.usi(["teacher", root.path, "--weights", pretrained.path, "--epochs", "1",
                                        "--batch-size", "32", "--output", run, "--threads", "2"])
        #expect(teacher.status == 0, "usi teacher failed: \(teacher.error)")
        #expect(teacher.output.contains("new classifier"), "\(teacher.output)")
        let teacherPath = "\(run)/\(TeacherFineTuning.teacherFileName)"
        #expect(teacher.output.contains("usi train \(root.path) --teacher-weights \(teacherPath)"), "\(teacher.output)")

        let file = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: teacherPath))
        let metadata = try WeightsMetadata(file.metadata, source: teacherPath)
        #expect(metadata.architecture == Self.architecture)
        #expect(metadata.classes == 10)
        #expect(metadata.classNames == FashionMNISTFolder.classFolders)
        #expect(metadata.inputSize == 32)
        #expect(metadata.inputChannels == 3)
        #expect(file.metadata["role"] == "teacher")
        #expect(file.metadata["fine_tuned_from"] == "pretrained.safetensors")
        #expect(file.entries["classifier.weight"]?.shape.first == 10)
        #expect(file.entries["classifier.bias"]?.shape == [10])

        // The backbone starts from the pretrained weights: 9 steps (300 images, batch 32) move
        // each weight by a fraction of its initialisation scale, so the tuned tensor stays
        // almost perfectly correlated with the pretrained one and uncorrelated with a fresh
        // initialisation (seed 0, the run's), which is independent of it.
        let source = try SafeTensorsFile(contentsOf: pretrained)
        let fresh = try Models.create(Self.architecture, classes: 10, inputChannels: 3, inputSize: 32, seed: 0).stateDict()
        for key in ["conv_stem.weight", "blocks.0.0.conv_dw.weight", "blocks.4.2.conv_pwl.weight", "conv_head.weight"] {
            let tuned = try file.tensor(key).toArray(), start = try source.tensor(key).toArray()
            let random = try SafeTensorsFile(data: SafeTensors.encode([key: fresh[key]!])).tensor(key).toArray()
            let withPretrained = Self.correlation(tuned, start), withRandom = Self.correlation(tuned, random)
            #expect(withPretrained > 0.9, "\(key): correlation \(withPretrained) with the pretrained weights")
            #expect(abs(withRandom) < 0.25, "\(key): correlation \(withRandom) with a fresh initialisation")
        }

        // usi train needs nothing but the teacher file.
        let student = try CLITests.usi(["train", root.path, "--teacher-weights", teacherPath, "--epochs", "1", "--batch-size", "32",
                                        "--input-size", "32", "--output", root.appendingPathComponent("student-run").path,
                                        "--threads", "2"])
        #expect(student.status == 0, "usi train with the teacher failed: \(student.error)")
        #expect(student.output.contains("teacher \(Self.architecture): top-1"), "\(student.output)")

        // A teacher for 3 classes: the error is the usi teacher command for this data and these weights.
        let expected = "usi teacher \(root.path) --model \(Self.architecture) --weights \(pretrained.path) --output runs/teacher"
        let mismatch = try CLITests.usi(["train", root.path, "--teacher-weights", pretrained.path, "--epochs", "1",
                                         "--batch-size", "32", "--input-size", "32", "--output", root.appendingPathComponent("x").path])
        #expect(mismatch.status != 0)
        #expect(mismatch.error.contains("predicts 3 classes"), "\(mismatch.error)")
        #expect(mismatch.error.contains(expected), "\(mismatch.error)")
        #expect(mismatch.error.contains("usi train \(root.path) --teacher-weights runs/teacher/teacher.safetensors"), "\(mismatch.error)")

        // The same weights without metadata (a timm state_dict), architecture named.
        let bareRun = try CLITests.usi(["train", root.path, "--teacher", Self.architecture, "--teacher-weights", bare.path,
                                        "--epochs", "1", "--batch-size", "32", "--input-size", "32",
                                        "--output", root.appendingPathComponent("y").path])
        #expect(bareRun.status != 0)
        #expect(bareRun.error.contains("usi teacher \(root.path) --model \(Self.architecture) --weights \(bare.path)"), "\(bareRun.error)")
    }

    @Test("teacher refuses weights of another architecture, naming the missing backbone keys")
    func wrongArchitecture() throws {
        let (root, pretrained, _) = try Self.makeFixtures()
        defer { try? FileManager.default.removeItem(at: root) }
        let result = try CLITests.usi(["teacher", root.path, "--model", "resnet10t", "--weights", pretrained.path,
                                       "--epochs", "1", "--output", root.appendingPathComponent("run").path])
        #expect(result.status != 0)
        #expect(result.error.contains("does not hold the backbone of resnet10t"), "\(result.error)")
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("run/teacher.safetensors").path))
    }
}
