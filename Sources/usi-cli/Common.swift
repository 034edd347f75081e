import ArgumentParser
import Foundation
import USI

/// `--threads`, shared by every compute command.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Compute threads (BLAS and kernels). Default: all cores.")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            Threading.setThreadCount(threads)
        } else {
            Threading.setThreadCount(ProcessInfo.processInfo.activeProcessorCount)
        }
    }
}

/// Loads data given on the command line: the word `fashion-mnist` (or nothing) for the
/// embedded default, or an image folder.
func loadTrainingData(_ path: String?) throws -> TrainingData {
    guard let path, path != "fashion-mnist" else { return try TrainingData.fashionMNIST() }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("data folder '\(path)' does not exist")
    }
    return try TrainingData.imageFolder(root: path)
}

/// The evaluation split of DATA: Fashion-MNIST's test set, a folder's `val/`, or a folder of
/// class sub-folders.
func loadEvaluationData(_ path: String) throws -> any ImageDataset {
    if path == "fashion-mnist" { return try IDXDataset.fashionMNIST(split: .test) }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("data folder '\(path)' does not exist")
    }
    if let validation = try? ImageFolder(root: path).validation { return validation }
    return try ImageFolderDataset(directory: path)
}

/// A model built from `--model` and a weights file, with classes/channels/size taken from the
/// file's metadata when present (as this library writes them).
func loadModel(name: String, weights: String, classes: Int?) throws -> (any Backbone, WeightsMetadata, SafeTensorsFile) {
    let file = try SafeTensorsFile(weightsAt: URL(fileURLWithPath: weights))
    let (model, metadata) = try Models.create(fromWeights: file, source: weights, architecture: name, classes: classes)
    return (model, metadata, file)
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func format(_ value: Double, digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
func percent(_ fraction: Double) -> String { String(format: "%.0f %%", fraction * 100) }

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
    func rightPadded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// Writes to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
