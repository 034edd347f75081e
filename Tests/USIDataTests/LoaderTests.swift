import Foundation
import Testing
import USICore
@testable import USIData

@Suite("Threaded loader")
struct LoaderTests {
    static func fashionSubset(_ n: Int) throws -> InMemoryDataset {
        // a deterministic synthetic grey dataset (no files needed)
        var pixels = [UInt8](repeating: 0, count: n * 28 * 28)
        for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: (i &* 2654435761) >> 13) }
        return try InMemoryDataset(pixels: pixels, labels: (0..<n).map { $0 % 10 }, width: 28, height: 28, channels: 1)
    }

    static func run(workers: Int, epoch: Int, dataset: any ImageDataset, seed: UInt64 = 11) throws -> [Batch] {
        let transform = try TrainTransform(size: 24, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        let loader = try DataLoader(dataset: dataset, transform: transform,
                                    sampler: try ShuffledSampler(count: dataset.count, seed: seed),
                                    batchSize: 8, workers: workers, prefetchBatches: 3, mixing: MixupCutmix(), seed: seed)
        return try loader.batches(epoch: epoch).collect()
    }

    @Test("same seed: identical batches with 1 and 2 workers; different epochs differ")
    func determinism() throws {
        let dataset = try Self.fashionSubset(100)
        let one = try Self.run(workers: 1, epoch: 3, dataset: dataset)
        let two = try Self.run(workers: 2, epoch: 3, dataset: dataset)
        let again = try Self.run(workers: 2, epoch: 3, dataset: dataset)
        #expect(one.count == 12)  // 100 / 8, last partial batch dropped
        for (a, b) in zip(one, two) {
            #expect(a.imageArray == b.imageArray)
            #expect(a.labels == b.labels && a.targets == b.targets && a.indices == b.indices && a.mixing == b.mixing)
        }
        #expect(zip(two, again).allSatisfy { $0.imageArray == $1.imageArray })
        let other = try Self.run(workers: 2, epoch: 4, dataset: dataset)
        #expect(one[0].indices != other[0].indices)
        #expect(one[0].count == 8 && one[0].height == 24 && one[0].channels == 3)
        #expect(one[0].targets?.count == 8 * 10)
    }

    @Test("labels follow the dataset; targets sum to one")
    func labels() throws {
        let dataset = try Self.fashionSubset(40)
        for batch in try Self.run(workers: 2, epoch: 0, dataset: dataset) {
            #expect(batch.labels.map(Int.init) == batch.indices.map { $0 % 10 })
            for i in 0..<batch.count {
                let row = batch.targets![(i * 10)..<((i + 1) * 10)]
                #expect(abs(row.reduce(0, +) - 1) < 1e-5)
            }
        }
    }

    @Test("buffers are reused: allocations stay bounded by the queue")
    func bufferReuse() throws {
        let dataset = try Self.fashionSubset(400)
        let transform = try TrainTransform(size: 16, randAugment: nil, mean: [0.5], std: [0.5])
        let loader = try DataLoader(dataset: dataset, transform: transform,
                                    sampler: try SequentialSampler(count: 400), batchSize: 4, workers: 2,
                                    prefetchBatches: 2)
        for epoch in 0..<3 {
            let batches = loader.batches(epoch: epoch)
            var n = 0
            while let b = try batches.next() { n += b.count }
            #expect(n == 400)
            batches.waitForWorkers()
        }
        // 300 batches went through; only queue-bound + in-consumer buffers were ever allocated
        #expect(loader.allocatedBuffers <= 2 + 2 + 1)
    }

    @Test("corrupt files: skipped with a count (policy .skip) or fatal (policy .fail)")
    func corruptPolicy() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let fm = FileManager.default
        for name in ["a", "b"] { try fm.createDirectory(atPath: dir.file("train/\(name)"), withIntermediateDirectories: true) }
        let photos = listJPEGs(darknetDirectory)
        try fm.copyItem(atPath: photos[0], toPath: dir.file("train/a/good1.jpg"))
        try fm.copyItem(atPath: photos[1], toPath: dir.file("train/b/good2.jpg"))
        try writeBytes(Array("not a jpeg".utf8), to: dir.file("train/a/broken.jpg"))
        let data = try ImageFolder(root: dir.path).train
        #expect(data.paths.map { ($0 as NSString).lastPathComponent } == ["broken.jpg", "good1.jpg", "good2.jpg"])
        let transform = try TrainTransform(size: 32)
        let skip = try DataLoader(dataset: data, transform: transform, sampler: try SequentialSampler(count: 3),
                                  batchSize: 3, workers: 1)
        let batch = try #require(try skip.batches(epoch: 0).next())
        #expect(batch.indices == [1, 1, 2])  // broken.jpg replaced by the next sample
        #expect(batch.labels == [0, 0, 1])  // with that sample's own label
        #expect(skip.statistics.skippedSamples == 1)
        #expect(skip.statistics.skippedErrors.first?.contains("broken.jpg") == true)
        let fail = try DataLoader(dataset: data, transform: transform, sampler: try SequentialSampler(count: 3),
                                  batchSize: 3, workers: 2, corruptImagePolicy: .fail)
        #expect { try fail.batches(epoch: 0).collect() } throws: { "\($0)".contains("broken.jpg") }
    }

    @Test("dropping an epoch early stops its workers")
    func earlyStop() throws {
        let dataset = try Self.fashionSubset(200)
        let transform = try TrainTransform(size: 16, mean: [0.5], std: [0.5])
        let loader = try DataLoader(dataset: dataset, transform: transform, sampler: try SequentialSampler(count: 200),
                                    batchSize: 4, workers: 2, prefetchBatches: 2)
        let batches = loader.batches(epoch: 0)
        _ = try batches.next()
        batches.cancel()
        batches.waitForWorkers()
        #expect(loader.allocatedBuffers <= 5)
    }

    @Test("Fashion-MNIST through the loader", .enabled(if: fileExists(fashionDirectory + "/t10k-images-idx3-ubyte.gz")))
    func fashion() throws {
        let test = try IDXDataset.fashionMNIST(split: .test)
        let transform = try EvalTransform(size: 32, cropPercentage: 1.0, mean: [0.2860], std: [0.3530])
        let loader = try DataLoader(dataset: test, transform: transform, sampler: try SequentialSampler(count: 64),
                                    batchSize: 32, workers: 2, dropLast: false)
        let batches = try loader.batches(epoch: 0).collect()
        #expect(batches.count == 2 && batches[0].channels == 1 && batches[0].height == 32)
        #expect(batches[0].labels[0] == 9 && batches[0].targets == nil)
    }
}
