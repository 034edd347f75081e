import CUSIKernels

/// The process's one thread budget: BLAS threads and the kernel pool together.
///
/// Data-loading workers are separate (they decode and augment but never run BLAS).
public enum Threading {
    /// The number of threads compute kernels use.
    public static var threadCount: Int { Int(usi_get_num_threads()) }

    /// Sets BLAS and kernel-pool threads (at least 1), and flushes denormals on this thread.
    public static func setThreadCount(_ count: Int) {
        precondition(count >= 1, "thread count must be at least 1, got \(count)")
        usi_set_num_threads(Int32(count))
        usi_flush_denormals()
    }
}
