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
