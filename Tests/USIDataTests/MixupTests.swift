import Foundation
import Testing
import USICore
@testable import USIData

@Suite("Mixup / CutMix")
struct MixupTests {
    nonisolated(unsafe) static let timmStats: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/mixup_stats.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    @Test("λ and box statistics match timm's (100k draws each)", arguments: [224, 32])
    func statistics(size: Int) {
        let mixer = MixupCutmix()
        var g = RandomGenerator(seed: 7)
        var cutLambdas: [Double] = [], mixLambdas: [Double] = [], areas: [Double] = []
        for _ in 0..<200_000 {
            let p = mixer.sampleParameters(height: size, width: size, generator: &g)
            if let box = p.box {
                cutLambdas.append(p.lambda)
                let area = Double((box.bottom - box.top) * (box.right - box.left)) / Double(size * size)
                areas.append(area)
                #expect(abs(p.lambda - (1 - area)) < 1e-12)  // area-corrected
            } else {
                mixLambdas.append(p.lambda)
            }
        }
        func meanStd(_ x: [Double]) -> (Double, Double) {
            let m = x.reduce(0, +) / Double(x.count)
            return (m, (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count)).squareRoot())
        }
        let expected = Self.timmStats[String(size)] as! [String: Double]
        let (cm, cs) = meanStd(cutLambdas)
        let (mm, ms) = meanStd(mixLambdas)
        let cutFraction = Double(cutLambdas.count) / 200_000
        #expect(abs(cutFraction - 0.5) < 0.01)  // switch prob 0.5
        #expect(abs(cm - expected["cutmix_lambda_mean"]!) < 0.005, "cutmix λ mean \(cm) vs timm \(expected["cutmix_lambda_mean"]!)")
        #expect(abs(cs - expected["cutmix_lambda_std"]!) < 0.005, "cutmix λ std \(cs)")
        #expect(abs(areas.reduce(0, +) / Double(areas.count) - expected["cutmix_area_mean"]!) < 0.005)
        #expect(abs(mm - (Self.timmStats["mixup_lambda_mean"] as! Double)) < 0.005, "mixup λ mean \(mm)")
        #expect(abs(ms - (Self.timmStats["mixup_lambda_std"] as! Double)) < 0.005, "mixup λ std \(ms)")
    }

    @Test("mixing pairs sample i with N-1-i; targets are λ-weighted one-hots")
    func pairing() {
        let mixer = MixupCutmix()
        let n = 4, h = 3, w = 2, c = 1
        var images = (0..<(n * h * w * c)).map { Float($0 / (h * w * c)) }  // sample i is all i
        images.withUnsafeMutableBufferPointer {
            mixer.mix(images: $0.baseAddress!, count: n, height: h, width: w, channels: c,
                      parameters: .init(lambda: 0.25, box: nil))
        }
        #expect(images[0] == 0.25 * 0 + 0.75 * 3)
        #expect(images[h * w] == 0.25 * 1 + 0.75 * 2)
        let targets = mixer.targets(labels: [0, 1, 2, 0], classCount: 3, lambda: 0.25)
        #expect(targets[0..<3] == [1, 0, 0])  // 0.25·e0 + 0.75·e0
        #expect(targets[3..<6] == [0, 0.25, 0.75])
        var cut = (0..<(n * 4 * 4)).map { Float($0 / 16) }
        cut.withUnsafeMutableBufferPointer {
            mixer.mix(images: $0.baseAddress!, count: n, height: 4, width: 4, channels: 1,
                      parameters: .init(lambda: 0.75, box: (top: 1, bottom: 3, left: 0, right: 2)))
        }
        #expect(cut[0] == 0 && cut[4] == 3 && cut[5] == 3 && cut[6] == 0 && cut[12] == 0)
        #expect(cut[16 * 3 + 4] == 0)  // the last sample got the first one's box
    }

    @Test("label smoothing follows timm's mixup_target")
    func smoothing() {
        let mixer = MixupCutmix(labelSmoothing: 0.1)
        let t = mixer.targets(labels: [1, 0], classCount: 2, lambda: 1)
        #expect(abs(t[0] - 0.05) < 1e-7 && abs(t[1] - 0.95) < 1e-7)
    }
}
