import CFuzzDriver
import Foundation

// libFuzzer's command line (corpus directories, -max_total_time=…, -runs=…) drives fuzzIDX.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzIDX($0, $1) })
