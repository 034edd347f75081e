import Foundation

/// Top-1/top-5 accuracy of a model over a dataset.
public struct EvaluationResult: Codable, Sendable, Equatable {
    /// Percentage of samples whose label is the top prediction.
    public var top1: Double
    /// Percentage whose label is among the top five (top-k with k = min(5, classes)).
    public var top5: Double
    /// Samples evaluated.
    public var count: Int
}

/// Evaluation in eval mode, without the tape.
public enum Evaluator {
    /// The eval transform for `config` (resize to size/crop_pct, centre crop); `cropFraction`
    /// overrides the model's crop_pct (e.g. 1 for data that is already tightly framed).
    public static func transform(for config: BackboneConfig, cropFraction: Double? = nil) throws -> EvalTransform {
        try EvalTransform(size: config.inputSize, cropPercentage: cropFraction ?? config.cropFraction,
                          interpolation: config.interpolation, mean: config.mean, std: config.standardDeviation)
    }

    /// Accuracy of `model` over `dataset`; restores the model's training mode afterwards.
    /// `logits` maps an input batch to logits (defaults to the model itself; the trainer passes
    /// the distiller to measure the teacher).
    ///
    /// With a `communicator` of several ranks, each rank evaluates every size-th sample (the
    /// same model on every rank) and the counts are summed, so every rank returns the result
    /// over the whole dataset at 1/size of the work.
    public static func evaluate(_ model: any Backbone, on dataset: any ImageDataset, batchSize: Int = 256,
                                workers: Int = 2, cropFraction: Double? = nil,
                                communicator: any Communicator = SingleProcessCommunicator(),
                                logits: ((Tensor) -> Tensor)? = nil) throws -> EvaluationResult {
        guard dataset.count > 0 else { throw TrainingError.invalidData("the evaluation set is empty") }
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        let loader = try DataLoader(dataset: dataset, transform: try transform(for: model.config, cropFraction: cropFraction),
                                    sampler: try SequentialSampler(count: dataset.count, rank: communicator.rank,
                                                                   worldSize: communicator.size), batchSize: batchSize,
                                    workers: workers, dropLast: false, corruptImagePolicy: .fail)
        var top1 = 0, top5 = 0, count = 0
        let batches = loader.batches(epoch: 0)
        while let batch = try batches.next() {
            let x = batch.tensor()
            let out = withoutGradients { logits?(x) ?? model(x) }
            let (c1, c5) = correctCounts(out, labels: batch.labels)
            top1 += c1; top5 += c5; count += batch.count
        }
        var counts = [Int64(top1), Int64(top5), Int64(count)]
        try communicator.allReduceSum(&counts)
        (top1, top5, count) = (Int(counts[0]), Int(counts[1]), Int(counts[2]))
        return EvaluationResult(top1: 100 * Double(top1) / Double(count), top5: 100 * Double(top5) / Double(count), count: count)
    }

    /// Samples whose label is first, and among the first k = min(5, classes), by logit.
    static func correctCounts(_ logits: Tensor, labels: [Int32]) -> (Int, Int) {
        let classes = logits.shape[1], k = min(5, classes)
        let values = logits.toArray()
        var c1 = 0, c5 = 0
        for (row, label) in labels.enumerated() {
            let scores = values[row * classes ..< (row + 1) * classes]
            let target = scores[scores.startIndex + Int(label)]
            // Rank = classes scoring higher, plus those scoring the same with a lower index (as
            // argmax and torch.topk break ties), so a model whose logits are all equal is not
            // right about every label.
            var higher = 0
            for (c, score) in scores.enumerated() where score > target || (score == target && c < Int(label)) { higher += 1 }
            if higher == 0 { c1 += 1 }
            if higher < k { c5 += 1 }
        }
        return (c1, c5)
    }
}

extension Batch {
    /// The images as a `[N, H, W, C]` tensor.
    public func tensor() -> Tensor {
        let t = Tensor(uninitializedShape: [count, height, width, channels])
        images.withUnsafeBufferPointer { t.pointer.update(from: $0.baseAddress!, count: t.count) }
        return t
    }

    /// Soft targets `[N, classes]` (one-hot when the batch was not mixed).
    public func targetTensor() -> Tensor {
        if let targets { return Tensor(shape: [count, classCount], values: targets) }
        var oneHot = [Float](repeating: 0, count: count * classCount)
        for (i, label) in labels.enumerated() { oneHot[i * classCount + Int(label)] = 1 }
        return Tensor(shape: [count, classCount], values: oneHot)
    }
}
