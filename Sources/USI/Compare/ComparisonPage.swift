import Foundation

/// `compare.html`: one self-contained page (inline SVG and CSS, no scripts, the style of a
/// run's `report.html`) with top-1 against inference images/s on a log axis, the Pareto front
/// drawn through the models on it, and the table.
public struct ComparisonPage {
    /// The comparison.
    public let report: ComparisonReport

    /// The page for `report`.
    public init(report: ComparisonReport) { self.report = report }

    /// The whole page.
    public func html() -> String {
        let front = report.paretoFront
        var rows = ""
        for r in report.rows.sorted(by: { $0.imagesPerSecond > $1.imagesPerSecond }) {
            rows += "<tr\(r.onParetoFront ? " class=\"front\"" : "")><td class=\"name\">\(escape(r.model))</td><td>\(r.inputSize)</td>"
                + "<td>\(f(r.top1, 2))</td><td>\(f(r.top5, 2))</td><td>\(r.isEMA ? "EMA" : "model")</td>"
                + "<td>\(f(r.imagesPerSecond, 0))</td><td>\(f(r.latencyMilliseconds, 2))</td>"
                + "<td>\(f(Double(r.parameters) / 1e6, 2))</td><td>\(gflops(r.gflops))</td><td>\(f(r.trainingMinutes, 1))</td>"
                + "<td>\(r.onParetoFront ? "●" : "")</td></tr>\n"
        }
        let s = report.speed
        let sharing = report.teacherLogits.map { t in
            "The teacher ran once for the comparison: \(t.batchesStored) batches came from the stored logits, \(t.batchesLive) from the live teacher"
                + " (its share of a live model's training: \(f(t.teacherShare * 100, 0)) %, about \(duration(t.secondsSaved)) of teacher time saved)."
        } ?? ""
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>USI comparison on \(escape(report.data))</title>
        <style>
        body { font: 14px/1.45 -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
        table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
        td.name, th.name { text-align: left; font-family: ui-monospace, monospace; } tr.front td { font-weight: 600; }
        .summary b { font-size: 1.2em; } .note { color: #555; }
        </style></head><body>
        <h1>Speed–accuracy comparison on \(escape(report.data))</h1>
        <p class="summary">\(report.rows.count) of \(report.models.count) models trained with the same USI command
        (\(report.epochs) epoch\(report.epochs == 1 ? "" : "s"), batch \(report.batchSize), seed \(report.seed)\(report.teacher.map { ", teacher \(escape($0))" } ?? ", no teacher")\(report.teacherTop1.map { " at \(f($0, 2)) % top-1" } ?? "")).
        Pareto front, fastest first: <b>\(front.map { escape($0.model) }.joined(separator: " → "))</b>.</p>
        \(chart(front: front))
        <h2>Models</h2>
        <table><tr><th class="name">model</th><th>input</th><th>top-1 %</th><th>top-5 %</th><th>weights</th><th>img/s @\(s.throughputBatch)</th>
        <th>ms/img @\(s.latencyBatch)</th><th>params (M)</th><th>GFLOPs</th><th>train min</th><th>front</th></tr>
        \(rows)</table>
        <p class="note">Inference on this machine with \(s.threads) thread\(s.threads == 1 ? "" : "s"): images/s at batch \(s.throughputBatch)
        and milliseconds per image at batch \(s.latencyBatch), each the median of repeated runs over at least \(f(s.minimumSeconds, 1)) s,
        BatchNorm folded, FP32. GFLOPs are multiply-accumulates (the unit of timm's, fvcore's and the paper's tables).
        Top-1 is the better of the model and its EMA on the validation split. \(sharing)</p>
        </body></html>
        """
    }

    /// The scatter: top-1 (linear) against images/s (log), the front as a line, every model
    /// labelled (the front's in bold).
    func chart(front: [ComparisonRow]) -> String {
        let width = 900.0, height = 460.0, left = 64.0, right = 150.0, top = 20.0, bottom = 48.0
        let points = report.rows
        guard !points.isEmpty else { return "<p>No model has finished yet.</p>" }
        let speeds = points.map { max($0.imagesPerSecond, 1e-3) }
        var lowX = log10(speeds.min()!), highX = log10(speeds.max()!)
        if highX - lowX < 0.3 { let mid = (lowX + highX) / 2; lowX = mid - 0.15; highX = mid + 0.15 }
        lowX -= 0.08 * (highX - lowX); highX += 0.08 * (highX - lowX)
        var lowY = points.map(\.top1).min()!, highY = points.map(\.top1).max()!
        if highY - lowY < 1 { let mid = (lowY + highY) / 2; lowY = mid - 0.5; highY = mid + 0.5 }
        let padY = 0.1 * (highY - lowY)
        lowY -= padY; highY += padY
        func x(_ speed: Double) -> Double { left + (log10(max(speed, 1e-3)) - lowX) / (highX - lowX) * (width - left - right) }
        func y(_ top1: Double) -> Double { top + (highY - top1) / (highY - lowY) * (height - top - bottom) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-size=\"12\" font-family=\"sans-serif\">\n"
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(width - left - right)\" height=\"\(height - top - bottom)\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n"
        // Decades and their 2× and 5× marks on the log axis.
        for decade in Int(floor(lowX))...Int(ceil(highX)) {
            for m in [1.0, 2.0, 5.0] {
                let v = m * pow(10, Double(decade))
                let lv = log10(v)
                guard lv >= lowX, lv <= highX else { continue }
                let px = x(v)
                svg += "<line x1=\"\(r(px))\" y1=\"\(top)\" x2=\"\(r(px))\" y2=\"\(height - bottom)\" stroke=\"#e4e4e4\"/>"
                svg += "<text x=\"\(r(px))\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\" fill=\"#555\">\(axisLabel(v))</text>\n"
            }
        }
        for tick in yTicks(lowY, highY) {
            let py = y(tick)
            svg += "<line x1=\"\(left)\" y1=\"\(r(py))\" x2=\"\(width - right)\" y2=\"\(r(py))\" stroke=\"#e4e4e4\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(r(py + 4))\" text-anchor=\"end\" fill=\"#555\">\(f(tick, tickDigits(lowY, highY)))</text>\n"
        }
        svg += "<text x=\"\(r((left + width - right) / 2))\" y=\"\(height - 10)\" text-anchor=\"middle\">inference images/s at batch \(report.speed.throughputBatch) (log scale, \(report.speed.threads) threads)</text>\n"
        svg += "<text transform=\"translate(16 \(r((top + height - bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">validation top-1 (%)</text>\n"
        if front.count > 1 {
            let path = front.map { "\(r(x($0.imagesPerSecond))),\(r(y($0.top1)))" }.joined(separator: " ")
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>\n"
        }
        for p in points {
            let px = x(p.imagesPerSecond), py = y(p.top1)
            let colour = p.onParetoFront ? "#d62728" : "#1f77b4"
            svg += "<circle cx=\"\(r(px))\" cy=\"\(r(py))\" r=\"\(p.onParetoFront ? 6 : 5)\" fill=\"\(colour)\"><title>\(escape(p.model)): \(f(p.top1, 2)) %, \(f(p.imagesPerSecond, 0)) img/s</title></circle>"
            // Labels of points near the right edge go to their left, inside the plot.
            let leftward = px > left + 0.7 * (width - left - right)
            svg += "<text x=\"\(r(leftward ? px - 9 : px + 9))\" y=\"\(r(py - 7))\"\(leftward ? " text-anchor=\"end\"" : "") fill=\"\(p.onParetoFront ? "#222" : "#555")\"\(p.onParetoFront ? " font-weight=\"bold\"" : "")>\(escape(p.model))</text>\n"
        }
        svg += "<g transform=\"translate(\(r(width - right + 14)) \(r(top + 10)))\"><circle cx=\"5\" cy=\"0\" r=\"6\" fill=\"#d62728\"/><text x=\"16\" y=\"4\">Pareto front</text>"
        svg += "<circle cx=\"5\" cy=\"22\" r=\"5\" fill=\"#1f77b4\"/><text x=\"16\" y=\"26\">dominated</text></g>\n"
        return svg + "</svg>"
    }

    /// The chart alone, as an SVG file (for documents that embed it).
    public func svg() -> String { "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + chart(front: report.paretoFront) + "\n" }

    private func axisLabel(_ v: Double) -> String {
        v >= 1000 ? (v.truncatingRemainder(dividingBy: 1000) == 0 ? "\(Int(v / 1000))k" : f(v / 1000, 1) + "k")
            : v >= 1 ? "\(Int(v))" : f(v, 2)
    }

    private func yTicks(_ low: Double, _ high: Double) -> [Double] {
        let span = high - low
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [Double] = []
        var t = ceil(low / step) * step
        while t <= high + 1e-9 { ticks.append(t); t += step }
        return ticks
    }

    private func tickDigits(_ low: Double, _ high: Double) -> Int { high - low < 2 ? 2 : high - low < 10 ? 1 : 0 }
    /// Three significant digits at least (32-px models have GFLOPs of order 0.001).
    private func gflops(_ v: Double) -> String { v >= 1 ? f(v, 2) : v >= 0.01 ? f(v, 3) : f(v, 4) }
    private func duration(_ seconds: Double) -> String { seconds < 120 ? "\(f(seconds, 0)) s" : "\(f(seconds / 60, 1)) min" }
    private func r(_ v: Double) -> String { String(format: "%.1f", v) }
    private func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
