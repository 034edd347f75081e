import Foundation
import Testing
@testable import USICore

/// `size` ranks as threads of this process: `allReduceSum` of doubles meets every rank's
/// buffer and gives each the element-wise sum (the only collective synchronised BatchNorm
/// uses). Each rank's thread has its own gradient tape, as each MPI rank has.
private final class ThreadWorld: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var contributions: [[Double]?]
    private var result: [Double] = []
    private var arrived = 0
    private var generation = 0

    init(size: Int) {
        self.size = size
        contributions = Array(repeating: nil, count: size)
    }

    func allReduce(_ values: inout [Double], rank: Int) {
        condition.lock()
        defer { condition.unlock() }
        let myGeneration = generation
        contributions[rank] = values
        arrived += 1
        if arrived == size {
            result = contributions.map { $0! }.reduce(into: [Double](repeating: 0, count: values.count)) { sum, part in
                for i in sum.indices { sum[i] += part[i] }  // rank order, as a deterministic reduction
            }
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == myGeneration { condition.wait() }
        }
        values = result
    }

    final class Rank: Communicator, @unchecked Sendable {
        let world: ThreadWorld
        let rank: Int
        var size: Int { world.size }
        init(world: ThreadWorld, rank: Int) { self.world = world; self.rank = rank }

        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
            var values = Array(buffer)
            world.allReduce(&values, rank: rank)
            for i in buffer.indices { buffer[i] = values[i] }
        }
        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { Issue.record("unexpected float all-reduce") }
        func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any CommunicationRequest {
            Issue.record("unexpected non-blocking all-reduce")
            return CompletedRequest()
        }
        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws { Issue.record("unexpected int all-reduce") }
        func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws { Issue.record("unexpected max") }
        func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws { Issue.record("unexpected broadcast") }
        func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws { Issue.record("unexpected broadcast") }
        func barrier() throws {}
    }
}

@Suite("Synchronised BatchNorm")
struct SyncBatchNormTests {
    struct Outcome {
        var output: [Float], inputGradient: [Float], weightGradient: [Float], biasGradient: [Float]
        var runningMean: [Float], runningVariance: [Float]
    }

    /// BatchNorm in training mode over `x` [n, 3, 3, 5] with the loss Σ y ⊙ r, as `size` ranks
    /// (threads) each holding `n / size` images, or as one plain BatchNorm when `size` is 1.
    /// Returns each rank's outcome.
    private func run(size: Int, x: [Float], upstream: [Float], n: Int) -> [Outcome] {
        let world = ThreadWorld(size: size)
        let perRank = n / size, rowValues = 3 * 3 * 5
        final class Results: @unchecked Sendable {  // written under `lock` by the rank threads
            var outcomes: [Outcome?]
            let lock = NSLock()
            init(size: Int) { outcomes = Array(repeating: nil, count: size) }
        }
        let results = Results(size: size)
        let group = DispatchGroup()
        for rank in 0..<size {
            group.enter()
            let thread = Thread {
                let range = (rank * perRank * rowValues)..<((rank + 1) * perRank * rowValues)
                let input = Tensor(shape: [perRank, 3, 3, 5], values: Array(x[range]), requiresGrad: true)
                let r = Tensor(shape: [perRank, 3, 3, 5], values: Array(upstream[range]))
                let layer = BatchNorm(5)
                layer.weight!.assign(Tensor(shape: [5], values: [1.5, 0.5, 1, 2, 0.75]))
                layer.bias!.assign(Tensor(shape: [5], values: [0.1, -0.2, 0, 0.3, 0.05]))
                layer.runningMean.assign(Tensor(shape: [5], values: [0.2, -0.1, 0.4, 0, 1]))
                for p in layer.namedParameters() { p.tensor.requiresGrad = true }
                if size > 1 { layer.synchronization = ThreadWorld.Rank(world: world, rank: rank) }
                layer.train()
                let y = layer(input)
                (y * r).sum().backward()
                let outcome = Outcome(output: y.toArray(), inputGradient: input.grad!.toArray(),
                                      weightGradient: layer.weight!.grad!.toArray(), biasGradient: layer.bias!.grad!.toArray(),
                                      runningMean: layer.runningMean.toArray(), runningVariance: layer.runningVariance.toArray())
                results.lock.lock(); results.outcomes[rank] = outcome; results.lock.unlock()
                group.leave()
            }
            thread.start()
        }
        group.wait()
        return results.outcomes.map { $0! }
    }

    private func close(_ a: [Float], _ b: [Float], tolerance: Float = 2e-5) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
    }

    @Test("over N shards it is plain BatchNorm over the whole batch, forward and gradients", arguments: [2, 4])
    func equalsWholeBatch(shards: Int) {
        var generator = RandomGenerator(seed: 7)
        let n = 8, count = n * 3 * 3 * 5
        // Shards with different statistics (an offset per image), so per-shard BN would differ.
        let x = (0..<count).map { i in Float(i / 45) * 0.3 + (generator.nextFloat() * 2 - 1) * 2 }
        let upstream = (0..<count).map { _ in generator.nextFloat() * 2 - 1 }
        let whole = run(size: 1, x: x, upstream: upstream, n: n)[0]
        let ranks = run(size: shards, x: x, upstream: upstream, n: n)
        // Forward: each rank's rows are the whole batch's rows; running statistics are the whole batch's.
        #expect(close(ranks.flatMap(\.output), whole.output))
        #expect(close(ranks.flatMap(\.inputGradient), whole.inputGradient))
        for rank in ranks {
            #expect(close(rank.runningMean, whole.runningMean))
            #expect(close(rank.runningVariance, whole.runningVariance))
        }
        // The affine gradients are each rank's own share: summed over the ranks, the whole batch's.
        let weightSum = ranks.map(\.weightGradient).reduce([Float](repeating: 0, count: 5)) { zip($0, $1).map(+) }
        let biasSum = ranks.map(\.biasGradient).reduce([Float](repeating: 0, count: 5)) { zip($0, $1).map(+) }
        #expect(close(weightSum, whole.weightGradient))
        #expect(close(biasSum, whole.biasGradient))
        // Plain BatchNorm of the first shard alone does not match (so the comparison can fail).
        let part = count / shards
        let alone = run(size: 1, x: Array(x[0..<part]), upstream: Array(upstream[0..<part]), n: n / shards)[0]
        #expect(!close(alone.output, Array(whole.output[0..<part])))
    }
}
