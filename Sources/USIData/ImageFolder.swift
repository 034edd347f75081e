import Foundation

/// A dataset laid out as folders of images, one folder per class (torchvision's
/// `ImageFolder`): `root/train/<class>/…` and `root/val/<class>/…` (or `validation/`).
///
/// Class indices are the sorted folder names of the training split, as torchvision
/// assigns them; the validation split uses the same indices. Supported files: JPEG
/// (`.jpg`, `.jpeg`, `.jpe`, `.jfif`), PNG (`.png`) and still WebP (`.webp`), any case,
/// found recursively inside each class folder; other files and hidden entries are ignored
/// (and counted). The decoder is chosen by the file's first bytes, not its name, and the
/// pixels are Pillow's `convert("RGB")` / `convert("L")` of the file (alpha dropped; see
/// ``PNGDecoder``, ``WebPDecoder``). A listed file that does not decode is handled by the
/// loader's ``CorruptImagePolicy``.
public struct ImageFolder: Sendable {
    /// The dataset root.
    public let root: String
    /// The training split (`root/train`).
    public let train: ImageFolderDataset
    /// The validation split (`root/val` or `root/validation`), if present.
    public let validation: ImageFolderDataset?

    /// Scans `root/train/<class>/…` and, if present, `root/val/<class>/…` or
    /// `root/validation/<class>/…`.
    public init(root: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.unreadable(path: root, reason: "no such directory")
        }
        let trainPath = (root as NSString).appendingPathComponent("train")
        guard FileManager.default.fileExists(atPath: trainPath, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.badLayout(path: root, reason: "expected a 'train' folder holding one folder per class (for a single folder of class folders use ImageFolderDataset(directory:))")
        }
        self.root = root
        train = try ImageFolderDataset(directory: trainPath)
        var validation: ImageFolderDataset?
        for name in ["val", "validation"] {
            let path = (root as NSString).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                validation = try ImageFolderDataset(directory: path, classNames: train.classNames)
                break
            }
        }
        self.validation = validation
    }
}

/// One split of an image-folder dataset: `directory/<class>/…/*.{jpg,png,webp}`.
public struct ImageFolderDataset: ImageDataset {
    /// The scanned directory.
    public let directory: String
    public let classNames: [String]
    /// The image files, sorted by class then path.
    public let paths: [String]
    /// The label of each file.
    public let labels: [Int]
    /// Files skipped during the scan because their extension is not a supported format.
    public let ignoredFileCount: Int

    /// File name extensions recognised as JPEG (compared case-insensitively).
    public static let jpegExtensions: Set<String> = ImageFormat.jpeg.extensions
    /// Every file name extension listed (JPEG, PNG, WebP; compared case-insensitively).
    public static let imageExtensions: Set<String> =
        ImageFormat.jpeg.extensions.union(ImageFormat.png.extensions).union(ImageFormat.webp.extensions)

    /// Scans `directory/<class>/…` (recursively inside each class folder).
    ///
    /// - Parameter classNames: the class list to index labels by (e.g. the training
    ///   split's, for a validation split). Defaults to the sorted folder names. A folder
    ///   whose name is not in the list is an error.
    public init(directory: String, classNames: [String]? = nil) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.unreadable(path: directory, reason: "no such directory")
        }
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: directory) } catch {
            throw DataError.unreadable(path: directory, reason: "\(error.localizedDescription)")
        }
        let folders = entries.filter { name in
            var dir: ObjCBool = false
            return !name.hasPrefix(".")
                && fm.fileExists(atPath: (directory as NSString).appendingPathComponent(name), isDirectory: &dir)
                && dir.boolValue
        }.sorted()
        guard !folders.isEmpty else {
            throw DataError.badLayout(path: directory, reason: "no class folders found (expected \(directory)/<class>/<image>.jpg)")
        }
        let names = classNames ?? folders
        var index: [String: Int] = [:]
        for (i, name) in names.enumerated() { index[name] = i }
        var paths: [String] = [], labels: [Int] = [], ignored = 0, empty: [String] = []
        for folder in folders {
            guard let label = index[folder] else {
                throw DataError.badLayout(path: (directory as NSString).appendingPathComponent(folder),
                                          reason: "class '\(folder)' is not one of the \(names.count) training classes")
            }
            let (files, skipped) = Self.imageFiles(under: (directory as NSString).appendingPathComponent(folder))
            ignored += skipped
            if files.isEmpty { empty.append(folder) }
            paths += files
            labels += [Int](repeating: label, count: files.count)
        }
        if !empty.isEmpty {
            throw DataError.badLayout(path: directory, reason: "no image files (JPEG, PNG, WebP) in class folder(s) \(empty.prefix(5).joined(separator: ", "))\(empty.count > 5 ? ", …" : "")")
        }
        self.directory = directory
        self.classNames = names
        self.paths = paths
        self.labels = labels
        self.ignoredFileCount = ignored
    }

    private init(directory: String, classNames: [String], paths: [String], labels: [Int], ignored: Int) {
        self.directory = directory
        self.classNames = classNames
        self.paths = paths
        self.labels = labels
        self.ignoredFileCount = ignored
    }

    /// Every image file (JPEG, PNG, WebP) under `directory`, searched recursively, as one
    /// unlabelled class (label 0). Used by the data benchmark and for prediction over a folder.
    ///
    /// - Parameter extensions: the file name extensions to list (lower case); the data
    ///   benchmark passes ``jpegExtensions`` to stay comparable with its PyTorch counterpart.
    public static func allImages(under directory: String,
                                 extensions: Set<String> = imageExtensions) throws -> ImageFolderDataset {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError.unreadable(path: directory, reason: "no such directory")
        }
        let (files, skipped) = imageFiles(under: directory, extensions: extensions)
        guard !files.isEmpty else {
            throw DataError.badLayout(path: directory, reason: "no image files (\(extensions.sorted().joined(separator: ", "))) found (searched recursively)")
        }
        return ImageFolderDataset(directory: directory, classNames: ["images"], paths: files,
                                  labels: [Int](repeating: 0, count: files.count), ignored: skipped)
    }

    /// Image files below `directory` (recursive, sorted, hidden entries skipped) and the
    /// number of other files.
    static func imageFiles(under directory: String,
                           extensions: Set<String> = imageExtensions) -> (files: [String], ignored: Int) {
        guard let enumerator = FileManager.default.enumerator(
            at: URL(fileURLWithPath: directory), includingPropertiesForKeys: [.isRegularFileKey],
            options: [.skipsHiddenFiles]) else { return ([], 0) }
        var files: [String] = [], ignored = 0
        for case let url as URL in enumerator {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            if extensions.contains(url.pathExtension.lowercased()) {
                files.append(url.path)
            } else {
                ignored += 1
            }
        }
        return (files.sorted(), ignored)
    }

    public var count: Int { paths.count }
    public func label(at index: Int) -> Int { labels[index] }
    public func source(at index: Int) throws -> ImageSource { .file(path: paths[index]) }
}
