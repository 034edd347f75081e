import CUSIKernels

/// A dense float32 array with reverse-mode automatic differentiation.
///
/// Tensors are contiguous and channels-last: images are `[N, H, W, C]`, token sequences
/// `[N, T, C]`. Every op returns a new tensor (reshape shares storage); when gradients are
/// being recorded (see ``GradientTape``) the op also records its pullback, and
/// ``backward(_:)`` on a scalar result fills ``grad`` of every tensor that
/// ``requiresGrad``.
///
/// Shape errors in ops are programming errors: they stop the program with a message naming
/// the op and the shapes (like an out-of-range array index). Errors a user can cause with
/// input data or files are thrown by the layers and loaders that read them.
public final class Tensor: @unchecked Sendable {
    /// The extent of each axis; `[]` for a scalar.
    public let shape: [Int]
    /// The number of elements (the product of `shape`).
    public let count: Int
    let storage: TensorStorage

    /// Whether gradients flow to this tensor. Set it on leaves (parameters, inputs you want
    /// gradients for); op results inherit it from their inputs.
    public var requiresGrad: Bool
    /// The gradient accumulated by ``backward(_:)``; `nil` until one reaches this tensor.
    public internal(set) var grad: Tensor?
    /// `true` unless this tensor was produced by a recorded op.
    public internal(set) var isLeaf = true

    /// Raw element storage. Valid while the tensor is alive: keep it alive around the use
    /// (`withExtendedLifetime`) when the tensor's last use is taking the pointer.
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer }

    /// A tensor with uninitialised contents (from the buffer pool).
    public init(uninitializedShape shape: [Int]) {
        Self.validate(shape)
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = TensorStorage(count: count)
        self.requiresGrad = false
    }

    init(shape: [Int], storage: TensorStorage) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = storage
        self.requiresGrad = false
    }

    /// A tensor filled with `value`.
    public convenience init(shape: [Int], repeating value: Float) {
        self.init(uninitializedShape: shape)
        pointer.initialize(repeating: value, count: count)
    }

    /// A tensor holding `values` (row-major) in `shape`.
    public convenience init(shape: [Int], values: [Float], requiresGrad: Bool = false) {
        self.init(uninitializedShape: shape)
        precondition(values.count == count,
                     "Tensor(shape: \(shape), values:) needs \(count) values, got \(values.count)")
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
        self.requiresGrad = requiresGrad
    }

    /// A rank-0 tensor holding `value`.
    public convenience init(_ value: Float) {
        self.init(shape: [], values: [value])
    }

    /// Zeros of the given shape.
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(shape: shape, repeating: 0)
        t.requiresGrad = requiresGrad
        return t
    }

    /// Ones of the given shape.
    public static func ones(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 1) }

    private static func validate(_ shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor shape \(shape) has a negative extent")
    }

    /// The number of axes.
    public var rank: Int { shape.count }

    /// The elements, row-major.
    public func toArray() -> [Float] {
        Array(UnsafeBufferPointer(start: pointer, count: count))
    }

    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item needs a one-element tensor, shape is \(shape)")
        return pointer.pointee
    }

    /// A copy that shares nothing and records nothing.
    public func copy() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    /// The same values, cut off from the gradient tape (shares storage).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// Overwrites this tensor's values with `other`'s (same element count), outside autograd.
    /// Used for parameters, buffers and loading weights.
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        withExtendedLifetime(other) { pointer.update(from: other.pointer, count: count) }
    }

    /// Sets every element to `value`, outside autograd.
    public func fill(_ value: Float) { pointer.update(repeating: value, count: count) }

    /// Drops the accumulated gradient.
    public func zeroGrad() { grad = nil }

    /// `true` when any element is NaN or infinite.
    public var hasNonFinite: Bool { usi_has_nonfinite(pointer, count) != 0 }

    /// Row-major strides in elements.
    public var strides: [Int] { Tensor.contiguousStrides(shape) }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= shape[i]
        }
        return strides
    }
}

extension Tensor: CustomStringConvertible {
    /// A short summary: shape and the first few values.
    public var description: String {
        let head = toArray().prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}
