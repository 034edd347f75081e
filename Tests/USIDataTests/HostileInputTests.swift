import Foundation
import Testing
@testable import USIData

/// Files an attacker (or a bad disk) hands the data pipeline: size bombs, formats
/// libjpeg-turbo does not support, IDX headers that lie. Each case must throw a clear error
/// naming the file, allocate nothing large, and leave the decoder usable.
@Suite("hostile inputs")
struct HostileInputTests {
    static let baseline = fixturesDirectory + "/small_baseline.jpg"        // 96x72 4:2:0, 2.4 KB
    static let progressive = fixturesDirectory + "/small_progressive.jpg"  // same image, SOF2

    /// Offset of the first SOF0…SOF3 marker (its 0xFF byte).
    static func frameOffset(_ bytes: [UInt8]) throws -> Int {
        var i = 2
        while i + 4 <= bytes.count {
            let marker = bytes[i + 1], length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            if (0xC0...0xC3).contains(marker) { return i }
            i += 2 + length
        }
        throw DataError.corrupt(path: "fixture", reason: "no SOF marker")
    }

    /// `bytes` with its frame header changed: marker type, sample precision, or size.
    static func patchedFrame(_ bytes: [UInt8], marker: UInt8? = nil, precision: UInt8? = nil,
                             width: Int? = nil, height: Int? = nil) throws -> [UInt8] {
        var out = bytes
        let i = try frameOffset(bytes)
        if let marker { out[i + 1] = marker }
        if let precision { out[i + 4] = precision }
        if let height { out[i + 5] = UInt8(height >> 8); out[i + 6] = UInt8(height & 0xFF) }
        if let width { out[i + 7] = UInt8(width >> 8); out[i + 8] = UInt8(width & 0xFF) }
        return out
    }

