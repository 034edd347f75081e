extension TrainingStep {
    /// The shards of one process as one batch (images, targets and stored teacher logits
    /// concatenated along the batch axis, in shard order), for synchronised BatchNorm over
    /// emulated ranks: with the loss a mean over the rows, its gradients are the shards'
    /// averaged, and BatchNorm sees the statistics of all of them, as `SyncBatchNorm` does.
    static func joined(_ shards: [Shard]) -> Shard {
        let logits = shards.compactMap(\.teacherLogits)
        return Shard(images: concatenate(shards.map(\.images), axis: 0),
                     targets: concatenate(shards.map(\.targets), axis: 0),
                     teacherLogits: logits.count == shards.count ? concatenate(logits, axis: 0) : nil)
    }
}
