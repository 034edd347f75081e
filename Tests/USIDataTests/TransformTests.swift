import Foundation
import Testing
import USICore
@testable import USIData

/// Fixture comparisons against Pillow/timm/torchvision (`Tools/data/make_fixtures.py`).
/// Tolerance: exact (0) for every 8-bit case — the kernels reproduce Pillow's fixed-point
/// and float arithmetic; 1e-6 for normalised floats.
@Suite("Transforms against PIL/timm fixtures")
struct TransformTests {
    struct Manifest: @unchecked Sendable {
        let cases: [[String: Any]]
        let normalizeSamples: [[Double]]
        let mean: [Float], std: [Float]
    }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/transforms.json"))
        let json = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return Manifest(cases: json["cases"] as! [[String: Any]],
                        normalizeSamples: json["normalize_samples"] as! [[Double]],
                        mean: (json["mean"] as! [Double]).map(Float.init),
                        std: (json["std"] as! [Double]).map(Float.init))
    }()

    static func cases(_ kind: String) -> [Int] {
        manifest.cases.indices.filter { manifest.cases[$0]["kind"] as? String == kind }
    }

    static func expected(_ c: [String: Any]) throws -> Image {
        try loadPNM(fixturesDirectory + "/" + (c["expected"] as! String))
    }

    static func check(_ actual: Image, _ expected: Image, _ label: String) {
        #expect(actual.width == expected.width && actual.height == expected.height && actual.channels == expected.channels, "\(label): shape")
        guard actual.pixels.count == expected.pixels.count else { return }
        let diff = maxDifference(actual.pixels, expected.pixels)
        #expect(diff.max == 0, "\(label): \(diff.count) samples differ, max \(diff.max)")
    }

    @Test("resized crop equals torchvision resized_crop on PIL", arguments: cases("resized_crop"))
    func resizedCrop(index: Int) throws {
        let c = Self.manifest.cases[index]
        let source = try loadPNM(fixturesDirectory + "/source.ppm")
        let region = CropRegion(top: c["top"] as! Int, left: c["left"] as! Int, height: c["height"] as! Int, width: c["width"] as! Int)
        let interpolation = Interpolation(rawValue: c["interpolation"] as! String)!
        let out = try source.resizedCrop(region, width: c["output_width"] as! Int, height: c["output_height"] as! Int,
                                         interpolation: interpolation)
        Self.check(out, try Self.expected(c), "\(interpolation) \(region)")
    }

    @Test("eval transform equals timm transforms_imagenet_eval", arguments: cases("eval"))
    func eval(index: Int) throws {
        let c = Self.manifest.cases[index]
        let source = try loadPNM(fixturesDirectory + "/source.ppm")
        let transform = try EvalTransform(size: c["size"] as! Int, cropPercentage: c["crop_pct"] as! Double,
                                          interpolation: Interpolation(rawValue: c["interpolation"] as! String)!)
        let out = try transform.processedImage(.pixels(source), workspace: TransformWorkspace())
        Self.check(out, try Self.expected(c), "eval \(c["size"]!) \(c["crop_pct"]!)")
    }

    /// dog.jpg (768×576) is more than twice the 256-px resize target, where reduced-scale DCT
    /// decoding would apply: by default the transform must decode it in full, as PIL does, so
    /// it equals the decode-then-resize path that the fixtures above prove equal to timm.
    @Test("eval transform decodes large JPEGs in full by default, and scaled only when asked",
          .enabled(if: fileExists(darknetDirectory + "/dog.jpg")))
    func evalDecodesInFull() throws {
        let path = darknetDirectory + "/dog.jpg"
        let decoded = try JPEGDecoder().decode(file: path).image
        let exact = try EvalTransform()
        let reference = try exact.processedImage(.pixels(decoded), workspace: TransformWorkspace())
        Self.check(try exact.processedImage(.file(path: path), workspace: TransformWorkspace()), reference, "dog.jpg, exact")
        var scaled = exact
        scaled.decodeScaling = true
        let fast = try scaled.processedImage(.file(path: path), workspace: TransformWorkspace())
        #expect(maxDifference(fast.pixels, reference.pixels).max > 0, "the scaled decode is a different path")
    }

    @Test("RandAugment ops equal timm's PIL ops", arguments: cases("op"))
    func operation(index: Int) throws {
        let c = Self.manifest.cases[index]
        let channels = c["channels"] as! Int
        let source = try loadPNM(fixturesDirectory + (channels == 1 ? "/ops_source_gray.pgm" : "/ops_source.ppm"))
        let argument = c["argument"] as? Double ?? 0
        let op: RandAugment.Operation
        switch c["op"] as! String {
        case "AutoContrast": op = .autoContrast
        case "Equalize": op = .equalize
        case "Invert": op = .invert
        case "Rotate": op = .rotate(degrees: argument)
        case "Posterize": op = .posterize(bits: Int(argument))
        case "Solarize": op = .solarize(threshold: Int(argument))
        case "SolarizeAdd": op = .solarizeAdd(amount: Int(argument), threshold: 128)
        case "Color": op = .color(factor: argument)
        case "Contrast": op = .contrast(factor: argument)
        case "Brightness": op = .brightness(factor: argument)
        case "Sharpness": op = .sharpness(factor: argument)
        case "ShearX": op = .shearX(factor: argument)
        case "ShearY": op = .shearY(factor: argument)
        case "TranslateXRel": op = .translateX(fraction: argument)
        case "TranslateYRel": op = .translateY(fraction: argument)
        default: Issue.record("unknown op \(c["op"]!)"); return
        }
        let fill = (c["fill"] as! [Int]).prefix(channels).map { UInt8($0) }
        let interpolation = Interpolation(rawValue: c["interpolation"] as? String ?? "bicubic")!
        let out = try source.applying(op, fill: Array(fill), interpolation: interpolation)
        Self.check(out, try Self.expected(c), "\(op) on \(channels) channel(s)")
    }

    @Test("normalisation equals ToTensor + Normalize")
    func normalization() throws {
        let source = try loadPNM(fixturesDirectory + "/ops_source.ppm")
        let floats = try source.normalized(mean: Self.manifest.mean, std: Self.manifest.std)
        for sample in Self.manifest.normalizeSamples {
            #expect(abs(Double(floats[Int(sample[0])]) - sample[1]) < 1e-6)
        }
    }

    @Test("grey ↔ RGB adaptation")
    func channelAdaptation() throws {
        let rgb = try loadPNM(fixturesDirectory + "/ops_source.ppm")
        let gray = try loadPNM(fixturesDirectory + "/ops_source_gray.pgm")
        #expect(try rgb.converted(toChannels: 1) == gray)  // Pillow convert("L")
        let back = try gray.converted(toChannels: 3)
        #expect(back.pixels[0] == gray.pixels[0] && back.pixels[2] == gray.pixels[0])
        let asRGB = try gray.normalized(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], outputChannels: 3)
        #expect(asRGB.count == gray.width * gray.height * 3 && asRGB[0] == asRGB[2])
        let asGray = try rgb.normalized(mean: [0.5], std: [0.5], outputChannels: 1)
        #expect(asGray == (try gray.normalized(mean: [0.5], std: [0.5])))
    }

    @Test("train transform without decode scaling = resized_crop of the sampled region")
    func trainComposition() throws {
        let source = try loadPNM(fixturesDirectory + "/source.ppm")
        let transform = try TrainTransform(size: 32, horizontalFlipProbability: 0, randAugment: nil, decodeScaling: false)
        let workspace = try TransformWorkspace()
        for seed in 0..<20 as Range<UInt64> {
            var g1 = RandomGenerator(seed: seed), g2 = RandomGenerator(seed: seed)
            let out = try transform.augmentedImage(.pixels(source), generator: &g1, workspace: workspace)
            let region = transform.crop.sample(width: 96, height: 72, generator: &g2)
            #expect(out == (try source.resizedCrop(region, width: 32, height: 32)))
        }
    }

    @Test("train transform on JPEGs: DCT scaling is used and stays close to the exact path",
          .enabled(if: fileExists(darknetDirectory + "/kite.jpg")))
    func trainOnJPEG() throws {
        let path = darknetDirectory + "/kite.jpg"
        let workspace = try TransformWorkspace()
        let scaled = try TrainTransform(size: 64, crop: RandomResizedCrop(scale: 0.9...1.0),
                                        horizontalFlipProbability: 0, randAugment: nil, decodeScaling: true)
        var exact = scaled
        exact.decodeScaling = false
        var g1 = RandomGenerator(seed: 3), g2 = RandomGenerator(seed: 3)
        let a = try scaled.augmentedImage(.file(path: path), generator: &g1, workspace: workspace)
        let b = try exact.augmentedImage(.file(path: path), generator: &g2, workspace: workspace)
        var sum = 0.0
        for i in a.pixels.indices { sum += abs(Double(a.pixels[i]) - Double(b.pixels[i])) }
        let meanDifference = sum / Double(a.pixels.count)
        #expect(meanDifference < 4, "mean |difference| \(meanDifference)")
        // and the exact path equals crop+resize of the full decode
        var g3 = RandomGenerator(seed: 3)
        let full = try JPEGDecoder().decode(file: path).image
        let region = exact.crop.sample(width: full.width, height: full.height, generator: &g3)
        #expect(b == (try full.resizedCrop(region, width: 64, height: 64)))
    }

    @Test("grey sources give the same pixels as their RGB expansion")
    func greySourceMatchesRGB() throws {
        let gray = try loadPNM(fixturesDirectory + "/ops_source_gray.pgm")
        let rgb = try gray.converted(toChannels: 3)
        let transform = try TrainTransform(size: 24)
        let workspace = try TransformWorkspace()
        for seed in 0..<30 as Range<UInt64> {
            var g1 = RandomGenerator(seed: seed), g2 = RandomGenerator(seed: seed)
            let a = try transform.augmentedImage(.pixels(gray), generator: &g1, workspace: workspace)
            let b = try transform.augmentedImage(.pixels(rgb), generator: &g2, workspace: workspace)
            #expect(a == b, "seed \(seed)")
        }
    }
}

