import Testing
import USIModels

/// Prints what walking the module tree costs on two common students; timings depend on the
/// machine and its load, so nothing is asserted.
@Suite("Reflection cost", .serialized)
struct ReflectionCostTests {
    @Test("namedParameters()/namedTensors()/namedModules()/train() per call (printed, not asserted)",
          arguments: ["resnet50", "mobilenetv3_large_100"])
    func walkCost(_ name: String) throws {
        print("  reflection cost: " + (try ReflectionCost.report(name)))
    }
}
