import Foundation

/// Supplies a run's teacher logits in place of the live teacher — for instance from a
/// ``TeacherLogitsStore`` that an earlier student of a comparison filled with the teacher's
/// logits on the very same batches.
///
/// A source must give exactly what the live teacher would: either the logits it stored for
/// this batch (after checking that the batch is the one it stored them for) or the result of
/// `live`.
public protocol TeacherLogitsSource: AnyObject {
    /// The teacher's logits `[n, classes]` for shard `shard` of global step `step`, whose
    /// student-normalised images are `images`; `live` runs the teacher.
    func logits(step: Int, shard: Int, images: Tensor, live: () -> Tensor) throws -> Tensor
    /// The teacher's accuracy on the validation split; `evaluate` measures it.
    func teacherEvaluation(_ evaluate: () throws -> EvaluationResult) throws -> EvaluationResult
}

extension USITrainer {
    /// One step of ``fit(resume:)``: with a ``teacherLogitsSource`` the teacher's logits come
    /// from it (the step is then the same as with the live teacher, bit for bit), otherwise the
    /// step runs the live teacher itself.
    func trainingStep(_ batches: [Batch], step index: Int) throws -> TrainingStepResult {
        guard let source = teacherLogitsSource, let distiller else { return try step(batches, step: index) }
        var shards: [TrainingStep.Shard] = []
        for (number, batch) in batches.enumerated() {
            let images = batch.tensor()
            let logits = try source.logits(step: index, shard: communicator.rank * emulatedRanks + number, images: images) {
                distiller.logits(for: images)
            }
            shards.append(TrainingStep.Shard(images: images, targets: batch.targetTensor(), teacherLogits: logits))
        }
        return try step(shards: shards, step: index)
    }

    /// The teacher's validation accuracy, from the source when there is one.
    func teacherEvaluation(_ evaluate: () throws -> EvaluationResult) throws -> EvaluationResult {
        guard let source = teacherLogitsSource else { return try evaluate() }
        return try source.teacherEvaluation(evaluate)
    }
}
