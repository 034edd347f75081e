import Foundation
import Testing
import USI

@Suite("Sharded training step")
struct ShardedStepTests {
    @Test("a step over shards reports the mean shard loss and keeps the first shard's BatchNorm statistics")
    func shardsAreRanks() throws {
        let data = try fashionSlice(train: 256, validation: 64)
        let config = USIConfig.plain(epochs: 1, batchSize: 64)
        let recipe = config.resolved(trainingSamples: data.train.count, imageSize: 28)
        let loaders = try (0..<2).map {
            try recipe.makeTrainingLoader(data: data.train, student: SmallNet().config, config: config, rank: $0, shards: 2)
        }
        let shards = try loaders.map { try #require(try $0.batches(epoch: 0).next()) }
        #expect(shards.allSatisfy { $0.count == 32 })
        func twin() throws -> (SmallNet, TrainingStep) {
            let model = Initialization.withSeed(9) { SmallNet() }
            return (model, try TrainingStep(student: model, distiller: nil, config: config, recipe: recipe))
        }
        let (both, bothStep) = try twin(), (first, firstStep) = try twin(), (_, secondStep) = try twin()
        let together = try bothStep(shards, step: 0)
        let a = try firstStep(shards[0], step: 0), b = try secondStep(shards[1], step: 0)
        #expect(together.loss == (a.loss + b.loss) / 2)
        #expect(together.images == 64)
        // Running statistics: what rank 0 of a real 2-rank run keeps.
        for name in ["bn1.running_mean", "bn1.running_var", "bn2.running_mean"] {
            let x = try #require(both.namedTensors().first { $0.name == name }).tensor.toArray()
            let y = try #require(first.namedTensors().first { $0.name == name }).tensor.toArray()
            #expect(x == y, "\(name)")
        }
        // The averaged gradient is not either shard's: the weights differ from both single-shard steps.
        let weight = { (model: SmallNet) in model.namedParameters().first { $0.name == "fc.weight" }!.tensor.toArray() }
        #expect(weight(both) != weight(first))
    }

    @Test("emulated ranks train through fit(), and a batch that does not split into the shards is refused")
    func emulatedFit() throws {
        let data = try fashionSlice(train: 256, validation: 64)
        let model = Initialization.withSeed(9) { SmallNet() }
        #expect(throws: TrainingError.self) {
            try USITrainer(student: model, distiller: nil, data: data, config: .plain(epochs: 1, batchSize: 30), emulatedRanks: 4)
        }
        let trainer = try USITrainer(student: model, distiller: nil, data: data, config: .usi(epochs: 1, batchSize: 32),
                                     emulatedRanks: 2)
        #expect(trainer.shards == 2)
        let report = try trainer.fit()
        #expect(report.epochs.count == trainer.totalEpochs)
        #expect(report.epochs.allSatisfy { $0.trainLoss.isFinite })
    }
}
