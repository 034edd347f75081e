import CUSIKernels

extension InferencePrecision {
    /// The teacher's default: BF16 where the CPU has AVX512-BF16, else FP32. Measured on the
    /// embedded default (Docs/DECISIONS.md): the bundled teacher's top-1 is 93.04 % in BF16
    /// against 93.05 % in FP32, and the KD loss of a batch moves by at most 1.3e-4 relative,
    /// while the teacher's forward pass runs about 1.6× faster.
    public static var teacherDefault: InferencePrecision { InferencePrecision.bfloat16.isSupported ? .bfloat16 : .float32 }
}

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
    /// The configuration of the students whose batches it sees (normalisation, channels, size).
    public let studentConfig: BackboneConfig
    /// The precision of the teacher's GEMM inputs (FP32 accumulation either way).
    public let precision: InferencePrecision
    /// How the teacher computes its convolutions (see ``ConvolutionForm``).
    public let convolutions: ConvolutionForm

    /// Wraps `teacher` for students configured as `student`, freezing it, switching it to eval
    /// mode, folding its BatchNorms and packing its weights once for `precision` (`.float32`
    /// computes what the unprepared teacher does; `.bfloat16` rounds GEMM inputs to
    /// BF16 on CPUs with AVX512-BF16; the default is ``InferencePrecision/teacherDefault``). Throws when the student's images cannot be turned into
    /// the teacher's input (channels other than 1 ↔ 3, or a class count that differs), or when
    /// the CPU cannot run `precision`.
    ///
    /// `convolutions: .fastest` (the default) runs the teacher's 3×3 stride-1 convolutions as
    /// Winograd F(2×2, 3×3) where it pays, 1.4–2× faster than the direct form, and skips the
    /// products with padding on its last, smallest maps; within about 1e-6 relative of the
    /// direct form in FP32. Pass `.direct` for logits that equal the unprepared teacher's bits at
    /// `.float32`.
    public init(teacher: any Backbone, student: BackboneConfig,
                precision: InferencePrecision = .teacherDefault, convolutions: ConvolutionForm = .fastest) throws {
        let t = teacher.config
        let adaptable = student.inputChannels == t.inputChannels || student.inputChannels == 1 || t.inputChannels == 1
        guard adaptable else {
            throw TrainingError.invalidConfiguration(
                "the teacher \(t.architecture) takes \(t.inputChannels)-channel images and the student \(student.architecture) \(student.inputChannels)-channel ones; only equal counts, or grey to and from colour, can be adapted")
        }
        guard t.classes == student.classes else {
            throw TrainingError.invalidConfiguration(
                "the teacher \(t.architecture) predicts \(t.classes) classes and the student \(student.architecture) \(student.classes); fine-tune the teacher on your classes first")
        }
        guard precision == .float32 || precision.isSupported else {
            throw TrainingError.invalidConfiguration("teacher precision \(precision.rawValue) does not run on this CPU (it needs AVX512-BF16)")
        }
        self.teacher = teacher
        self.studentConfig = student
        self.precision = precision
        self.convolutions = convolutions
        teacher.eval()
        teacher.freeze()
        (teacher as? BatchNormFoldable)?.foldBatchNorms()
        // After folding: the packed copy must hold the final weights.
        teacher.prepareForInference(precision: precision, convolutions: convolutions)
    }

    /// The teacher's logits for a student batch `[N, H, W, C]` (normalised as the student's).
    public func logits(for studentInput: Tensor) -> Tensor {
        withoutGradients { teacher(teacherInput(studentInput)) }
    }

    /// The student batch re-expressed in the teacher's normalisation, channels and size.
    public func teacherInput(_ x: Tensor) -> Tensor {
        withoutGradients {
            let t = teacher.config
            let studentChannels = x.shape[3]
            // Back to pixel space [0, 1] per the student's statistics.
            var pixels = x * Tensor(shape: [studentChannels], values: studentConfig.standardDeviation)
                + Tensor(shape: [studentChannels], values: studentConfig.mean)
            if studentChannels != t.inputChannels {
                if studentChannels == 1 {
                    pixels = concatenate(Array(repeating: pixels, count: t.inputChannels), axis: 3)
                } else {
                    // init refused every other pair.
                    pixels = pixels.mean(axes: [3], keepingAxes: true)
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
