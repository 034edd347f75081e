import USICore

/// The constant tables of Swin's window attention: relative-position indices, the shifted-window
/// mask, and the window/shift rule of timm's `SwinTransformerBlock._calc_window_shift`.
enum SwinWindows {
    /// timm's `get_relative_position_index` for a square `window`: for query `i` and key `j`
    /// (row-major window positions), `(Δrow + w − 1)·(2w − 1) + (Δcol + w − 1)`, flattened
    /// `[w², w²]`.
    static func relativePositionIndex(window: Int) -> [Int] {
        let positions = (0..<window).flatMap { r in (0..<window).map { (r, $0) } }
        return positions.flatMap { q in
            positions.map { k in (q.0 - k.0 + window - 1) * (2 * window - 1) + (q.1 - k.1 + window - 1) }
        }
    }

    /// The window and shift of a block on a `resolution` grid (timm, `always_partition` off):
    /// a grid no larger than the target window becomes a single unshifted window.
    static func windowAndShift(resolution: Int, targetWindow: Int, targetShift: Int) -> (window: Int, shift: Int) {
        let window = resolution <= targetWindow ? resolution : targetWindow
        return (window, resolution <= window ? 0 : targetShift)
    }

    /// timm's `get_attn_mask` on the zero-padded `padded × padded` grid: positions are labelled by
    /// the 3 × 3 regions (`[0, p−w)`, `[p−w, p−s)`, `[p−s, p)` per axis) that the cyclic shift
    /// brought together; pairs of different regions get −100. Shape `[windows, w², w²]`.
    static func attentionMask(padded: Int, window: Int, shift: Int) -> Tensor {
        func region(_ i: Int) -> Int { i < padded - window ? 0 : (i < padded - shift ? 1 : 2) }
        let perSide = padded / window, area = window * window
        var labels = [Int](repeating: 0, count: perSide * perSide * area)
        for wy in 0..<perSide {
            for wx in 0..<perSide {
                for y in 0..<window {
                    for x in 0..<window {
                        labels[((wy * perSide + wx) * window + y) * window + x] = 3 * region(wy * window + y) + region(wx * window + x)
                    }
                }
            }
        }
        var mask = [Float](repeating: 0, count: perSide * perSide * area * area)
        for w in 0..<(perSide * perSide) {
            for i in 0..<area {
                for j in 0..<area where labels[w * area + i] != labels[w * area + j] {
                    mask[(w * area + i) * area + j] = -100
                }
            }
        }
        return Tensor(shape: [perSide * perSide, area, area], values: mask)
    }

    /// timm's `window_partition`: `[B, H, W, C]` (H, W multiples of `window`) to
    /// `[B·windows, window², C]`, windows row-major.
    static func partition(_ x: Tensor, window: Int) -> Tensor {
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        return x.reshaped([b, h / window, window, w / window, window, c]).permuted([0, 1, 3, 2, 4, 5])
            .reshaped([b * (h / window) * (w / window), window * window, c])
    }

    /// timm's `window_reverse`: `[B·windows, window², C]` back to `[B, H, W, C]`.
    static func merge(_ windows: Tensor, window: Int, height: Int, width: Int) -> Tensor {
        let c = windows.shape[2]
        let b = windows.shape[0] / ((height / window) * (width / window))
        return windows.reshaped([b, height / window, width / window, window, window, c]).permuted([0, 1, 3, 2, 4, 5])
            .reshaped([b, height, width, c])
    }
}
