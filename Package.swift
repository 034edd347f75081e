// swift-tools-version: 6.2
import PackageDescription

// The hot loops are plain C; give them the optimiser's full attention in every build
// configuration (a debug `swift test` would otherwise run them at -O0). No -march: the
// kernels choose AVX2/FMA and AVX-512 code at run time (Sources/CUSIKernels/usi_dispatch.h),
// so the library runs on any x86-64. unsafeFlags from a package reached by version need
// tools version 6.2.
let kernelFlags: [String] = ["-O3", "-fno-math-errno"]

let package = Package(
    name: "USI",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "USICore", targets: ["USICore"]),
        .library(name: "USIModels", targets: ["USIModels"]),
        .library(name: "USIData", targets: ["USIData"]),
        .library(name: "USI", targets: ["USI"]),
        .executable(name: "usi", targets: ["usi-cli"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // `swift package generate-documentation --target USI` (the DocC catalog in Sources/USI).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(
            name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"]), .brew(["jpeg-turbo"])]),
        .systemLibrary(
            name: "CSPNG", path: "Sources/CSPNG", pkgConfig: "spng",
            providers: [.apt(["libspng-dev"]), .brew(["libspng"])]),
        .systemLibrary(
            name: "CWebP", path: "Sources/CWebP", pkgConfig: "libwebp",
            providers: [.apt(["libwebp-dev"]), .brew(["webp"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "CUSIKernels", dependencies: ["COpenBLAS"],
            cSettings: [.unsafeFlags(kernelFlags)],
            linkerSettings: [.linkedLibrary("pthread"), .linkedLibrary("m")]),
        // Open MPI through dlopen (no mpi.h, no libmpi at build time; see Docs/DISTRIBUTED.md).
        .target(name: "CUSIMPI", linkerSettings: [.linkedLibrary("dl")]),
        // CZlib: deflated .pth entries.
        .target(name: "USICore", dependencies: ["CUSIKernels", "CUSIMPI", "CZlib"]),
        .target(name: "USIModels", dependencies: ["USICore"]),
        .target(name: "USIData", dependencies: ["USICore", "CTurboJPEG", "CSPNG", "CWebP", "CZlib", "CUSIKernels"]),
        .target(name: "USI", dependencies: ["USICore", "USIModels", "USIData", "CUSIKernels", "CZlib",
                                            .product(name: "Logging", package: "swift-log")],
                // The embedded default's teacher (resnet10t, Fashion-MNIST, F16; see README).
                resources: [.copy("Resources/fashion-mnist-teacher.safetensors")]),
        .executableTarget(
            name: "usi-cli",
            dependencies: ["USI",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "USICoreTests", dependencies: ["USICore", "CUSIKernels"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "USIDataTests", dependencies: ["USIData", "CZlib"], resources: [.copy("Fixtures")]),
        // Its fixtures are read from the source tree (#filePath), not bundled.
        .testTarget(name: "USIModelsTests", dependencies: ["USIModels"], exclude: ["Fixtures"]),
        .testTarget(name: "USITests", dependencies: ["USI"]),
        // Runs the built `usi` executable end to end (it depends on it so that it is built first).
        .testTarget(name: "CLITests", dependencies: ["usi-cli", "USI"]),
    ]
)
