import Foundation
import Testing
@testable import USIData

@Suite("IDX files and in-memory datasets")
struct IDXTests {
    @Test("write then read round-trips, gzip and raw", arguments: [true, false])
    func roundTrip(compressed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let array = try IDXFile(dimensions: [3, 2, 4], bytes: (0..<24).map { UInt8($0 * 7 % 256) })
        let path = dir.file("a.idx")
        try array.write(to: path, compressed: compressed)
        #expect(try IDXFile(contentsOf: path) == array)
    }

    @Test("bad magic number is a clear error")
    func badMagic() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("bad.idx")
        try writeBytes([0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 5], to: path)
        #expect {
            try IDXFile(contentsOf: path)
        } throws: { error in
            "\(error)".contains("bad magic number 0x12340801") && "\(error)".contains(path)
        }
        try writeBytes([0, 0, 0x0D, 0x01, 0, 0, 0, 1, 5], to: path)
        #expect(throws: DataError.self) { try IDXFile(contentsOf: path) }
    }

    @Test("truncated file is a clear error, gzip and raw", arguments: [true, false])
    func truncated(compressed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let full = dir.file("full.idx"), cut = dir.file("cut.idx")
        // raw: declare 100 bytes, write 40
        let array = try IDXFile(dimensions: [10, 10], bytes: [UInt8](repeating: 3, count: 100))
        try array.write(to: full, compressed: false)
        let bytes = try readBytes(full)
        try writeBytes(Array(bytes.prefix(bytes.count - 60)), to: cut)
        if compressed {
            // a valid gzip stream whose IDX payload is short
            try gzipBytes(Array(bytes.prefix(bytes.count - 60)), to: cut)
        }
        #expect {
            try IDXFile(contentsOf: cut)
        } throws: { error in
            "\(error)".contains("truncated") && "\(error)".contains(cut)
        }
    }

    @Test("a gzip stream cut in the middle is reported")
    func truncatedGzipStream() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let full = dir.file("full.gz"), cut = dir.file("cut.gz")
        let array = try IDXFile(dimensions: [50, 20], bytes: (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try array.write(to: full)
        let bytes = try readBytes(full)
        try writeBytes(Array(bytes.prefix(bytes.count / 2)), to: cut)
        #expect(throws: DataError.self) { try IDXFile(contentsOf: cut) }
    }

    @Test("missing file is a clear error")
    func missing() {
        #expect { try IDXFile(contentsOf: "/nonexistent/x.gz") } throws: { "\($0)".contains("/nonexistent/x.gz") }
    }

    @Test("IDXDataset from files; label/image count mismatch is reported")
    func datasetFromFiles() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let images = try IDXFile(dimensions: [4, 2, 3], bytes: (0..<24).map(UInt8.init))
        let labels = try IDXFile(dimensions: [4], bytes: [1, 0, 2, 1])
        try images.write(to: dir.file("i.gz"))
        try labels.write(to: dir.file("l.gz"))
        let ds = try IDXDataset(imagesPath: dir.file("i.gz"), labelsPath: dir.file("l.gz"))
        #expect(ds.count == 4)
        #expect(ds.classNames == ["0", "1", "2"])
        #expect(ds.label(at: 2) == 2)
        guard case .pixels(let image) = try ds.source(at: 1) else { Issue.record("expected pixels"); return }
        #expect(image.width == 3 && image.height == 2 && image.channels == 1)
        #expect(image.pixels == Array(6..<12))

        try IDXFile(dimensions: [3], bytes: [0, 1, 2]).write(to: dir.file("l3.gz"))
        #expect { try IDXDataset(imagesPath: dir.file("i.gz"), labelsPath: dir.file("l3.gz")) }
            throws: { "\($0)".contains("3 labels for 4 images") }
    }

    @Test("Fashion-MNIST from the Debian package", .enabled(if: fileExists(fashionDirectory + "/t10k-labels-idx1-ubyte.gz")))
    func fashionMNIST() throws {
        let test = try IDXDataset.fashionMNIST(split: .test)
        #expect(test.count == 10_000)
        #expect(test.classCount == 10)
        #expect(test.classNames[9] == "Ankle boot")
        // first test label of Fashion-MNIST is 9 (ankle boot), the second 2 (pullover)
        #expect(test.label(at: 0) == 9)
        #expect(test.label(at: 1) == 2)
        var histogram = [Int](repeating: 0, count: 10)
        for i in 0..<test.count { histogram[test.label(at: i)] += 1 }
        #expect(histogram == [Int](repeating: 1000, count: 10))
        guard case .pixels(let image) = try test.source(at: 0) else { Issue.record("expected pixels"); return }
        #expect(image.width == 28 && image.height == 28 && image.channels == 1)
        #expect(image.pixels.contains { $0 > 200 })
    }

    @Test("in-memory dataset validates its arguments")
    func inMemory() throws {
        let ds = try InMemoryDataset(pixels: [UInt8](repeating: 7, count: 2 * 4 * 3), labels: [0, 1],
                                     width: 2, height: 2, channels: 3, classNames: ["a", "b"])
        #expect(ds.count == 2 && ds.classCount == 2)
        #expect(ds.image(at: 1).pixels.count == 12)
        #expect(throws: DataError.self) {
            try InMemoryDataset(pixels: [1, 2, 3], labels: [0], width: 2, height: 2, channels: 1)
        }
        #expect(throws: DataError.self) {
            try InMemoryDataset(pixels: [1, 2, 3, 4], labels: [5], width: 2, height: 2, channels: 1, classNames: ["a"])
        }
    }
}
