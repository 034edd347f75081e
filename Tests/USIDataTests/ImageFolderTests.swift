import Foundation
import Testing
@testable import USIData

@Suite("ImageFolder")
struct ImageFolderTests {
    /// root/train/{zebra,cat,dog}, root/<valName>/{cat,dog}
    static func makeTree(valName: String = "val") throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        let fm = FileManager.default
        let photos = listJPEGs(darknetDirectory)
        func put(_ rel: String, _ source: String) throws {
            let path = dir.file(rel)
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.copyItem(atPath: source, toPath: path)
        }
        try put("train/zebra/z1.JPG", photos[0])
        try put("train/cat/b.jpg", photos[1])
        try put("train/cat/a.jpeg", photos[2])
        try put("train/cat/nested/c.jpg", photos[3])
        try put("train/dog/d.jpg", photos[4])
        try put("\(valName)/cat/v.jpg", photos[5])
        try put("\(valName)/dog/w.jpg", photos[6])
        try writeBytes(Array("notes".utf8), to: dir.file("train/dog/readme.txt"))
        try writeBytes(Array("hidden".utf8), to: dir.file("train/dog/.DS_Store"))
        try fm.createDirectory(atPath: dir.file("train/.hidden-class"), withIntermediateDirectories: true)
        return dir
    }

    @Test("train and val splits; classes are sorted folder names", arguments: ["val", "validation"])
    func layout(valName: String) throws {
        let dir = try Self.makeTree(valName: valName)
        defer { dir.cleanup() }
        let folder = try ImageFolder(root: dir.path)
        #expect(folder.train.classNames == ["cat", "dog", "zebra"])
        #expect(folder.train.count == 5)
        #expect(folder.train.labels == [0, 0, 0, 1, 2])
        #expect(folder.train.paths.map { ($0 as NSString).lastPathComponent } == ["a.jpeg", "b.jpg", "c.jpg", "d.jpg", "z1.JPG"])
        #expect(folder.train.ignoredFileCount == 1)  // readme.txt; hidden entries are not counted
        let validation = try #require(folder.validation)
        #expect(validation.classNames == folder.train.classNames)
        #expect(validation.labels == [0, 1])
        guard case .file(let path) = try folder.train.source(at: 3) else { Issue.record("expected a file"); return }
        #expect(path.hasSuffix("train/dog/d.jpg"))
    }

    @Test("a single folder with an explicit split")
    func singleFolder() throws {
        let dir = try Self.makeTree()
        defer { dir.cleanup() }
        let split = try ImageFolderDataset(directory: dir.file("val"))
        #expect(split.classNames == ["cat", "dog"])
        let indexed = try ImageFolderDataset(directory: dir.file("val"), classNames: ["ant", "cat", "dog"])
        #expect(indexed.labels == [1, 2])
        #expect { try ImageFolderDataset(directory: dir.file("train"), classNames: ["cat", "dog"]) }
            throws: { "\($0)".contains("zebra") }
    }

    @Test("layout errors are clear")
    func errors() throws {
        let dir = try Self.makeTree()
        defer { dir.cleanup() }
        #expect { try ImageFolder(root: dir.file("nope")) } throws: { "\($0)".contains("no such directory") }
        #expect { try ImageFolder(root: dir.file("train")) } throws: { "\($0)".contains("'train' folder") }
        try FileManager.default.createDirectory(atPath: dir.file("train/empty"), withIntermediateDirectories: true)
        #expect { try ImageFolder(root: dir.path) } throws: { "\($0)".contains("empty") }
    }

    @Test("all images under a folder, recursively", .enabled(if: fileExists(darknetDirectory)))
    func allImages() throws {
        let jpegs = try ImageFolderDataset.allImages(under: "/usr/share/darknet", extensions: ImageFolderDataset.jpegExtensions)
        #expect(jpegs.count == listJPEGs(darknetDirectory).count)
        // darknet also ships hundreds of PNG glyphs (data/labels), listed by default
        let all = try ImageFolderDataset.allImages(under: "/usr/share/darknet")
        #expect(all.count > jpegs.count && all.paths.filter { $0.hasSuffix(".png") }.count == all.count - jpegs.count)
        #expect(all.classNames == ["images"])
        #expect(all.ignoredFileCount > 0)
    }
}
