import Foundation
import USIData

/// One decoder state for the whole run, as a loader worker keeps one: an input that leaves it
/// broken fails the check on the reference image below. The pixel limit is lowered to
/// 65536 (256 × 256) so that a mutated header cannot make each run decode megapixels of
/// filler; the limit check itself is the same code at any value.
private let limits = try! ImageLimits(maximumPixels: 1 << 16, maximumFileBytes: 1 << 20)
nonisolated(unsafe) private let workspace = try! TransformWorkspace(imageLimits: limits)
nonisolated(unsafe) private let decoder = try! JPEGDecoder(limits: limits)
private let evalTransform = try! EvalTransform(size: 24, cropPercentage: 0.875)
private let grayEval = try! EvalTransform(size: 17, cropPercentage: 1, mean: [0.5], std: [0.25], decodeScaling: false)
private let trainTransform = try! TrainTransform(size: 20)
/// A 16x8 grey baseline JPEG (a corner of darknet's dog.jpg), decoded after every input to prove the decoder still works.
private let reference: [UInt8] = Array(Data(base64Encoded:
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/wAALCAAIABABAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AM/R/kuyMgblPJ/P+lakkW1lZmYN6KSM1//Z")!)
private let referencePixels = try! decoder.decode(reference, name: "reference").image

/// One fuzz input: any bytes as a JPEG, through the header parse, a full and a
/// DCT-scaled decode, and the evaluation and training transforms (crop, resize, flip,
/// RandAugment, normalise — the C kernels, sized by the file). Every step must decode or throw;
/// afterwards the same decoder and workspace must still decode a good file identically.
func fuzzJPEG(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    let scale = size > 0 ? [1, 2, 4, 8][Int(data[size - 1]) & 3] : 1
    if let decoded = try? decoder.decode(bytes, name: "fuzz", scaleDenominator: scale) {
        precondition(decoded.image.pixels.count == decoded.image.width * decoded.image.height * decoded.image.channels)
    }
    var generator = RandomGenerator(seed: UInt64(size))
    _ = try? evalTransform.apply(.encoded(bytes: bytes, name: "fuzz"), generator: &generator, workspace: workspace)
    _ = try? grayEval.apply(.encoded(bytes: bytes, name: "fuzz"), generator: &generator, workspace: workspace)
    _ = try? trainTransform.apply(.encoded(bytes: bytes, name: "fuzz"), generator: &generator, workspace: workspace)
    guard let after = try? decoder.decode(reference, name: "reference"), after.image == referencePixels else {
        fatalError("the decoder no longer decodes a good file after this input")
    }
    var again = RandomGenerator(seed: 1)
    guard (try? evalTransform.apply(.encoded(bytes: reference, name: "reference"), generator: &again, workspace: workspace)) != nil else {
        fatalError("the workspace no longer decodes a good file after this input")
    }
    return 0
}
