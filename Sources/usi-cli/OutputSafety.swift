import ArgumentParser
import Foundation
import USI

/// A failure of a command, printed as its description.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
}

/// `text` with the characters that can drive a terminal removed: C0 and C1 controls (an ANSI
/// escape sequence starts with ESC or CSI; a newline or carriage return could forge output
/// lines), DEL, and the Unicode bidirectional embeddings, overrides and isolates that reorder
/// what is shown ("Trojan Source"). Class names come from a weights file's metadata and file
/// names from the disk, so neither is trusted when printed as text; JSON output escapes them
/// instead.
func terminalSafe(_ text: String) -> String {
    var scalars = String.UnicodeScalarView()
    for scalar in text.unicodeScalars where !isTerminalControl(scalar) { scalars.append(scalar) }
    return String(scalars)
}

private func isTerminalControl(_ scalar: Unicode.Scalar) -> Bool {
    let v = scalar.value
    if v < 0x20 || (0x7F...0x9F).contains(v) { return true }
    // LRM, RLM, ALM; LRE…RLO (embeddings, pop, overrides); LRI…PDI (isolates).
    return v == 0x200E || v == 0x200F || v == 0x061C || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
}

/// Throws when a floating-point tensor of `file` holds NaN or ±infinity: such weights give
/// NaN logits, which every ranking would count as correct (no score beats NaN) — a broken
/// file would report 100 % top-1.
func requireFiniteWeights(_ file: SafeTensorsFile) throws {
    for name in file.names {
        guard let entry = file.entries[name] else { continue }
        switch entry.dtype {
        case .float32, .float16, .bfloat16, .float64:
            if try file.tensor(name).hasNonFinite {
                throw CommandFailure(description: "weights '\(file.source)': tensor '\(terminalSafe(name))' holds NaN or infinite values")
            }
        default: continue
        }
    }
}

/// `--max-image-pixels`: the decoder's pixel limit, for commands that decode JPEGs.
struct ImageLimitOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Refuse images with more pixels (width × height) than this, before decoding. Default: \(ImageLimits.standard.maximumPixels), or $\(ImageLimits.pixelsVariable).",
        valueName: "pixels"))
    var maxImagePixels: Int?

    /// Applies the option process-wide through `USI_MAX_IMAGE_PIXELS`, which every decoder
    /// reads when it is created (the evaluator builds its own loader), and checks the
    /// environment's values.
    func apply() throws {
        if let maxImagePixels {
            guard maxImagePixels >= 1 else { throw ValidationError("--max-image-pixels must be at least 1") }
            setenv(ImageLimits.pixelsVariable, String(maxImagePixels), 1)
        }
        _ = try ImageLimits.fromEnvironment()
    }
}
