import Foundation
import USI

/// A slice of real Fashion-MNIST (Debian's IDX files) written as a PNG ImageFolder, for the
/// command-line tests that need real labelled images: root/{train,val}/<label>-<name>/*.png.
enum FashionMNISTFolder {
    /// The folder names, in label order (the digit prefix keeps ImageFolder's sorted order).
    static let classFolders = IDXDataset.fashionMNISTClassNames.enumerated().map {
        "\($0.offset)-\($0.element.replacingOccurrences(of: "/", with: "_"))"
    }

    /// Writes the first `train` training and `validation` test images under a new temporary folder.
    static func write(train: Int, validation: Int) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("usi-fmnist-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        for (split, source, count) in [("train", IDXDataset.Split.train, train), ("val", .test, validation)] {
            let dataset = try IDXDataset.fashionMNIST(split: source)
            for name in classFolders {
                try FileManager.default.createDirectory(at: root.appendingPathComponent("\(split)/\(name)"), withIntermediateDirectories: true)
            }
            for index in 0..<count {
                guard case let .pixels(image) = try dataset.source(at: index) else { throw CocoaError(.fileReadUnknown) }
                let file = root.appendingPathComponent("\(split)/\(classFolders[dataset.label(at: index)])/\(index).png")
                try PNGWriter.grey(width: image.width, height: image.height, pixels: image.pixels).write(to: file)
            }
        }
        return root
    }
}

/// The smallest valid PNG encoder: 8-bit grey, filter 0, zlib "stored" (uncompressed) blocks,
/// enough for test images of a few hundred bytes each.
enum PNGWriter {
    static func grey(width: Int, height: Int, pixels: [UInt8]) -> Data {
        var raw: [UInt8] = []
        for y in 0..<height { raw.append(0); raw += pixels[(y * width)..<((y + 1) * width)] }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let length = min(65_535, raw.count - offset)
            let final: UInt8 = offset + length == raw.count ? 1 : 0
            zlib += [final, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
            zlib += raw[offset..<(offset + length)]
            offset += length
        } while offset < raw.count
        zlib += bigEndian(adler32(raw))
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, 0, 0, 0, 0])
        png += chunk("IDAT", zlib)
        png += chunk("IEND", [])
        return Data(png)
    }

    private static func chunk(_ kind: String, _ body: [UInt8]) -> [UInt8] {
        let typed = Array(kind.utf8) + body
        return bigEndian(UInt32(body.count)) + typed + bigEndian(crc32(typed))
    }

    private static func bigEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (24 - 8 * UInt32($0))) & 0xFF) } }

    private static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    private static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in bytes { a = (a + UInt32(byte)) % 65_521; b = (b + a) % 65_521 }
        return b << 16 | a
    }
}
