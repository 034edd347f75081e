import CZlib
import Foundation

/// CRC-32 (zlib's) of the files a run commits, so that resuming detects a damaged checkpoint.
enum Checksum {
    /// The CRC-32 of `data`.
    static func crc32(_ data: Data) -> UInt32 {
        data.withUnsafeBytes { raw -> UInt32 in
            var crc = CZlib.crc32(0, nil, 0)
            var offset = 0
            while offset < raw.count {
                // zlib takes a 32-bit length.
                let chunk = min(raw.count - offset, 1 << 30)
                crc = CZlib.crc32(crc, raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + offset, uInt(chunk))
                offset += chunk
            }
            return UInt32(crc)
        }
    }
}
