import Foundation
import USICore

/// One fuzz input: any bytes as a safetensors file. A file that parses must give every
/// tensor back (as floats, and as integers where the dtype is one) and survive a round trip
/// through the writer with the same names, shapes and metadata. Everything else must throw.
func fuzzSafeTensors(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    guard let file = try? SafeTensorsFile(data: Data(bytes: data, count: size), source: "fuzz") else { return 0 }
    var records: [String: SafeTensorsRecord] = [:]
    for name in file.names {
        guard let entry = file.entries[name], let tensor = try? file.tensor(name) else {
            fatalError("an entry that validated does not load: \(name)")
        }
        precondition(tensor.shape == entry.shape, "shape changed on load")
        switch entry.dtype {
        case .float32, .float16, .bfloat16, .float64:
            records[name] = SafeTensorsRecord(tensor, dtype: .float32)
        default:
            guard let values = try? file.integers(name) else { fatalError("integer tensor does not load: \(name)") }
            records[name] = SafeTensorsRecord(int64: values, shape: entry.shape)
        }
    }
    guard let encoded = try? SafeTensors.encode(records, metadata: file.metadata),
          let again = try? SafeTensorsFile(data: encoded, source: "fuzz-roundtrip") else {
        fatalError("a file that loaded does not survive a round trip")
    }
    precondition(again.names == file.names && again.metadata == file.metadata, "round trip changed names or metadata")
    for name in file.names { precondition(again.entries[name]?.shape == file.entries[name]?.shape) }
    return 0
}
