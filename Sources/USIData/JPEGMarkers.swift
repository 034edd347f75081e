/// A minimal JPEG marker scanner: finds the frame header (SOFn) to learn the size and the
/// number of components. Used when TurboJPEG 2.x's `tjDecompressHeader3` refuses a file only
/// because its sampling factors are not one of the named TurboJPEG subsamplings (e.g. a
/// subsampled luma channel); `tjDecompress2` itself decodes such files.
enum JPEGMarkers {
    struct Frame: Equatable {
        var width: Int
        var height: Int
        var components: Int
        /// The Adobe APP14 colour transform (0 = none, 1 = YCbCr, 2 = YCCK), if present.
        var adobeTransform: Int?
    }

    static func frame(in bytes: UnsafeRawBufferPointer) -> Frame? {
        guard bytes.count > 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return nil }
        var i = 2
        var adobe: Int?
        while i + 4 <= bytes.count {
            guard bytes[i] == 0xFF else { return nil }
            let marker = bytes[i + 1]
            if marker == 0xFF { i += 1; continue }  // fill byte
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { i += 2; continue }
            if marker == 0xD9 || marker == 0xDA { return nil }  // EOI or scan before any SOF
            let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            guard length >= 2, i + 2 + length <= bytes.count else { return nil }
            let body = i + 4
            let isSOF = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
            if isSOF {
                guard length >= 8 else { return nil }
                let height = Int(bytes[body + 1]) << 8 | Int(bytes[body + 2])
                let width = Int(bytes[body + 3]) << 8 | Int(bytes[body + 4])
                let components = Int(bytes[body + 5])
                guard width > 0, height > 0, [1, 3, 4].contains(components) else { return nil }
                return Frame(width: width, height: height, components: components, adobeTransform: adobe)
            }
            if marker == 0xEE, length >= 14,
               bytes[body] == 0x41, bytes[body + 1] == 0x64, bytes[body + 2] == 0x6F,
               bytes[body + 3] == 0x62, bytes[body + 4] == 0x65 {  // "Adobe"
                adobe = Int(bytes[body + 11])
            }
            i += 2 + length
        }
        return nil
    }
}
