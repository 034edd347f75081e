import Foundation

/// The embedded default run — `usi train` with no data argument: Fashion-MNIST (Debian's
/// `dataset-fashion-mnist`), a small student at 32×32 grey, the bundled teacher.
public enum EmbeddedDefault {
    /// The default student.
    public static let studentArchitecture = "mobilenetv3_small_050"
    /// Side of the (upscaled) 28×28 images.
    public static let inputSize = 32
    /// Grey images.
    public static let inputChannels = 1
    /// Default epochs of the embedded run.
    public static let epochs = 5
    /// Default batch size.
    public static let batchSize = 128
    /// File name of the bundled teacher weights.
    public static let teacherFileName = "fashion-mnist-teacher.safetensors"

    /// Where the bundled teacher is: `$USI_TEACHER`, the resource bundle beside the executable
    /// (`<package>_USI.resources`, whatever the depending package calls this one), or the source
    /// tree's `Sources/USI/Resources` (a development checkout). `Bundle.module` is not used:
    /// on Linux it stops the program when the bundle is not where the build left it.
    public static var teacherWeightsURL: URL? {
        var candidates: [URL] = []
        if let path = ProcessInfo.processInfo.environment["USI_TEACHER"] { candidates.append(URL(fileURLWithPath: path)) }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        let bundles = (try? FileManager.default.contentsOfDirectory(atPath: executable.path)) ?? []
        for bundle in bundles.sorted() where bundle.hasSuffix("_USI.resources") {
            candidates.append(executable.appendingPathComponent("\(bundle)/\(teacherFileName)"))
        }
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/\(teacherFileName)"))
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// The bundled teacher (resnet10t, 93.05 % top-1 on the Fashion-MNIST test set), loaded.
    public static func teacher() throws -> any Backbone {
        guard let url = teacherWeightsURL else {
            throw TrainingError.invalidConfiguration(
                "the bundled Fashion-MNIST teacher (\(teacherFileName)) is missing; set USI_TEACHER or name a teacher")
        }
        return try Models.create(fromWeights: url).model
    }

    /// The embedded default's student, seeded.
    public static func student(seed: UInt64 = 0) throws -> any Backbone {
        try Models.create(studentArchitecture, classes: 10, inputChannels: inputChannels, inputSize: inputSize, seed: seed)
    }
}
