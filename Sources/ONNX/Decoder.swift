#if canImport(Glibc)
import Glibc
#endif
import CONNX
import CProtobufC
import IR
import Support

/// Turns an unpacked protobuf-c ModelProto into the IR. Large element buffers (`raw_data`,
/// and typed fields already in their final layout) are taken over from protobuf-c rather than
/// copied, so reading a model costs its size once.
final class Decoder {
  let file: String
  let externalData: ExternalDataResolver
  private(set) var unknownFieldCount = 0

  /// raw_data payloads the wire scanner left in the mapped file, by marker index.
  let rawDataInFile: [ByteBuffer]

  init(file: String, externalData: ExternalDataResolver, rawDataInFile: [ByteBuffer] = []) {
    self.file = file
    self.externalData = externalData
    self.rawDataInFile = rawDataInFile
  }

  func model(_ m: UnsafeMutablePointer<Onnx__ModelProto>) throws -> Model {
    let p = m.pointee
    guard let g = p.graph else { throw CompressorError.invalid("\(file): the model has no graph") }
    return Model(
      irVersion: p.has_ir_version != 0 ? p.ir_version : 0,
      opsetImports: list(p.n_opset_import, p.opset_import, opset),
      producerName: string(p.producer_name),
      producerVersion: string(p.producer_version),
      domain: string(p.domain),
      modelVersion: p.has_model_version != 0 ? p.model_version : 0,
      docString: string(p.doc_string),
      graph: try graph(g),
      metadata: pairs(p.n_metadata_props, p.metadata_props),
      trainingInfo: try list(p.n_training_info, p.training_info, trainingInfo),
      functions: try list(p.n_functions, p.functions, function),
      unknownFields: unknown(m))
  }

  func graph(_ g: UnsafeMutablePointer<Onnx__GraphProto>) throws -> Graph {
    let p = g.pointee
    return Graph(
      name: string(p.name),
      nodes: try list(p.n_node, p.node, node),
      initializers: try list(p.n_initializer, p.initializer, tensor),
      sparseInitializers: try list(p.n_sparse_initializer, p.sparse_initializer, sparseTensor),
      inputs: list(p.n_input, p.input, valueInfo),
      outputs: list(p.n_output, p.output, valueInfo),
      valueInfo: list(p.n_value_info, p.value_info, valueInfo),
      quantizationAnnotations: list(p.n_quantization_annotation, p.quantization_annotation) {
        TensorAnnotation(tensorName: string($0.pointee.tensor_name),
                         quantParameterTensorNames: pairs($0.pointee.n_quant_parameter_tensor_names,
                                                          $0.pointee.quant_parameter_tensor_names))
      },
      docString: string(p.doc_string),
      metadata: pairs(p.n_metadata_props, p.metadata_props),
      unknownFields: unknown(g))
  }

  func node(_ n: UnsafeMutablePointer<Onnx__NodeProto>) throws -> Node {
    let p = n.pointee
    return Node(
      name: string(p.name), opType: string(p.op_type), domain: string(p.domain),
      overload: string(p.overload), inputs: strings(p.n_input, p.input),
      outputs: strings(p.n_output, p.output),
      attributes: try list(p.n_attribute, p.attribute, attribute),
      docString: string(p.doc_string), metadata: pairs(p.n_metadata_props, p.metadata_props),
      unknownFields: unknown(n))
  }

