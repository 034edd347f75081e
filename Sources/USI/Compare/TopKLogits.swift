import Foundation

/// Top-k compression of teacher logits, as TinyViT stores them: per image the k largest
/// softmax probabilities and their classes; on the way back, the remaining mass
/// `1 − Σ top-k` spread evenly over the other classes, returned as log-probabilities (whose
/// softmax is that distribution, so the KL term sees it unchanged).
public enum TopKLogits {
    /// The k largest probabilities of each row of `logits` (`rows × classes`, row-major), in
    /// descending order, and their class indices.
    public static func compress(_ logits: [Float], rows: Int, classes: Int, k: Int) -> (probabilities: [Float], indices: [UInt16]) {
        var probabilities = [Float](), indices = [UInt16]()
        probabilities.reserveCapacity(rows * k)
        indices.reserveCapacity(rows * k)
        for row in 0..<rows {
            let slice = logits[(row * classes)..<((row + 1) * classes)]
            let maximum = slice.max() ?? 0
            var exps = slice.map { Double(exp($0 - maximum)) }
            let sum = exps.reduce(0, +)
            for i in exps.indices { exps[i] /= sum }
            // Stable order for equal probabilities: the lower class first.
            let top = exps.indices.sorted { exps[$0] != exps[$1] ? exps[$0] > exps[$1] : $0 < $1 }.prefix(k)
            for i in top {
                probabilities.append(Float(exps[i]))
                indices.append(UInt16(i - exps.startIndex))
            }
        }
        return (probabilities, indices)
    }

    /// Log-probabilities `rows × classes` from ``compress(_:rows:classes:k:)``'s output.
    public static func expand(probabilities: [Float], indices: [UInt16], rows: Int, classes: Int, k: Int) -> [Float] {
        var logits = [Float](repeating: 0, count: rows * classes)
        for row in 0..<rows {
            let kept = probabilities[(row * k)..<((row + 1) * k)]
            let rest = classes > k ? max(1 - kept.reduce(0, +), 0) / Float(classes - k) : 0
            // A floor keeps log finite when the top k hold (all but rounding of) the mass.
            let restLog = log(max(rest, 1e-30))
            for c in 0..<classes { logits[row * classes + c] = restLog }
            for j in 0..<k {
                logits[row * classes + Int(indices[row * k + j])] = log(max(kept[kept.startIndex + j], 1e-30))
            }
        }
        return logits
    }
}
