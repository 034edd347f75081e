import CUSIKernels

// Single-image operations on `Image` values: the building blocks of the transforms, exposed
// so that users (and tests) can apply them one at a time. The loader's hot path calls the
// same kernels on reusable buffers instead.

extension Image {
    /// Pillow's `resize((width, height), interpolation, box=box)`: an antialiased resize of
    /// the region `box` = (x0, y0, x1, y1) (default: the whole image).
    public func resized(width: Int, height: Int, interpolation: Interpolation = .bicubic,
                        box: (Float, Float, Float, Float)? = nil) throws -> Image {
        guard width > 0, height > 0 else {
            throw DataError.invalidArgument("resize target must be positive, got \(width)x\(height)")
        }
        let region = box ?? (0, 0, Float(self.width), Float(self.height))
        var out = [UInt8](repeating: 0, count: width * height * channels)
        let status = out.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                withUnsafePointer(to: region) {
                    $0.withMemoryRebound(to: Float.self, capacity: 4) { boxPointer in
                        usi_image_resize(dst.baseAddress, Int32(width), Int32(height), src.baseAddress,
                                         Int32(self.width), Int32(self.height), Int32(self.width * channels),
                                         Int32(channels), boxPointer, interpolation.kernelValue)
                    }
                }
            }
        }
        guard status == 0 else {
            throw DataError.invalidArgument("resize box \(region) is outside the \(self.width)x\(self.height) image")
        }
        return Image(uncheckedWidth: width, height: height, channels: channels, pixels: out)
    }

    /// The rectangle `region` (which must lie inside the image).
    public func cropped(to region: CropRegion) throws -> Image {
        guard region.top >= 0, region.left >= 0, region.width > 0, region.height > 0,
              region.top + region.height <= height, region.left + region.width <= width else {
            throw DataError.invalidArgument("crop \(region) is outside the \(width)x\(height) image")
        }
        var out = [UInt8](repeating: 0, count: region.width * region.height * channels)
        out.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                usi_image_crop(dst.baseAddress, src.baseAddress, Int32(width * channels), Int32(region.left),
                               Int32(region.top), Int32(region.width), Int32(region.height), Int32(channels))
            }
        }
        return Image(uncheckedWidth: region.width, height: region.height, channels: channels, pixels: out)
    }

    /// torchvision's `resized_crop(image, top, left, height, width, size)`: crop, then resize
    /// the crop alone (its borders are not blended with pixels outside it).
    public func resizedCrop(_ region: CropRegion, width: Int, height: Int,
                            interpolation: Interpolation = .bicubic) throws -> Image {
        try cropped(to: region).resized(width: width, height: height, interpolation: interpolation)
    }

    /// The image mirrored left to right.
    public func flippedHorizontally() -> Image {
        var out = self
        out.pixels.withUnsafeMutableBufferPointer {
            usi_image_hflip($0.baseAddress, Int32(width), Int32(height), Int32(channels))
        }
        return out
    }

    /// The image with `channels` samples per pixel: grey to RGB replicates, RGB to grey uses
    /// Pillow's `convert("L")` weights.
    public func converted(toChannels target: Int) throws -> Image {
        guard target == 1 || target == 3 else {
            throw DataError.invalidArgument("images have 1 or 3 channels, asked for \(target)")
        }
        if target == channels { return self }
        var out = [UInt8](repeating: 0, count: width * height * target)
        out.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                if target == 3 {
                    usi_image_gray_to_rgb(dst.baseAddress, src.baseAddress, width * height)
                } else {
                    usi_image_rgb_to_gray(dst.baseAddress, src.baseAddress, width * height)
                }
            }
        }
        return Image(uncheckedWidth: width, height: height, channels: target, pixels: out)
    }

    /// Normalised floats `[height, width, outputChannels]`: `(v / 255 - mean[c]) / std[c]`,
    /// adapting grey to RGB (replicate) or RGB to grey (`convert("L")`).
    public func normalized(mean: [Float], std: [Float], outputChannels: Int? = nil) throws -> [Float] {
        let outC = outputChannels ?? channels
        guard mean.count == outC, std.count == outC, outC == 1 || outC == 3 else {
            throw DataError.invalidArgument("mean and std need \(outC) values, got \(mean.count) and \(std.count)")
        }
        var out = [Float](repeating: 0, count: width * height * outC)
        out.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                usi_image_normalize(dst.baseAddress, src.baseAddress, width * height, Int32(channels),
                                    Int32(outC), mean, std)
            }
        }
        return out
    }
}
