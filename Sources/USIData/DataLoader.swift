import Foundation
import USICore

/// What to do with a sample whose file cannot be read or decoded.
public enum CorruptImagePolicy: Sendable, Equatable {
    /// Substitute the next readable sample of the dataset (with that sample's own label),
    /// count it, report the file once (``DataLoader/onSkippedImage``), and keep going. The
    /// batch keeps its size; labels stay correct. Up to 16 consecutive unreadable samples are
    /// substituted for one position; the 17th error stops the epoch (a folder that is mostly
    /// unreadable is a mistake to report, not to train on).
    case skip
    /// Stop the epoch with the error.
    case fail
}

/// A sample the loader could not load and replaced (``CorruptImagePolicy/skip``), as reported
/// once per dataset index through ``DataLoader/onSkippedImage``.
public struct SkippedImage: Sendable, Equatable {
    /// The dataset index of the sample.
    public var index: Int
    /// The file path (or in-memory name) of the sample, when it has one.
    public var name: String
    /// Why it could not be loaded: the error's description, which names the file.
    public var reason: String
    /// The epoch in which it was first met.
    public var epoch: Int
}

/// Counters a loader accumulates over its lifetime.
public struct LoaderStatistics: Sendable, Equatable {
    /// Samples replaced because they could not be loaded (``CorruptImagePolicy/skip``); a
    /// file drawn in several epochs (or several times in one) counts each time.
    public var skippedSamples = 0
    /// Distinct dataset indices that failed at least once.
    public var distinctSkippedImages = 0
    /// The first errors of skipped samples (at most 20), with file names.
    public var skippedErrors: [String] = []
    /// Samples decoded despite a libjpeg warning (e.g. truncated files).
    public var decodeWarnings = 0
}

/// A multi-threaded data loader with a bounded prefetch queue.
///
/// Worker threads build whole batches: load, decode, augment and normalise each sample
/// into a pooled float buffer, then (optionally) mix the batch. Every random choice comes
/// from a generator seeded by `(seed, epoch, global position in epoch)` (see ``Sampler``) —
/// and per batch and shard for mixing —
/// so the batches are identical whatever the number of workers. Workers only run the image
/// kernels (never BLAS). At most `prefetchBatches` batches are in flight or waiting.
public final class DataLoader: @unchecked Sendable {
    /// The dataset.
    public let dataset: any ImageDataset
    /// The per-sample transform.
    public let transform: any SampleTransform
    /// The index order.
    public let sampler: any Sampler
    /// Samples per batch.
    public let batchSize: Int
    /// Worker threads.
    public let workers: Int
    /// Bound of the prefetch queue, in batches.
    public let prefetchBatches: Int
    /// Drop the last incomplete batch.
    public let dropLast: Bool
    /// Batch mixing, or nil.
    public let mixing: MixupCutmix?
    /// The base seed.
    public let seed: UInt64
    /// Handling of unreadable samples.
    public let corruptImagePolicy: CorruptImagePolicy
    /// The size bounds every worker's JPEG decoder applies (see ``ImageLimits``).
    public let imageLimits: ImageLimits

    let pool: FloatBufferPool
    private let statisticsLock = NSLock()
    private var _statistics = LoaderStatistics()
    private var reported = Set<Int>()
    private var _onSkippedImage: (@Sendable (SkippedImage) -> Void)?
    private var workspaces: [TransformWorkspace] = []

    /// Creates a loader.
    ///
    /// - Parameters:
    ///   - workers: decode/augment threads (>= 1).
    ///   - prefetchBatches: queue bound; defaults to twice the workers.
    ///   - mixing: Mixup/CutMix applied per batch (training), or nil.
    ///   - imageLimits: size bounds for decoding; `nil` means ``ImageLimits/fromEnvironment(_:)``
    ///     (the standard limits unless `USI_MAX_IMAGE_PIXELS` / `USI_MAX_IMAGE_BYTES` are set).
    ///   - onSkippedImage: see ``onSkippedImage``.
    public init(dataset: any ImageDataset, transform: any SampleTransform, sampler: any Sampler,
                batchSize: Int, workers: Int = 2, prefetchBatches: Int? = nil, dropLast: Bool = true,
                mixing: MixupCutmix? = nil, seed: UInt64 = 0,
                corruptImagePolicy: CorruptImagePolicy = .skip, imageLimits: ImageLimits? = nil,
                onSkippedImage: (@Sendable (SkippedImage) -> Void)? = nil) throws {
        guard batchSize >= 1, workers >= 1 else {
            throw DataError.invalidArgument("loader needs batchSize >= 1 and workers >= 1, got \(batchSize), \(workers)")
        }
        let prefetch = prefetchBatches ?? 2 * workers
        guard prefetch >= 1 else { throw DataError.invalidArgument("prefetchBatches must be >= 1, got \(prefetch)") }
        guard dataset.classCount >= 1 else { throw DataError.invalidArgument("dataset has no classes") }
        self.dataset = dataset
        self.transform = transform
        self.sampler = sampler
        self.batchSize = batchSize
        self.workers = workers
        self.prefetchBatches = prefetch
        self.dropLast = dropLast
        self.mixing = mixing
        self.seed = seed
        self.corruptImagePolicy = corruptImagePolicy
        let limits = try imageLimits ?? ImageLimits.fromEnvironment()
        self.imageLimits = limits
        _onSkippedImage = onSkippedImage
        pool = FloatBufferPool(elementCount: batchSize * transform.outputSize)
        workspaces = try (0..<workers).map { _ in try TransformWorkspace(imageLimits: limits) }
    }

