/// A view of some samples of another dataset (e.g. a quick run on the first 5 000 images).
public struct DatasetSubset: ImageDataset {
    /// The full dataset.
    public let base: any ImageDataset
    /// The base indices this view exposes, in order.
    public let indices: [Int]

    /// Samples `indices` of `base`.
    public init(_ base: any ImageDataset, indices: [Int]) throws {
        guard indices.allSatisfy({ $0 >= 0 && $0 < base.count }) else {
            throw DataError.invalidArgument("subset index out of range 0..<\(base.count)")
        }
        self.base = base
        self.indices = indices
    }

    /// The first `count` samples of `base` (all of them when it has fewer).
    public init(_ base: any ImageDataset, first count: Int) throws {
        try self.init(base, indices: Array(0..<min(max(count, 0), base.count)))
    }

    public var count: Int { indices.count }
    public var classNames: [String] { base.classNames }
    public func label(at index: Int) -> Int { base.label(at: indices[index]) }
    public func source(at index: Int) throws -> ImageSource { try base.source(at: indices[index]) }
}