    @Test("a 2 KB progressive (and baseline) JPEG claiming 65500x65500 is refused before anything is allocated",
          arguments: [progressive, baseline])
    func pixelBomb(path: String) throws {
        let bomb = try Self.patchedFrame(try readBytes(path), width: 65500, height: 65500)
        #expect(bomb.count < 3000)
        let workspace = try TransformWorkspace(imageLimits: .standard)
        let decodedCapacity = workspace.decoded.capacity
        let transform = try TrainTransform(size: 32)
        var generator = RandomGenerator(seed: 1)
        #expect {
            _ = try transform.apply(.encoded(bytes: bomb, name: "bomb.jpg"), generator: &generator, workspace: workspace)
        } throws: { error in
            "\(error)".contains("bomb.jpg") && "\(error)".contains("65500x65500")
                && "\(error)".contains("exceeds the limit of 89478485 pixels")
        }
        // The pixel buffer never grew (libjpeg was not even asked to start the decode, so its
        // 25 GB coefficient buffer for a progressive file was never requested either).
        #expect(workspace.decoded.capacity == decodedCapacity)
        // The same workspace goes on decoding good files.
        var again = RandomGenerator(seed: 1)
        _ = try transform.apply(.file(path: path), generator: &again, workspace: workspace)
    }

    @Test("the pixel limit is a property, can be raised or lowered, and comes from the environment")
    func adjustableLimit() throws {
        let bytes = try readBytes(Self.baseline)  // 96 x 72 = 6912 pixels
        let decoder = try JPEGDecoder(limits: try ImageLimits(maximumPixels: 6911))
        #expect(throws: DataError.self) { try decoder.decode(bytes, name: "small.jpg") }
        decoder.limits.maximumPixels = 6912
        #expect(try decoder.decode(bytes, name: "small.jpg").image.width == 96)
        decoder.limits.maximumFileBytes = bytes.count - 1
        #expect { try decoder.decode(bytes, name: "small.jpg") } throws: { "\($0)".contains("exceeds the limit of \(bytes.count - 1) bytes") }
        #expect { try decoder.decode(file: Self.baseline) } throws: { "\($0)".contains(Self.baseline) }

        #expect(try ImageLimits.fromEnvironment([:]) == .standard)
        let raised = try ImageLimits.fromEnvironment(["USI_MAX_IMAGE_PIXELS": "300000000", "USI_MAX_IMAGE_BYTES": "1000"])
        #expect(raised.maximumPixels == 300_000_000 && raised.maximumFileBytes == 1000)
        #expect { try ImageLimits.fromEnvironment(["USI_MAX_IMAGE_PIXELS": "lots"]) } throws: { "\($0)".contains("USI_MAX_IMAGE_PIXELS") }
        #expect(throws: DataError.self) { try ImageLimits.fromEnvironment(["USI_MAX_IMAGE_BYTES": "0"]) }
        #expect(throws: DataError.self) { try ImageLimits(maximumPixels: 0) }
    }

    /// Formats libjpeg-turbo 2.x refuses (12-bit precision, lossless SOF3, an arithmetic SOF9
    /// whose tables are missing, a mangled frame) and a plain non-JPEG.
    static let unsupported: [(name: String, make: @Sendable ([UInt8]) throws -> [UInt8])] = [
        ("12-bit.jpg", { try patchedFrame($0, precision: 12) }),
        ("lossless-sof3.jpg", { try patchedFrame($0, marker: 0xC3) }),
        ("16-bit.jpg", { try patchedFrame($0, precision: 16) }),
        ("zero-width.jpg", { try patchedFrame($0, width: 0) }),
        ("text.jpg", { _ in Array("not a JPEG at all".utf8) }),
    ]

    @Test("an unsupported JPEG fails with its name and the next good file still decodes (the SOI bug)",
          arguments: unsupported.indices)
    func unsupportedThenGood(_ index: Int) throws {
        let (name, make) = Self.unsupported[index]
        let good = try readBytes(Self.baseline)
        let decoder = try JPEGDecoder()
        let reference = try decoder.decode(good, name: "good.jpg").image
        #expect { try decoder.decode(try make(good), name: name) } throws: { "\($0)".contains(name) }
        // libjpeg-turbo 2.1 left the handle mid-header here: "two SOI markers" on every later file.
        let after = try decoder.decode(good, name: "good.jpg")
        #expect(after.image == reference)
        #expect(!after.hadWarning)
        let header = try good.withUnsafeBytes { try decoder.header(of: $0, name: "good.jpg") }
        #expect(header.width == 96 && header.height == 72)
    }

    @Test("stray bytes before a marker are a warning, not an error (djpeg and Pillow decode such files)")
    func extraneousBytes() throws {
        let good = try readBytes(Self.baseline)
        let app0End = 4 + (Int(good[4]) << 8 | Int(good[5]))  // SOI, then APP0 of that length
        let stray = Array(good[..<app0End]) + [0, 0] + Array(good[app0End...])
        let decoder = try JPEGDecoder()
        let decoded = try decoder.decode(stray, name: "stray.jpg")
        #expect(decoded.hadWarning)
        #expect(decoded.image == (try decoder.decode(good, name: "good.jpg")).image)
    }

    /// train/a: good, 12-bit, good, SOF3; train/b: good, bomb. Sorted names put the bad files
    /// between good ones.
    static func hostileFolder() throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        let fm = FileManager.default
        for name in ["a", "b"] { try fm.createDirectory(atPath: dir.file("train/\(name)"), withIntermediateDirectories: true) }
        let good = try readBytes(baseline)
        try writeBytes(good, to: dir.file("train/a/1-good.jpg"))
        try writeBytes(try patchedFrame(good, precision: 12), to: dir.file("train/a/2-twelve-bit.jpg"))
        try writeBytes(try readBytes(progressive), to: dir.file("train/a/3-good.jpg"))
        try writeBytes(try patchedFrame(good, marker: 0xC3), to: dir.file("train/a/4-lossless.jpg"))
        try writeBytes(good, to: dir.file("train/b/5-good.jpg"))
        try writeBytes(try patchedFrame(try readBytes(progressive), width: 65500, height: 65500), to: dir.file("train/b/6-bomb.jpg"))
        try writeBytes(good, to: dir.file("train/b/7-good.jpg"))
        return dir
    }

    final class Reports: @unchecked Sendable {
        let lock = NSLock()
        var items: [SkippedImage] = []
        func add(_ item: SkippedImage) { lock.lock(); items.append(item); lock.unlock() }
    }

    @Test("bad images among good ones: every epoch completes, each bad file is reported once, skips are counted per epoch",
          arguments: [1, 2])
    func loaderSkipsAndReports(workers: Int) throws {
        let dir = try Self.hostileFolder()
        defer { dir.cleanup() }
        let data = try ImageFolder(root: dir.path).train
        let reports = Reports()
        let loader = try DataLoader(dataset: data, transform: try TrainTransform(size: 16, randAugment: nil),
                                    sampler: try SequentialSampler(count: data.count), batchSize: 7,
                                    workers: workers, imageLimits: .standard,
                                    onSkippedImage: { reports.add($0) })
        for epoch in 0..<2 {
            let batches = loader.batches(epoch: epoch)
            let batch = try #require(try batches.next())
            #expect(try batches.next() == nil)
            // Each bad file was replaced by the next good one, with that one's label.
            #expect(batch.indices == [0, 2, 2, 4, 4, 6, 6])
            #expect(batch.labels == [0, 0, 0, 1, 1, 1, 1])
            #expect(batch.skippedSamples == 3)
            #expect(batches.skippedSamples == 3)
        }
        #expect(loader.statistics.skippedSamples == 6)
        #expect(loader.statistics.distinctSkippedImages == 3)
        let reported = reports.items.sorted { $0.index < $1.index }
        #expect(reported.map(\.index) == [1, 3, 5])
        #expect(reported.map { ($0.name as NSString).lastPathComponent } == ["2-twelve-bit.jpg", "4-lossless.jpg", "6-bomb.jpg"])
        #expect(reported.allSatisfy { $0.epoch == 0 && $0.reason.contains($0.name) })
        #expect(reported[0].reason.contains("precision 12"))
        #expect(reported[1].reason.contains("0xc3"))
        #expect(reported[2].reason.contains("exceeds the limit"))
    }

    // MARK: IDX

    static func idxHeader(_ dims: [UInt32]) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
        for d in dims { out += [UInt8(d >> 24), UInt8((d >> 16) & 0xFF), UInt8((d >> 8) & 0xFF), UInt8(d & 0xFF)] }
        return out
    }

    @Test("IDX headers that lie are refused without allocating what they claim", arguments: [false, true])
    func idxLies(compressed: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        func write(_ bytes: [UInt8], _ name: String) throws -> String {
            let path = dir.file(name)
            if compressed { try gzipBytes(bytes, to: path) } else { try writeBytes(bytes, to: path) }
            return path
        }
        func expectError(_ path: String, _ message: String) {
            #expect { try IDXFile(contentsOf: path) } throws: { error in
                "\(error)".contains(path) && "\(error)".contains(message)
            }
        }
        // product overflows Int: 2^32-1 to the fifth power
        expectError(try write(Self.idxHeader([.max, .max, .max, .max, .max]), "overflow.idx"), "limit of an IDX file")
        // overflows only if the zero dimension is ignored
        expectError(try write(Self.idxHeader([0, .max, .max, .max]), "zero-overflow.idx"), "limit of an IDX file")
        // 3 GiB claimed (under the 4 GiB limit), 10 bytes present: truncated, not a 3 GiB array
        expectError(try write(Self.idxHeader([3, 1 << 15, 1 << 15]) + [UInt8](repeating: 1, count: 10), "claims.idx"), "truncated")
        // above the caller's limit
        let small = try write(Self.idxHeader([10, 10]) + [UInt8](repeating: 1, count: 100), "small.idx")
        #expect { try IDXFile(contentsOf: small, maximumBytes: 99) } throws: { "\($0)".contains("99-byte limit") }
        #expect(try IDXFile(contentsOf: small, maximumBytes: 100).dimensions == [10, 10])
        // bytes after the data
        expectError(try write(Self.idxHeader([2, 2]) + [1, 2, 3, 4, 5], "trailing.idx"), "unexpected bytes after the data")
    }

    @Test("an IDX image file of empty images or of absurd size is refused by IDXDataset")
    func idxDatasetShapes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        try writeBytes(Self.idxHeader([0, 1 << 14, 1 << 14, 3]), to: dir.file("images.idx"))
        try writeBytes(Self.idxHeader([0]), to: dir.file("labels.idx"))
        // 0 images of 16384 x 16384 x 3 is a consistent file, but not a dataset
        #expect {
            try IDXDataset(imagesPath: dir.file("images.idx"), labelsPath: dir.file("labels.idx"))
        } throws: { "\($0)".contains("holds no images") }
        try writeBytes(Self.idxHeader([1, 0, 5]), to: dir.file("empty.idx"))
        try writeBytes(Self.idxHeader([1]) + [0], to: dir.file("one-label.idx"))
        #expect(throws: DataError.self) {
            try IDXDataset(imagesPath: dir.file("empty.idx"), labelsPath: dir.file("one-label.idx"))
        }
    }

    @Test("sizes from callers that overflow throw instead of trapping")
    func checkedSizes() {
        #expect(throws: DataError.self) { try Image(width: 1 << 32, height: 1 << 32, channels: 3, pixels: []) }
        #expect(throws: DataError.self) {
            try InMemoryDataset(pixels: [], labels: [0], width: 1 << 32, height: 1 << 31, channels: 3)
        }
        #expect(throws: DataError.self) { try IDXFile(dimensions: [1 << 32 - 1, 1 << 32 - 1, 1 << 32 - 1], bytes: []) }
    }
}
