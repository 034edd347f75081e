#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CUSIKernels

/// The record of differentiable ops run on the current thread, in execution order.
///
/// Ops append an entry (their output, inputs and pullback) when recording is on and any
/// input requires a gradient. ``Tensor/backward(_:)`` walks the entries in reverse — the
/// execution order is already a topological order — and then clears the tape, which frees
/// every tensor the pullbacks saved. Each thread has its own tape.
public final class GradientTape {
    struct Entry {
        let output: Tensor
        let inputs: [Tensor]
        let pullback: (Tensor) -> [Tensor?]
    }

    var entries: [Entry] = []
    var recordingDepth = 0  // > 0 inside `withoutGradients`

    /// The calling thread's tape.
    public static var current: GradientTape {
        if let raw = pthread_getspecific(tapeKey) {
            return Unmanaged<GradientTape>.fromOpaque(raw).takeUnretainedValue()
        }
        let tape = GradientTape()
        pthread_setspecific(tapeKey, Unmanaged.passRetained(tape).toOpaque())
        return tape
    }

    /// Whether ops on this thread currently record pullbacks.
    public var isRecording: Bool { recordingDepth == 0 }

    /// The number of recorded ops waiting for a backward pass.
    public var count: Int { entries.count }

    /// Forgets every recorded op (and frees what their pullbacks saved) without a backward pass.
    public func reset() { entries.removeAll(keepingCapacity: true) }

    /// Records `output = op(inputs)` if recording is on and any input requires a gradient.
    /// `pullback` maps the gradient of `output` to one gradient per input (`nil` = none).
    @inline(__always)
    static func record(_ output: Tensor, _ inputs: [Tensor], pullback: @escaping (Tensor) -> [Tensor?]) {
        let tape = current
        guard tape.isRecording, inputs.contains(where: { $0.requiresGrad }) else { return }
        output.requiresGrad = true
        output.isLeaf = false
        tape.entries.append(Entry(output: output, inputs: inputs, pullback: pullback))
    }

    /// Whether an op with these inputs would be recorded (lets ops skip saving state).
    @inline(__always)
    static func wouldRecord(_ inputs: Tensor...) -> Bool {
        current.isRecording && inputs.contains(where: { $0.requiresGrad })
    }
}

private let tapeKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { raw in
        #if canImport(Darwin)
        Unmanaged<GradientTape>.fromOpaque(raw).release()
        #else
        if let raw { Unmanaged<GradientTape>.fromOpaque(raw).release() }
        #endif
    }
    return key
}()

/// Runs `body` without recording gradients (inference, EMA updates, the teacher).
public func withoutGradients<Result>(_ body: () throws -> Result) rethrows -> Result {
    let tape = GradientTape.current
    tape.recordingDepth += 1
    defer { tape.recordingDepth -= 1 }
    return try body()
}

extension Tensor {
    /// Back-propagates from this tensor through every op recorded on the current thread's
    /// tape, accumulating into ``grad`` of each leaf that ``requiresGrad``; then clears the
    /// tape. Without `gradient` the tensor must hold one element (a loss) and is seeded with 1.
    public func backward(_ gradient: Tensor? = nil) {
        backward(gradient, onGradientFinal: nil)
    }

    /// ``backward(_:)`` that also calls `onGradientFinal` with each leaf that requires a
    /// gradient as soon as its ``grad`` is final — when the walk has passed the earliest
    /// recorded op that reads it, so nothing later in the walk adds to it — while the rest of
    /// backward still runs. Data-parallel training starts reducing a bucket of gradients there
    /// (as PyTorch's DDP does from its autograd hooks). Leaves are reported in the order their
    /// gradients become final, each once; a leaf the tape never reads is not reported.
    public func backward(_ gradient: Tensor? = nil, onGradientFinal: ((Tensor) -> Void)?) {
        let seed: Tensor
        if let gradient {
            precondition(gradient.shape == shape,
                         "backward: gradient shape \(gradient.shape) differs from \(shape)")
            seed = gradient
        } else {
            precondition(count == 1, "backward() without a gradient needs a scalar, shape is \(shape)")
            seed = Tensor(shape: shape, repeating: 1)
        }
        let tape = GradientTape.current
        precondition(requiresGrad, "backward: this tensor does not depend on anything that requires a gradient")
        accumulateGradient(seed)
        let entries = tape.entries
        tape.entries.removeAll(keepingCapacity: true)
        // For each leaf, the earliest entry reading it: the last of the reverse walk to add to
        // its gradient. Found in one pass over the tape, only when someone listens.
        var finalAt: [ObjectIdentifier: Int] = [:]
        if onGradientFinal != nil {
            for (index, entry) in entries.enumerated() {
                for input in entry.inputs where input.isLeaf && input.requiresGrad {
                    let key = ObjectIdentifier(input)
                    if finalAt[key] == nil { finalAt[key] = index }
                }
            }
        }
        for (index, entry) in entries.enumerated().reversed() {
            if let g = entry.output.grad {
                let inputGrads = entry.pullback(g)
                for (input, inputGrad) in zip(entry.inputs, inputGrads) {
                    if let inputGrad, input.requiresGrad { input.accumulateGradient(inputGrad) }
                }
                entry.output.grad = nil  // intermediate gradients are not kept
            }
            // Reported even when this entry had no gradient to pass on: nothing earlier reads the leaf.
            if let onGradientFinal {
                for input in entry.inputs where input.isLeaf && input.requiresGrad {
                    let key = ObjectIdentifier(input)
                    if finalAt[key] == index {
                        finalAt[key] = nil  // once, even if the entry reads the leaf twice
                        onGradientFinal(input)
                    }
                }
            }
        }
    }

    /// Adds `g` to ``grad``. Leaves own their gradient buffer (an optimiser or clipping may
    /// change it in place); intermediates may share the pullback's tensor.
    func accumulateGradient(_ g: Tensor) {
        precondition(g.shape == shape, "gradient shape \(g.shape) does not match tensor shape \(shape)")
        if let existing = grad {
            if isLeaf {
                withExtendedLifetime(g) { usi_accumulate(existing.pointer, g.pointer, count) }
            } else {
                grad = existing.addingWithoutTape(g)
            }
        } else {
            grad = isLeaf ? g.copy() : g
        }
    }

    func addingWithoutTape(_ other: Tensor) -> Tensor {
        let out = copy()
        withExtendedLifetime(other) { usi_accumulate(out.pointer, other.pointer, count) }
        return out
    }
}
