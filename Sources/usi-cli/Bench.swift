import ArgumentParser
import Foundation
import USICore

/// `usi bench …`: the project's own performance measurements.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure kernels, models and the data pipeline on this machine.",
        subcommands: [BenchKernels.self])
}

/// Options every benchmark shares.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Compute threads (BLAS and kernels). Default: all cores.")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            Threading.setThreadCount(threads)
        } else {
            Threading.setThreadCount(ProcessInfo.processInfo.activeProcessorCount)
        }
    }
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "SGEMM and convolution GFLOP/s (forward; backward = input + weight gradients).")

    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Option(help: "Size n of the n×n×n SGEMM that sets the reference figure.")
    var sgemmSize = 2048

    func run() throws {
        try threadOptions.apply()
        let report = KernelBenchmark.run(sgemmSize: sgemmSize)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("threads \(report.threads)   sgemm \(sgemmSize)³: \(format(report.sgemmGflops)) GFLOP/s")
        print("layer".padding(toLength: 30, withPad: " ", startingAt: 0) + "   fwd GFLOP/s  (of sgemm)   bwd GFLOP/s  (of sgemm)")
        for layer in report.layers {
            print(layer.name.padding(toLength: 30, withPad: " ", startingAt: 0)
                  + "   \(format(layer.fwdGflops).leftPadded(11))  \(percent(layer.fwdFraction).leftPadded(9))"
                  + "   \(format(layer.bwdGflops).leftPadded(11))  \(percent(layer.bwdFraction).leftPadded(9))")
        }
    }
}

func format(_ value: Double, digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
func percent(_ fraction: Double) -> String { String(format: "%.0f %%", fraction * 100) }

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