  func attribute(_ a: UnsafeMutablePointer<Onnx__AttributeProto>) throws -> Attribute {
    let p = a.pointee
    // IR version 1 files may leave `type` out; infer it from the field that is set.
    var type = p.has_type != 0 ? Int32(bitPattern: p.type.rawValue) : 0
    if type == 0 {
      if p.has_f != 0 { type = 1 } else if p.has_i != 0 { type = 2 } else if p.has_s != 0 { type = 3 }
      else if p.t != nil { type = 4 } else if p.g != nil { type = 5 } else if p.sparse_tensor != nil { type = 11 }
      else if p.tp != nil { type = 13 } else if p.n_floats > 0 { type = 6 } else if p.n_ints > 0 { type = 7 }
      else if p.n_strings > 0 { type = 8 } else if p.n_tensors > 0 { type = 9 } else if p.n_graphs > 0 { type = 10 }
      else if p.n_sparse_tensors > 0 { type = 12 } else if p.n_type_protos > 0 { type = 14 }
    }
    let value: Attribute.Value
    switch type {
    case 1: value = .float(p.f)
    case 2: value = .int(p.i)
    case 3: value = .string(bytes(p.s))
    case 4: value = try p.t.map { .tensor(try tensor($0)) } ?? .undefined(declaredType: type)
    case 5: value = try p.g.map { .graph(try graph($0)) } ?? .undefined(declaredType: type)
    case 11: value = try p.sparse_tensor.map { .sparseTensor(try sparseTensor($0)) } ?? .undefined(declaredType: type)
    case 13: value = p.tp.map { .type(typeInfo($0)) } ?? .undefined(declaredType: type)
    case 6: value = .floats(Array(UnsafeBufferPointer(start: p.floats, count: p.n_floats)))
    case 7: value = .ints(Array(UnsafeBufferPointer(start: p.ints, count: p.n_ints)))
    case 8: value = .strings((0..<p.n_strings).map { bytes(p.strings[$0]) })
    case 9: value = .tensors(try list(p.n_tensors, p.tensors, tensor))
    case 10: value = .graphs(try list(p.n_graphs, p.graphs, graph))
    case 12: value = .sparseTensors(try list(p.n_sparse_tensors, p.sparse_tensors, sparseTensor))
    case 14: value = .types(list(p.n_type_protos, p.type_protos, typeInfo))
    default: value = .undefined(declaredType: type)
    }
    return Attribute(name: string(p.name), value: value, refAttrName: string(p.ref_attr_name),
                     docString: string(p.doc_string), unknownFields: unknown(a))
  }

  func valueInfo(_ v: UnsafeMutablePointer<Onnx__ValueInfoProto>) -> ValueInfo {
    let p = v.pointee
    return ValueInfo(name: string(p.name), type: p.type.map(typeInfo), docString: string(p.doc_string),
                     metadata: pairs(p.n_metadata_props, p.metadata_props))
  }

  func typeInfo(_ t: UnsafeMutablePointer<Onnx__TypeProto>) -> TypeInfo {
    let p = t.pointee
    let kind: TypeInfo.Kind
    switch p.value_case {
    case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE:
      let tt = p.tensor_type.pointee
      kind = .tensor(elementType: DataType(rawValue: tt.has_elem_type != 0 ? tt.elem_type : 0),
                     shape: tt.shape.map(shape))
    case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE:
      let tt = p.sparse_tensor_type.pointee
      kind = .sparseTensor(elementType: DataType(rawValue: tt.has_elem_type != 0 ? tt.elem_type : 0),
                           shape: tt.shape.map(shape))
    case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE:
      kind = .sequence(p.sequence_type.pointee.elem_type.map(typeInfo))
    case ONNX__TYPE_PROTO__VALUE_MAP_TYPE:
      let m = p.map_type.pointee
      kind = .map(keyType: DataType(rawValue: m.has_key_type != 0 ? m.key_type : 0),
                  valueType: m.value_type.map(typeInfo))
    case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE:
      kind = .optional(p.optional_type.pointee.elem_type.map(typeInfo))
    case ONNX__TYPE_PROTO__VALUE_OPAQUE_TYPE:
      kind = .opaque(domain: string(p.opaque_type.pointee.domain), name: string(p.opaque_type.pointee.name))
    default:
      kind = .none
    }
    return TypeInfo(kind, denotation: string(p.denotation))
  }

  func shape(_ s: UnsafeMutablePointer<Onnx__TensorShapeProto>) -> TensorShape {
    TensorShape(list(s.pointee.n_dim, s.pointee.dim) { d in
      let p = d.pointee
      let v: Dimension.Value
      switch p.value_case {
      case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE: v = .known(p.dim_value)
      case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM: v = .symbolic(string(p.dim_param))
      default: v = .unknown
      }
      return Dimension(v, denotation: string(p.denotation))
    })
  }

  func sparseTensor(_ s: UnsafeMutablePointer<Onnx__SparseTensorProto>) throws -> SparseTensor {
    let p = s.pointee
    guard let v = p.values, let i = p.indices else {
      throw CompressorError.invalid("\(file): a sparse tensor lacks its values or indices")
    }
    let dims = Array(UnsafeBufferPointer(start: p.dims, count: p.n_dims))
    _ = try Checked.product(dims, "sparse tensor dims")
    return SparseTensor(values: try tensor(v), indices: try tensor(i), dims: dims)
  }

