import Foundation
import Testing
import USI

@Suite("WeightsMetadata")
struct WeightsMetadataTests {
    @Test("what the trainer writes reads back field for field, unknown keys kept")
    func roundTrip() throws {
        var metadata = WeightsMetadata(describing: BackboneConfig(architecture: "resnet10t", classes: 10, inputChannels: 1, inputSize: 32))
        metadata.top1 = 93.054
        metadata.epoch = 19
        metadata.isEMA = true
        metadata.dataset = "Fashion-MNIST"
        metadata.classNames = ["T-shirt/top", "Trouser"]
        metadata.other["teacher_command"] = "usi train --no-kd"
        let read = try WeightsMetadata(metadata.dictionary, source: "test")
        #expect(read.architecture == "resnet10t" && read.classes == 10 && read.inputChannels == 1 && read.inputSize == 32)
        #expect(read.top1 == 93.05 && read.epoch == 19 && read.isEMA == true && read.dataset == "Fashion-MNIST")
        #expect(read.classNames == ["T-shirt/top", "Trouser"])
        #expect(read.other == ["teacher_command": "usi train --no-kd"])
        #expect(metadata.dictionary["format"] == "pt")
    }

    @Test("numbers that would size an allocation are bounded, and the error names the file and the field",
          arguments: [("classes", "1000000"), ("classes", "4294967296"), ("classes", "-1"), ("in_chans", "1000000"),
                      ("in_chans", "0"), ("input_size", "100000"), ("input_size", "3"), ("epoch", "x"),
                      ("class_names", "[1, 2]"), ("top1", "nan")])
    func bounds(key: String, value: String) {
        do {
            _ = try WeightsMetadata(["architecture": "resnet10t", key: value], source: "hostile.safetensors")
            Issue.record("\(key) = \(value) was accepted")
        } catch {
            #expect("\(error)".contains("hostile.safetensors") && "\(error)".contains(key), "\(error)")
        }
    }

    @Test("Models refuses sizes past the documented limits")
    func modelLimits() {
        #expect(throws: ModelError.self) { try Models.create("resnet10t", classes: 10, inputSize: 100_000) }
        #expect(throws: ModelError.self) { try Models.create("resnet10t", classes: 2_000_000) }
        #expect(throws: ModelError.self) { try Models.create("resnet10t", inputChannels: 500) }
    }
}

/// Logits that are all equal: an untrained or broken model.
final class ConstantNet: Module, Backbone {
    let config = BackboneConfig(architecture: "constant", classes: 10, inputChannels: 1, inputSize: 28, cropFraction: 1)
    func callAsFunction(_ x: Tensor) -> Tensor { Tensor(shape: [x.shape[0], 10], repeating: 0) }
}

@Suite("Evaluation")
struct EvaluationTests {
    @Test("ties are broken by class index, so constant logits score the share of class 0, not 100 %")
    func ties() throws {
        let data = try DatasetSubset(IDXDataset.fashionMNIST(split: .test), first: 1000)
        let result = try Evaluator.evaluate(ConstantNet(), on: data, cropFraction: 1)
        let zeros = (0..<data.count).filter { data.label(at: $0) == 0 }.count
        let fives = (0..<data.count).filter { data.label(at: $0) < 5 }.count
        #expect(result.top1 == 100 * Double(zeros) / Double(data.count))
        #expect(result.top5 == 100 * Double(fives) / Double(data.count))
    }
}
