import CZlib
import Foundation
import Testing
@testable import USIData

/// PNG and WebP decoding against Pillow's `convert("RGB")` / `convert("L")` (and, for WebP,
/// `dwebp`), byte for byte. The expected bytes were written by
/// Tools/data/make_png_webp_fixtures.py; the tests need neither Python nor Pillow.
@Suite("PNG and WebP")
struct PNGWebPTests {
    static let directory = (fixturesDirectory as NSString).appendingPathComponent("formats")
    static let pngFixtures = ["rgb8", "rgba8", "grey8", "greyalpha8", "palette_trns", "rgb16", "grey16",
                              "rgba16", "rgb8_adam7", "grey16_adam7"]
    static let webpFixtures = ["lossy", "lossless", "lossy_alpha", "lossless_alpha"]
    static let greyPNGs: Set<String> = ["grey8", "greyalpha8", "grey16", "grey16_adam7"]

    static func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// The pixels a model with `channels` channels gets from the file, through the same
    /// workspace path as the transforms (grey sources are expanded after resizing there,
    /// which is replication, done here directly).
    static func pixels(of file: String, channels: Int, workspace: TransformWorkspace) throws -> [UInt8] {
        try workspace.withPixels(of: .file(path: file), channels: channels, plan: { _, _ in (1, ()) }) { view, _, _, _ in
            let bytes = [UInt8](UnsafeBufferPointer(start: view.pointer, count: view.width * view.height * view.channels))
            guard view.channels == 1 && channels == 3 else { return bytes }
            return bytes.flatMap { [$0, $0, $0] }
        }
    }

    @Test("PNG decodes equal Pillow's convert(\"RGB\") and convert(\"L\") bit for bit", arguments: pngFixtures)
    func pngMatchesPillow(name: String) throws {
        let workspace = try TransformWorkspace(imageLimits: .standard)
        let file = Self.path(name + ".png")
        #expect(try Self.pixels(of: file, channels: 3, workspace: workspace) == readBytes(Self.path(name + ".rgb.bin")))
        #expect(try Self.pixels(of: file, channels: 1, workspace: workspace) == readBytes(Self.path(name + ".l.bin")))
        let image = try PNGDecoder(limits: .standard).decode(try readBytes(file), name: file)
        #expect(image.width == 48 && image.height == 32)
        #expect(image.channels == (Self.greyPNGs.contains(name) ? 1 : 3))
    }

    @Test("WebP decodes equal Pillow's convert(\"RGB\") (and dwebp -nodither) bit for bit", arguments: webpFixtures)
    func webpMatchesPillow(name: String) throws {
        let workspace = try TransformWorkspace(imageLimits: .standard)
        let file = Self.path(name + ".webp")
        #expect(try Self.pixels(of: file, channels: 3, workspace: workspace) == readBytes(Self.path(name + "_webp.rgb.bin")))
        #expect(try Self.pixels(of: file, channels: 1, workspace: workspace) == readBytes(Self.path(name + "_webp.l.bin")))
        let image = try WebPDecoder(limits: .standard).decode(try readBytes(file), name: file)
        #expect(image.width == 48 && image.height == 32 && image.channels == 3)
    }

