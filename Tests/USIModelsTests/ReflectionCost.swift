import Foundation
import USIModels

/// How long walking a model's state takes, for deciding whether per-step callers may ask the
/// model again each step or must collect the tensors once. Public API only, so the same code
/// can time the hand-registered zoo of dc3f9b0.
enum ReflectionCost {
    /// Milliseconds per call of `body`, the median of `rounds` rounds of `calls` calls each.
    static func milliseconds(calls: Int = 10, rounds: Int = 5, _ body: () -> Int) -> Double {
        var sink = body()  // warm-up
        var samples: [Double] = []
        for _ in 0..<rounds {
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<calls { sink &+= body() }
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(calls))
        }
        if sink == -1 { print(sink) }  // keeps the calls from being optimised away
        return samples.sorted()[rounds / 2]
    }

    /// One line per measured call on `name`.
    static func report(_ name: String) throws -> String {
        let model = try Models.create(name, classes: 10, inputSize: 64)
        let parameters = model.namedParameters().count, modules = model.namedModules().count
        let p = milliseconds { model.namedParameters().count }
        let t = milliseconds { model.namedTensors().count }
        let m = milliseconds { model.namedModules().count }
        let e = milliseconds { model.train(); return 0 }
        return String(format: "%@ (%d modules, %d parameters): namedParameters %.2f ms, namedTensors %.2f ms, namedModules %.2f ms, train() %.2f ms per call",
                      name, modules, parameters, p, t, m, e)
    }
}
