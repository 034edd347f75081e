import Synchronization

/// Recycles float buffers by size class so that a steady training loop, which asks for the
/// same activation and gradient sizes every step, stops calling `malloc` after its first step.
///
/// Sizes are rounded up to classes at most 12.5 % apart; buffers are 64-byte aligned.
/// The pool is shared by all threads (a mutex guards it) and keeps at most
/// ``maximumCachedBytes`` of idle memory; beyond that, released buffers are freed.
public final class BufferPool: Sendable {
    /// The process-wide pool used by every ``Tensor``.
    public static let shared = BufferPool()

    private struct State {
        var free: [Int: [UInt]] = [:]  // idle buffers by size class, as addresses (Sendable)
        var cachedBytes = 0
        var maximumCachedBytes = 8 << 30
        var allocations = 0
    }
    private let state = Mutex(State())

    /// Idle memory the pool may hold before it starts freeing released buffers.
    public var maximumCachedBytes: Int {
        get { state.withLock { $0.maximumCachedBytes } }
        set { state.withLock { $0.maximumCachedBytes = newValue } }
    }

    /// How many times the pool has had to allocate fresh memory (a steady loop stops growing it).
    public var allocationCount: Int { state.withLock { $0.allocations } }

    /// Bytes of idle memory currently held.
    public var cachedBytes: Int { state.withLock { $0.cachedBytes } }

    /// The size class (in elements) a request of `count` elements is served from.
    static func sizeClass(_ count: Int) -> Int {
        if count <= 64 { return 64 }
        let shift = (Int.bitWidth - 1 - count.leadingZeroBitCount) - 3
        let step = 1 << shift
        return (count + step - 1) & ~(step - 1)
    }

    /// A buffer of at least `count` floats (uninitialised) and its capacity.
    func acquire(_ count: Int) -> (UnsafeMutablePointer<Float>, Int) {
        let capacity = Self.sizeClass(count)
        let reused: UInt? = state.withLock { s in
            guard var list = s.free[capacity], let p = list.popLast() else {
                s.allocations += 1
                return nil
            }
            s.free[capacity] = list
            s.cachedBytes -= capacity * 4
            return p
        }
        let raw = reused.flatMap { UnsafeMutableRawPointer(bitPattern: $0) } ?? UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64)
        return (raw.bindMemory(to: Float.self, capacity: capacity), capacity)
    }

    func release(_ pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        let raw = UnsafeMutableRawPointer(pointer)
        let address = UInt(bitPattern: raw)
        let keep = state.withLock { s -> Bool in
            guard s.cachedBytes + capacity * 4 <= s.maximumCachedBytes else { return false }
            s.free[capacity, default: []].append(address)
            s.cachedBytes += capacity * 4
            return true
        }
        if !keep { raw.deallocate() }
    }

    /// Frees every idle buffer.
    public func trim() {
        let all = state.withLock { s -> [UInt] in
            let list = s.free.values.flatMap { $0 }
            s.free = [:]
            s.cachedBytes = 0
            return list
        }
        for address in all { UnsafeMutableRawPointer(bitPattern: address)?.deallocate() }
    }
}

/// Pooled, reference-counted float storage behind one or more tensors (reshapes share it).
final class TensorStorage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let capacity: Int

    init(count: Int) {
        (pointer, capacity) = BufferPool.shared.acquire(max(count, 1))
    }

    deinit { BufferPool.shared.release(pointer, capacity: capacity) }
}
