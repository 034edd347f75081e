import USICore

/// Decides which dataset indices a process visits in an epoch, and in what order.
/// Samplers are deterministic functions of (seed, epoch, rank).
///
/// A sharded sampler (rank r of `worldSize`) deals the one-process epoch order round-robin:
/// its local position p is global position r + worldSize·p. So with a per-rank batch of
/// B / worldSize, the union of the ranks' step-k batches is the one-process step-k batch of B,
/// and the loader seeds each sample's augmentation from its global position — the same image
/// gets the same views whatever the number of ranks.
public protocol Sampler: Sendable {
    /// The indices for `epoch` on this process.
    func indices(epoch: Int) -> [Int]
    /// This process's shard, `0..<worldSize` (0 for an unsharded sampler).
    var rank: Int { get }
    /// The number of shards (1 for an unsharded sampler).
    var worldSize: Int { get }
    /// The position in the one-process epoch order of local position `position`.
    func globalPosition(ofLocal position: Int) -> Int
}

extension Sampler {
    /// Unsharded by default.
    public var rank: Int { 0 }
    /// Unsharded by default.
    public var worldSize: Int { 1 }
    /// Round-robin dealing (the identity on one process).
    public func globalPosition(ofLocal position: Int) -> Int { rank + worldSize * position }
}

/// A random permutation of `0..<count` drawn from `generator` (Fisher–Yates).
func permutation(_ count: Int, generator: inout RandomGenerator) -> [Int] {
    var p = Array(0..<count)
    if count > 1 {
        for i in stride(from: count - 1, to: 0, by: -1) {
            p.swapAt(i, generator.integer(in: 0..<(i + 1)))
        }
    }
    return p
}

private func validate(count: Int, rank: Int, worldSize: Int) -> Bool {
    count >= 0 && worldSize >= 1 && rank >= 0 && rank < worldSize
}

/// Every index in order, sharded round-robin across processes without padding (for
/// evaluation: each sample is seen exactly once across all ranks).
public struct SequentialSampler: Sampler {
    public let count: Int
    public let rank: Int
    public let worldSize: Int

    /// Creates the sampler for process `rank` of `worldSize`.
    public init(count: Int, rank: Int = 0, worldSize: Int = 1) throws {
        guard validate(count: count, rank: rank, worldSize: worldSize) else {
            throw DataError.invalidArgument("sampler needs count >= 0 and 0 <= rank < worldSize, got count \(count), rank \(rank), worldSize \(worldSize)")
        }
        self.count = count
        self.rank = rank
        self.worldSize = worldSize
    }

    public func indices(epoch: Int) -> [Int] { Array(stride(from: rank, to: count, by: worldSize)) }
}

/// A fresh permutation every epoch, sharded like PyTorch's `DistributedSampler`: the same
/// permutation on every rank (same seed), padded by wrapping to a multiple of `worldSize`,
/// then rank r takes positions r, r + worldSize, …
public struct ShuffledSampler: Sampler {
    public let count: Int
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int

    /// Creates the sampler for process `rank` of `worldSize`.
    public init(count: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1) throws {
        guard validate(count: count, rank: rank, worldSize: worldSize) else {
            throw DataError.invalidArgument("sampler needs count >= 0 and 0 <= rank < worldSize, got count \(count), rank \(rank), worldSize \(worldSize)")
        }
        self.count = count
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
    }

    /// Samples per rank per epoch.
    public var samplesPerRank: Int { (count + worldSize - 1) / worldSize }

    public func indices(epoch: Int) -> [Int] {
        guard count > 0 else { return [] }
        var generator = RandomGenerator(seed: seed, stream: [UInt64(epoch), 0x5348_5546])
        let order = permutation(count, generator: &generator)
        let total = samplesPerRank * worldSize
        return stride(from: rank, to: total, by: worldSize).map { order[$0 % count] }
    }
}

/// timm's `RepeatAugSampler` (DeiT's repeated augmentation): each epoch, a permutation in
/// which every index is repeated `repeats` times in a row (`[a, a, a, b, b, b, …]`), shared by
/// all ranks and dealt round-robin, so the views of one image land on different ranks (or,
/// on one process, side by side in a batch, each with its own augmentation). Each rank then
/// keeps only the first `selectedCount` indices: by default `count` rounded down to a
/// multiple of 256, divided by the world size — so an epoch still has about `count` samples
/// in all, made of about `count / repeats` distinct images.
public struct RepeatAugmentSampler: Sampler {
    public let count: Int
    public let repeats: Int
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int
    public let shuffle: Bool
    /// Indices each rank yields per epoch (timm's `num_selected_samples`).
    public let selectedCount: Int

    /// Creates the sampler.
    ///
    /// - Parameters:
    ///   - selectedRound: round the dataset size down to a multiple of this before dividing
    ///     (timm's default 256; datasets smaller than it are not rounded).
    ///   - selectedRatio: divide by this instead of `worldSize` (0: `worldSize`).
    public init(count: Int, repeats: Int = 3, seed: UInt64, rank: Int = 0, worldSize: Int = 1,
                shuffle: Bool = true, selectedRound: Int = 256, selectedRatio: Int = 0) throws {
        guard validate(count: count, rank: rank, worldSize: worldSize), repeats >= 1, selectedRound >= 0, selectedRatio >= 0 else {
            throw DataError.invalidArgument("repeat sampler needs count >= 0, repeats >= 1 and 0 <= rank < worldSize, got count \(count), repeats \(repeats), rank \(rank), worldSize \(worldSize)")
        }
        self.count = count
        self.repeats = repeats
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
        self.shuffle = shuffle
        let perRank = (count * repeats + worldSize - 1) / worldSize
        let ratio = selectedRatio == 0 ? worldSize : selectedRatio
        var selected: Int
        if selectedRound > 0 && count >= selectedRound {
            selected = Int((Double(count / selectedRound * selectedRound) / Double(ratio)).rounded(.down))
        } else {
            selected = (count + ratio - 1) / ratio
        }
        selectedCount = min(selected, perRank)
    }

    public func indices(epoch: Int) -> [Int] {
        guard count > 0 else { return [] }
        var order = Array(0..<count)
        if shuffle {
            var generator = RandomGenerator(seed: seed, stream: [UInt64(epoch), 0x5245_5041])
            order = permutation(count, generator: &generator)
        }
        var repeated: [Int] = []
        repeated.reserveCapacity(count * repeats)
        for i in order { for _ in 0..<repeats { repeated.append(i) } }
        let n = repeated.count
        let total = (n + worldSize - 1) / worldSize * worldSize
        return stride(from: rank, to: total, by: worldSize).prefix(selectedCount).map { repeated[$0 % n] }
    }
}
