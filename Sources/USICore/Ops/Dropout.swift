import CUSIKernels

/// Inverted dropout: zeroes each element with probability `probability` and scales the rest
/// by `1 / (1 − probability)`. Identity when not training or when the probability is 0.
public func dropout(_ x: Tensor, probability: Float, training: Bool, generator: inout RandomGenerator) -> Tensor {
    precondition(probability >= 0 && probability < 1, "dropout: probability \(probability) must be in [0, 1)")
    guard training, probability > 0 else { return x }
    let mask = Tensor(uninitializedShape: x.shape)
    usi_dropout_mask(mask.pointer, mask.count, probability, generator.next())
    return x * mask
}

/// Stochastic depth (timm's `drop_path`): drops whole samples of a residual branch with
/// probability `probability`, scaling kept samples by `1 / (1 − probability)`.
public func dropPath(_ x: Tensor, probability: Float, training: Bool, generator: inout RandomGenerator) -> Tensor {
    precondition(probability >= 0 && probability < 1, "dropPath: probability \(probability) must be in [0, 1)")
    guard training, probability > 0, x.rank >= 1 else { return x }
    let keep = 1 - probability
    let samples = x.shape[0]
    let values = (0..<samples).map { _ in generator.nextFloat() < keep ? 1 / keep : 0 }
    let mask = Tensor(shape: [samples] + Array(repeating: 1, count: x.rank - 1), values: values)
    return x * mask
}
