import Foundation
@testable import USIData

/// A fresh temporary directory, removed by the caller with `cleanup()`.
struct TemporaryDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "usi-data-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Directory of the fixtures, next to this file (works without SwiftPM resources).
let fixturesDirectory: String = {
    (URL(fileURLWithPath: #filePath).deletingLastPathComponent().path as NSString)
        .appendingPathComponent("Fixtures")
}()

let flowerDirectory = "/usr/share/libjxl-testdata/jxl/flower"
let darknetDirectory = "/usr/share/darknet/data"
let fashionDirectory = IDXDataset.fashionMNISTDefaultDirectory

func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

import CZlib

/// Writes `bytes` as a gzip file.
func gzipBytes(_ bytes: [UInt8], to path: String) throws {
    guard let file = gzopen(path, "wb") else { throw DataError.unreadable(path: path, reason: "gzopen") }
    _ = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
    gzclose(file)
}

/// Parses a binary PNM (P5 grey or P6 RGB, maxval 255).
func parsePNM(_ data: [UInt8]) throws -> Image {
    var index = 0
    func token() -> String {
        while index < data.count, [0x20, 0x0A, 0x0D, 0x09].contains(data[index]) { index += 1 }
        if index < data.count, data[index] == UInt8(ascii: "#") {
            while index < data.count, data[index] != 0x0A { index += 1 }
            return token()
        }
        var s = ""
        while index < data.count, ![0x20, 0x0A, 0x0D, 0x09].contains(data[index]) {
            s.append(Character(UnicodeScalar(data[index]))); index += 1
        }
        return s
    }
    let magic = token()
    guard magic == "P5" || magic == "P6", let w = Int(token()), let h = Int(token()), token() == "255" else {
        throw DataError.corrupt(path: "pnm", reason: "unsupported PNM header")
    }
    index += 1  // the single whitespace byte after maxval
    let channels = magic == "P5" ? 1 : 3
    return try Image(width: w, height: h, channels: channels,
                     pixels: Array(data[index..<(index + w * h * channels)]))
}

func loadPNM(_ path: String) throws -> Image { try parsePNM(try readBytes(path)) }

/// Runs a program and returns its standard output.
func run(_ executable: String, _ arguments: [String]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return [UInt8](data)
}

/// Largest absolute difference between two equally sized byte arrays, and how many differ.
func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> (max: Int, count: Int) {
    precondition(a.count == b.count)
    var m = 0, n = 0
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            for i in 0..<pa.count where pa[i] != pb[i] {
                n += 1
                m = max(m, abs(Int(pa[i]) - Int(pb[i])))
            }
        }
    }
    return (m, n)
}

func listJPEGs(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        .filter { $0.lowercased().hasSuffix(".jpg") }.sorted()
        .map { (directory as NSString).appendingPathComponent($0) }
}

let djpegPath = "/usr/bin/djpeg"
