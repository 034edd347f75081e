/// How the processes of a data-parallel run talk to each other: the few collectives training
/// needs, over `size` processes numbered `0..<size`. The trainer sees only this protocol;
/// ``SingleProcessCommunicator`` is the identity and ``MPICommunicator`` runs over Open MPI
/// (loaded at run time, so nothing above this protocol names an MPI type).
///
/// Every collective must be called by every rank, in the same order, with buffers of the same
/// length (as in MPI); a rank that skips one leaves the others waiting. Calls are blocking
/// unless named `start…`. Implementations serialise their calls, so any thread may make
/// them, but one at a time is what the collectives' order needs anyway.
public protocol Communicator: AnyObject, Sendable {
    /// This process's index, `0..<size`. Rank 0 owns a run's outputs.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }

    /// Replaces `buffer` on every rank by the element-wise sum of every rank's `buffer`.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Starts the float sum of `allReduceSum(_:)` without waiting for it: the buffer must stay
    /// alive and untouched until the request's ``CommunicationRequest/wait()`` returns (for
    /// gradient buckets reduced while backward still runs).
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest
    /// Element-wise sum of `Double`s (losses, metrics) over every rank, in place.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Element-wise sum of `Int64` counts (correct predictions, samples) over every rank, in place.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws
    /// Element-wise maximum of `Double`s over every rank, in place (e.g. the slowest rank's time).
    func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Copies `root`'s `buffer` into every rank's `buffer`.
    func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws
    /// Copies `root`'s bytes into every rank's `buffer`.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Returns when every rank has called it.
    func barrier() throws
}

/// A non-blocking collective in flight (``Communicator/startAllReduceSum(_:)``).
public protocol CommunicationRequest: AnyObject {
    /// Blocks until the operation has completed; its buffer then holds the result.
    func wait() throws
    /// Whether the operation has completed (and lets the library make progress on it).
    func test() throws -> Bool
}

/// Why a collective or the communication layer failed.
public enum CommunicatorError: Error, CustomStringConvertible, Equatable {
    /// The process was started by an MPI launcher but the MPI library cannot be used.
    case libraryUnavailable(String)
    /// An MPI call returned an error.
    case operationFailed(operation: String, message: String)
    /// An argument is out of range (a root outside `0..<size`, …).
    case invalidArgument(String)

    /// The message.
    public var description: String {
        switch self {
        case let .libraryUnavailable(message): message
        case let .operationFailed(operation, message): "\(operation) failed: \(message)"
        case let .invalidArgument(message): message
        }
    }
}

extension Communicator {
    /// Whether this is rank 0, the rank that writes a run's outputs.
    public var isRoot: Bool { rank == 0 }

    /// Sums `values` over every rank, in place.
    public func allReduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    /// Sums `values` over every rank, in place.
    public func allReduceSum(_ values: inout [Int64]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    /// Sums `values` over every rank, in place.
    public func allReduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    /// Replaces `values` by `root`'s (every rank must pass an array of the same length).
    public func broadcast(_ values: inout [Float], root: Int) throws {
        try values.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Replaces `bytes` by `root`'s (every rank must pass an array of the same length).
    public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
        try bytes.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    func checkRoot(_ root: Int) throws {
        guard (0..<size).contains(root) else {
            throw CommunicatorError.invalidArgument("broadcast root \(root) is not a rank of 0..<\(size)")
        }
    }
}
