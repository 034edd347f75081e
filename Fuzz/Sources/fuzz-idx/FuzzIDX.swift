import Foundation
import USIData

/// The files this process writes its inputs to (IDX reading goes through zlib's `gzopen`, so
/// the input must be a file; `/dev/shm` keeps that in memory).
private let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
private let imagesPath = "\(directory)/usi-fuzz-idx-\(getpid())-images"
private let labelsPath = "\(directory)/usi-fuzz-idx-\(getpid())-labels"

private func write(_ pointer: UnsafePointer<UInt8>, _ count: Int, to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot write \(path)")
    var done = 0
    while done < count {
        let n = Glibc.write(fd, pointer + done, count - done)
        precondition(n > 0)
        done += n
    }
    close(fd)
}

/// One fuzz input: the input is split at the offset its first two bytes give into an
/// image file and a label file (each raw or gzip). `IDXFile` must read or throw on both;
/// `IDXDataset` must build from the pair or throw, and a dataset that builds must give back
/// every sample's pixels and label.
func fuzzIDX(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    guard size >= 2 else { return 0 }
    let split = min(size - 2, Int(data[0]) << 8 | Int(data[1]))
    write(data + 2, split, to: imagesPath)
    write(data + 2 + split, size - 2 - split, to: labelsPath)
    if let images = try? IDXFile(contentsOf: imagesPath) {
        precondition(images.bytes.count == images.dimensions.reduce(1, *), "data does not match the dimensions")
    }
    _ = try? IDXFile(contentsOf: labelsPath)
    guard let dataset = try? IDXDataset(imagesPath: imagesPath, labelsPath: labelsPath) else { return 0 }
    for index in 0..<min(dataset.count, 64) {
        guard case .pixels(let image)? = try? dataset.source(at: index) else { fatalError("sample \(index) has no pixels") }
        precondition(image.pixels.count == image.width * image.height * image.channels)
        precondition((0..<dataset.classCount).contains(dataset.label(at: index)))
    }
    return 0
}
