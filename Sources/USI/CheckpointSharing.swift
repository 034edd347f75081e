import Foundation

/// `--resume` of a data-parallel run: rank 0 alone owns the run directory, so it reads the last
/// committed checkpoint (verifying its checksum) and broadcasts the bytes; every rank then
/// loads the same state, and the run continues as an uninterrupted one would (the weights,
/// optimiser and EMA are equal on every rank at every step, and the data order is a function
/// of seed, epoch and position). No shared file system is needed.
enum CheckpointSharing {
    /// What rank 0 found: the checkpoint's bytes and where they came from, or nil when the run
    /// directory has nothing committed yet.
    typealias Found = (bytes: Data, source: URL)

    /// Rank 0 runs `read` (nil: nothing committed) and every rank returns its result. If
    /// rank 0's `read` throws, rank 0 rethrows it and every other rank throws an error that
    /// says so — no rank is left waiting in a collective.
    static func share(over communicator: any Communicator, read: () throws -> Found?) throws -> Found? {
        guard communicator.size > 1 else { return try read() }
        var found: Found?
        var failure: Error?
        if communicator.isRoot {
            do { found = try read() } catch { failure = error }
        }
        // The header: the checkpoint's length (-1: nothing committed, -2: rank 0 failed).
        var header = [Int64(failure != nil ? -2 : found.map { Int64($0.bytes.count) } ?? -1)]
        try header.withUnsafeMutableBytes { try communicator.broadcast($0, root: 0) }
        if let failure { throw failure }
        switch header[0] {
        case -2:
            throw TrainingError.invalidData("--resume: rank 0 could not read the run's checkpoint (its error is in rank 0's output)")
        case -1:
            return nil
        default:
            var bytes = communicator.isRoot ? [UInt8](found!.bytes) : [UInt8](repeating: 0, count: Int(header[0]))
            try communicator.broadcast(&bytes, root: 0)
            return (Data(bytes), found?.source ?? URL(fileURLWithPath: "rank-0-checkpoint.safetensors"))
        }
    }

    /// Refuses to resume a checkpoint written by a run with another number of shards (ranks ×
    /// emulated ranks): the global batch would be split differently, so BatchNorm statistics,
    /// mixing pairs and the sampler's padding would not continue the same trajectory.
    static func checkShards(recorded: Int?, ranks: Int, emulatedRanks: Int) throws {
        guard let recorded, recorded != ranks * emulatedRanks else { return }
        throw TrainingError.invalidConfiguration(
            "--resume: the checkpoint was written by a run of \(recorded) shards (MPI ranks × emulated ranks), this one has \(ranks) × \(emulatedRanks) = \(ranks * emulatedRanks); resume it with `mpirun -np \(recorded)` (or `--emulate-ranks \(recorded)` in one process), or start a new run")
    }
}
