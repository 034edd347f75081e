import Foundation
import CUSIKernels

/// Resizes `region` — given in full-resolution pixel coordinates — of a decoded image into
/// packed `dst` (`outputHeight × outputWidth × view.channels`).
///
/// When the view is the full-resolution image, this is exactly torchvision's
/// `resized_crop`: the crop is cut out first, so the filter never reads outside it. When the
/// view was decoded at a reduced DCT scale, the region maps to a fractional box; the filter
/// is confined to the pixels that cover that box.
func resizeRegion(_ view: PixelView, fullWidth: Int, fullHeight: Int, region: CropRegion,
                  outputWidth: Int, outputHeight: Int, interpolation: Interpolation,
                  into dst: UnsafeMutablePointer<UInt8>) throws {
    var x0 = 0, y0 = 0, x1 = 0, y1 = 0
    var box: [Float]
    if view.width == fullWidth && view.height == fullHeight {
        x0 = region.left; y0 = region.top; x1 = region.left + region.width; y1 = region.top + region.height
        box = [0, 0, Float(region.width), Float(region.height)]
    } else {
        let fx = Double(view.width) / Double(fullWidth), fy = Double(view.height) / Double(fullHeight)
        let bx0 = Double(region.left) * fx, bx1 = Double(region.left + region.width) * fx
        let by0 = Double(region.top) * fy, by1 = Double(region.top + region.height) * fy
        x0 = max(0, Int(floor(bx0))); y0 = max(0, Int(floor(by0)))
        x1 = min(view.width, Int(ceil(bx1))); y1 = min(view.height, Int(ceil(by1)))
        x1 = max(x1, x0 + 1); y1 = max(y1, y0 + 1)
        box = [Float(bx0 - Double(x0)), Float(by0 - Double(y0)),
               min(Float(x1 - x0), Float(bx1 - Double(x0))), min(Float(y1 - y0), Float(by1 - Double(y0)))]
        box[0] = max(0, min(box[0], box[2] - 1e-3)); box[1] = max(0, min(box[1], box[3] - 1e-3))
    }
    let start = view.pointer + y0 * view.rowStride + x0 * view.channels
    let status = usi_image_resize(dst, Int32(outputWidth), Int32(outputHeight), start, Int32(x1 - x0), Int32(y1 - y0),
                                  Int32(view.rowStride), Int32(view.channels), box, interpolation.kernelValue)
    guard status == 0 else {
        throw DataError.invalidArgument("cannot resize crop \(region) of a \(fullWidth)x\(fullHeight) image to \(outputWidth)x\(outputHeight)")
    }
}
