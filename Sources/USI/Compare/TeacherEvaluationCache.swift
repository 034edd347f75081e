import Foundation

/// The teacher's validation accuracy per ``TeacherEvaluationKey`` in one small JSON file
/// (`evaluations.json` beside the logits stores), so that each student of a comparison does
/// not evaluate the teacher again.
final class TeacherEvaluationCache {
    let url: URL

    init(url: URL) { self.url = url }

    /// The cached result for `key`, or `evaluate`'s, written back.
    func result(for key: TeacherEvaluationKey, _ evaluate: () throws -> EvaluationResult) throws -> EvaluationResult {
        var entries = try read()
        if let cached = entries[key.name] { return cached }
        let result = try evaluate()
        entries[key.name] = result
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(entries).write(to: url, options: .atomic)
        } catch {
            throw TrainingError.invalidConfiguration("cannot write \(url.path): \(error.localizedDescription)")
        }
        return result
    }

    private func read() throws -> [String: EvaluationResult] {
        guard let data = FileManager.default.contents(atPath: url.path) else { return [:] }
        do {
            return try JSONDecoder().decode([String: EvaluationResult].self, from: data)
        } catch {
            throw TrainingError.invalidData("\(url.path) is damaged (\(error.localizedDescription)); delete it to evaluate the teacher again")
        }
    }
}
