// swift-tools-version: 6.0
import PackageDescription

// A package that uses USI for Swift the way any other package would: by version. The
// repository's `Scripts/example` makes a local git repository of the current checkout with a
// version tag and points USI_PACKAGE_URL at it, so SwiftPM treats it as a remote dependency
// (unlike a path dependency, a versioned one is held to SwiftPM's rules for published packages).
let usiURL = Context.environment["USI_PACKAGE_URL"] ?? "file://\(Context.packageDirectory)/../../.build-example/usi-swift"

let package = Package(
    name: "CustomBackboneExample",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: usiURL, from: "1.0.0"),
    ],
    targets: [
        .executableTarget(name: "custom-backbone", dependencies: [.product(name: "USI", package: "usi-swift")]),
    ]
)