    /// Called once per dataset index the first time that sample cannot be loaded and is
    /// skipped (``CorruptImagePolicy/skip``), with the file and the reason — the hook for a
    /// log line. It runs on a worker thread, while that worker waits, so it must be quick and
    /// thread-safe. Set it before asking for batches; later failures of the same index are
    /// only counted (``EpochBatches/skippedSamples``, ``statistics``).
    public var onSkippedImage: (@Sendable (SkippedImage) -> Void)? {
        get { statisticsLock.lock(); defer { statisticsLock.unlock() }; return _onSkippedImage }
        set { statisticsLock.lock(); _onSkippedImage = newValue; statisticsLock.unlock() }
    }

    /// Counters so far.
    public var statistics: LoaderStatistics {
        statisticsLock.lock()
        defer { statisticsLock.unlock() }
        var s = _statistics
        s.decodeWarnings = workspaces.reduce(0) { $0 + $1.warningCount }
        return s
    }

    /// Float buffers allocated so far (stays bounded by the queue size: buffers are reused).
    public var allocatedBuffers: Int { pool.allocations }

    /// Number of batches in `epoch`.
    public func batchCount(epoch: Int) -> Int {
        let n = sampler.indices(epoch: epoch).count
        return dropLast ? n / batchSize : (n + batchSize - 1) / batchSize
    }

    /// Starts the workers for `epoch` and returns the batches in order, from batch
    /// `startingAt` on (a run resumed mid-epoch: every batch is a function of the seed, the
    /// epoch and its position, so the later ones are the same). Dropping the returned object
    /// before the end stops the workers.
    public func batches(epoch: Int, startingAt first: Int = 0) -> EpochBatches {
        EpochBatches(loader: self, epoch: epoch, indices: sampler.indices(epoch: epoch), first: first)
    }

    /// Builds batch `batch` of an epoch (called by worker `worker`).
    func makeBatch(epoch: Int, batch: Int, indices: [Int], worker: Int) throws -> Batch {
        let start = batch * batchSize
        let count = min(batchSize, indices.count - start)
        let sampleSize = transform.outputSize
        let storage = BatchStorage(pool: pool, count: count * sampleSize)
        let workspace = workspaces[worker]
        var labels = [Int32](repeating: 0, count: count)
        var used = [Int](repeating: 0, count: count)
        var skipped = 0
        for k in 0..<count {
            let position = start + k
            // The global position: a sample's views do not depend on how many ranks share the epoch.
            let globalPosition = UInt64(sampler.globalPosition(ofLocal: position))
            var index = indices[position]
            var attempt = 0
            while true {
                var generator = RandomGenerator(seed: seed, stream: attempt == 0
                    ? [UInt64(epoch), globalPosition] : [UInt64(epoch), globalPosition, UInt64(attempt)])
                do {
                    try transform.apply(try dataset.source(at: index), into: storage.pointer + k * sampleSize,
                                        generator: &generator, workspace: workspace)
                    break
                } catch {
                    guard corruptImagePolicy == .skip, attempt < 16, dataset.count > 1 else { throw error }
                    record(error, index: index, epoch: epoch)
                    skipped += 1
                    attempt += 1
                    index = (index + 1) % dataset.count
                }
            }
            labels[k] = Int32(dataset.label(at: index))
            used[k] = index
        }
        var targets: [Float]?
        var parameters: MixupCutmix.Parameters?
        if let mixing {
            // Mixing pairs are per shard (sample i with N−1−i of this rank's batch), as in
            // PyTorch DDP; the shard's own stream lets one process reproduce an N-rank run by
            // mixing each of N shards alike (`--emulate-ranks`). One process keeps its stream.
            let stream: [UInt64] = sampler.worldSize == 1 ? [UInt64(epoch), UInt64(batch), 0x4D49_5855]
                : [UInt64(epoch), UInt64(batch), 0x4D49_5855, UInt64(sampler.rank), UInt64(sampler.worldSize)]
            var generator = RandomGenerator(seed: seed, stream: stream)
            let p = mixing.sampleParameters(height: transform.outputHeight, width: transform.outputWidth, generator: &generator)
            mixing.mix(images: storage.pointer, count: count, height: transform.outputHeight,
                       width: transform.outputWidth, channels: transform.outputChannels, parameters: p)
            targets = mixing.targets(labels: labels.map(Int.init), classCount: dataset.classCount, lambda: p.lambda)
            parameters = p
        }
        return Batch(epoch: epoch, index: batch, count: count, height: transform.outputHeight,
                     width: transform.outputWidth, channels: transform.outputChannels, images: storage,
                     labels: labels, targets: targets, classCount: dataset.classCount, indices: used,
                     mixing: parameters, skippedSamples: skipped)
    }

