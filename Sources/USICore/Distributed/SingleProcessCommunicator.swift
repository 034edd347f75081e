/// The communicator of a run with one process: every collective is the identity (the sum
/// over one rank is the buffer itself), so the trainer has one code path.
public final class SingleProcessCommunicator: Communicator {
    /// Creates it.
    public init() {}

    /// Always 0.
    public var rank: Int { 0 }
    /// Always 1.
    public var size: Int { 1 }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest {
        CompletedRequest()
    }
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {}
    public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws { try checkRoot(root) }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws { try checkRoot(root) }
    public func barrier() throws {}
}

/// A request that completed when it was made.
final class CompletedRequest: CommunicationRequest {
    func wait() throws {}
    func test() throws -> Bool { true }
}