@Suite("Augmentation sampling")
struct SamplingTests {
    @Test("RandomResizedCrop: area and ratio within range; timm's fallback")
    func randomResizedCrop() {
        let rrc = RandomResizedCrop()
        var g = RandomGenerator(seed: 1)
        var areaSum = 0.0
        for _ in 0..<2000 {
            let r = rrc.sample(width: 500, height: 375, generator: &g)
            #expect(r.top >= 0 && r.left >= 0 && r.top + r.height <= 375 && r.left + r.width <= 500)
            let area = Double(r.width * r.height) / Double(500 * 375)
            #expect(area > 0.07 && area <= 1.0)
            areaSum += area
        }
        // for a 4:3 image most draws succeed; E[area] is a bit under (0.08 + 1) / 2
        #expect(areaSum / 2000 > 0.4 && areaSum / 2000 < 0.56)
        // a very wide image always falls back: height kept, width = round(h * 4/3), centred
        let wide = rrc.sample(width: 1000, height: 10, generator: &g)
        #expect(wide == CropRegion(top: 0, left: (1000 - 13) / 2, height: 10, width: 13))
        let tall = rrc.sample(width: 10, height: 1000, generator: &g)
        #expect(tall == CropRegion(top: (1000 - 13) / 2, left: 0, height: 13, width: 10))
    }

