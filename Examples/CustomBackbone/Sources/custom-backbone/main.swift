// A custom backbone, conformed in a few lines and trained with the USI scheme by a loop of our
// own around the library's public training step: one short epoch on a Fashion-MNIST slice,
// distilled from the bundled teacher, then its accuracy.
import Foundation
import USI

/// Two conv–BN–ReLU stages and a linear classifier. Stored layers are found by the library;
/// their property names are the state-dict keys (`stem.weight`, `norm1.running_mean`, …).
final class SmallConvNet: Module, Backbone {
    let config = BackboneConfig(architecture: "small_convnet", classes: 10, inputChannels: 1, inputSize: 32,
                                mean: [0.286], standardDeviation: [0.353], cropFraction: 1, interpolation: .bilinear)
    let stem = Conv2d(inputChannels: 1, outputChannels: 32, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
    let norm1 = BatchNorm(32)
    let conv2 = Conv2d(inputChannels: 32, outputChannels: 64, kernelSize: 3, stride: 2, padding: .symmetric(1), bias: false)
    let norm2 = BatchNorm(64)
    let classifier = Linear(inputFeatures: 64, outputFeatures: 10)

    func callAsFunction(_ x: Tensor) -> Tensor {
        let features = relu(norm2(conv2(relu(norm1(stem(x))))))
        return classifier(globalAvgPool2d(features))
    }
}

let arguments = CommandLine.arguments
let trainImages = arguments.count > 1 ? Int(arguments[1]) ?? 6_000 : 6_000
let started = ContinuousClock.now

let train = try DatasetSubset(IDXDataset.fashionMNIST(split: .train), first: trainImages)
let validation = try DatasetSubset(IDXDataset.fashionMNIST(split: .test), first: 2_000)
let student = try Initialization.withSeed(0) { SmallConvNet() }
let distiller = try Distiller(teacher: EmbeddedDefault.teacher(), student: student.config)

let config = USIConfig.usi(epochs: 1, batchSize: 128)
let recipe = config.resolved(trainingSamples: train.count, imageSize: student.config.inputSize)
let step = try TrainingStep(student: student, distiller: distiller, config: config, recipe: recipe)
let loader = try recipe.makeTrainingLoader(data: train, student: student.config, config: config)

func seconds(since start: ContinuousClock.Instant) -> String {
    let d = ContinuousClock.now - start
    return String(format: "%.1f s", Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
}
let setup = seconds(since: started)
let training = ContinuousClock.now
var index = 0
for epoch in 0..<step.totalEpochs {
    let batches = loader.batches(epoch: epoch)
    while let batch = try batches.next() {
        let result = try step(batch, step: index)
        if index % 10 == 0 { print("step \(index): loss \(String(format: "%.4f", result.loss))") }
        index += 1
    }
}
let trained = seconds(since: training)
let evaluation = ContinuousClock.now
let accuracy = try Evaluator.evaluate(student, on: validation, cropFraction: 1)
print("""
    \(student.config.architecture): \(index) steps on \(train.count) images, top-1 \(String(format: "%.2f", accuracy.top1)) % \
    on \(accuracy.count) test images (\(student.namedParameters().count) parameter tensors); \
    setup \(setup), training \(trained), evaluation \(seconds(since: evaluation)), total \(seconds(since: started))
    """)
