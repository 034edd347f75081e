import Foundation
import USICore

/// The decoders of a run directory's files, reachable by the in-process fuzzers in `Fuzz/`
/// (which import this module with `@_spi(Fuzzing)`). Not API: the trainer calls the same
/// functions through `--resume`, and these only let a fuzzer reach them without a run.
@_spi(Fuzzing)
public enum DecoderEntryPoints {
    /// Restores `student`, a fresh AdamW over its parameters and (when `withEMA`) a fresh EMA
    /// from checkpoint bytes, exactly as `--resume` does after the checksum; returns the epoch.
    public static func restoreCheckpoint(_ data: Data, into student: any Backbone, withEMA: Bool) throws -> Int {
        let optimizer = AdamW(parameters: student.namedParameters().map { ($0.name, $0.tensor) })
        let ema = withEMA ? ExponentialMovingAverage(student.namedTensors(), decay: 0.999) : nil
        let state = try TrainingCheckpoint.load(data, source: URL(fileURLWithPath: "fuzz"), student: student,
                                                optimizer: optimizer, ema: ema)
        try TrainingCheckpoint.validate(state, totalEpochs: state.config.epochs, stepsPerEpoch: Int.max)
        return state.epoch
    }

    /// A checkpoint of `student` after `steps` AdamW updates on its own parameters, as the
    /// trainer writes it (the fuzzer's seed corpus is made with it).
    public static func encodeCheckpoint(of student: any Backbone, steps: Int, midEpoch: Bool) throws -> Data {
        let optimizer = AdamW(parameters: student.namedParameters().map { ($0.name, $0.tensor) })
        let ema = ExponentialMovingAverage(student.namedTensors(), decay: 0.999)
        for _ in 0..<steps {
            for group in optimizer.parameterGroups {
                for p in group.parameters {
                    optimizer.update(p.tensor, gradient: Tensor(shape: p.tensor.shape, repeating: 0.5), name: p.name, group: group)
                }
            }
            ema.update()
        }
        let progress = midEpoch ? TrainingCheckpoint.Progress(step: 3, lossSum: 4.5, lossCount: 3, images: 384, seconds: 1.5,
                                                              learningRate: 1e-3, skippedImages: 1) : nil
        return try TrainingCheckpoint.encode(student: student, optimizer: optimizer, ema: ema, epoch: 1,
                                             config: .usi(epochs: 4, batchSize: 16), classNames: ["a", "b", "c"],
                                             teacher: "resnet10t (bf16)", progress: progress)
    }

    /// The student whose checkpoints the fuzzer feeds and the corpus holds: a conv, a
    /// BatchNorm and a classifier, small enough that a whole checkpoint is ~3.5 KB.
    public static func makeStudent() -> any Backbone { FuzzStudent() }

    /// Decodes a run directory's commit manifest (`commit.json`); returns the files it names.
    public static func decodeManifest(_ data: Data) throws -> [String] {
        try RunOutput.Manifest.decode(data, source: "fuzz").files.map(\.name)
    }
}

/// See ``DecoderEntryPoints/makeStudent()``.
private final class FuzzStudent: Module, Backbone {
    let config = BackboneConfig(architecture: "fuzz_student", classes: 3, inputChannels: 1, inputSize: 8,
                                mean: [0.5], standardDeviation: [0.5], cropFraction: 1, interpolation: .bilinear)
    let conv: Conv2d
    let bn: BatchNorm
    let fc: Linear

    override init() {
        conv = Conv2d(inputChannels: 1, outputChannels: 2, kernelSize: 3, stride: 1, padding: .symmetric(1), bias: false)
        bn = BatchNorm(2)
        fc = Linear(inputFeatures: 2, outputFeatures: 3)
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor { fc(globalAvgPool2d(relu(bn(conv(x))))) }
}
