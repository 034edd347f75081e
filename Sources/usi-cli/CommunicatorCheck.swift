import ArgumentParser
import Foundation
import USI

/// `usi communicator-check`: every collective of the communicator this process gets, with
/// results each rank can verify on its own (run under `mpirun -np N`; Scripts/test-mpi does).
/// Hidden: it is a test of the installation, not a user command.
struct CommunicatorCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "communicator-check",
        abstract: "Check the collectives of the communicator (run under mpirun).",
        shouldDisplay: false)

    @Option(help: "Floats per all-reduce.")
    var count = 1000

    func run() throws {
        let world = try Distributed.communicator()
        let rank = world.rank, size = world.size
        var failures: [String] = []
        func expect(_ ok: Bool, _ what: String) { if !ok { failures.append(what) } }

        // Sum of rank + 1 + i over ranks: size·(i + 1) + size·(size − 1)/2, exact in float.
        let expected = (0..<count).map { Float(size * ($0 + 1) + size * (size - 1) / 2) }
        var floats = (0..<count).map { Float(rank + 1 + $0) }
        try world.allReduceSum(&floats)
        expect(floats == expected, "blocking float all-reduce")

        var started = (0..<count).map { Float(rank + 1 + $0) }
        try started.withUnsafeMutableBufferPointer { buffer in
            let request = try world.startAllReduceSum(buffer)
            _ = try request.test()
            try request.wait()
            expect(try request.test(), "a completed request tests complete")
        }
        expect(started == expected, "non-blocking float all-reduce")

        var doubles = [Double(rank) + 0.5, 1]
        try world.allReduceSum(&doubles)
        expect(doubles == [Double(size * (size - 1) / 2) + 0.5 * Double(size), Double(size)], "double all-reduce")

        var counts: [Int64] = [Int64(rank), 1 << 40]
        try world.allReduceSum(&counts)
        expect(counts == [Int64(size * (size - 1) / 2), Int64(size) << 40], "int64 all-reduce")

        var maximum = [Double(rank)]
        try maximum.withUnsafeMutableBufferPointer { try world.allReduceMax($0) }
        expect(maximum == [Double(size - 1)], "double max all-reduce")

        let root = size - 1
        var broadcastFloats = [Float](repeating: Float(rank), count: count)
        try world.broadcast(&broadcastFloats, root: root)
        expect(broadcastFloats.allSatisfy { $0 == Float(root) }, "float broadcast")
        var bytes = Array("rank \(rank)".utf8) + [UInt8](repeating: 0, count: 8)
        bytes = Array(bytes.prefix(16)) + [UInt8](repeating: 0, count: max(0, 16 - bytes.count))
        var fromRoot = Array("rank \(root)".utf8)
        fromRoot += [UInt8](repeating: 0, count: 16 - fromRoot.count)
        try world.broadcast(&bytes, root: root)
        expect(bytes == fromRoot, "byte broadcast")

        try world.barrier()
        guard failures.isEmpty else {
            throw ValidationError("communicator check, rank \(rank) of \(size): failed: \(failures.joined(separator: ", "))")
        }
        print("communicator check: rank \(rank) of \(size) (\(type(of: world))): ok")
    }
}
