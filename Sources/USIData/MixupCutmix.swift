import Foundation
import CUSIKernels
import USICore

/// timm's `Mixup` in batch mode: per batch, with probability `probability`, either CutMix
/// (probability `switchProbability`, λ ~ Beta(`cutmixAlpha`)) or Mixup (λ ~
/// Beta(`mixupAlpha`)); sample i is mixed with sample N-1-i of the same batch (timm's
/// `x.flip(0)`), and the targets become λ·onehot(y) + (1-λ)·onehot(flip(y)). CutMix's λ is
/// corrected to the pasted box's actual area (`correct_lam`).
///
/// The loader mixes the normalised batch once, so the teacher and the student see the very
/// same tensor.
public struct MixupCutmix: Sendable, Equatable {
    /// Mixup Beta parameter (0 disables Mixup).
    public var mixupAlpha: Double
    /// CutMix Beta parameter (0 disables CutMix).
    public var cutmixAlpha: Double
    /// Probability of mixing a batch at all.
    public var probability: Double
    /// Probability of CutMix rather than Mixup when both are enabled.
    public var switchProbability: Double
    /// Correct CutMix's λ to the clipped box area.
    public var correctLambda: Bool
    /// Label smoothing of the targets (the USI recipe uses none).
    public var labelSmoothing: Double

    /// Creates the mixer; defaults are the USI recipe's (0.8, 1.0, always, switch 0.5,
    /// corrected λ, no smoothing).
    public init(mixupAlpha: Double = 0.8, cutmixAlpha: Double = 1.0, probability: Double = 1.0,
                switchProbability: Double = 0.5, correctLambda: Bool = true, labelSmoothing: Double = 0) {
        self.mixupAlpha = mixupAlpha
        self.cutmixAlpha = cutmixAlpha
        self.probability = probability
        self.switchProbability = switchProbability
        self.correctLambda = correctLambda
        self.labelSmoothing = labelSmoothing
    }

    /// What was done to one batch.
    public struct Parameters: Sendable, Equatable {
        /// Weight of each sample's own image and label (1: unmixed).
        public var lambda: Double
        /// CutMix box (rows `top..<bottom`, columns `left..<right`), nil for Mixup or none.
        public var box: (top: Int, bottom: Int, left: Int, right: Int)?

        public static func == (a: Parameters, b: Parameters) -> Bool {
            a.lambda == b.lambda && a.box?.top == b.box?.top && a.box?.bottom == b.box?.bottom
                && a.box?.left == b.box?.left && a.box?.right == b.box?.right
        }
    }

    /// Draws one batch's parameters (timm `_params_per_batch` then `cutmix_bbox_and_lam`).
    public func sampleParameters(height: Int, width: Int, generator: inout RandomGenerator) -> Parameters {
        guard generator.nextDouble() < probability, mixupAlpha > 0 || cutmixAlpha > 0 else {
            return Parameters(lambda: 1, box: nil)
        }
        var useCutmix: Bool
        var lambda: Double
        if mixupAlpha > 0 && cutmixAlpha > 0 {
            useCutmix = generator.nextDouble() < switchProbability
            lambda = useCutmix ? generator.beta(cutmixAlpha, cutmixAlpha) : generator.beta(mixupAlpha, mixupAlpha)
        } else if mixupAlpha > 0 {
            useCutmix = false
            lambda = generator.beta(mixupAlpha, mixupAlpha)
        } else {
            useCutmix = true
            lambda = generator.beta(cutmixAlpha, cutmixAlpha)
        }
        if lambda == 1 || !useCutmix { return Parameters(lambda: lambda, box: nil) }
        // rand_bbox
        let ratio = (1 - lambda).squareRoot()
        let cutH = Int(Double(height) * ratio), cutW = Int(Double(width) * ratio)
        let cy = generator.integer(in: 0..<height), cx = generator.integer(in: 0..<width)
        let top = min(max(cy - cutH / 2, 0), height), bottom = min(max(cy + (cutH + 1) / 2, 0), height)
        let left = min(max(cx - cutW / 2, 0), width), right = min(max(cx + (cutW + 1) / 2, 0), width)
        if correctLambda {
            lambda = 1 - Double((bottom - top) * (right - left)) / Double(height * width)
        }
        return Parameters(lambda: lambda, box: (top, bottom, left, right))
    }

    /// Mixes a batch of images `[count, height, width, channels]` in place.
    public func mix(images: UnsafeMutablePointer<Float>, count: Int, height: Int, width: Int, channels: Int,
                    parameters: Parameters) {
        if let box = parameters.box {
            usi_batch_cutmix(images, Int32(count), Int32(height), Int32(width), Int32(channels),
                             Int32(box.top), Int32(box.bottom), Int32(box.left), Int32(box.right))
        } else if parameters.lambda != 1 {
            usi_batch_mixup(images, Int32(count), height * width * channels, Float(parameters.lambda))
        }
    }

    /// Soft targets `[labels.count, classCount]`: λ·onehot(y) + (1-λ)·onehot(flip(y)), with
    /// label smoothing (timm `mixup_target`).
    public func targets(labels: [Int], classCount: Int, lambda: Double) -> [Float] {
        let off = labelSmoothing / Double(classCount), on = 1 - labelSmoothing + off
        var out = [Float](repeating: 0, count: labels.count * classCount)
        let n = labels.count
        for i in 0..<n {
            var row = [Double](repeating: off, count: classCount)
            var flipped = row
            row[labels[i]] = on
            flipped[labels[n - 1 - i]] = on
            for k in 0..<classCount {
                out[i * classCount + k] = Float(row[k] * lambda + flipped[k] * (1 - lambda))
            }
        }
        return out
    }
}
