import CFuzzDriver
import Foundation

// libFuzzer's command line (corpus directories, -max_total_time=…, -runs=…) drives fuzzSafeTensors.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzSafeTensors($0, $1) })
