import CZlib
import Foundation
import Testing
@testable import USIData

/// Reference policy: when `/usr/bin/djpeg` (libjpeg-turbo-progs) is installed, the reference
/// output is produced at test time by running it with the same settings (accurate integer
/// IDCT, fancy upsampling), and the comparison is exact. Without djpeg, the decoded samples
/// are compared with committed CRC-32 checksums of djpeg 2.1.5 output
/// (`Fixtures/djpeg_checksums.json`, written by `Tools/data/make_fixtures.py`).
@Suite("JPEG decoding")
struct JPEGTests {
    static let systemJPEGs = listJPEGs(flowerDirectory) + listJPEGs(darknetDirectory)

    @Test("full-size decode equals djpeg exactly", arguments: systemJPEGs)
    func matchesDjpeg(path: String) throws {
        try compare(path: path, scaleDenominator: 1)
    }

    @Test("DCT-scaled decode equals djpeg -scale exactly",
          arguments: [2, 4, 8].flatMap { s in
              [flowerDirectory + "/flower.png.im_q85_420.jpg", flowerDirectory + "/flower.png.im_q85_gray.jpg",
               flowerDirectory + "/flower.png.im_q85_444.jpg", darknetDirectory + "/dog.jpg"]
                  .filter(fileExists).map { ($0, s) }
          })
    func scaledMatchesDjpeg(path: String, scaleDenominator: Int) throws {
        try compare(path: path, scaleDenominator: scaleDenominator)
    }

    func compare(path: String, scaleDenominator: Int) throws {
        let decoder = try JPEGDecoder()
        let decoded = try decoder.decode(file: path, scaleDenominator: scaleDenominator)
        #expect(!decoded.hadWarning)
        let name = (path as NSString).lastPathComponent
        if fileExists(djpegPath) {
            let reference = try parsePNM(try run(djpegPath, ["-pnm", "-scale", "1/\(scaleDenominator)", path]))
            #expect(decoded.image.width == reference.width && decoded.image.height == reference.height)
            #expect(decoded.image.channels == reference.channels)
            let diff = maxDifference(decoded.image.pixels, reference.pixels)
            #expect(diff.count == 0, "\(name) 1/\(scaleDenominator): \(diff.count) samples differ, max \(diff.max)")
        } else {
            let table = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/djpeg_checksums.json"))) as! [String: Any]
            let sums = table["checksums"] as! [String: String]
            guard let expected = sums["\(name)@1/\(scaleDenominator)"] else { return }
            let crc = decoded.image.pixels.withUnsafeBufferPointer { crc32(0, $0.baseAddress, UInt32($0.count)) }
            #expect(String(format: "%08x", crc) == expected, "\(name) 1/\(scaleDenominator)")
        }
    }

    @Test("header reports size and colour space")
    func header() throws {
        let decoder = try JPEGDecoder()
        let gray = try readBytes(flowerDirectory + "/flower.png.im_q85_gray.jpg")
        let h = try gray.withUnsafeBytes { try decoder.header(of: $0, name: "gray") }
        #expect(h == JPEGHeader(width: 2268, height: 1512, colorSpace: .gray))
        #expect(h.outputChannels == 1)
    }

    @Test("grey files decode to one channel")
    func grayIsOneChannel() throws {
        let decoded = try JPEGDecoder().decode(file: flowerDirectory + "/flower.png.im_q85_gray.jpg", scaleDenominator: 8)
        #expect(decoded.image.channels == 1)
        #expect(decoded.header.colorSpace == .gray)
    }

    @Test("CMYK (Adobe) JPEG converts to RGB as Pillow does")
    func cmyk() throws {
        let decoded = try JPEGDecoder().decode(file: fixturesDirectory + "/cmyk.jpg")
        #expect(decoded.header.colorSpace == .yccK || decoded.header.colorSpace == .cmyk)
        let expected = try loadPNM(fixturesDirectory + "/cmyk.ppm")
        #expect(decoded.image.channels == 3)
        let diff = maxDifference(decoded.image.pixels, expected.pixels)
        #expect(diff.max == 0, "CMYK: \(diff.count) samples differ, max \(diff.max)")
    }

    @Test("a truncated JPEG decodes with a warning; the missing rows are grey")
    func truncated() throws {
        let bytes = try readBytes(darknetDirectory + "/dog.jpg")
        let decoder = try JPEGDecoder()
        let decoded = try decoder.decode(Array(bytes.prefix(bytes.count / 2)), name: "half-dog.jpg")
        #expect(decoded.hadWarning)
        #expect(decoded.image.width == 768 && decoded.image.height == 576)
        let lastRow = decoded.image.pixels.suffix(768 * 3)
        #expect(lastRow.allSatisfy { $0 == 128 })
        // the decoder stays usable
        #expect(try !decoder.decode(bytes, name: "dog.jpg").hadWarning)
    }

    @Test("a JPEG cut inside its headers fails with the file name")
    func truncatedHeader() throws {
        let bytes = try readBytes(darknetDirectory + "/dog.jpg")
        #expect {
            try JPEGDecoder().decode(Array(bytes.prefix(200)), name: "cut-dog.jpg")
        } throws: { error in
            guard let e = error as? DataError, case .decodeFailed(let name, _) = e else { return false }
            return name == "cut-dog.jpg"
        }
    }

    @Test("a non-JPEG file fails with the file name and a clear reason")
    func notJPEG() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("notes.jpg")
        try writeBytes(Array("this is not an image\n".utf8), to: path)
        #expect {
            try JPEGDecoder().decode(file: path)
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("not a JPEG")
        }
        try writeBytes([], to: path)
        #expect(throws: DataError.self) { try JPEGDecoder().decode(file: path) }
        #expect(throws: DataError.self) { try JPEGDecoder().decode(file: dir.file("missing.jpg")) }
    }

    @Test("scale choice keeps the crop at least the target size")
    func scaleChoice() {
        #expect(JPEGDecoder.scaleDenominator(cropWidth: 2000, cropHeight: 1800, targetWidth: 224, targetHeight: 224) == 8)
        #expect(JPEGDecoder.scaleDenominator(cropWidth: 1000, cropHeight: 900, targetWidth: 224, targetHeight: 224) == 4)
        #expect(JPEGDecoder.scaleDenominator(cropWidth: 500, cropHeight: 448, targetWidth: 224, targetHeight: 224) == 2)
        #expect(JPEGDecoder.scaleDenominator(cropWidth: 447, cropHeight: 900, targetWidth: 224, targetHeight: 224) == 1)
        #expect(JPEGDecoder.scaledSize(width: 2268, height: 1511, scaleDenominator: 8) == (284, 189))
    }
}
