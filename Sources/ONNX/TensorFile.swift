import CONNX
import IR
import Support

/// ONNX test-data files: one serialized TensorProto (`input_0.pb`), or for a sequence- or
/// optional-typed input or output a SequenceProto or OptionalProto, read with the same wire
/// scan and bounded decoding as models.
public enum TensorFile {
  /// A value of test data: a tensor, a sequence of tensors, or an optional (nil: no value).
  public indirect enum Value {
    case tensor(Tensor)
    case sequence(elementType: DataType, [Tensor])
    case optional(Value?)
  }

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

  /// Reads a file holding a value of `type` (a graph input's or output's declared type): a
  /// SequenceProto for a sequence, an OptionalProto for an optional, else a TensorProto.
  public static func readValue(_ path: String, type: TypeInfo?) throws -> Value {
    switch type?.kind {
    case .sequence?:
      let file = try MappedFile(path: path)
      if file.size > ModelReader.maxFileBytes {
        throw CompressorError.invalid("\(path): over protobuf's 2 GiB limit for one message")
      }
      _ = try WireScanner(file: path, tensorDescriptor: nil).scan(file.bytes, root: ProtobufC.sequenceDescriptor)
      let budget = ProtobufC.AllocationBudget(bytes: ModelReader.decodeBudget(fileBytes: file.size))
      guard let s = ProtobufC.unpackSequence(file.bytes, budget: budget) else {
        throw CompressorError.invalid("\(path): not a valid SequenceProto (protobuf decoding failed)")
      }
      defer { ProtobufC.freeSequence(s) }
      return try sequence(s, path: path)
    case .optional?:
      let file = try MappedFile(path: path)
      if file.size > ModelReader.maxFileBytes {
        throw CompressorError.invalid("\(path): over protobuf's 2 GiB limit for one message")
      }
      _ = try WireScanner(file: path, tensorDescriptor: nil).scan(file.bytes, root: ProtobufC.optionalDescriptor)
      let budget = ProtobufC.AllocationBudget(bytes: ModelReader.decodeBudget(fileBytes: file.size))
      guard let o = ProtobufC.unpackOptional(file.bytes, budget: budget) else {
        // The onnx wheel's own test data stores an optional that holds a tensor as that TensorProto.
        if !budget.exceeded, let t = try? read(path) { return .optional(.tensor(t)) }
        throw CompressorError.invalid("\(path): not a valid OptionalProto (protobuf decoding failed)")
      }
      defer { ProtobufC.freeOptional(o) }
      let decoder = Decoder(file: path, externalData: ExternalDataResolver(modelFile: path))
      // elem_type: 1 tensor, 3 sequence; 0 (undefined) with no field set is an empty optional.
      if let t = o.pointee.tensor_value { return .optional(.tensor(try decoder.tensor(t))) }
      if let s = o.pointee.sequence_value { return .optional(try sequence(s, path: path)) }
      if o.pointee.sparse_tensor_value != nil || o.pointee.map_value != nil || o.pointee.optional_value != nil {
        throw CompressorError.unsupported("\(path): optionals of sparse tensors, maps or optionals are not supported")
      }
      return .optional(nil)
    default:
      return .tensor(try read(path))
    }
  }

  private static func sequence(_ s: UnsafeMutablePointer<Onnx__SequenceProto>, path: String) throws -> Value {
    let p = s.pointee
    guard p.n_sparse_tensor_values == 0, p.n_sequence_values == 0, p.n_map_values == 0, p.n_optional_values == 0 else {
      throw CompressorError.unsupported("\(path): sequences of anything but tensors are not supported")
    }
    let decoder = Decoder(file: path, externalData: ExternalDataResolver(modelFile: path))
    var tensors = [Tensor]()
    for i in 0..<p.n_tensor_values {
      guard let t = p.tensor_values[i] else { continue }
      tensors.append(try decoder.tensor(t))
    }
    let type = tensors.first?.dataType ?? .undefined
    guard tensors.allSatisfy({ $0.dataType == type }) else {
      throw CompressorError.invalid("\(path): the sequence's tensors have different element types")
    }
    return .sequence(elementType: type, tensors)
  }
}