  func opset(_ o: UnsafeMutablePointer<Onnx__OperatorSetIdProto>) -> OpsetImport {
    OpsetImport(domain: string(o.pointee.domain),
                version: o.pointee.has_version != 0 ? o.pointee.version : 0)
  }

  func trainingInfo(_ t: UnsafeMutablePointer<Onnx__TrainingInfoProto>) throws -> TrainingInfo {
    let p = t.pointee
    return TrainingInfo(
      initialization: try p.initialization.map(graph), algorithm: try p.algorithm.map(graph),
      initializationBinding: pairs(p.n_initialization_binding, p.initialization_binding),
      updateBinding: pairs(p.n_update_binding, p.update_binding))
  }

  func function(_ f: UnsafeMutablePointer<Onnx__FunctionProto>) throws -> Function {
    let p = f.pointee
    return Function(
      name: string(p.name), domain: string(p.domain), overload: string(p.overload),
      inputs: strings(p.n_input, p.input), outputs: strings(p.n_output, p.output),
      attributeNames: strings(p.n_attribute, p.attribute),
      attributeDefaults: try list(p.n_attribute_proto, p.attribute_proto, attribute),
      nodes: try list(p.n_node, p.node, node),
      opsetImports: list(p.n_opset_import, p.opset_import, opset),
      valueInfo: list(p.n_value_info, p.value_info, valueInfo),
      docString: string(p.doc_string), metadata: pairs(p.n_metadata_props, p.metadata_props),
      unknownFields: unknown(f))
  }

  // MARK: - Tensors

  func tensor(_ t: UnsafeMutablePointer<Onnx__TensorProto>) throws -> Tensor {
    let name = string(t.pointee.name)
    let label = name.isEmpty ? "an unnamed tensor" : "tensor '\(name)'"
    let dims = Array(UnsafeBufferPointer(start: t.pointee.dims, count: t.pointee.n_dims))
    let type = DataType(rawValue: t.pointee.has_data_type != 0 ? t.pointee.data_type : 0)
    if type == .undefined { throw CompressorError.invalid("\(file): \(label) has data type UNDEFINED") }
    if !type.isKnown { throw CompressorError.invalid("\(file): \(label) has unknown data type \(type.rawValue)") }
    var count = try Checked.product(dims, "\(file): \(label)")
    var segment: TensorSegment?
    if let s = t.pointee.segment {
      let seg = TensorSegment(begin: s.pointee.begin, end: s.pointee.end)
      guard seg.begin >= 0, seg.begin <= seg.end, let n = Int(exactly: seg.end - seg.begin), n <= count else {
        throw CompressorError.invalid("\(file): \(label) has an invalid segment \(seg.begin)..<\(seg.end)")
      }
      segment = seg
      count = n
    }
    var unknownFields = unknown(t)
    var inFile: ByteBuffer?
    let markers = unknownFields.filter { $0.tag == WireScanner.markerField }
    if let marker = markers.first {
      if markers.count > 1 || t.pointee.has_raw_data != 0 {
        throw CompressorError.invalid("\(file): \(label) has raw_data more than once")
      }
      guard let index = Self.varint(marker.data), index < rawDataInFile.count else {
        throw CompressorError.internalError("\(file): \(label) refers to a raw_data payload that was not recorded")
      }
      inFile = rawDataInFile[index]
      unknownFields.removeAll { $0.tag == WireScanner.markerField }
      unknownFieldCount -= 1
    }
    let decoded = try elements(t, type: type, count: count, label: label, name: name, rawInFile: inFile)
    return Tensor(name: name, dataType: type, dims: dims, data: decoded.data, strings: decoded.strings,
                  storedIn: decoded.field, external: decoded.external, segment: segment,
                  docString: string(t.pointee.doc_string),
                  metadata: pairs(t.pointee.n_metadata_props, t.pointee.metadata_props),
                  unknownFields: unknownFields)
  }

  private struct Elements {
    var data = ByteBuffer(adoptingMalloced: nil, count: 0)
    var strings: [[UInt8]] = []
    var field = TensorStorageField.rawData
    var external: ExternalDataInfo?
  }

