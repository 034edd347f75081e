import ArgumentParser
import Foundation
import USI

/// `usi bench usi`: the phases of one USI step, so that the teacher's share is visible.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usi",
        abstract: "Time the phases of a USI training step: teacher forward, student forward+backward, AdamW+EMA, data.",
        discussion: """
        With no options: the embedded default (mobilenetv3_small_050 at 32 px grey, the bundled resnet10t teacher, \
        batch 128, Fashion-MNIST batches). Compare with Tools/bench/torch_usi_step.py, the same step in PyTorch.
        """)

    @Option(help: "Student architecture.")
    var model = EmbeddedDefault.studentArchitecture
    @Option(help: "Teacher architecture (random weights, 10 classes); default: the bundled teacher on the embedded default.")
    var teacher: String?
    @Flag(help: "Time the step without a teacher.")
    var noKd = false
    @Option(help: "Teacher precision, fp32 or bf16 (default: bf16 where the CPU has AVX512-BF16).")
    var teacherPrecision: InferencePrecision = .teacherDefault
    @Option(help: "Teacher convolutions: fastest (Winograd, no products with padding; the default, as usi train) or direct.")
    var teacherConvolutions: ConvolutionForm = .fastest
    @Option(help: "Images per step.")
    var batch = EmbeddedDefault.batchSize
    @Option(help: "Student input side.")
    var inputSize = EmbeddedDefault.inputSize
    @Option(help: "Timed rounds per phase (the median is reported).")
    var rounds = 10
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try threadOptions.apply()
        let data = try IDXDataset.fashionMNIST(split: .train)
        let student = try Models.create(model, classes: 10, inputChannels: 1, inputSize: inputSize)
        var distiller: Distiller?
        if !noKd {
            let teacherModel = try teacher.map { try Models.create($0, classes: 10, inputChannels: 3, inputSize: inputSize) }
                ?? EmbeddedDefault.teacher()
            distiller = try Distiller(teacher: teacherModel, student: student.config, precision: teacherPrecision,
                                      convolutions: teacherConvolutions)
        }
        let report = try StepBenchmark.run(student: student, distiller: distiller, data: data,
                                           config: .usi(epochs: EmbeddedDefault.epochs, batchSize: batch), rounds: rounds)
        if json { try printJSON(report); return }
        func ms(_ s: Double?) -> String { s.map { format($0 * 1000, digits: 1) + " ms" } ?? "–" }
        print("\(report.student) ← \(report.teacher.map { "\($0) (\(teacherPrecision.rawValue), \(teacherConvolutions.rawValue))" } ?? "no teacher"), batch \(report.batch), \(report.inputSize) px, threads \(report.threads), median of \(report.rounds)")
        print("teacher forward          \(ms(report.teacherSeconds).leftPadded(10))")
        print("student forward+backward \(ms(report.studentSeconds).leftPadded(10))")
        print("AdamW + EMA              \(ms(report.optimizerSeconds).leftPadded(10))")
        print("data (one batch)         \(ms(report.dataSeconds).leftPadded(10))")
        print("whole step               \(ms(report.stepSeconds).leftPadded(10))  \(format(report.stepImagesPerSecond, digits: 0)) img/s, teacher \(percent(report.teacherShare))")
    }
}
