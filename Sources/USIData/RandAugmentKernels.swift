import Foundation
import CUSIKernels

extension RandAugment.Operation {
    /// Applies the operation to packed pixels `[height, width, channels]` in place.
    /// `scratch` must hold as many bytes as the image; `fill` has `channels` values.
    func apply(to pixels: UnsafeMutablePointer<UInt8>, width: Int, height: Int, channels: Int,
               scratch: UnsafeMutablePointer<UInt8>, fill: [UInt8], interpolation: Interpolation) {
        let n = width * height
        let c = Int32(channels)
        func lut(_ f: (Int) -> Int) {
            var table = [UInt8](repeating: 0, count: 256)
            for i in 0..<256 { table[i] = UInt8(clamping: f(i)) }
            usi_image_apply_lut(pixels, n, c, table)
        }
        func affine(_ m: [Double]) {
            usi_image_affine(scratch, pixels, Int32(width), Int32(height), c, m, interpolation.kernelValue, fill)
            pixels.update(from: scratch, count: n * channels)
        }
        switch self {
        case .autoContrast: usi_image_autocontrast(pixels, n, c)
        case .equalize: usi_image_equalize(pixels, n, c)
        case .invert: lut { 255 - $0 }
        case .posterize(let bits):
            if bits >= 8 { return }
            let mask = ~((1 << (8 - max(bits, 0))) - 1)
            lut { $0 & mask }
        case .solarize(let threshold): lut { $0 < threshold ? $0 : 255 - $0 }
        case .solarizeAdd(let amount, let threshold): lut { $0 < threshold ? min(255, $0 + amount) : $0 }
        case .color(let factor): usi_image_color(pixels, n, c, Float(factor))
        case .contrast(let factor): usi_image_contrast(pixels, n, c, Float(factor))
        case .brightness(let factor): usi_image_brightness(pixels, n, c, Float(factor))
        case .sharpness(let factor): usi_image_sharpness(pixels, Int32(width), Int32(height), c, Float(factor), scratch)
        case .shearX(let factor): affine([1, factor, 0, 0, 1, 0])
        case .shearY(let factor): affine([1, 0, 0, factor, 1, 0])
        case .translateX(let fraction): affine([1, 0, fraction * Double(width), 0, 1, 0])
        case .translateY(let fraction): affine([1, 0, 0, 0, 1, fraction * Double(height)])
        case .rotate(let degrees):
            // Pillow's Image.rotate (no expand, centre of the image, fast paths for multiples
            // of 90 degrees)
            let angle = degrees.truncatingRemainder(dividingBy: 360) + (degrees < 0 ? 360 : 0)
            if angle == 0 || angle == 360 { return }
            if angle == 180 {
                usi_image_hflip(pixels, Int32(width), Int32(height), c)
                // vertical flip: reverse the row order
                let row = width * channels
                for y in 0..<(height / 2) {
                    scratch.update(from: pixels + y * row, count: row)
                    (pixels + y * row).update(from: pixels + (height - 1 - y) * row, count: row)
                    (pixels + (height - 1 - y) * row).update(from: scratch, count: row)
                }
                return
            }
            let radians = -(angle * (Double.pi / 180.0))  // -math.radians(angle)
            let cosine = pythonRound15(Foundation.cos(radians)), sine = pythonRound15(Foundation.sin(radians))
            var m = [cosine, sine, 0.0, pythonRound15(-Foundation.sin(radians)), cosine, 0.0]
            let cx = Double(width) / 2, cy = Double(height) / 2
            let tx = m[0] * -cx + m[1] * -cy + m[2]
            let ty = m[3] * -cx + m[4] * -cy + m[5]
            m[2] = tx + cx
            m[5] = ty + cy
            affine(m)
        }
    }
}

/// Python's `round(x, 15)` (correctly rounded through a decimal string, as CPython does).
func pythonRound15(_ x: Double) -> Double {
    Double(String(format: "%.15f", x)) ?? x
}

extension Image {
    /// Applies one RandAugment operation. `fill` is the colour of areas uncovered by
    /// geometric operations (timm: the dataset mean as bytes), one value per channel.
    public func applying(_ operation: RandAugment.Operation, fill: [UInt8],
                        interpolation: Interpolation = .bicubic) throws -> Image {
        guard fill.count == channels else {
            throw DataError.invalidArgument("fill needs \(channels) values, got \(fill.count)")
        }
        var out = self
        var scratch = [UInt8](repeating: 0, count: pixels.count)
        out.pixels.withUnsafeMutableBufferPointer { dst in
            scratch.withUnsafeMutableBufferPointer { tmp in
                operation.apply(to: dst.baseAddress!, width: width, height: height, channels: channels,
                                scratch: tmp.baseAddress!, fill: fill, interpolation: interpolation)
            }
        }
        return out
    }
}
