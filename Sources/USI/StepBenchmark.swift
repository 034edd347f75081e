import Foundation

/// Where the time of a USI training step goes: the teacher's forward pass, the student's
/// forward and backward, AdamW and the EMA, and the data pipeline — each timed on its own, and
/// the whole ``TrainingStep`` timed together — so that the teacher's share is visible.
/// `usi bench usi` prints it; `Tools/bench/torch_usi_step.py` times the same step in PyTorch.
public enum StepBenchmark {
    /// Median seconds of each phase over the timed rounds, and the derived rates.
    public struct Report: Encodable, Sendable {
        /// Student architecture.
        public var student: String
        /// Teacher architecture (nil: the step without distillation).
        public var teacher: String?
        /// Images per step.
        public var batch: Int
        /// Student input side.
        public var inputSize: Int
        /// Compute threads.
        public var threads: Int
        /// Timed rounds per phase.
        public var rounds: Int
        /// The teacher's logits for a batch (its input re-normalised, channels and size adapted).
        public var teacherSeconds: Double?
        /// Student forward, loss and backward.
        public var studentSeconds: Double
        /// AdamW update, zeroing the gradients and the EMA update.
        public var optimizerSeconds: Double
        /// One batch from the recipe's loader (decode, augment, mix) at its workers' rate.
        public var dataSeconds: Double
        /// The whole step (``TrainingStep``) on a ready batch.
        public var stepSeconds: Double
        /// Images per second of the whole step.
        public var stepImagesPerSecond: Double
        /// The teacher's share of the phases' sum (0 without a teacher).
        public var teacherShare: Double

        enum CodingKeys: String, CodingKey {
            case student, teacher, batch, inputSize = "input_size", threads, rounds, teacherSeconds = "teacher_s",
                 studentSeconds = "student_s", optimizerSeconds = "optimizer_s", dataSeconds = "data_s",
                 stepSeconds = "step_s", stepImagesPerSecond = "step_img_s", teacherShare = "teacher_share"
        }
    }

    /// Times the phases of the USI step for `student` (and `distiller`'s teacher) on batches
    /// of `data` assembled as `config`'s recipe assembles them. The weights change as the
    /// rounds train; only time is measured.
    public static func run(student: any Backbone, distiller: Distiller?, data: any ImageDataset, config: USIConfig,
                           warmup: Int = 2, rounds: Int = 10) throws -> Report {
        guard rounds >= 1 else { throw TrainingError.invalidConfiguration("rounds must be >= 1") }
        let recipe = config.resolved(trainingSamples: data.count, imageSize: student.config.inputSize)
        let step = try TrainingStep(student: student, distiller: distiller, config: config, recipe: recipe)
        let loader = try recipe.makeTrainingLoader(data: data, student: student.config, config: config)

        // Data: the workers' rate, consuming batches back to back from a fresh start (a
        // consumer faster than the workers sees their throughput, not the prefetch queue).
        var batch: Batch?
        var produced = 0
        let dataStart = ContinuousClock.now
        let batches = loader.batches(epoch: 0)
        while produced < warmup + rounds, let next = try batches.next() {
            batch = next
            produced += 1
        }
        let dataSeconds = seconds(since: dataStart) / Double(max(produced, 1))
        batches.cancel()
        guard let batch else { throw TrainingError.invalidData("the data gives no full batch of \(config.batchSize)") }
        let x = batch.tensor(), targets = batch.targetTensor()

        func median(_ body: () throws -> Void) rethrows -> Double {
            for _ in 0..<warmup { try body() }
            var times: [Double] = []
            for _ in 0..<rounds {
                let start = ContinuousClock.now
                try body()
                times.append(seconds(since: start))
            }
            return times.sorted()[times.count / 2]
        }
        let teacherLogits = distiller?.logits(for: x)
        let teacherTime = try distiller.map { d in try median { _ = d.logits(for: x) } }
        student.train()
        func forwardBackward() {
            step.loss(logits: student(x), teacherLogits: teacherLogits, targets: targets).backward()
        }
        let studentTime = median {
            forwardBackward()
            step.optimizer.zeroGradients()
        }
        forwardBackward()  // gradients for the update rounds below
        var index = 0
        let optimizerTime = median {
            // The update alone (its cost does not depend on the gradients' values).
            step.optimizer.step()
            step.ema?.update(step: index + 1)
            index += 1
        }
        step.optimizer.zeroGradients()
        var stepIndex = 0
        let stepTime = try median {
            try step(images: x, targets: targets, step: stepIndex)
            stepIndex += 1
        }
        return Report(student: student.config.architecture, teacher: distiller?.teacher.config.architecture,
                      batch: config.batchSize, inputSize: student.config.inputSize, threads: Threading.threadCount,
                      rounds: rounds, teacherSeconds: teacherTime, studentSeconds: studentTime,
                      optimizerSeconds: optimizerTime, dataSeconds: dataSeconds,
                      stepSeconds: stepTime, stepImagesPerSecond: Double(config.batchSize) / stepTime,
                      teacherShare: (teacherTime ?? 0) / ((teacherTime ?? 0) + studentTime + optimizerTime))
    }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
