import Foundation
import Testing
import USI

/// The parts of `TeacherFineTuning` that the command-line tests do not isolate: which weights a
/// pretrained model keeps, the recipe's learning rate, and the suggested commands' quoting.
@Suite("Teacher fine-tuning")
struct TeacherFineTuningTests {
    @Test("the classifier is new even when the old one has the same shape; the backbone is the file's")
    func headIsNewBackboneIsPretrained() throws {
        let source = try Models.create("mobilenetv3_small_050", classes: 10, inputChannels: 3, inputSize: 32, seed: 5)
        var metadata = WeightsMetadata(describing: source.config)
        metadata.classNames = (0..<10).map { "old\($0)" }
        let file = try SafeTensorsFile(data: SafeTensors.encode(source.stateDict(), metadata: metadata.dictionary))
        let pretrained = try TeacherFineTuning.pretrainedModel(weights: file, classes: 10, seed: 0)
        let fresh = try Models.create("mobilenetv3_small_050", classes: 10, inputChannels: 3, inputSize: 32, seed: 0)
        #expect(pretrained.newClassifierKeys.sorted() == ["classifier.bias", "classifier.weight"])
        #expect(pretrained.model.config.inputSize == 32, "the side comes from the metadata")
        let tuned = Dictionary(uniqueKeysWithValues: pretrained.model.namedTensors().map { ($0.name, $0.tensor.toArray()) })
        let start = Dictionary(uniqueKeysWithValues: source.namedTensors().map { ($0.name, $0.tensor.toArray()) })
        let initial = Dictionary(uniqueKeysWithValues: fresh.namedTensors().map { ($0.name, $0.tensor.toArray()) })
        for (name, values) in tuned {
            if name.hasPrefix("classifier.") {
                #expect(values == initial[name], "\(name) must be the seed-0 initialisation")
                if name == "classifier.weight" { #expect(values != start[name], "the old classes' weights must not survive") }
            } else {
                #expect(values == start[name], "\(name) must be the pretrained tensor")
            }
        }
        #expect(pretrained.loadedTensors == tuned.count - 2)
    }

    @Test("the recipe is USI's at the measured learning-rate scale, the warmup below the peak")
    func recipe() {
        let config = TeacherFineTuning.config(epochs: 7, batchSize: 64)
        let student = USIConfig.usi(epochs: 7, batchSize: 64)
        #expect(config.recipe == .usi && config.epochs == 7 && config.batchSize == 64)
        #expect(abs(config.learningRate - student.learningRate * TeacherFineTuning.learningRateScale) < 1e-12)
        #expect(config.warmupLearningRate < config.learningRate)
        #expect(config.weightDecay == student.weightDecay && config.minimumLearningRate == student.minimumLearningRate)
        #expect(TeacherFineTuning.config(learningRate: 5e-4).learningRate == 5e-4)
    }

    @Test("the suggested commands quote what a shell would split")
    func commandsAreQuoted() {
        let plain = TeacherFineTuning.commands(data: "/data/flowers", architecture: "resnet50", weights: "r50.pth")
        #expect(plain.teacher == "usi teacher /data/flowers --model resnet50 --weights r50.pth --output runs/teacher")
        #expect(plain.train == "usi train /data/flowers --teacher-weights runs/teacher/teacher.safetensors")
        let spaced = TeacherFineTuning.commands(data: "my data", architecture: "resnet50", weights: "it's.pth", output: "out dir")
        #expect(spaced.teacher == "usi teacher 'my data' --model resnet50 --weights 'it'\\''s.pth' --output 'out dir'")
        #expect(spaced.train == "usi train 'my data' --teacher-weights 'out dir/teacher.safetensors'")
    }
}
