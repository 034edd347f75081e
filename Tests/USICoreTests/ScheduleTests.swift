import Foundation
import Testing
import USICore

/// The cosine schedule against timm's CosineLRScheduler (schedule_cosine.safetensors, written
/// by Tools/fixtures/make_training_fixtures.py through timm's create_scheduler_v2).
@Suite("Learning-rate schedule")
struct ScheduleTests {
    static func schedule(_ config: [String: Any]) -> CosineLearningRateSchedule {
        CosineLearningRateSchedule(baseLearningRate: config["base_lr"] as! Double, epochs: config["epochs"] as! Int,
                                   warmupEpochs: config["warmup_epochs"] as! Int,
                                   warmupLearningRate: config["warmup_lr"] as! Double,
                                   minimumLearningRate: config["min_lr"] as! Double,
                                   cooldownEpochs: config["cooldown_epochs"] as! Int)
    }

    static func expectRelative(_ ours: Double, _ theirs: Double, _ label: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(abs(ours - theirs) <= 1e-9 * abs(theirs), "\(label): \(ours) vs timm \(theirs)", sourceLocation: sourceLocation)
    }

    @Test("per-epoch values equal timm's at every epoch", arguments: ["usi300", "short10", "short10_nowarmup"])
    func perEpoch(_ name: String) throws {
        let file = try fixture("schedule_cosine")
        let config = try caseConfig(file, name)
        let schedule = Self.schedule(config)
        let expected = try doubles(file, "\(name).lr_bits")
        #expect(schedule.totalEpochs == config["num_epochs"] as! Int)
        #expect(expected.count == schedule.totalEpochs)
        var worst = 0.0
        for (epoch, value) in expected.enumerated() {
            Self.expectRelative(schedule.learningRate(epoch: epoch), value, "\(name) epoch \(epoch)")
            Self.expectRelative(schedule.learningRate(epoch: Double(epoch)), value, "\(name) epoch \(epoch) (Double)")
            worst = max(worst, abs(schedule.learningRate(epoch: epoch) - value) / value)
        }
        print("  \(name): \(expected.count) epochs, max relative difference \(worst)")
    }

    @Test("per-update values equal timm's step_update schedule")
    func perUpdate() throws {
        let file = try fixture("schedule_cosine")
        let config = try caseConfig(file, "short10_steps")
        let schedule = Self.schedule(config)
        let stepsPerEpoch = config["updates_per_epoch"] as! Int
        let expected = try doubles(file, "short10_steps.lr_bits")
        #expect(expected.count == schedule.totalEpochs * stepsPerEpoch)
        for (update, value) in expected.enumerated() {
            Self.expectRelative(schedule.learningRate(step: update, stepsPerEpoch: stepsPerEpoch), value, "update \(update)")
            Self.expectRelative(schedule.learningRate(epoch: Double(update) / Double(stepsPerEpoch)), value, "update \(update) (fractional epoch)")
        }
    }

    @Test("USI defaults, shape of the curve, and applying it to an optimizer")
    func defaults() {
        let usi = CosineLearningRateSchedule.usi(epochs: 300)
        #expect(usi == CosineLearningRateSchedule())
        #expect(usi.totalEpochs == 310)
        #expect(usi.learningRate(epoch: 0) == 1e-4)
        #expect(usi.learningRate(epoch: 300) == 1e-6 && usi.learningRate(epoch: 309) == 1e-6 && usi.learningRate(epoch: 1000) == 1e-6)
        // Warmup rises, the cosine falls.
        for e in 0..<4 { #expect(usi.learningRate(epoch: e) < usi.learningRate(epoch: e + 1)) }
        for e in 5..<299 { #expect(usi.learningRate(epoch: e) > usi.learningRate(epoch: e + 1)) }
        let optimizer = AdamW(parameters: [("w", Tensor.zeros([2, 2], requiresGrad: true))])
        let lr = usi.apply(to: optimizer, epoch: 2.5)
        #expect(optimizer.learningRate == Float(lr))
        #expect(abs(lr - (1e-4 + 2.5 * (2e-3 - 1e-4) / 5)) < 1e-15)
    }
}
