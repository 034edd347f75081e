import Testing
import USICore

@Suite("Autograd tape")
struct AutogradTests {
    @Test("gradients accumulate across uses and across backward passes")
    func accumulation() {
        let x = Tensor(shape: [3], values: [1, 2, 3], requiresGrad: true)
        (x * x + x).sum().backward()  // d/dx = 2x + 1
        #expect(x.grad?.toArray() == [3, 5, 7])
        (x * 2).sum().backward()
        #expect(x.grad?.toArray() == [5, 7, 9])
        x.zeroGrad()
        #expect(x.grad == nil)
    }

    @Test("the tape is emptied by backward and never filled without gradients")
    func tapeLifetime() {
        let tape = GradientTape.current
        tape.reset()
        let w = Tensor(shape: [2, 2], values: [1, 2, 3, 4], requiresGrad: true)
        _ = withoutGradients { relu(w * 3).sum() }
        #expect(tape.count == 0)
        let y = relu(w * 3).sum()
        #expect(tape.count == 3)
        y.backward()
        #expect(tape.count == 0)
        // Inputs that need no gradient record nothing.
        _ = relu(Tensor(shape: [2], values: [1, -1])).sum()
        #expect(tape.count == 0)
    }

    @Test("a steady loop reuses pooled buffers instead of allocating")
    func bufferReuse() {
        let w = randomTensor([64, 64], seed: 1)
        func step() {
            let x = randomTensor([32, 64], seed: 2, requiresGrad: false)
            linear(relu(linear(x, weight: w)), weight: w).sum().backward()
            w.zeroGrad()
        }
        step(); step()
        let before = BufferPool.shared.allocationCount
        for _ in 0..<5 { step() }
        #expect(BufferPool.shared.allocationCount == before)
    }

    @Test("an intermediate's gradient is not kept; a leaf's is")
    func intermediateGradients() {
        let x = Tensor(shape: [2], values: [1, 2], requiresGrad: true)
        let h = x * 3
        (h * h).sum().backward()
        #expect(h.grad == nil)
        #expect(x.grad?.toArray() == [18, 36])
    }
}
