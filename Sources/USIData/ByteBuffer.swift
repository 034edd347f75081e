#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A grow-only byte buffer owned by one worker, reused from sample to sample so that the
/// hot path does not allocate.
final class ByteBuffer {
    private(set) var pointer: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int

    init(capacity: Int = 1 << 16) {
        self.capacity = max(capacity, 64)
        pointer = .allocate(capacity: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Makes room for `count` bytes; the contents are not preserved when it grows.
    func reserve(_ count: Int) {
        guard count > capacity else { return }
        pointer.deallocate()
        capacity = max(count, capacity + capacity / 2)
        pointer = .allocate(capacity: capacity)
    }

    /// Reads a whole file into the buffer and returns its size. A file larger than
    /// `maximumBytes` is refused before anything is allocated for it.
    func read(file path: String, maximumBytes: Int = .max) throws -> Int {
        guard let file = fopen(path, "rb") else {
            throw DataError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var info = stat()
        guard fstat(fileno(file), &info) == 0 else {
            throw DataError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw DataError.unreadable(path: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        guard size <= maximumBytes else {
            throw DataError.decodeFailed(
                name: path,
                reason: "file of \(size) bytes exceeds the limit of \(maximumBytes) bytes (raise it with \(ImageLimits.bytesVariable) or ImageLimits)")
        }
        reserve(size)
        let got = fread(pointer, 1, size, file)
        guard got == size else {
            throw DataError.unreadable(path: path, reason: "short read (\(got) of \(size) bytes)")
        }
        return size
    }
}
