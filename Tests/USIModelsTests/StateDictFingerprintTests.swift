import Foundation
import Testing
import USIModels

/// Every architecture's `state_dict` (keys, kinds, layouts, shapes), initial weights for seed 0
/// and key order equal the fixture recorded from the zoo as it was before modules were declared
/// by reflection (commit dc3f9b0, every child registered by hand), so converting a model to
/// declarations changed neither timm's names nor a single initial bit.
///
/// A new architecture has no entry yet: run the suite once with `USI_WRITE_FINGERPRINTS=1` to
/// rewrite the fixture from the current code, and review the diff (it must only add lines).
@Suite("State-dict fingerprints of the zoo")
struct StateDictFingerprintTests {
    static let url = MobileFamilyFixtures.directory.appendingPathComponent("state_dict_fingerprints.json")
    static let fixture = Result { try StateDictFingerprint.load(url) }

    @Test("keys, shapes, layouts, initial weights and key order are the recorded ones", arguments: Models.available)
    func matchesFixture(_ name: String) throws {
        let expected = try #require(try Self.fixture.get()[name], "\(name) has no fingerprint; see USI_WRITE_FINGERPRINTS")
        let actual = StateDictFingerprint.fingerprint(try StateDictFingerprint.build(name))
        let key = { (line: String) in String(line.prefix { $0 != " " }) }
        let expectedKeys = Set(expected.tensors.map(key)), actualKeys = Set(actual.tensors.map(key))
        #expect(actualKeys.subtracting(expectedKeys).isEmpty, "extra keys: \(actualKeys.subtracting(expectedKeys).sorted())")
        #expect(expectedKeys.subtracting(actualKeys).isEmpty, "missing keys: \(expectedKeys.subtracting(actualKeys).sorted())")
        #expect(actual.tensors.count == actualKeys.count, "duplicate keys")
        // Same keys: every line that differs names a tensor whose kind, layout, shape or values changed.
        let changed = Set(actual.tensors).subtracting(expected.tensors).filter { expectedKeys.contains(key($0)) }
        #expect(changed.isEmpty, "changed (kind layout shape digest): \(changed.sorted().prefix(20))")
        #expect(actual.order == expected.order, "the order of the keys changed")
    }

    @Test("the fixture covers exactly the registered architectures")
    func coversRegistry() throws {
        if ProcessInfo.processInfo.environment["USI_WRITE_FINGERPRINTS"] == "1" {
            try StateDictFingerprint.encodeAll().write(to: Self.url, atomically: true, encoding: .utf8)
        }
        #expect(try Self.fixture.get().keys.sorted() == Models.available)
    }
}