  /// Validates that exactly one storage field holds exactly `count` elements of `type`, and
  /// converts it to the IR's packed layout.
  private func elements(_ t: UnsafeMutablePointer<Onnx__TensorProto>, type: DataType, count: Int,
                        label: String, name: String, rawInFile: ByteBuffer?) throws -> Elements {
    let p = t.pointee
    let isExternal = p.has_data_location != 0 && p.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
    let rawLength = rawInFile?.count ?? (p.has_raw_data != 0 ? p.raw_data.len : 0)
    let fields: [(TensorStorageField, Bool)] = [
      (.rawData, rawLength > 0), (.floatData, p.n_float_data > 0),
      (.int32Data, p.n_int32_data > 0), (.int64Data, p.n_int64_data > 0), (.doubleData, p.n_double_data > 0),
      (.uint64Data, p.n_uint64_data > 0), (.stringData, p.n_string_data > 0),
    ]
    let present = fields.filter(\.1).map(\.0)
    if present.count + (isExternal ? 1 : 0) > 1 {
      let names = present.map(\.rawValue) + (isExternal ? ["external data"] : [])
      throw CompressorError.invalid("\(file): \(label) sets more than one data field (\(names.joined(separator: ", ")))")
    }
    let bad = { (why: String) in CompressorError.invalid("\(self.file): \(label) \(why)") }
    var out = Elements()
    if type == .string {
      if isExternal || present.first.map({ $0 != .stringData }) == true {
        throw bad("is a string tensor but stores its data outside string_data")
      }
      if p.n_string_data != count { throw bad("has \(p.n_string_data) strings for \(count) elements") }
      out.strings = (0..<p.n_string_data).map { bytes(p.string_data[$0]) }
      out.field = .stringData
      return out
    }
    guard let byteCount = type.byteCount(elements: count) else {
      throw bad("needs more bytes than fit in memory (\(count) elements of \(type))")
    }
    if isExternal {
      let entries = pairs(p.n_external_data, p.external_data)
      (out.data, out.external) = try externalData.bytes(tensor: name, entries: entries, expectedLength: byteCount)
      return out
    }
    guard let field = present.first else {
      if count == 0 {
        // An empty tensor: remember whether an empty raw_data was present, so the writer
        // reproduces exactly what it read.
        out.field = p.has_raw_data != 0 ? .rawData : TensorStorageField.typed(for: type)
        return out
      }
      throw bad("has no data for its \(count) elements")
    }
    out.field = field
    let bits = type.bitWidth ?? 0
    func expect(_ n: Int, _ want: Int, _ fieldName: String) throws {
      if n != want { throw bad("has \(n) values in \(fieldName) but dims \(dimsText(t)) of \(type) need \(want)") }
    }
    switch field {
    case .rawData:
      if rawLength != byteCount {
        throw bad("has \(rawLength) bytes of raw_data but dims \(dimsText(t)) of \(type) need \(byteCount)")
      }
      if let rawInFile {
        out.data = rawInFile
      } else {
        out.data = ByteBuffer(adoptingMalloced: UnsafeMutableRawPointer(p.raw_data.data), count: p.raw_data.len)
        t.pointee.raw_data.data = nil  // now owned by the ByteBuffer
        t.pointee.raw_data.len = 0
      }
    case .floatData:
      guard type == .float || type == .complex64 else { throw bad("is \(type) but stores float_data") }
      try expect(p.n_float_data, type == .complex64 ? count * 2 : count, "float_data")
      out.data = ByteBuffer(adoptingMalloced: UnsafeMutableRawPointer(p.float_data), count: p.n_float_data * 4)
      t.pointee.float_data = nil
      t.pointee.n_float_data = 0
    case .doubleData:
      guard type == .double || type == .complex128 else { throw bad("is \(type) but stores double_data") }
      try expect(p.n_double_data, type == .complex128 ? count * 2 : count, "double_data")
      out.data = ByteBuffer(adoptingMalloced: UnsafeMutableRawPointer(p.double_data), count: p.n_double_data * 8)
      t.pointee.double_data = nil
      t.pointee.n_double_data = 0
    case .int64Data:
      guard type == .int64 else { throw bad("is \(type) but stores int64_data") }
      try expect(p.n_int64_data, count, "int64_data")
      out.data = ByteBuffer(adoptingMalloced: UnsafeMutableRawPointer(p.int64_data), count: p.n_int64_data * 8)
      t.pointee.int64_data = nil
      t.pointee.n_int64_data = 0
    case .uint64Data:
      guard type == .uint64 || type == .uint32 else { throw bad("is \(type) but stores uint64_data") }
      try expect(p.n_uint64_data, count, "uint64_data")
      if type == .uint64 {
        out.data = ByteBuffer(adoptingMalloced: UnsafeMutableRawPointer(p.uint64_data), count: count * 8)
        t.pointee.uint64_data = nil
        t.pointee.n_uint64_data = 0
      } else {
        let src = UnsafeBufferPointer(start: p.uint64_data, count: count)
        out.data = ByteBuffer.make(count: count * 4) { dst in
          let d = dst.bindMemory(to: UInt32.self)
          for i in 0..<count { d[i] = UInt32(truncatingIfNeeded: src[i]) }
        }
      }
    case .int32Data:
      guard type != .int64 && type != .uint64 && type != .uint32 && type != .float && type != .double
        && type != .complex64 && type != .complex128
      else { throw bad("is \(type) but stores int32_data") }
      let perEntry = bits < 8 ? 8 / bits : 1
      try expect(p.n_int32_data, count / perEntry + (count % perEntry == 0 ? 0 : 1), "int32_data")
      let src = UnsafeBufferPointer(start: p.int32_data, count: p.n_int32_data)
      if type == .int32 {
        out.data = ByteBuffer(adoptingMalloced: UnsafeMutableRawPointer(p.int32_data), count: count * 4)
        t.pointee.int32_data = nil
        t.pointee.n_int32_data = 0
      } else if bits == 16 {
        out.data = ByteBuffer.make(count: src.count * 2) { dst in
          let d = dst.bindMemory(to: UInt16.self)
          for i in 0..<src.count { d[i] = UInt16(truncatingIfNeeded: src[i]) }
        }
      } else {
        // 8-bit types one per entry; 4- and 2-bit types already packed, one byte per entry.
        out.data = ByteBuffer.make(count: src.count) { dst in
          for i in 0..<src.count { dst[i] = UInt8(truncatingIfNeeded: src[i]) }
        }
      }
    case .stringData:
      throw bad("is \(type) but stores string_data")
    }
    return out
  }

