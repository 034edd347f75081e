import CUSIKernels
import Foundation

/// Averages a model's gradients over every rank while backward still runs, as PyTorch's DDP
/// does: the parameters, in reverse order (roughly the order backward finishes them), are
/// packed into buckets of about ``defaultBucketBytes``; each bucket's non-blocking all-reduce
/// starts as soon as backward has made every gradient in it final
/// (``Tensor/backward(_:onGradientFinal:)`` reports each), so the reduction of the last
/// layers overlaps the backward of the first ones. ``finish(scale:)`` waits for all of them
/// before the optimiser.
///
/// Buckets start strictly in their order (a bucket whose gradients are final waits for the
/// buckets before it), because every rank must start the same collectives in the same order.
/// A parameter that backward never reaches (unused on this rank) counts as zeros: its
/// bucket starts at ``finish(scale:)``.
///
/// One step at a time: ``begin()``, backward reporting to ``gradientIsFinal(_:)``, then
/// ``finish(scale:)``.
public final class GradientBuckets {
    /// DDP's `bucket_cap_mb` default, 25 MB.
    public static let defaultBucketBytes = 25 << 20
    /// DDP's first bucket, 1 MB: the last layers' gradients, ready first, start travelling early.
    public static let defaultFirstBucketBytes = 1 << 20

    /// The ranks the gradients are summed over.
    public let communicator: any Communicator
    /// The parameters whose gradients are reduced.
    public let parameters: [Tensor]

    private struct Bucket {
        /// Indices into `parameters`, with each one's offset in `buffer`.
        var members: [(parameter: Int, offset: Int)]
        var buffer: UnsafeMutableBufferPointer<Float>
    }

    private var buckets: [Bucket] = []
    private var bucketOfParameter: [ObjectIdentifier: Int] = [:]
    private var waitingGradients: [Int] = []  // per bucket, gradients not final yet
    private var requests: [(any CommunicationRequest)?] = []
    private var completed: [Bool] = []
    private var nextToStart = 0
    private var firstError: Error?

    /// Seconds ``finish(scale:)`` has spent waiting for reductions, over the reducer's life.
    public private(set) var waitSeconds = 0.0

    /// The number of buckets (and collectives per step).
    public var bucketCount: Int { buckets.count }
    /// The float count of each bucket, in the order they start.
    public var bucketSizes: [Int] { buckets.map(\.buffer.count) }

    /// Packs `parameters` (in reverse) into buckets: the first of about `firstBucketBytes`,
    /// the others of about `bucketBytes` (a bucket closes once it reaches its size, so it can
    /// exceed it by one tensor, as in DDP).
    public init(parameters: [Tensor], communicator: any Communicator,
                bucketBytes: Int = GradientBuckets.defaultBucketBytes,
                firstBucketBytes: Int = GradientBuckets.defaultFirstBucketBytes) {
        precondition(bucketBytes > 0 && firstBucketBytes > 0, "bucket sizes must be positive")
        self.communicator = communicator
        self.parameters = parameters
        var members: [(parameter: Int, offset: Int)] = []
        var floats = 0
        func close() {
            guard !members.isEmpty else { return }
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: floats)
            buffer.initialize(repeating: 0)
            for member in members { bucketOfParameter[ObjectIdentifier(parameters[member.parameter])] = buckets.count }
            buckets.append(Bucket(members: members, buffer: buffer))
            members = []
            floats = 0
        }
        for index in parameters.indices.reversed() {
            members.append((index, floats))
            floats += parameters[index].count
            if floats * MemoryLayout<Float>.size >= (buckets.isEmpty ? firstBucketBytes : bucketBytes) { close() }
        }
        close()
        requests = Array(repeating: nil, count: buckets.count)
        completed = Array(repeating: false, count: buckets.count)
        waitingGradients = buckets.map(\.members.count)
    }

    deinit {
        for bucket in buckets { bucket.buffer.deallocate() }
    }

    /// Gets ready for a step's backward.
    public func begin() {
        for index in buckets.indices {
            waitingGradients[index] = buckets[index].members.count
            requests[index] = nil
            completed[index] = false
        }
        nextToStart = 0
        firstError = nil
    }

    /// Backward's report that `parameter`'s gradient is final: starts every bucket, in order,
    /// that is now complete, and lets the buckets in flight progress (Open MPI advances a
    /// non-blocking collective only inside MPI calls). Tensors that are not ``parameters``
    /// are ignored. Errors are kept for ``finish(scale:)``, since backward cannot throw.
    public func gradientIsFinal(_ parameter: Tensor) {
        guard firstError == nil, let bucket = bucketOfParameter[ObjectIdentifier(parameter)] else { return }
        waitingGradients[bucket] -= 1
        do {
            while nextToStart < buckets.count && waitingGradients[nextToStart] == 0 { try start(nextToStart) }
            for index in 0..<nextToStart where !completed[index] {
                completed[index] = try requests[index]!.test()
            }
        } catch {
            firstError = error
        }
    }

    /// Starts the buckets backward has not completed (gradients it never reached are zeros),
    /// waits for every reduction, and writes `scale` × the sum over the ranks into each
    /// parameter's gradient (creating it where this rank had none). Returns the seconds spent
    /// waiting.
    @discardableResult
    public func finish(scale: Float) throws -> Double {
        if let firstError { throw firstError }
        while nextToStart < buckets.count { try start(nextToStart) }
        let clock = ContinuousClock.now
        for request in requests { try request!.wait() }
        let elapsed = ContinuousClock.now - clock
        let waited = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        waitSeconds += waited
        for bucket in buckets {
            for member in bucket.members {
                let parameter = parameters[member.parameter]
                let gradient = parameter.grad ?? Tensor(uninitializedShape: parameter.shape)
                usi_affine(gradient.pointer, bucket.buffer.baseAddress! + member.offset, scale, 0, parameter.count)
                if parameter.grad == nil { parameter.grad = gradient }
            }
        }
        return waited
    }

    private func start(_ index: Int) throws {
        let bucket = buckets[index]
        for member in bucket.members {
            let destination = bucket.buffer.baseAddress! + member.offset
            let parameter = parameters[member.parameter]
            if let gradient = parameter.grad {
                destination.update(from: gradient.pointer, count: parameter.count)
            } else {
                destination.update(repeating: 0, count: parameter.count)
            }
        }
        requests[index] = try communicator.startAllReduceSum(bucket.buffer)
        nextToStart = index + 1
    }
}