    private func record(_ error: Error, index: Int, epoch: Int) {
        statisticsLock.lock()
        _statistics.skippedSamples += 1
        if _statistics.skippedErrors.count < 20 { _statistics.skippedErrors.append("\(error)") }
        let first = reported.insert(index).inserted
        if first { _statistics.distinctSkippedImages += 1 }
        let callback = first ? _onSkippedImage : nil
        statisticsLock.unlock()
        // Outside the lock: the callback may read `statistics`.
        if let callback {
            callback(SkippedImage(index: index, name: sampleName(index), reason: "\(error)", epoch: epoch))
        }
    }

    private func sampleName(_ index: Int) -> String {
        switch try? dataset.source(at: index) {
        case .file(let path): return path
        case .encoded(_, let name): return name
        case .pixels, nil: return "sample \(index)"
        }
    }
}

/// The batches of one epoch, produced by the loader's workers and returned in order.
/// Dropping it before the end stops the workers.
public final class EpochBatches: @unchecked Sendable {
    private let state: EpochState

    init(loader: DataLoader, epoch: Int, indices: [Int], first: Int) {
        state = EpochState(loader: loader, epoch: epoch, indices: indices, first: first)
    }

    deinit { state.cancel() }

    /// The epoch.
    public var epoch: Int { state.epoch }
    /// Number of batches.
    public var count: Int { state.count }
    /// Samples of this epoch that could not be loaded and were replaced
    /// (``CorruptImagePolicy/skip``), summed over the batches returned by ``next()`` so far:
    /// after the last batch, the epoch's total (the same whatever the number of workers).
    public var skippedSamples: Int { state.skippedSamples }
    /// The next batch in order, nil after the last. Throws the first worker error.
    public func next() throws -> Batch? { try state.next() }
    /// All remaining batches (convenience for small data and tests).
    public func collect() throws -> [Batch] {
        var out: [Batch] = []
        while let b = try next() { out.append(b) }
        return out
    }
    /// Stops the workers early (the remaining batches are not produced).
    public func cancel() { state.cancel() }
    /// Waits until every worker thread has exited (after the last batch or a cancel).
    public func waitForWorkers() { state.waitForWorkers() }
}

final class EpochState: @unchecked Sendable {
    let epoch: Int
    let count: Int
    private let loader: DataLoader
    private let indices: [Int]
    private let condition = NSCondition()
    private var nextToStart = 0
    private var consumed = 0
    private var ready: [Int: Batch] = [:]
    private var failure: Error?
    private var cancelled = false
    private var running = 0
    private var skipped = 0

    init(loader: DataLoader, epoch: Int, indices: [Int], first: Int) {
        self.loader = loader
        self.epoch = epoch
        self.indices = indices
        count = loader.dropLast ? indices.count / loader.batchSize
                                : (indices.count + loader.batchSize - 1) / loader.batchSize
        nextToStart = min(max(first, 0), count)
        consumed = nextToStart
        running = loader.workers
        for worker in 0..<loader.workers {
            let thread = Thread { [self] in self.work(worker: worker) }
            thread.name = "usi-data-\(worker)"
            thread.stackSize = 1 << 22
            thread.start()
        }
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    func next() throws -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        guard consumed < count else { return nil }
        while ready[consumed] == nil && failure == nil && !cancelled { condition.wait() }
        if let failure { throw failure }
        guard let batch = ready.removeValue(forKey: consumed) else { return nil }
        consumed += 1
        skipped += batch.skippedSamples
        condition.broadcast()
        return batch
    }

    var skippedSamples: Int {
        condition.lock()
        defer { condition.unlock() }
        return skipped
    }

    func waitForWorkers() {
        condition.lock()
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    private func work(worker: Int) {
        while true {
            condition.lock()
            while !cancelled && failure == nil && nextToStart < count && nextToStart >= consumed + loader.prefetchBatches {
                condition.wait()
            }
            if cancelled || failure != nil || nextToStart >= count {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let b = nextToStart
            nextToStart += 1
            condition.unlock()
            do {
                let batch = try loader.makeBatch(epoch: epoch, batch: b, indices: indices, worker: worker)
                condition.lock()
                ready[b] = batch
                condition.broadcast()
                condition.unlock()
            } catch {
                condition.lock()
                if failure == nil { failure = error }
                condition.broadcast()
                condition.unlock()
            }
        }
    }
}