  private func dimsText(_ t: UnsafeMutablePointer<Onnx__TensorProto>) -> String {
    "[" + UnsafeBufferPointer(start: t.pointee.dims, count: t.pointee.n_dims).map(String.init).joined(separator: ", ") + "]"
  }

  // MARK: - Small conversions

  static func varint(_ bytes: [UInt8]) -> Int? {
    var v = 0
    var shift = 0
    for b in bytes {
      if shift > 56 { return nil }
      v |= Int(b & 0x7F) << shift
      if b & 0x80 == 0 { return v }
      shift += 7
    }
    return nil
  }

  private func unknown<T>(_ message: UnsafeMutablePointer<T>) -> [UnknownField] {
    message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { m in
      let n = Int(m.pointee.n_unknown_fields)
      guard n > 0, let fields = m.pointee.unknown_fields else { return [] }
      unknownFieldCount += n
      return (0..<n).map { i in
        let f = fields[i]
        return UnknownField(tag: f.tag, wireType: UInt8(truncatingIfNeeded: f.wire_type.rawValue),
                            data: Array(UnsafeBufferPointer(start: f.data, count: f.len)))
      }
    }
  }
}

func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
  guard let p else { return "" }
  return String(cString: p)
}

func strings(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
  guard let p else { return [] }
  return (0..<n).map { string(p[$0]) }
}

func bytes(_ b: ProtobufCBinaryData) -> [UInt8] {
  guard let d = b.data, b.len > 0 else { return [] }
  return Array(UnsafeBufferPointer(start: d, count: b.len))
}

func pairs(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?) -> [StringPair] {
  list(n, p) { StringPair(string($0.pointee.key), string($0.pointee.value)) }
}

/// Maps a protobuf-c repeated message field (count + array of pointers), skipping NULL entries.
func list<C, T>(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<C>?>?,
                _ body: (UnsafeMutablePointer<C>) throws -> T) rethrows -> [T] {
  guard let p, n > 0 else { return [] }
  var out = [T]()
  out.reserveCapacity(n)
  for i in 0..<n { if let e = p[i] { out.append(try body(e)) } }
  return out
}
