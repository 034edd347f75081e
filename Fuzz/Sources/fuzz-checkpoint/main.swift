import CFuzzDriver
import Foundation

// `fuzz-checkpoint --write-seeds DIR [COMMIT_JSON] [WEIGHTS]` writes the seed corpus; otherwise
// libFuzzer's command line (corpus directories, -max_total_time=…, -runs=…) drives fuzzCheckpoint.
let arguments = CommandLine.arguments
if arguments.count >= 3, arguments[1] == "--write-seeds" {
    do {
        try writeSeeds(to: arguments[2], manifest: arguments.count > 3 ? arguments[3] : nil,
                       weights: arguments.count > 4 ? arguments[4] : nil)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("fuzz-checkpoint: \(error)\n".utf8))
        exit(1)
    }
}
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzCheckpoint($0, $1) })
