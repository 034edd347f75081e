import ArgumentParser
import Foundation
import Logging
import USI

@main
struct USICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usi",
        abstract: "Train any image-classification backbone with the USI recipe (knowledge distillation + a fixed set of modern tricks).",
        discussion: """
        `usi train` with no arguments trains the default student on Fashion-MNIST with the bundled teacher.
        Weights are safetensors files in PyTorch layout with timm's names, so timm loads them and they load timm's.
        The library logs through swift-log to standard error: warnings and errors by default, more with \
        USI_LOG_LEVEL=info (or debug, trace).
        """,
        subcommands: [Train.self, Teacher.self, Compare.self, Evaluate.self, Predict.self, ListModels.self, Forward.self, Convert.self, Bench.self,
                      CommunicatorCheck.self])

    /// Installs the log handler before any command runs: the library only creates loggers.
    static func main() {
        let level = ProcessInfo.processInfo.environment["USI_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
            try command.run()
            // Under mpirun every rank must finalise, or the launcher reports an improper exit.
            try MPICommunicator.initialized?.finalize()
        } catch {
            if let world = MPICommunicator.initialized, world.size > 1 {
                // One rank's error must end the job, not leave the others in a collective.
                FileHandle.standardError.write(Data("usi: rank \(world.rank) of \(world.size): \(error)\n".utf8))
                world.abort(code: 1)
            }
            // Failed before joining the job (a refused option): the launcher ends the others,
            // and the message still says which rank.
            if let launched = Distributed.launchedRank(), launched.size > 1, exitCode(for: error) != .success {
                FileHandle.standardError.write(Data("usi: rank \(launched.rank) of \(launched.size), before joining the MPI job: \(fullMessage(for: error))\n".utf8))
            }
            exit(withError: error)
        }
    }
}
