import Foundation

/// What loading a `state_dict` did: keys it could not use and keys it did not find.
public struct LoadReport: Sendable, CustomStringConvertible {
    /// Module keys with no tensor in the file.
    public var missing: [String] = []
    /// File keys the module does not have.
    public var unexpected: [String] = []
    /// Keys present on both sides with different shapes: `(key, file shape, module shape)`.
    public var mismatched: [(key: String, file: [Int], module: [Int])] = []
    /// Keys deliberately skipped (e.g. a classifier with another class count).
    public var skipped: [String] = []

    /// `true` when every key matched.
    public var isExact: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty && skipped.isEmpty }

    /// A readable summary listing the keys at fault.
    public var description: String {
        var lines: [String] = []
        if !missing.isEmpty { lines.append("missing keys: \(missing.joined(separator: ", "))") }
        if !unexpected.isEmpty { lines.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
        if !mismatched.isEmpty {
            lines.append("shape mismatches: " + mismatched.map { "\($0.key) (file \($0.file), model \($0.module))" }.joined(separator: ", "))
        }
        if !skipped.isEmpty { lines.append("skipped (re-initialised): \(skipped.joined(separator: ", "))") }
        return lines.isEmpty ? "all keys matched" : lines.joined(separator: "\n")
    }
}

/// A `state_dict` that does not fit the module, with the full report.
public struct StateDictError: Error, CustomStringConvertible {
    /// Where the weights came from.
    public let source: String
    /// What did not match.
    public let report: LoadReport
    /// The message.
    public var description: String { "weights in \(source) do not fit the model:\n\(report)" }
}

extension Module {
    /// The module's tensors in PyTorch layout, ready for ``SafeTensors/write(_:metadata:to:)``;
    /// timm's `load_state_dict(strict=True)` accepts the result.
    public func stateDict(dtype: SafeTensorsDType = .float32) -> [String: SafeTensorsRecord] {
        var records: [String: SafeTensorsRecord] = [:]
        for entry in namedTensors() {
            switch entry.layout {
            case .identical: records[entry.name] = SafeTensorsRecord(entry.tensor, dtype: dtype)
            case .convolutionWeight:
                records[entry.name] = SafeTensorsRecord(withoutGradients { entry.tensor.permuted([0, 3, 1, 2]) }, dtype: dtype)
            case .integerCounter:
                records[entry.name] = SafeTensorsRecord(int64: [Int64(entry.tensor.item)], shape: [])
            }
        }
        return records
    }

    /// Writes ``stateDict(dtype:)`` with `metadata` to a safetensors file (atomically).
    public func save(to url: URL, metadata: [String: String] = [:], dtype: SafeTensorsDType = .float32) throws {
        try SafeTensors.write(stateDict(dtype: dtype), metadata: metadata, to: url)
    }

    /// Loads a PyTorch/timm `state_dict` from a safetensors file.
    ///
    /// - Parameters:
    ///   - strict: when `true`, any missing, unexpected or mismatched key throws a
    ///     ``StateDictError`` listing them all, and nothing is changed.
    ///   - skippingMismatchedPrefixes: key prefixes (e.g. the classifier, `fc.`/`head.`) whose
    ///     shape mismatches are tolerated in non-strict mode: those tensors keep their fresh
    ///     initialisation and are listed in ``LoadReport/skipped``.
    ///   - keyPrefix: prepended to the module's keys when looking them up in the file.
    /// - Returns: what matched and what did not. Non-strict mode loads every key that fits and
    ///   reports missing and unexpected keys; it still throws on a shape mismatch outside
    ///   `skippingMismatchedPrefixes` or when no key fits at all (a different architecture).
    @discardableResult
    public func load(_ file: SafeTensorsFile, strict: Bool = true, skippingMismatchedPrefixes: [String] = [],
                     keyPrefix: String = "") throws -> LoadReport {
        var report = LoadReport()
        let own = namedTensors()
        let ownKeys = Set(own.map { keyPrefix + $0.name })
        report.unexpected = file.names.filter { !ownKeys.contains($0) && ($0.hasPrefix(keyPrefix)) }
        var assignments: [(NamedTensor, String)] = []
        for entry in own {
            let key = keyPrefix + entry.name
            guard let fileEntry = file.entries[key] else {
                report.missing.append(key)
                continue
            }
            let expected: [Int]
            switch entry.layout {
            case .convolutionWeight: expected = [0, 3, 1, 2].map { entry.tensor.shape[$0] }
            default: expected = entry.tensor.shape
            }
            let fileShape = fileEntry.shape
            let fits = fileShape == expected || (entry.layout == .integerCounter && fileShape.reduce(1, *) == 1)
            guard fits else {
                if skippingMismatchedPrefixes.contains(where: { entry.name.hasPrefix($0) }) {
                    report.skipped.append(key)
                } else {
                    report.mismatched.append((key, fileShape, expected))
                }
                continue
            }
            assignments.append((entry, key))
        }
        if strict && !(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty && report.skipped.isEmpty) {
            throw StateDictError(source: file.source, report: report)
        }
        // Even a lenient load must fit: no unexplained shape mismatch, and something must load.
        if !strict && (!report.mismatched.isEmpty || assignments.isEmpty) {
            throw StateDictError(source: file.source, report: report)
        }
        for (entry, key) in assignments {
            let value = try file.tensor(key)
            switch entry.layout {
            case .convolutionWeight: entry.tensor.assign(withoutGradients { value.permuted([0, 2, 3, 1]) })
            default: entry.tensor.assign(value)
            }
        }
        return report
    }

    /// Loads weights from a safetensors file or a PyTorch checkpoint (``SafeTensorsFile/init(weightsAt:key:)``) at `url`; see ``load(_:strict:skippingMismatchedPrefixes:keyPrefix:)``.
    @discardableResult
    public func load(contentsOf url: URL, strict: Bool = true, skippingMismatchedPrefixes: [String] = []) throws -> LoadReport {
        try load(SafeTensorsFile(weightsAt: url), strict: strict, skippingMismatchedPrefixes: skippingMismatchedPrefixes)
    }
}
