import Foundation
import USICore

/// timm's `RandomResizedCropAndInterpolation` sampling: a crop covering a random fraction
/// `scale` of the image area with a log-uniform aspect ratio in `ratio`, tried up to 10
/// times, falling back to a central crop clamped to the ratio range.
public struct RandomResizedCrop: Sendable, Equatable {
    /// Range of the crop's area as a fraction of the image area.
    public var scale: ClosedRange<Double>
    /// Range of the crop's width / height.
    public var ratio: ClosedRange<Double>

    /// Creates the sampler; the defaults are the ImageNet recipe's (0.08–1, 3/4–4/3).
    public init(scale: ClosedRange<Double> = 0.08...1.0, ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)) {
        self.scale = scale
        self.ratio = ratio
    }

    /// Samples a crop of a `width`×`height` image. Draws, in order, per attempt: the area
    /// fraction, the log-ratio, then (on success) the top and left offsets.
    public func sample(width: Int, height: Int, generator: inout RandomGenerator) -> CropRegion {
        let area = Double(width * height)
        let logRatio = (Foundation.log(ratio.lowerBound), Foundation.log(ratio.upperBound))
        for _ in 0..<10 {
            let targetArea = generator.uniform(scale.lowerBound, scale.upperBound) * area
            let aspect = Foundation.exp(generator.uniform(logRatio.0, logRatio.1))
            let w = pythonRound((targetArea * aspect).squareRoot())
            let h = pythonRound((targetArea / aspect).squareRoot())
            if w <= width && h <= height && w > 0 && h > 0 {
                let top = generator.integer(in: 0..<(height - h + 1))
                let left = generator.integer(in: 0..<(width - w + 1))
                return CropRegion(top: top, left: left, height: h, width: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = pythonRound(Double(w) / ratio.lowerBound)
        } else if inRatio > ratio.upperBound {
            w = pythonRound(Double(h) * ratio.upperBound)
        }
        h = max(1, min(h, height))
        w = max(1, min(w, width))
        return CropRegion(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }
}
