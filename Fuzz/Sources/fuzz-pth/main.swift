import CFuzzDriver
import Foundation

// libFuzzer's command line (corpus directories, -max_total_time=…, -runs=…) drives fuzzPyTorch.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzPyTorch($0, $1) })
