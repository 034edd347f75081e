/// Errors thrown by the data pipeline. Every message names the file or the argument at fault.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file or directory could not be opened or read.
    case unreadable(path: String, reason: String)
    /// A file's content is not what its format requires (bad magic, truncated, corrupt).
    case corrupt(path: String, reason: String)
    /// An image could not be decoded.
    case decodeFailed(name: String, reason: String)
    /// A dataset folder does not have the expected layout.
    case badLayout(path: String, reason: String)
    /// An argument is out of range or inconsistent.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read '\(path)': \(reason)"
        case .corrupt(let path, let reason): return "corrupt file '\(path)': \(reason)"
        case .decodeFailed(let name, let reason): return "cannot decode image '\(name)': \(reason)"
        case .badLayout(let path, let reason): return "unexpected dataset layout at '\(path)': \(reason)"
        case .invalidArgument(let message): return "invalid argument: \(message)"
        }
    }
}
