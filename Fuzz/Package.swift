// swift-tools-version: 6.0
// In-process fuzzing of the readers that take untrusted files: libFuzzer targets built with
// Swift's `-sanitize=fuzzer` (plus AddressSanitizer), run by `Scripts/fuzz`. A separate
// package so the main package's manifest and build stay free of sanitizer flags.
import Foundation
import PackageDescription

// A path dependency's identity is its directory's name (`usi`, `main`, a worktree's name…),
// so it is computed rather than spelled.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let main = root.lastPathComponent.lowercased()

let package = Package(
    name: "USIFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: root.path)],
    targets: [
        .target(name: "CFuzzDriver"),
        .executableTarget(name: "fuzz-safetensors", dependencies: ["CFuzzDriver", .product(name: "USICore", package: main)]),
        .executableTarget(name: "fuzz-pth", dependencies: ["CFuzzDriver", .product(name: "USICore", package: main)]),
        .executableTarget(name: "fuzz-idx", dependencies: ["CFuzzDriver", .product(name: "USIData", package: main)]),
        .executableTarget(name: "fuzz-jpeg", dependencies: ["CFuzzDriver", .product(name: "USIData", package: main)]),
        .executableTarget(name: "fuzz-checkpoint", dependencies: ["CFuzzDriver", .product(name: "USI", package: main),
                                                                  .product(name: "USIModels", package: main)]),
    ]
)
