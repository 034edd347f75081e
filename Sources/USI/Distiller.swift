import CUSIKernels

/// The USI teacher: frozen, in eval mode, BatchNorm folded where the model supports it, run
/// without the tape on exactly the batch the student sees.
///
/// The student's input is normalised with the student's mean/std; the distiller maps it to
/// the teacher's normalisation exactly — `(x·σs + μs − μt)/σt` per channel — adapts the
/// channel count (grey → RGB by repetition, RGB → grey by averaging the de-normalised
/// channels) and resizes (bilinear) when the teacher expects another input size.
public final class Distiller {
    /// The frozen teacher.
    public let teacher: any Backbone

    /// Wraps `teacher`, freezing it and switching it to eval mode.
    public init(teacher: any Backbone) {
        self.teacher = teacher
        teacher.eval()
        teacher.freeze()
        (teacher as? BatchNormFoldable)?.foldBatchNorms()
    }

    /// The teacher's logits for a student batch `[N, H, W, C]` normalised with `studentConfig`.
    public func logits(for studentInput: Tensor, studentConfig: BackboneConfig) -> Tensor {
        withoutGradients { teacher(teacherInput(studentInput, studentConfig: studentConfig)) }
    }

    /// The student batch re-expressed in the teacher's normalisation, channels and size.
    public func teacherInput(_ x: Tensor, studentConfig: BackboneConfig) -> Tensor {
        withoutGradients {
            let t = teacher.config
            let studentChannels = x.shape[3]
            // Back to pixel space [0, 1] per the student's statistics.
            var pixels = x * Tensor(shape: [studentChannels], values: studentConfig.standardDeviation)
                + Tensor(shape: [studentChannels], values: studentConfig.mean)
            if studentChannels != t.inputChannels {
                if studentChannels == 1 {
                    pixels = concatenate(Array(repeating: pixels, count: t.inputChannels), axis: 3)
                } else if t.inputChannels == 1 {
                    pixels = pixels.mean(axes: [3], keepingAxes: true)
                } else {
                    preconditionFailure("teacher expects \(t.inputChannels) channels, student has \(studentChannels)")
                }
            }
            var normalised = (pixels - Tensor(shape: [t.inputChannels], values: t.mean))
                / Tensor(shape: [t.inputChannels], values: t.standardDeviation)
            if x.shape[1] != t.inputSize || x.shape[2] != t.inputSize {
                let resized = Tensor(uninitializedShape: [x.shape[0], t.inputSize, t.inputSize, t.inputChannels])
                usi_resize_bilinear_nhwc(resized.pointer, normalised.pointer, Int32(x.shape[0]), Int32(x.shape[1]),
                                         Int32(x.shape[2]), Int32(t.inputChannels), Int32(t.inputSize), Int32(t.inputSize))
                normalised = resized
            }
            return normalised
        }
    }

    /// The USI loss: `CE(student, soft targets) + weight · KL(softmax(teacher) ‖ softmax(student))`
    /// (temperature 1, `batchmean`), or only the weighted KL term when `distillationOnly`.
    public static func loss(studentLogits: Tensor, teacherLogits: Tensor, targets: Tensor, weight: Float = 5,
                            distillationOnly: Bool = false) -> Tensor {
        let kl = klDivergence(student: studentLogits, teacher: teacherLogits.detached()) * weight
        return distillationOnly ? kl : crossEntropy(studentLogits, softTargets: targets) + kl
    }
}
