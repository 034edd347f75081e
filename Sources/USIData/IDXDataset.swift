import Foundation

/// MNIST-style data from a pair of IDX files: images `[count, height, width]` (grey) or
/// `[count, height, width, 3]`, and labels `[count]`.
public struct IDXDataset: ImageDataset {
    /// The images and labels, held in memory.
    public let storage: InMemoryDataset

    public var count: Int { storage.count }
    public var classNames: [String] { storage.classNames }
    public func label(at index: Int) -> Int { storage.label(at: index) }
    public func source(at index: Int) throws -> ImageSource { try storage.source(at: index) }

    /// Loads an image file and a label file.
    ///
    /// - Parameter classNames: names of the classes; defaults to `"0"` … up to the largest
    ///   label.
    public init(imagesPath: String, labelsPath: String, classNames: [String]? = nil) throws {
        let images = try IDXFile(contentsOf: imagesPath)
        let labels = try IDXFile(contentsOf: labelsPath)
        guard images.dimensions.count == 3 || (images.dimensions.count == 4 && images.dimensions[3] == 3) else {
            throw DataError.corrupt(path: imagesPath, reason: "expected images of shape [count, height, width] or [count, height, width, 3], got \(images.dimensions)")
        }
        guard labels.dimensions.count == 1 else {
            throw DataError.corrupt(path: labelsPath, reason: "expected labels of shape [count], got \(labels.dimensions)")
        }
        guard images.dimensions[0] > 0 else {
            throw DataError.corrupt(path: imagesPath, reason: "holds no images (shape \(images.dimensions))")
        }
        guard labels.dimensions[0] == images.dimensions[0] else {
            throw DataError.corrupt(path: labelsPath, reason: "\(labels.dimensions[0]) labels for \(images.dimensions[0]) images in '\(imagesPath)'")
        }
        let names = classNames ?? (0..<(Int(labels.bytes.max() ?? 0) + 1)).map(String.init)
        if let bad = labels.bytes.first(where: { Int($0) >= names.count }) {
            throw DataError.corrupt(path: labelsPath, reason: "label \(bad) is outside 0..<\(names.count)")
        }
        storage = try InMemoryDataset(
            pixels: images.bytes, labels: labels.bytes.map(Int.init),
            width: images.dimensions[2], height: images.dimensions[1],
            channels: images.dimensions.count == 4 ? 3 : 1, classNames: names)
    }

    /// Which half of an MNIST-style dataset to load.
    public enum Split: String, Sendable {
        /// 60 000 training images (`train-*`).
        case train
        /// 10 000 test images (`t10k-*`).
        case test
    }

    /// The directory where Debian's `dataset-fashion-mnist` package installs the files.
    public static let fashionMNISTDefaultDirectory = "/usr/share/datasets/fashion-mnist"

    /// The Fashion-MNIST class names, in label order.
    public static let fashionMNISTClassNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// Loads Fashion-MNIST (28×28 grey, 10 classes) from `directory`, which holds
    /// `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-…` (gzip or not).
    public static func fashionMNIST(split: Split,
                                    directory: String = fashionMNISTDefaultDirectory) throws -> IDXDataset {
        let prefix = split == .train ? "train" : "t10k"
        func find(_ stem: String) throws -> String {
            for name in [stem + ".gz", stem] {
                let path = (directory as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: path) { return path }
            }
            throw DataError.unreadable(path: (directory as NSString).appendingPathComponent(stem + ".gz"),
                                       reason: "Fashion-MNIST file not found (install the Debian package dataset-fashion-mnist or pass directory:)")
        }
        return try IDXDataset(imagesPath: try find("\(prefix)-images-idx3-ubyte"),
                              labelsPath: try find("\(prefix)-labels-idx1-ubyte"),
                              classNames: fashionMNISTClassNames)
    }
}
