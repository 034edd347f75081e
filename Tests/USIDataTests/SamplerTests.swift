import Testing
@testable import USIData

@Suite("Samplers")
struct SamplerTests {
    @Test("shuffled: a permutation per epoch, reproducible, different across epochs")
    func shuffled() throws {
        let s = try ShuffledSampler(count: 100, seed: 5)
        let e0 = s.indices(epoch: 0), e1 = s.indices(epoch: 1)
        #expect(e0.sorted() == Array(0..<100) && e1.sorted() == Array(0..<100))
        #expect(e0 != e1)
        #expect(e0 == (try ShuffledSampler(count: 100, seed: 5)).indices(epoch: 0))
        #expect(e0 != (try ShuffledSampler(count: 100, seed: 6)).indices(epoch: 0))
    }

    @Test("distributed sharding: disjoint shards covering everything, padded by wrapping")
    func sharding() throws {
        let shards = try (0..<3).map { try ShuffledSampler(count: 10, seed: 1, rank: $0, worldSize: 3).indices(epoch: 4) }
        #expect(shards.allSatisfy { $0.count == 4 })
        let all = shards.flatMap { $0 }
        #expect(Set(all) == Set(0..<10) && all.count == 12)
        let sequential = try (0..<3).map { try SequentialSampler(count: 10, rank: $0, worldSize: 3).indices(epoch: 0) }
        #expect(sequential[0] == [0, 3, 6, 9] && sequential[2] == [2, 5, 8])
        #expect(throws: DataError.self) { try ShuffledSampler(count: 10, seed: 1, rank: 3, worldSize: 3) }
    }

    @Test("repeat augmentation ×3 on one process: triples side by side, ~N/3 distinct images")
    func repeatSingle() throws {
        let s = try RepeatAugmentSampler(count: 600, repeats: 3, seed: 2)
        #expect(s.selectedCount == 512)  // 600 // 256 * 256 / 1
        let idx = s.indices(epoch: 0)
        #expect(idx.count == 512)
        for t in stride(from: 0, to: 510, by: 3) { #expect(idx[t] == idx[t + 1] && idx[t] == idx[t + 2]) }
        #expect(Set(idx).count == 171)  // ceil(512 / 3)
        #expect(idx != s.indices(epoch: 1))
        let unshuffled = try RepeatAugmentSampler(count: 5, seed: 0, shuffle: false).indices(epoch: 0)
        #expect(unshuffled == [0, 0, 0, 1, 1])  // small dataset: ceil(5 / 1) selected
    }

    @Test("repeat augmentation across ranks: the views of an image go to different ranks")
    func repeatDistributed() throws {
        let ranks = try (0..<3).map { try RepeatAugmentSampler(count: 768, seed: 9, rank: $0, worldSize: 3) }
        #expect(ranks[0].selectedCount == 256)
        let idx = ranks.map { $0.indices(epoch: 2) }
        #expect(idx[0] == idx[1] && idx[1] == idx[2])  // DeiT: same image, three ranks, three views
        #expect(Set(idx[0]).count == 256)
    }
}

@Suite("Sharded sampling")
struct ShardedSamplingTests {
    /// The (sample index, global position) pairs of step `step` with per-process batch `batch`;
    /// the global position is what seeds the sample's augmentation in the loader.
    static func step(_ step: Int, of sampler: any Sampler, indices: [Int], batch: Int) -> [SampleKey] {
        (step * batch..<(step + 1) * batch).map { SampleKey(index: indices[$0], position: sampler.globalPosition(ofLocal: $0)) }
    }

    struct SampleKey: Hashable { let index: Int; let position: Int }

    @Test("N ranks with batch B/N: the union of the step-k batches is the one-process step-k batch",
          arguments: [2, 3, 4], [600, 100])
    func unionIsTheGlobalBatch(ranks: Int, count: Int) throws {
        let batch = 12
        let single = try RepeatAugmentSampler(count: count, repeats: 3, seed: 7)
        let singleIndices = single.indices(epoch: 3)
        let steps = singleIndices.count / batch
        let shards = try (0..<ranks).map { try RepeatAugmentSampler(count: count, repeats: 3, seed: 7, rank: $0, worldSize: ranks) }
        let shardIndices = shards.map { $0.indices(epoch: 3) }
        // Every rank has at least the one-process number of steps (a trainer takes that many).
        #expect(shardIndices.allSatisfy { $0.count / (batch / ranks) >= steps })
        for k in 0..<steps {
            let global = Self.step(k, of: single, indices: singleIndices, batch: batch)
            let union = (0..<ranks).flatMap { Self.step(k, of: shards[$0], indices: shardIndices[$0], batch: batch / ranks) }
            #expect(union.count == global.count)
            #expect(Set(union) == Set(global), "step \(k)")
        }
    }

    @Test("the loader's N-rank shards hold the one-process batch's very pixels", arguments: [2, 4])
    func loaderShardsMatch(ranks: Int) throws {
        let dataset = try LoaderTests.fashionSubset(64)
        let transform = try TrainTransform(size: 16, mean: [0.5], std: [0.5])
        func loader(rank: Int, worldSize: Int, batch: Int) throws -> [Batch] {
            try DataLoader(dataset: dataset, transform: transform,
                           sampler: try RepeatAugmentSampler(count: 64, repeats: 3, seed: 5, rank: rank, worldSize: worldSize),
                           batchSize: batch, workers: 1, seed: 5).batches(epoch: 1).collect()
        }
        let single = try loader(rank: 0, worldSize: 1, batch: 8)
        let shards = try (0..<ranks).map { try loader(rank: $0, worldSize: ranks, batch: 8 / ranks) }
        let size = 16 * 16
        func image(_ batch: Batch, _ i: Int) -> [Float] {
            Array(UnsafeBufferPointer(start: batch.images.pointer + i * size, count: size))
        }
        for k in 0..<single.count {
            for r in 0..<ranks {
                for j in 0..<(8 / ranks) {
                    let position = r + ranks * j  // round-robin: shard r, local j of this step
                    #expect(shards[r][k].indices[j] == single[k].indices[position])
                    #expect(image(shards[r][k], j) == image(single[k], position), "step \(k), rank \(r), sample \(j)")
                }
            }
        }
    }
}
