import Testing
@testable import USICore

/// A two-rank world whose other rank holds the same values: a sum doubles the buffer. Records
/// each non-blocking all-reduce (its length and the values it started with) and keeps it in
/// flight until waited on, so a test sees what started when.
private final class RecordingCommunicator: Communicator, @unchecked Sendable {
    var started: [[Float]] = []
    var tests = 0
    var rank: Int { 0 }
    var size: Int { 2 }

    final class Request: CommunicationRequest {
        let buffer: UnsafeMutableBufferPointer<Float>
        let owner: RecordingCommunicator
        var done = false
        init(buffer: UnsafeMutableBufferPointer<Float>, owner: RecordingCommunicator) { self.buffer = buffer; self.owner = owner }
        func wait() throws {
            guard !done else { return }
            for i in buffer.indices { buffer[i] *= 2 }
            done = true
        }
        func test() throws -> Bool { owner.tests += 1; return done }
    }

    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { for i in buffer.indices { buffer[i] *= 2 } }
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest {
        started.append(Array(buffer))
        return Request(buffer: buffer, owner: self)
    }
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws { for i in buffer.indices { buffer[i] *= 2 } }
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws { for i in buffer.indices { buffer[i] *= 2 } }
    func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {}
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    func barrier() throws {}
}

@Suite("Gradient buckets")
struct GradientBucketTests {
    /// A three-layer chain: `w1` is read first in forward, so its gradient is final last.
    private func chain() -> (x: Tensor, weights: [Tensor]) {
        let x = randomTensor([4, 8], seed: 1, requiresGrad: false)
        let weights = (0..<3).map { randomTensor([8, 8], seed: UInt64(10 + $0)) }
        return (x, weights)
    }

    private func loss(_ x: Tensor, _ weights: [Tensor]) -> Tensor {
        var h = x
        for w in weights { h = relu(linear(h, weight: w)) }
        // w[2] is read twice (again at the end): its gradient is final only after both uses.
        return (h * 0.5).sum() + linear(h, weight: weights[2]).sum()
    }

    @Test("backward reports each leaf once, in reverse order of use, with its final gradient")
    func finalGradientHook() {
        let (x, weights) = chain()
        var reported: [(index: Int, gradient: [Float])] = []
        loss(x, weights).backward(onGradientFinal: { leaf in
            let index = weights.firstIndex { $0 === leaf }!
            reported.append((index, leaf.grad!.toArray()))
        })
        #expect(reported.map(\.index) == [2, 1, 0])
        // What the hook saw is the whole gradient: the same as a plain backward gives.
        let hooked = weights.map { $0.grad!.toArray() }
        for w in weights { w.zeroGrad() }
        loss(x, weights).backward()
        for (report, w) in zip(reported, reported.map { weights[$0.index] }) {
            #expect(report.gradient == w.grad!.toArray())
        }
        #expect(hooked == weights.map { $0.grad!.toArray() })
    }

    @Test("buckets take the parameters in reverse, the first one smaller, closing once full")
    func assignment() {
        let parameters = [Tensor(shape: [100], repeating: 0), Tensor(shape: [300], repeating: 0),
                          Tensor(shape: [50], repeating: 0), Tensor(shape: [10], repeating: 0)]
        // First bucket ≥ 200 bytes (50 floats): [3, 2] = 60 floats; then ≥ 1200 bytes (300 floats): [1] = 300; then [0].
        let buckets = GradientBuckets(parameters: parameters, communicator: RecordingCommunicator(),
                                      bucketBytes: 1200, firstBucketBytes: 200)
        #expect(buckets.bucketSizes == [60, 300, 100])
    }

    @Test("a bucket starts when its gradients are final, in bucket order, during backward; finish averages")
    func overlapAndAverage() throws {
        let (x, weights) = chain()
        let unused = Tensor(shape: [3], values: [0, 0, 0], requiresGrad: true)  // on no rank's tape: zeros
        let world = RecordingCommunicator()
        // One 8×8 weight (256 bytes) per bucket: buckets are [w2], [w1], [w0], [unused] (parameter order w0, w1, w2, unused).
        let buckets = GradientBuckets(parameters: weights + [unused], communicator: world, bucketBytes: 4, firstBucketBytes: 4)
        #expect(buckets.bucketSizes == [3, 64, 64, 64])
        buckets.begin()
        var startedWhenReported: [Int] = []
        loss(x, weights).backward(onGradientFinal: { leaf in
            buckets.gradientIsFinal(leaf)
            startedWhenReported.append(world.started.count)
        })
        // `unused`'s bucket comes first and is never completed by backward, so nothing can start
        // before finish (buckets start in order on every rank) ...
        #expect(startedWhenReported == [0, 0, 0])
        let plain = weights.map { $0.grad!.toArray() }
        try buckets.finish(scale: 0.25)
        #expect(world.started.count == 4)
        #expect(world.started[0] == [0, 0, 0])
        #expect(world.started[1] == plain[2] && world.started[3] == plain[0])
        // ... and every gradient is (sum over the 2 ranks) × scale = the plain gradient / 2.
        for (w, g) in zip(weights, plain) { #expect(w.grad!.toArray() == g.map { $0 * 2 * 0.25 }) }
        #expect(unused.grad?.toArray() == [0, 0, 0])

        // Without the unused parameter the buckets start as backward finishes them.
        for w in weights { w.zeroGrad() }
        let world2 = RecordingCommunicator()
        let buckets2 = GradientBuckets(parameters: weights, communicator: world2, bucketBytes: 4, firstBucketBytes: 4)
        buckets2.begin()
        var started2: [Int] = []
        loss(x, weights).backward(onGradientFinal: { leaf in
            buckets2.gradientIsFinal(leaf)
            started2.append(world2.started.count)
        })
        #expect(started2 == [1, 2, 3])
        #expect(world2.tests > 0)  // the buckets in flight were given progress during backward
        try buckets2.finish(scale: 0.5)
        for (w, g) in zip(weights, plain) { #expect(w.grad!.toArray() == g) }
    }
}
