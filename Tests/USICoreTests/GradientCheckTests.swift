import Testing
import USICore

/// Finite-difference checks of every differentiable op's pullback (see `checkGradients`).
@Suite("Finite-difference gradients")
struct GradientCheckTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let shapes: [[Int]]
        var epsilon: Float = 1e-2
        let f: @Sendable ([Tensor]) -> Tensor
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "add broadcast", shapes: [[2, 3, 4], [4]]) { $0[0] + $0[1] },
        Case(name: "sub broadcast", shapes: [[2, 1, 4], [3, 1]]) { $0[0] - $0[1] },
        Case(name: "mul broadcast", shapes: [[2, 3, 4], [2, 1, 4]]) { $0[0] * $0[1] },
        Case(name: "div broadcast", shapes: [[2, 3], [3]]) { $0[0] / ($0[1] * $0[1] + 1) },
        Case(name: "scalar affine", shapes: [[5]]) { 3 - $0[0] * 2 + 1 },
        Case(name: "reshape", shapes: [[2, 6]]) { $0[0].reshaped([3, -1]) * $0[0].reshaped([3, 4]) },
        Case(name: "permute", shapes: [[2, 3, 4]]) { $0[0].permuted([2, 0, 1]) },
        Case(name: "transpose", shapes: [[3, 4]]) { $0[0].transposed(0, 1) },
        Case(name: "slice", shapes: [[4, 5]]) { $0[0].slice(axis: 1, 1..<4) },
        Case(name: "split", shapes: [[6, 2]]) { ts in let p = ts[0].split(sizes: [2, 4], axis: 0); return p[1].sum(axes: [0]) * p[0].mean(axes: [0]) },
        Case(name: "concatenate", shapes: [[2, 3], [2, 2]]) { concatenate([$0[0], $0[1], $0[0]], axis: 1) },
        Case(name: "roll (Swin's cyclic shift)", shapes: [[2, 5, 4, 3]]) { $0[0].rolled(-2, axis: 1).rolled(3, axis: 2) * $0[0] },
        Case(name: "gatherLastAxis (relative-position bias)", shapes: [[3, 5]]) { gatherLastAxis($0[0], indices: [0, 4, 4, 2, 1, 0, 3]) },
        Case(name: "pad", shapes: [[1, 3, 3, 2]]) { $0[0].padded([(0, 0), (1, 2), (2, 1)], value: 0.5) },
        Case(name: "sum axes", shapes: [[2, 3, 4]]) { $0[0].sum(axes: [0, 2]) },
        Case(name: "mean axes keep", shapes: [[2, 3, 4]]) { $0[0].mean(axes: [1], keepingAxes: true) },
        Case(name: "sum all", shapes: [[3, 3]]) { ($0[0] * $0[0]).sum() },
        Case(name: "matmul", shapes: [[3, 4], [4, 5]]) { matmul($0[0], $0[1]) },
        Case(name: "matmul transposeA", shapes: [[4, 3], [4, 5]]) { matmul($0[0], $0[1], transposeA: true) },
        Case(name: "matmul transposeB batched", shapes: [[2, 3, 4], [2, 5, 4]]) { matmul($0[0], $0[1], transposeB: true) },
        Case(name: "matmul shared B", shapes: [[2, 3, 4], [4, 5]]) { matmul($0[0], $0[1]) },
        Case(name: "linear", shapes: [[2, 3, 4], [5, 4], [5]]) { linear($0[0], weight: $0[1], bias: $0[2]) },
        Case(name: "conv2d 3x3 s2", shapes: [[2, 7, 6, 4], [5, 3, 3, 4], [5]]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], stride: (2, 2), padding: .symmetric(1))
        },
        Case(name: "conv2d same dilated groups", shapes: [[1, 6, 7, 4], [6, 3, 3, 2]]) {
            conv2d($0[0], weight: $0[1], padding: .same, dilation: (2, 2), groups: 2)
        },
        Case(name: "conv2d 1x1", shapes: [[2, 4, 4, 6], [3, 1, 1, 6]]) { conv2d($0[0], weight: $0[1]) },
        Case(name: "depthwise conv", shapes: [[2, 5, 5, 3], [3, 3, 3, 1], [3]]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], stride: (2, 2), padding: .same, groups: 3)
        },
        Case(name: "batchNorm train", shapes: [[4, 3, 3, 5], [5], [5]]) {
            batchNorm($0[0], weight: $0[1], bias: $0[2], runningMean: nil, runningVariance: nil, training: true)
        },
        Case(name: "layerNorm", shapes: [[3, 4, 6], [6], [6]]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) },
        Case(name: "exp", shapes: [[20]]) { exp($0[0]) },
        Case(name: "log", shapes: [[20]]) { log($0[0] * $0[0] + 0.5) },
        Case(name: "sqrt", shapes: [[20]]) { sqrt($0[0] * $0[0] + 0.5) },
        Case(name: "square", shapes: [[20]]) { square($0[0]) },
        Case(name: "abs", shapes: [[20]]) { abs($0[0] + 0.05) },
        Case(name: "clamp", shapes: [[20]]) { clamp($0[0] * 2, lower: -0.5, upper: 0.7) },
        Case(name: "relu6", shapes: [[40]]) { relu6($0[0] * 4) },
        Case(name: "hardswish", shapes: [[40]]) { hardSwish($0[0] * 4) },
        Case(name: "gelu", shapes: [[40]]) { gelu($0[0] * 3) },
        Case(name: "silu", shapes: [[40]]) { silu($0[0] * 3) },
        Case(name: "softmax", shapes: [[3, 7]]) { softmax($0[0] * 3) },
        Case(name: "logSoftmax", shapes: [[3, 7]]) { logSoftmax($0[0] * 3) },
        // A small step so that no window's maximum changes hands between the two evaluations.
        Case(name: "maxPool2d", shapes: [[2, 6, 6, 3]], epsilon: 1e-3) { maxPool2d($0[0], kernel: (3, 3), stride: (2, 2), padding: .symmetric(1)) },
        Case(name: "avgPool2d ceil", shapes: [[1, 7, 7, 2]]) {
            avgPool2d($0[0], kernel: (2, 2), stride: (2, 2), ceilMode: true, countIncludePad: false)
        },
        Case(name: "adaptiveAvgPool2d", shapes: [[1, 7, 5, 2]]) { adaptiveAvgPool2d($0[0], outputSize: (3, 2)) },
        Case(name: "globalAvgPool2d", shapes: [[2, 3, 3, 4]]) { globalAvgPool2d($0[0]) },
        Case(name: "crossEntropy soft", shapes: [[3, 5]]) { crossEntropy($0[0] * 2, softTargets: Tensor(shape: [3, 5], repeating: 0.2)) },
        Case(name: "crossEntropy hard", shapes: [[3, 5]]) { crossEntropy($0[0] * 2, labels: [0, 4, 2]) },
        Case(name: "klDivergence", shapes: [[3, 5], [3, 5]]) { klDivergence(student: $0[0] * 2, teacher: $0[1] * 2) },
        Case(name: "dropout", shapes: [[4, 8]]) { x in
            var g = RandomGenerator(seed: 5)
            return dropout(x[0], probability: 0.3, training: true, generator: &g)
        },
        Case(name: "dropPath", shapes: [[4, 2, 2, 3]]) { x in
            var g = RandomGenerator(seed: 6)
            return dropPath(x[0], probability: 0.5, training: true, generator: &g)
        },
    ]

    @Test("gradient matches finite differences", arguments: cases)
    func gradient(_ c: Case) {
        let inputs = c.shapes.enumerated().map { randomTensor($1, seed: UInt64(17 + $0)) }
        checkGradients(c.name, inputs: inputs, epsilon: c.epsilon, c.f)
    }
}
