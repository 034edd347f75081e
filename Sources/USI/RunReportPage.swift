import Foundation

/// `report.html`: one self-contained page (inline SVG, no scripts) with loss, learning rate and
/// top-1 (model vs EMA) per epoch, the configuration and the timings.
struct RunReportPage {
    let history: [EpochMetrics]
    let teacherTop1: Double?
    let config: USIConfig
    let recipe: ResolvedRecipe
    let student: BackboneConfig
    let teacher: BackboneConfig?
    let dataset: String
    let totalEpochs: Int

    func html() -> String {
        let best = history.map { max($0.top1, $0.top1EMA ?? -1) }.max() ?? 0
        let totalSeconds = history.reduce(0) { $0 + $1.seconds }
        var rows = ""
        for m in history {
            rows += "<tr><td>\(m.epoch)</td><td>\(f(m.lr, 6))</td><td>\(f(m.trainLoss, 4))</td><td>\(f(m.top1))</td>"
                + "<td>\(f(m.top5))</td><td>\(m.top1EMA.map { f($0) } ?? "–")</td><td>\(f(m.seconds, 1))</td>"
                + "<td>\(f(m.imagesPerSecond, 0))</td></tr>\n"
        }
        let epochs = history.map { Double($0.epoch) }
        let charts = [
            chart(title: "Training loss", series: [("loss", "#1f77b4", zip(epochs, history.map(\.trainLoss)).map { $0 })]),
            chart(title: "Learning rate (end of epoch)", series: [("lr", "#2ca02c", zip(epochs, history.map(\.lr)).map { $0 })]),
            chart(title: "Validation top-1 (%)", series: [
                ("model", "#1f77b4", zip(epochs, history.map(\.top1)).map { $0 }),
                ("EMA", "#d62728", history.compactMap { m in m.top1EMA.map { (Double(m.epoch), $0) } }),
            ]),
        ].joined(separator: "\n")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let configText = String(decoding: (try? encoder.encode(config)) ?? Data(), as: UTF8.self)
        let recipeText = String(decoding: (try? encoder.encode(recipe)) ?? Data(), as: UTF8.self)
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>USI run: \(escape(student.architecture)) on \(escape(dataset))</title>
        <style>
        body { font: 14px/1.45 -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
        table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
        .charts { display: flex; flex-wrap: wrap; gap: 16px; } pre { background: #f6f6f6; padding: 10px; overflow: auto; }
        .summary b { font-size: 1.2em; }
        </style></head><body>
        <h1>\(escape(student.architecture)) on \(escape(dataset))</h1>
        <p class="summary">Recipe <b>\(config.recipe.rawValue)</b>\(teacher.map { " with knowledge distillation from \(escape($0.architecture))" } ?? " without a teacher"),
        \(history.count) of \(totalEpochs) epochs, batch \(config.batchSize), \(student.inputSize)×\(student.inputSize) px.
        Best top-1 <b>\(f(best))%</b>\(teacherTop1.map { "; teacher top-1 \(f($0))%" } ?? "").
        Time \(f(totalSeconds / 60, 1)) min.</p>
        <div class="charts">\(charts)</div>
        <h2>Epochs</h2>
        <table><tr><th>epoch</th><th>lr</th><th>train loss</th><th>top-1</th><th>top-5</th><th>top-1 EMA</th><th>seconds</th><th>img/s</th></tr>
        \(rows)</table>
        <h2>Configuration</h2><pre>\(escape(configText))</pre>
        <h2>Resolved recipe</h2><pre>\(escape(recipeText))</pre>
        </body></html>
        """
    }

    private func f(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    /// A line chart of (epoch, value) series with axes and a legend.
    private func chart(title: String, series: [(String, String, [(Double, Double)])]) -> String {
        let width = 300.0, height = 200.0, left = 48.0, right = 10.0, top = 24.0, bottom = 28.0
        let points = series.flatMap(\.2)
        guard !points.isEmpty else { return "" }
        let xs = points.map(\.0), ys = points.map(\.1)
        let (x0, x1) = (xs.min()!, max(xs.max()!, xs.min()! + 1))
        var (y0, y1) = (ys.min()!, ys.max()!)
        if y1 - y0 < 1e-12 { y0 -= 1; y1 += 1 }
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">"
        svg += "<text x=\"\(left)\" y=\"16\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - right)\" y2=\"\(height - bottom)\" stroke=\"#999\"/>"
        svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"#999\"/>"
        for (value, y) in [(y1, py(y1)), ((y0 + y1) / 2, py((y0 + y1) / 2)), (y0, py(y0))] {
            svg += "<text x=\"\(left - 4)\" y=\"\(y + 4)\" font-size=\"10\" text-anchor=\"end\">\(label(value))</text>"
        }
        svg += "<text x=\"\(px(x0))\" y=\"\(height - 10)\" font-size=\"10\">\(Int(x0))</text>"
        svg += "<text x=\"\(px(x1))\" y=\"\(height - 10)\" font-size=\"10\" text-anchor=\"end\">epoch \(Int(x1))</text>"
        for (i, (name, color, data)) in series.enumerated() where !data.isEmpty {
            let path = data.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>"
            for p in data { svg += "<circle cx=\"\(px(p.0))\" cy=\"\(py(p.1))\" r=\"2.5\" fill=\"\(color)\"/>" }
            if series.count > 1 {
                svg += "<text x=\"\(width - right - 60)\" y=\"\(top + 14 * Double(i + 1))\" font-size=\"11\" fill=\"\(color)\">\(escape(name))</text>"
            }
        }
        return svg + "</svg>"
    }

    private func label(_ v: Double) -> String {
        abs(v) < 0.01 && v != 0 ? String(format: "%.1e", v) : String(format: "%.3g", v)
    }
}
