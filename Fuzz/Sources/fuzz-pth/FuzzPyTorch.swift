import Foundation
import USICore

/// One fuzz input: any bytes as a PyTorch checkpoint (zip or legacy format, restricted
/// unpickler). A checkpoint that loads must become a valid safetensors file with the same
/// names, dtypes, shapes and bytes. Everything else must throw.
func fuzzPyTorch(_ input: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data = input, size > 0 else { return 0 }
    guard let checkpoint = try? PyTorchCheckpoint(data: Data(bytes: data, count: size), source: "fuzz") else { return 0 }
    guard let file = try? checkpoint.safeTensorsFile() else { fatalError("a checkpoint that loaded is not valid safetensors") }
    precondition(file.names == checkpoint.tensors.keys.sorted(), "names changed")
    for (name, record) in checkpoint.tensors {
        guard let again = try? file.record(name), (try? file.tensor(name)) != nil else { fatalError("tensor \(name) does not load") }
        precondition(again.dtype == record.dtype && again.shape == record.shape && again.bytes == record.bytes, "tensor \(name) changed")
    }
    return 0
}
