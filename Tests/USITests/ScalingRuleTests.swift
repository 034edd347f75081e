import Foundation
import Testing
import USI

/// The scaling rule of `USIConfig.resolved(trainingSamples:imageSize:)` (Docs/DECISIONS.md): the
/// paper's constants at 300 ImageNet epochs and 224 px, and the values measured in
/// Docs/RESULTS.md on Fashion-MNIST at 32 px. Exact values; tolerance 1e-12 on derived doubles.
@Suite("Scaling rule")
struct ScalingRuleTests {
    @Test("300 epochs at 224 px is the paper's recipe")
    func imageNetScale() {
        let recipe = USIConfig.usi(epochs: 300, batchSize: 1024).resolved(trainingSamples: 1_281_167, imageSize: 224)
        #expect(recipe.runScale == 1 && recipe.augmentationScale == 1)
        #expect(abs(recipe.cropScaleFloor - 0.08) < 1e-12)
        #expect(recipe.randAugmentMagnitude == 7)
        #expect(recipe.mixingProbability == 1)
        #expect(recipe.repeatedAugmentations == 3)
        #expect(recipe.warmupEpochs == 5 && recipe.cooldownEpochs == 10)
        #expect(recipe.paddedCropFraction == 0)
        #expect(abs(recipe.emaDecay! - (1 - 1.0 / 25_000)) < 1e-12)
    }

    @Test("small images cap the augmentation, not the schedule")
    func smallImages() {
        // 20 epochs at 32 px: r = √(20/300) ≈ 0.258, a = 32/224 ≈ 0.143.
        let twenty = USIConfig.usi(epochs: 20).resolved(trainingSamples: 60_000, imageSize: 32)
        #expect(abs(twenty.runScale - (20.0 / 300).squareRoot()) < 1e-12)
        #expect(abs(twenty.augmentationScale - 32.0 / 224) < 1e-12)
        #expect(abs(twenty.cropScaleFloor - (1 - 0.92 * 32 / 224)) < 1e-12)
        #expect(twenty.randAugmentMagnitude == 1 && twenty.repeatedAugmentations == 1)
        #expect(abs(twenty.mixingProbability - 32.0 / 224) < 1e-12)
        #expect(twenty.warmupEpochs == 1 && twenty.cooldownEpochs == 1)
        #expect(abs(twenty.emaDecay! - (1 - 15.0 / (468 * 20))) < 1e-12)
        // 300 epochs at 32 px: the schedule reaches the paper's, the augmentation stays capped.
        let long = USIConfig.usi(epochs: 300).resolved(trainingSamples: 60_000, imageSize: 32)
        #expect(long.runScale == 1 && long.warmupEpochs == 5 && long.cooldownEpochs == 10)
        #expect(abs(long.augmentationScale - 32.0 / 224) < 1e-12 && long.randAugmentMagnitude == 1)
        // 5 epochs: the run length is the tighter bound (r ≈ 0.129 < 0.143).
        let five = USIConfig.usi(epochs: 5).resolved(trainingSamples: 60_000, imageSize: 32)
        #expect(abs(five.augmentationScale - (5.0 / 300).squareRoot()) < 1e-12)
        #expect(five.cooldownEpochs == 0)
    }

    @Test("the plain recipe keeps the schedule and drops the rest")
    func plain() {
        let recipe = USIConfig.plain(epochs: 20).resolved(trainingSamples: 60_000, imageSize: 32)
        #expect(recipe.augmentationScale == 0 && recipe.cropScaleFloor == 1 && recipe.randAugmentMagnitude == 0)
        #expect(recipe.mixingProbability == 0 && recipe.repeatedAugmentations == 1 && recipe.emaDecay == nil)
        #expect(recipe.paddedCropFraction == 0.125 && recipe.warmupEpochs == 1)
    }

    @Test("research overrides replace resolved settings and unknown names are refused")
    func overrides() throws {
        var config = USIConfig.usi(epochs: 20)
        var research = ResearchOverrides()
        try research.set("mixingProbability", to: 1)
        try research.set("emaTimeConstant", to: 0)
        config.research = research
        let recipe = config.resolved(trainingSamples: 60_000, imageSize: 32)
        #expect(recipe.mixingProbability == 1 && recipe.emaDecay == nil)
        #expect(throws: TrainingError.self) { try research.set("mixing", to: 1) }
        #expect(throws: TrainingError.self) { try research.set("repeatedAugmentations", to: 2.5) }
        research.mixingProbability = 2
        config.research = research
        #expect(throws: TrainingError.self) { try config.validate() }
        // The overrides are part of the Codable configuration (config.json, checkpoints).
        let decoded = try JSONDecoder().decode(USIConfig.self, from: JSONEncoder().encode(config))
        #expect(decoded == config)
    }
}