    @Test("the format is told by magic bytes, not by the name")
    func magicBytes() throws {
        let png = try readBytes(Self.path("rgb8.png")), webp = try readBytes(Self.path("lossy.webp"))
        #expect(png.withUnsafeBytes { ImageFormat.detect($0) } == .png)
        #expect(webp.withUnsafeBytes { ImageFormat.detect($0) } == .webp)
        #expect([UInt8]([0xFF, 0xD8, 0xFF]).withUnsafeBytes { ImageFormat.detect($0) } == .jpeg)
        #expect(Array("GIF89a".utf8).withUnsafeBytes { ImageFormat.detect($0) } == nil)
        let workspace = try TransformWorkspace(imageLimits: .standard)
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        try writeBytes(png, to: dir.file("misnamed.jpg"))
        #expect(try Self.pixels(of: dir.file("misnamed.jpg"), channels: 3, workspace: workspace)
                == readBytes(Self.path("rgb8.rgb.bin")))
    }

    /// Decoding `bytes` through a workspace throws an error naming the file; afterwards the
    /// same workspace still decodes a good file of the same format.
    static func expectFailure(_ bytes: [UInt8], name: String, good: String, message: String? = nil) throws {
        let workspace = try TransformWorkspace(imageLimits: .standard)
        let transform = try TrainTransform(size: 16, randAugment: nil)
        var generator = RandomGenerator(seed: 3)
        #expect {
            _ = try transform.apply(.encoded(bytes: bytes, name: name), generator: &generator, workspace: workspace)
        } throws: { error in
            "\(error)".contains(name) && (message.map { "\(error)".contains($0) } ?? true)
        }
        _ = try transform.apply(.file(path: path(good)), generator: &generator, workspace: workspace)
    }

    @Test("truncated and corrupt PNGs throw, naming the file")
    func corruptPNG() throws {
        let good = try readBytes(Self.path("rgb8.png"))
        // (Without only IEND and the last CRC byte the file decodes, as with Pillow: the
        // image data is complete.)
        for cut in [9, 30, good.count / 2, good.count - 40] {
            try Self.expectFailure(Array(good.prefix(cut)), name: "cut-\(cut).png", good: "rgb8.png")
        }
        var flipped = good
        flipped[good.count / 2] ^= 0x55  // inside IDAT: its CRC no longer matches
        try Self.expectFailure(flipped, name: "flipped.png", good: "rgb8.png")
        var badDepth = good
        badDepth[24] = 7  // bit depth 7 does not exist
        try Self.expectFailure(badDepth, name: "depth7.png", good: "rgb8.png")
    }

    @Test("truncated and corrupt WebPs throw, naming the file", arguments: webpFixtures)
    func corruptWebP(name: String) throws {
        let good = try readBytes(Self.path(name + ".webp"))
        for cut in [12, 30, good.count / 2, good.count - 1] {
            try Self.expectFailure(Array(good.prefix(cut)), name: "cut-\(cut).webp", good: name + ".webp")
        }
        var badChunk = good
        badChunk.replaceSubrange(12..<16, with: Array("XXXX".utf8))
        try Self.expectFailure(badChunk, name: "badchunk.webp", good: name + ".webp")
    }

    /// `png` with its IHDR width and height replaced (and the CRC fixed, so that only the
    /// size is wrong).
    static func pngClaiming(width: UInt32, height: UInt32, _ png: [UInt8]) -> [UInt8] {
        var bytes = png
        func put(_ value: UInt32, at offset: Int) {
            for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
        }
        put(width, at: 16)
        put(height, at: 20)
        let crc = bytes[12..<29].withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, 17)) }
        put(crc, at: 29)
        return bytes
    }

    @Test("a PNG whose IHDR claims 65500x65500 (and a WebP claiming 16383x16383) is refused before allocation")
    func pixelBombs() throws {
        let workspace = try TransformWorkspace(imageLimits: .standard)
        let capacity = workspace.decoded.capacity
        let transform = try TrainTransform(size: 16, randAugment: nil)
        var generator = RandomGenerator(seed: 5)
        let png = Self.pngClaiming(width: 65500, height: 65500, try readBytes(Self.path("rgb8.png")))
        #expect(png.count < 10_000)
        #expect {
            _ = try transform.apply(.encoded(bytes: png, name: "bomb.png"), generator: &generator, workspace: workspace)
        } throws: { error in
            "\(error)".contains("bomb.png") && "\(error)".contains("65500x65500")
                && "\(error)".contains("exceeds the limit of 89478485 pixels")
        }
        // VP8L header: 0x2F, then 14 bits width − 1 and 14 bits height − 1 (little-endian).
        var webp = try readBytes(Self.path("lossless.webp"))
        try #require(webp[12..<16].elementsEqual(Array("VP8L".utf8)) && webp[20] == 0x2F)
        let bits = UInt32(webp[21]) | UInt32(webp[22]) << 8 | UInt32(webp[23]) << 16 | UInt32(webp[24]) << 24
        let patched = (bits & 0xF000_0000) | 16382 | 16382 << 14
        for i in 0..<4 { webp[21 + i] = UInt8(truncatingIfNeeded: patched >> (8 * UInt32(i))) }
        #expect {
            _ = try transform.apply(.encoded(bytes: webp, name: "bomb.webp"), generator: &generator, workspace: workspace)
        } throws: { error in
            "\(error)".contains("bomb.webp") && "\(error)".contains("16383x16383") && "\(error)".contains("exceeds the limit")
        }
        #expect(workspace.decoded.capacity == capacity)
        // a lowered limit applies to every format of the workspace
        workspace.imageLimits = try ImageLimits(maximumPixels: 100)
        #expect { try Self.pixels(of: Self.path("grey8.png"), channels: 1, workspace: workspace) }
            throws: { "\($0)".contains("48x32") && "\($0)".contains("exceeds the limit of 100 pixels") }
        #expect { try Self.pixels(of: Self.path("lossy.webp"), channels: 3, workspace: workspace) }
            throws: { "\($0)".contains("exceeds the limit of 100 pixels") }
    }

    @Test("an ImageFolder of .jpg, .png and .webp classes loads and goes through the train transform; unknown files are counted, bad ones skipped",
          .enabled(if: fileExists(darknetDirectory)))
    func mixedFolder() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let fm = FileManager.default
        for name in ["jpeg", "png", "webp"] { try fm.createDirectory(atPath: dir.file("train/\(name)"), withIntermediateDirectories: true) }
        try fm.copyItem(atPath: listJPEGs(darknetDirectory)[0], toPath: dir.file("train/jpeg/photo.jpg"))
        try fm.copyItem(atPath: Self.path("rgba8.png"), toPath: dir.file("train/png/a.PNG"))
        try fm.copyItem(atPath: Self.path("grey16.png"), toPath: dir.file("train/png/b.png"))
        try writeBytes(Array(try readBytes(Self.path("rgb8.png")).prefix(200)), to: dir.file("train/png/c-broken.png"))
        try fm.copyItem(atPath: Self.path("palette_trns.png"), toPath: dir.file("train/png/d.png"))
        try fm.copyItem(atPath: Self.path("lossy_alpha.webp"), toPath: dir.file("train/webp/e.WebP"))
        try fm.copyItem(atPath: Self.path("lossless.webp"), toPath: dir.file("train/webp/f.webp"))
        try writeBytes(Array("GIF89a".utf8), to: dir.file("train/webp/g.gif"))
        try writeBytes(Array("BM".utf8), to: dir.file("train/jpeg/h.bmp"))
        let data = try ImageFolder(root: dir.path).train
        #expect(data.classNames == ["jpeg", "png", "webp"])
        #expect(data.paths.map { ($0 as NSString).lastPathComponent }
                == ["photo.jpg", "a.PNG", "b.png", "c-broken.png", "d.png", "e.WebP", "f.webp"])
        #expect(data.labels == [0, 1, 1, 1, 1, 2, 2])
        #expect(data.ignoredFileCount == 2)  // g.gif, h.bmp
        for channels in [1, 3] {
            let mean = [Float](repeating: 0.5, count: channels), std = [Float](repeating: 0.25, count: channels)
            let loader = try DataLoader(dataset: data, transform: try TrainTransform(size: 24, mean: mean, std: std),
                                        sampler: try SequentialSampler(count: data.count), batchSize: 7, workers: 2)
            let batch = try #require(try loader.batches(epoch: 0).next())
            #expect(batch.indices == [0, 1, 2, 4, 4, 5, 6])  // the broken PNG replaced by the next sample
            #expect(batch.labels == [0, 1, 1, 1, 1, 2, 2])
            #expect(batch.skippedSamples == 1)
            #expect(loader.statistics.skippedErrors.first?.contains("c-broken.png") == true)
        }
    }
}
