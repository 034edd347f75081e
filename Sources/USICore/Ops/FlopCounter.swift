import Synchronization

/// Counts the multiply-add FLOPs (2 per MAC) of convolutions and matrix products run inside
/// ``count(_:)`` on any thread — how `usi models` reports GFLOPs.
public enum FlopCounter {
    private static let active = Atomic<Int>(0)
    private static let total = Atomic<Int>(0)

    /// Runs `body` and returns its result with the FLOPs it performed.
    public static func count<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Int) {
        total.store(0, ordering: .relaxed)
        active.add(1, ordering: .relaxed)
        defer { active.subtract(1, ordering: .relaxed) }
        let result = try body()
        return (result, total.load(ordering: .relaxed))
    }

    @inline(__always)
    static func add(multiplyAdds: Int) {
        if active.load(ordering: .relaxed) > 0 { total.add(2 * multiplyAdds, ordering: .relaxed) }
    }
}
