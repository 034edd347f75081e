import CUSIMPI
import Foundation

/// A ``Communicator`` over Open MPI's `MPI_COMM_WORLD`. The library (`libmpi.so.40`) is opened
/// with `dlopen` when the first communicator is made, so this module builds, and every
/// non-distributed run works, on a machine without Open MPI (see `Docs/DECISIONS.md`).
///
/// MPI is initialised once per process, at thread level `MPI_THREAD_SERIALIZED`: calls may
/// come from any thread, one at a time, which a lock in this class guarantees (the gradient
/// buckets of an overlapped all-reduce may be started from a thread other than the one that
/// initialised MPI; `FUNNELED` would forbid that). Errors are returned by MPI
/// (`MPI_ERRORS_RETURN`) and thrown as ``CommunicatorError``; call ``finalize()`` before the
/// process exits normally, ``abort(code:)`` to end every rank after an error.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    /// The library name Open MPI 3 to 5 installs (Debian: `libopenmpi3`, pulled in by
    /// `openmpi-bin` and `libopenmpi-dev`).
    public static let libraryName = "libmpi.so.40"

    public let rank: Int
    public let size: Int
    /// The thread level MPI granted (0 single, 1 funneled, 2 serialized, 3 multiple).
    public let threadLevel: Int

    // Serialises every MPI call (the SERIALIZED contract) and guards `shared`.
    private let lock = NSLock()
    nonisolated(unsafe) private static var shared: MPICommunicator?
    private static let creationLock = NSLock()

    private init(rank: Int, size: Int, threadLevel: Int) {
        self.rank = rank
        self.size = size
        self.threadLevel = threadLevel
    }

    /// The world communicator: loads the library and initialises MPI on the first call; later
    /// calls return the same object.
    public static func world(library: String = libraryName) throws -> MPICommunicator {
        creationLock.lock()
        defer { creationLock.unlock() }
        if let shared { return shared }
        try load(library)
        let serialized: Int32 = 2
        var provided: Int32 = 0
        try check(usi_mpi_init(serialized, &provided), "MPI_Init_thread")
        guard provided >= serialized else {
            throw CommunicatorError.libraryUnavailable(
                "this Open MPI grants thread level \(provided), USI needs MPI_THREAD_SERIALIZED (2)")
        }
        var rank: Int32 = 0, size: Int32 = 0
        try check(usi_mpi_rank(&rank), "MPI_Comm_rank")
        try check(usi_mpi_size(&size), "MPI_Comm_size")
        let world = MPICommunicator(rank: Int(rank), size: Int(size), threadLevel: Int(provided))
        shared = world
        return world
    }

    /// The world communicator if ``world(library:)`` has made it in this process, else nil (so
    /// that a program's exit path finalises MPI only when it was used).
    public static var initialized: MPICommunicator? {
        creationLock.lock()
        defer { creationLock.unlock() }
        return shared
    }

    /// Opens the library (no MPI call yet): throws with dlopen's reason and what to install.
    public static func load(_ library: String = libraryName) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard usi_mpi_load(library, &error, error.count) == 0 else {
            let reason = text(error)
            throw CommunicatorError.libraryUnavailable(
                "cannot load Open MPI (\(library)): \(reason). Install it with `apt-get install openmpi-bin libopenmpi-dev`")
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try call("MPI_Allreduce") { usi_mpi_allreduce(buffer.baseAddress, buffer.count, USI_MPI_FLOAT, USI_MPI_SUM) }
    }

    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest {
        var request: usi_mpi_request?
        try call("MPI_Iallreduce") {
            usi_mpi_iallreduce(buffer.baseAddress, buffer.count, USI_MPI_FLOAT, USI_MPI_SUM, &request)
        }
        return MPIRequest(request: request, communicator: self)
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        try call("MPI_Allreduce") { usi_mpi_allreduce(buffer.baseAddress, buffer.count, USI_MPI_DOUBLE, USI_MPI_SUM) }
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
        try call("MPI_Allreduce") { usi_mpi_allreduce(buffer.baseAddress, buffer.count, USI_MPI_INT64, USI_MPI_SUM) }
    }

    public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        try call("MPI_Allreduce") { usi_mpi_allreduce(buffer.baseAddress, buffer.count, USI_MPI_DOUBLE, USI_MPI_MAX) }
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        try checkRoot(root)
        try call("MPI_Bcast") { usi_mpi_broadcast(buffer.baseAddress, buffer.count, USI_MPI_FLOAT, Int32(root)) }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try checkRoot(root)
        try call("MPI_Bcast") { usi_mpi_broadcast(buffer.baseAddress, buffer.count, USI_MPI_BYTE, Int32(root)) }
    }

    public func barrier() throws {
        try call("MPI_Barrier") { usi_mpi_barrier() }
    }

    /// Ends MPI (`MPI_Finalize`); every rank calls it once at a normal end. Collectives after
    /// it are errors.
    public func finalize() throws {
        try call("MPI_Finalize") { usi_mpi_is_finalized() != 0 ? 0 : usi_mpi_finalize() }
    }

    /// Ends every rank of the job (`MPI_Abort`) with exit code `code`: what a rank that hit an
    /// error does, so that no other rank waits forever in a collective.
    public func abort(code: Int32) -> Never {
        lock.lock()  // never released: nothing else may run after an abort
        _ = usi_mpi_abort(code)
        exit(code)  // MPI_Abort does not return on Open MPI; this is for the impossible case
    }

    func call(_ operation: String, _ body: () -> Int32) throws {
        lock.lock()
        let code = body()
        lock.unlock()
        try Self.check(code, operation)
    }

    /// A NUL-terminated C string from a buffer the shim filled.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func check(_ code: Int32, _ operation: String) throws {
        guard code != 0 else { return }
        var text = [CChar](repeating: 0, count: 512)
        usi_mpi_error_string(code, &text, text.count)
        throw CommunicatorError.operationFailed(operation: operation, message: Self.text(text))
    }
}

/// An `MPI_Request` of a non-blocking all-reduce.
final class MPIRequest: CommunicationRequest {
    private var request: usi_mpi_request?
    private let communicator: MPICommunicator
    private var completed = false

    init(request: usi_mpi_request?, communicator: MPICommunicator) {
        self.request = request
        self.communicator = communicator
    }

    func wait() throws {
        guard !completed else { return }
        try communicator.call("MPI_Wait") { usi_mpi_wait(&request) }
        completed = true
    }

    func test() throws -> Bool {
        guard !completed else { return true }
        var done: Int32 = 0
        try communicator.call("MPI_Test") { usi_mpi_test(&request, &done) }
        completed = done != 0
        return completed
    }
}
