import Foundation

/// A model of `usi compare --models`: an architecture, optionally with its own input size
/// (`levit_128s@64`) when the comparison's common size does not suit it.
public struct ComparisonModel: Sendable, Hashable, CustomStringConvertible {
    /// The architecture (`usi models` lists them).
    public var architecture: String
    /// Its own input side, or nil for the comparison's.
    public var inputSize: Int?

    /// Parses `name` or `name@size`.
    public init(parsing text: String) throws {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "@", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), !parts[0].isEmpty else {
            throw TrainingError.invalidConfiguration("'\(text)' is not a model: give NAME or NAME@SIZE, e.g. levit_128s@64")
        }
        architecture = parts[0]
        if parts.count == 2 {
            guard let size = Int(parts[1]), size >= 8 else {
                throw TrainingError.invalidConfiguration("'\(text)': the size after @ must be a whole number of pixels, at least 8")
            }
            inputSize = size
        }
    }

    /// Parses a comma-separated list; names must be distinct (each gets its own directory).
    public static func list(_ text: String) throws -> [ComparisonModel] {
        let models = try text.split(separator: ",").map { try ComparisonModel(parsing: String($0)) }
        guard !models.isEmpty else { throw TrainingError.invalidConfiguration("--models names no model") }
        var seen = Set<String>()
        for model in models where !seen.insert(model.description).inserted {
            throw TrainingError.invalidConfiguration("--models lists \(model) twice")
        }
        return models
    }

    /// `name` or `name@size`, the model's run directory's name.
    public var description: String { inputSize.map { "\(architecture)@\($0)" } ?? architecture }
}
