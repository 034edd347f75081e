import Synchronization

/// Counts the floating-point operations (2 per multiply-add) of the convolutions and matrix
/// products run inside ``count(_:)`` on the calling task, not those of other threads running at
/// the same time (a process-wide counter let concurrent work into a count).
public enum FlopCounter {
    /// The running total of one ``count(_:)``.
    final class Tally: Sendable {
        let flops = Atomic<Int>(0)
    }

    @TaskLocal static var tally: Tally?

    /// Runs `body` and returns its result with the FLOPs it performed.
    public static func count<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Int) {
        let running = Tally()
        let result = try $tally.withValue(running) { try body() }
        return (result, running.flops.load(ordering: .relaxed))
    }

    @inline(__always)
    static func add(multiplyAdds: Int) {
        tally?.flops.add(2 * multiplyAdds, ordering: .relaxed)
    }
}
