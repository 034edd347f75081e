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

    /// Where the bundled teacher is: `$USI_TEACHER`, the resource bundle beside the
    /// executable, or the source tree's `Sources/USI/Resources` (a development checkout).
    public static var teacherWeightsURL: URL? {
        var candidates: [URL] = []
        if let path = ProcessInfo.processInfo.environment["USI_TEACHER"] { candidates.append(URL(fileURLWithPath: path)) }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        candidates.append(executable.appendingPathComponent("USI_USI.resources/\(teacherFileName)"))
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/\(teacherFileName)"))
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Builds a backbone from a weights file whose metadata names its architecture, classes,
    /// input channels and size (as `best.safetensors` files of this library do), and loads it.
    public static func backbone(fromWeights url: URL, architecture: String? = nil) throws -> any Backbone {
        let file = try SafeTensorsFile(contentsOf: url)
        guard let name = architecture ?? file.metadata["architecture"] else {
            throw TrainingError.invalidData("\(url.path) does not name its architecture; pass the model name")
        }
        let classes = file.metadata["classes"].flatMap(Int.init) ?? 1000
        let channels = file.metadata["in_chans"].flatMap(Int.init) ?? 3
        let model = try Models.create(name, classes: classes, inputChannels: channels,
                                      inputSize: file.metadata["input_size"].flatMap(Int.init))
        try model.load(file)
        return model
    }
}
