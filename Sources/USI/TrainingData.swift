import Foundation

/// A training split and a validation split with the same classes.
public struct TrainingData: Sendable {
    /// Images the model learns from.
    public let train: any ImageDataset
    /// Images the model is measured on after each epoch.
    public let validation: any ImageDataset
    /// Where it came from (for logs and reports).
    public let name: String
    /// The centre-crop fraction for evaluation when the data needs its own (nil = the model's
    /// crop_pct). Fashion-MNIST's 28×28 images are already tightly framed: 1.
    public let evaluationCropFraction: Double?

    /// Class names (from the training split).
    public var classNames: [String] { train.classNames }

    /// Pairs two splits; their class lists must agree.
    public init(train: any ImageDataset, validation: any ImageDataset, name: String,
                evaluationCropFraction: Double? = nil) throws {
        guard train.count > 0 else { throw TrainingError.invalidData("\(name): the training split is empty") }
        guard validation.count > 0 else { throw TrainingError.invalidData("\(name): the validation split is empty") }
        guard train.classNames == validation.classNames else {
            throw TrainingError.invalidData("\(name): training classes \(train.classNames) differ from validation classes \(validation.classNames)")
        }
        self.train = train
        self.validation = validation
        self.name = name
        self.evaluationCropFraction = evaluationCropFraction
    }

    /// The embedded default: Fashion-MNIST from Debian's `dataset-fashion-mnist` (60 000
    /// training and 10 000 test images, 28×28 grey, 10 classes).
    public static func fashionMNIST(directory: String = IDXDataset.fashionMNISTDefaultDirectory) throws -> TrainingData {
        try TrainingData(train: IDXDataset.fashionMNIST(split: .train, directory: directory),
                         validation: IDXDataset.fashionMNIST(split: .test, directory: directory),
                         name: "Fashion-MNIST", evaluationCropFraction: 1)
    }

    /// `root/train/<class>/*.jpg` with `root/val/<class>` (or `validation/`).
    public static func imageFolder(root: String) throws -> TrainingData {
        let folder = try ImageFolder(root: root)
        guard let validation = folder.validation else {
            throw TrainingError.invalidData("\(root) has no val/ or validation/ folder next to train/")
        }
        return try TrainingData(train: folder.train, validation: validation, name: root)
    }
}
