import CONNX
import IR
import Support

/// ONNX test-data files: one serialized TensorProto (`input_0.pb`), read with the same wire
/// scan and bounded decoding as models.
public enum TensorFile {
  public static func read(_ path: String) throws -> Tensor {
    let file = try MappedFile(path: path)
    if file.size > ModelReader.maxFileBytes {
      throw CompressorError.invalid("\(path): over protobuf's 2 GiB limit for one message")
    }
    _ = try WireScanner(file: path, tensorDescriptor: nil).scan(file.bytes, root: ProtobufC.tensorDescriptor)
    let budget = ProtobufC.AllocationBudget(bytes: ModelReader.decodeBudget(fileBytes: file.size))
    guard let t = ProtobufC.unpackTensor(file.bytes, budget: budget) else {
      throw CompressorError.invalid("\(path): not a valid TensorProto (protobuf decoding failed)")
    }
    defer { ProtobufC.freeTensor(t) }
    let decoder = Decoder(file: path, externalData: ExternalDataResolver(modelFile: path))
    return try decoder.tensor(t)
  }
}
