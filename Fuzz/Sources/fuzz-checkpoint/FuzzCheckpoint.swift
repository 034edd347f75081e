import Foundation
@_spi(Fuzzing) import USI
import USICore
import USIModels

/// Which decoder an input is for: its first byte, modulo 3.
enum CheckpointFuzzMode: UInt8, CaseIterable {
    /// The rest is a training checkpoint, restored into `DecoderEntryPoints.makeStudent()` with AdamW and EMA.
    case checkpoint = 0
    /// The rest is a run directory's `commit.json`.
    case manifest = 1
    /// The rest is a weights file whose metadata (architecture, classes, input size, class
    /// names, top-1) is read as `usi predict`/`eval` read it.
    case weightsMetadata = 2
}

/// One fuzz input: every decoder must succeed or throw. A checkpoint that restores must
/// restore again to the same epoch; metadata that parses must write and read back stably.
func fuzzCheckpoint(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let input, size > 1 else { return 0 }
    let data = Data(bytes: input + 1, count: size - 1)
    switch CheckpointFuzzMode(rawValue: input[0] % 3)! {
    case .checkpoint:
        guard let epoch = try? DecoderEntryPoints.restoreCheckpoint(data, into: DecoderEntryPoints.makeStudent(), withEMA: true) else { return 0 }
        precondition(try! DecoderEntryPoints.restoreCheckpoint(data, into: DecoderEntryPoints.makeStudent(), withEMA: false) == epoch,
                     "a checkpoint restores differently without EMA")
    case .manifest:
        _ = try? DecoderEntryPoints.decodeManifest(data)
    case .weightsMetadata:
        guard let file = try? SafeTensorsFile(data: data, source: "fuzz"),
              let metadata = try? WeightsMetadata(file.metadata, source: "fuzz") else { return 0 }
        // Writing rounds top-1 to two decimals and normalises `weights`, so the first round
        // trip may change the values; after it, writing and reading must be stable.
        guard let again = try? WeightsMetadata(metadata.dictionary, source: "fuzz-roundtrip"),
              let third = try? WeightsMetadata(again.dictionary, source: "fuzz-roundtrip") else {
            fatalError("metadata that parsed does not parse from its own dictionary")
        }
        precondition(third == again, "metadata round trip is not stable")
    }
    return 0
}

/// Writes the seed corpus: real checkpoints of the fuzz student (end of epoch and mid-epoch,
/// written by the trainer's encoder), a real manifest and the bundled teacher's metadata.
func writeSeeds(to directory: String, manifest: String?, weights: String?) throws {
    func write(_ mode: CheckpointFuzzMode, _ data: Data, _ name: String) throws {
        try (Data([mode.rawValue]) + data).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
    }
    try write(.checkpoint, DecoderEntryPoints.encodeCheckpoint(of: DecoderEntryPoints.makeStudent(), steps: 2, midEpoch: false), "checkpoint-epoch")
    try write(.checkpoint, DecoderEntryPoints.encodeCheckpoint(of: DecoderEntryPoints.makeStudent(), steps: 3, midEpoch: true), "checkpoint-partial")
    if let manifest { try write(.manifest, Data(contentsOf: URL(fileURLWithPath: manifest)), "commit.json") }
    if let weights {
        // The header alone: the metadata and tensor table, with no tensor data.
        let file = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: weights))
        try write(.weightsMetadata, SafeTensors.encode([:], metadata: file.metadata), "teacher-metadata")
    }
}
