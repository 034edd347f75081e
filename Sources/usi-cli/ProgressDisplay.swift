import Foundation
import USI

/// Shows training progress: a live bar with ETA, images/s, loss and learning rate on a
/// terminal; timm-style log lines otherwise (every 50 steps and per epoch).
final class ProgressDisplay: @unchecked Sendable {
    let totalEpochs: Int
    let isTerminal = isatty(STDOUT_FILENO) != 0
    private var lastDraw = Date.distantPast
    private var lossAverage = 0.0

    init(totalEpochs: Int) { self.totalEpochs = totalEpochs }

    func handle(_ event: TrainingEvent) {
        switch event {
        case let .started(epoch, total, steps, recipe):
            print("Training from epoch \(epoch) of \(total), \(steps) steps per epoch. Recipe: crop scale ≥ \(format(recipe.cropScaleFloor, digits: 2)), "
                  + "RandAugment m\(recipe.randAugmentMagnitude), mixing p \(format(recipe.mixingProbability, digits: 2)), "
                  + "repeats \(recipe.repeatedAugmentations), warmup \(format(recipe.warmupEpochs, digits: 2)) ep, "
                  + "EMA \(recipe.emaDecay.map { String(format: "%.5f", $0) } ?? "off")")
        case let .teacherEvaluated(result):
            print("Teacher top-1 \(format(result.top1, digits: 2)) % on \(result.count) validation images")
        case let .step(p):
            lossAverage = p.step == 1 ? p.loss : 0.98 * lossAverage + 0.02 * p.loss
            if isTerminal {
                guard Date().timeIntervalSince(lastDraw) > 0.2 || p.step == p.stepsPerEpoch else { return }
                lastDraw = Date()
                let fraction = Double(p.step) / Double(p.stepsPerEpoch)
                let width = 24, filled = Int(fraction * Double(width))
                let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
                // The rest of this epoch at the epoch's pace so far.
                let etaSeconds = p.elapsedSeconds / Double(p.step) * Double(p.stepsPerEpoch - p.step)
                print("\r\u{1B}[2KEpoch \(p.epoch + 1)/\(totalEpochs) \(bar) \(p.step)/\(p.stepsPerEpoch)  "
                      + "loss \(format(lossAverage, digits: 4))  lr \(String(format: "%.2e", p.learningRate))  "
                      + "\(format(p.imagesPerSecond, digits: 0)) img/s  ETA \(clock(etaSeconds))", terminator: "")
                fflush(nil)  // all C streams: print() buffers stdout
            } else if p.step % 50 == 0 || p.step == p.stepsPerEpoch {
                let pct = 100 * p.step / p.stepsPerEpoch
                print("Train: \(p.epoch) [\(String(p.step).leftPadded(5))/\(p.stepsPerEpoch) (\(String(pct).leftPadded(3))%)]  "
                      + "Loss: \(format(p.loss, digits: 4)) (\(format(lossAverage, digits: 4)))  "
                      + "LR: \(String(format: "%.3e", p.learningRate))  \(format(p.imagesPerSecond, digits: 1)) img/s")
            }
        case let .epochFinished(m):
            if isTerminal { print("") }
            print("Epoch \(m.epoch): train loss \(format(m.trainLoss, digits: 4))  top-1 \(format(m.top1, digits: 2)) %  "
                  + "top-5 \(format(m.top5, digits: 2)) %"
                  + (m.top1EMA.map { "  EMA top-1 \(format($0, digits: 2)) %" } ?? "")
                  + "  best \(format(m.bestTop1, digits: 2)) %  (\(format(m.seconds, digits: 0)) s)"
                  + (m.skippedImages > 0 ? "  skipped \(m.skippedImages) unreadable images" : "")
                  + (m.communicationWaitShare.map { "  waiting on communication \(format(100 * $0, digits: 1)) % of step time" } ?? ""))
        case .finished:
            break
        }
        if !isTerminal { fflush(nil) }  // a log file should see each line as it happens
    }

    private func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%d:%02d", s / 60, s % 60)
    }
}