    @Test("RandAugment config parsing")
    func config() throws {
        let ra = try RandAugment(config: "rand-m7-mstd0.5-inc1")
        #expect(ra == RandAugment())
        let other = try RandAugment(config: "rand-m9-n3-p0.8-mstd101")
        #expect(other.magnitude == 9 && other.operationCount == 3 && other.probability == 0.8)
        #expect(other.magnitudeStd == .infinity && !other.increasing)
        #expect(throws: DataError.self) { try RandAugment(config: "auto-m9") }
        #expect(throws: DataError.self) { try RandAugment(config: "rand-q3") }
    }

    @Test("RandAugment sampling: 2 ops at p 0.5, magnitude noise, increasing args")
    func sampling() {
        let ra = RandAugment()
        var g = RandomGenerator(seed: 42)
        var applied = 0, rotations: [Double] = [], posterBits = Set<Int>(), enhance: [Double] = []
        let trials = 4000
        for _ in 0..<trials {
            let ops = ra.sampleOperations(generator: &g)
            applied += ops.count
            for op in ops {
                switch op {
                case .rotate(let d): rotations.append(abs(d))
                case .posterize(let b): posterBits.insert(b)
                case .color(let f), .contrast(let f), .brightness(let f), .sharpness(let f): enhance.append(f)
                default: break
                }
            }
        }
        let meanApplied = Double(applied) / Double(trials)
        #expect(abs(meanApplied - 1.0) < 0.05)  // Binomial(2, 0.5)
        let meanRotation = rotations.reduce(0, +) / Double(rotations.count)
        #expect(abs(meanRotation - 21) < 0.3)  // 30 * 7 / 10
        let sd = (rotations.map { ($0 - meanRotation) * ($0 - meanRotation) }.reduce(0, +) / Double(rotations.count)).squareRoot()
        #expect(abs(sd - 1.5) < 0.2)  // 30 * 0.5 / 10
        #expect(posterBits.isSubset(of: [1, 2]))  // 4 - int(m/10*4) for m ≈ 7 ± 1.5
        #expect(enhance.allSatisfy { abs(abs($0 - 1) - 0.63) < 0.25 })  // 1 ± 0.9 m/10
    }
}
