import Foundation

/// Recycles fixed-size float allocations between batches, so a steady-state epoch does not
/// allocate image memory.
final class FloatBufferPool: @unchecked Sendable {
    let elementCount: Int
    private var free: [UnsafeMutablePointer<Float>] = []
    private let lock = NSLock()
    private(set) var allocations = 0

    init(elementCount: Int) { self.elementCount = elementCount }

    func take() -> UnsafeMutablePointer<Float> {
        lock.lock()
        defer { lock.unlock() }
        if let p = free.popLast() { return p }
        allocations += 1
        return .allocate(capacity: max(elementCount, 1))
    }

    func give(_ pointer: UnsafeMutablePointer<Float>) {
        lock.lock()
        free.append(pointer)
        lock.unlock()
    }

    deinit { for p in free { p.deallocate() } }
}

/// The float storage of one batch. When the last reference goes away its memory returns to
/// the loader's pool.
public final class BatchStorage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    /// Number of floats.
    public let count: Int
    private let pool: FloatBufferPool?

    init(pool: FloatBufferPool, count: Int) {
        self.pool = pool
        self.pointer = pool.take()
        self.count = count
    }

    deinit {
        if let pool { pool.give(pointer) } else { pointer.deallocate() }
    }

    /// Read access to the floats.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: pointer, count: count))
    }

    /// Write access to the floats (e.g. for a consumer that normalises in place).
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: pointer, count: count))
    }

    /// A copy as an array.
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// One batch from the loader: images `[count, height, width, channels]` (channels-last,
/// normalised, mixed if the loader mixes), the original labels and, when mixing, the soft
/// targets `[count, classCount]`.
public struct Batch: Sendable {
    /// The epoch it belongs to.
    public let epoch: Int
    /// Its position in the epoch (0-based).
    public let index: Int
    /// Number of samples.
    public let count: Int
    /// Image height.
    public let height: Int
    /// Image width.
    public let width: Int
    /// Image channels.
    public let channels: Int
    /// The pixels, `[count, height, width, channels]`.
    public let images: BatchStorage
    /// Each sample's own label (before mixing).
    public let labels: [Int32]
    /// Soft targets `[count, classCount]` when the loader mixes, else nil.
    public let targets: [Float]?
    /// Number of classes.
    public let classCount: Int
    /// The dataset index of each sample (after any corrupt-file substitution).
    public let indices: [Int]
    /// The mixing applied (nil when the loader does not mix).
    public let mixing: MixupCutmix.Parameters?
    /// Samples of this batch that could not be loaded and were replaced by a following one
    /// (``CorruptImagePolicy/skip``); each failed attempt counts once.
    public let skippedSamples: Int

    /// The images as a new array.
    public var imageArray: [Float] { images.array }
}
