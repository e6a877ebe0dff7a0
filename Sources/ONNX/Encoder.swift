#if canImport(Glibc)
import Glibc
#endif
import CONNX
import CProtobufC
import IR
import Support

/// Owns every C allocation made to express a model as protobuf-c structs for packing.
/// Element buffers are not copied: `raw_data` points straight at the tensors' bytes.
final class CArena {
  private var blocks: [UnsafeMutableRawPointer] = []

  deinit { for b in blocks { b.deallocate() } }

  func allocate<T>(_: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
    // Zeroed, like calloc: protobuf-c reads every field of the structs built here.
    let bytes = max(count, 1) * MemoryLayout<T>.stride
    let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: max(MemoryLayout<T>.alignment, 16))
    p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    blocks.append(p)
    return p.bindMemory(to: T.self, capacity: max(count, 1))
  }

  /// A C string, or NULL for "" so that absent and empty fields are written the same way.
  func optionalString(_ s: String) -> UnsafeMutablePointer<CChar>? {
    s.isEmpty ? nil : string(s)
  }

  func string(_ s: String) -> UnsafeMutablePointer<CChar> {
    let utf8 = Array(s.utf8CString)
    let p = allocate(CChar.self, count: utf8.count)
    p.update(from: utf8, count: utf8.count)
    return p
  }

  func strings(_ list: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
    if list.isEmpty { return nil }
    let a = allocate(UnsafeMutablePointer<CChar>?.self, count: list.count)
    for (i, s) in list.enumerated() { a[i] = string(s) }
    return a
  }

  func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
    if values.isEmpty { return nil }
    let a = allocate(T.self, count: values.count)
    a.initialize(from: values, count: values.count)
    return a
  }

  func binary(_ b: [UInt8]) -> ProtobufCBinaryData {
    ProtobufCBinaryData(len: b.count, data: copy(b))
  }

  /// An array of pointers to messages made by `make`.
  func messages<E, T>(_ items: [E], _ make: (E) throws -> UnsafeMutablePointer<T>) rethrows
    -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>?
  {
    if items.isEmpty { return nil }
    let a = allocate(UnsafeMutablePointer<T>?.self, count: items.count)
    for (i, e) in items.enumerated() { a[i] = try make(e) }
    return a
  }
}

/// Where the writer puts a tensor's elements: inline, or at a place in the external data file
/// that `externalize` has just written them to.
struct TensorPlacement {
  /// Returns the external location for a tensor that should leave the model file, or nil.
  var externalize: (Tensor) throws -> ExternalDataInfo?
}

/// Builds protobuf-c structs for the IR. The result lives as long as the encoder's arena.
final class Encoder {
  let arena = CArena()
  let placement: TensorPlacement

  init(placement: TensorPlacement) { self.placement = placement }

  func model(_ m: Model) throws -> UnsafeMutablePointer<Onnx__ModelProto> {
    let p = arena.allocate(Onnx__ModelProto.self)
    onnx__model_proto__init(p)
    p.pointee.has_ir_version = 1
    p.pointee.ir_version = m.irVersion
    p.pointee.n_opset_import = m.opsetImports.count
    p.pointee.opset_import = arena.messages(m.opsetImports, opset)
    p.pointee.producer_name = arena.optionalString(m.producerName)
    p.pointee.producer_version = arena.optionalString(m.producerVersion)
    p.pointee.domain = arena.optionalString(m.domain)
    if m.modelVersion != 0 {
      p.pointee.has_model_version = 1
      p.pointee.model_version = m.modelVersion
    }
    p.pointee.doc_string = arena.optionalString(m.docString)
    p.pointee.graph = try graph(m.graph, initializersMayLeave: true)
    (p.pointee.n_metadata_props, p.pointee.metadata_props) = pairs(m.metadata)
    p.pointee.n_training_info = m.trainingInfo.count
    p.pointee.training_info = try arena.messages(m.trainingInfo, trainingInfo)
    p.pointee.n_functions = m.functions.count
    p.pointee.functions = try arena.messages(m.functions, function)
    setUnknown(p, m.unknownFields)
    return p
  }

  /// Initializers of every graph may go to external data; tensors in attributes stay inline,
  /// where every runtime can read them.
  func graph(_ g: Graph, initializersMayLeave: Bool = true) throws -> UnsafeMutablePointer<Onnx__GraphProto> {
    let p = arena.allocate(Onnx__GraphProto.self)
    onnx__graph_proto__init(p)
    p.pointee.n_node = g.nodes.count
    p.pointee.node = try arena.messages(g.nodes, node)
    p.pointee.name = arena.optionalString(g.name)
    p.pointee.n_initializer = g.initializers.count
    p.pointee.initializer = try arena.messages(g.initializers) { try tensor($0, mayLeave: initializersMayLeave) }
    p.pointee.n_sparse_initializer = g.sparseInitializers.count
    p.pointee.sparse_initializer = try arena.messages(g.sparseInitializers, sparseTensor)
    p.pointee.doc_string = arena.optionalString(g.docString)
    p.pointee.n_input = g.inputs.count
    p.pointee.input = arena.messages(g.inputs, valueInfo)
    p.pointee.n_output = g.outputs.count
    p.pointee.output = arena.messages(g.outputs, valueInfo)
    p.pointee.n_value_info = g.valueInfo.count
    p.pointee.value_info = arena.messages(g.valueInfo, valueInfo)
    p.pointee.n_quantization_annotation = g.quantizationAnnotations.count
    p.pointee.quantization_annotation = arena.messages(g.quantizationAnnotations) { a in
      let q = arena.allocate(Onnx__TensorAnnotation.self)
      onnx__tensor_annotation__init(q)
      q.pointee.tensor_name = arena.optionalString(a.tensorName)
      (q.pointee.n_quant_parameter_tensor_names, q.pointee.quant_parameter_tensor_names) = pairs(a.quantParameterTensorNames)
      return q
    }
    (p.pointee.n_metadata_props, p.pointee.metadata_props) = pairs(g.metadata)
    setUnknown(p, g.unknownFields)
    return p
  }

  func node(_ n: Node) throws -> UnsafeMutablePointer<Onnx__NodeProto> {
    let p = arena.allocate(Onnx__NodeProto.self)
    onnx__node_proto__init(p)
    p.pointee.n_input = n.inputs.count
    p.pointee.input = arena.strings(n.inputs)
    p.pointee.n_output = n.outputs.count
    p.pointee.output = arena.strings(n.outputs)
    p.pointee.name = arena.optionalString(n.name)
    p.pointee.op_type = arena.optionalString(n.opType)
    p.pointee.domain = arena.optionalString(n.domain)
    p.pointee.overload = arena.optionalString(n.overload)
    p.pointee.n_attribute = n.attributes.count
    p.pointee.attribute = try arena.messages(n.attributes, attribute)
    p.pointee.doc_string = arena.optionalString(n.docString)
    (p.pointee.n_metadata_props, p.pointee.metadata_props) = pairs(n.metadata)
    setUnknown(p, n.unknownFields)
    return p
  }

  func attribute(_ a: Attribute) throws -> UnsafeMutablePointer<Onnx__AttributeProto> {
    let p = arena.allocate(Onnx__AttributeProto.self)
    onnx__attribute_proto__init(p)
    p.pointee.name = arena.optionalString(a.name)
    p.pointee.ref_attr_name = arena.optionalString(a.refAttrName)
    p.pointee.doc_string = arena.optionalString(a.docString)
    var type: Int32
    switch a.value {
    case .float(let f): type = 1; p.pointee.has_f = 1; p.pointee.f = f
    case .int(let i): type = 2; p.pointee.has_i = 1; p.pointee.i = i
    case .string(let s): type = 3; p.pointee.has_s = 1; p.pointee.s = arena.binary(s)
    case .tensor(let t): type = 4; p.pointee.t = try tensor(t, mayLeave: false)
    case .graph(let g): type = 5; p.pointee.g = try graph(g)
    case .sparseTensor(let s): type = 11; p.pointee.sparse_tensor = try sparseTensor(s)
    case .type(let t): type = 13; p.pointee.tp = typeProto(t)
    case .floats(let v): type = 6; p.pointee.n_floats = v.count; p.pointee.floats = arena.copy(v)
    case .ints(let v): type = 7; p.pointee.n_ints = v.count; p.pointee.ints = arena.copy(v)
    case .strings(let v):
      type = 8
      p.pointee.n_strings = v.count
      p.pointee.strings = arena.copy(v.map { arena.binary($0) })
    case .tensors(let v): type = 9; p.pointee.n_tensors = v.count; p.pointee.tensors = try arena.messages(v) { try tensor($0, mayLeave: false) }
    case .graphs(let v): type = 10; p.pointee.n_graphs = v.count; p.pointee.graphs = try arena.messages(v) { try graph($0) }
    case .sparseTensors(let v): type = 12; p.pointee.n_sparse_tensors = v.count; p.pointee.sparse_tensors = try arena.messages(v, sparseTensor)
    case .types(let v): type = 14; p.pointee.n_type_protos = v.count; p.pointee.type_protos = arena.messages(v, typeProto)
    case .undefined(let declared): type = declared
    }
    if type != 0 {
      p.pointee.has_type = 1
      p.pointee.type = Onnx__AttributeProto__AttributeType(rawValue: UInt32(bitPattern: type))
    }
    setUnknown(p, a.unknownFields)
    return p
  }

  func valueInfo(_ v: ValueInfo) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
    let p = arena.allocate(Onnx__ValueInfoProto.self)
    onnx__value_info_proto__init(p)
    p.pointee.name = arena.optionalString(v.name)
    p.pointee.type = v.type.map(typeProto)
    p.pointee.doc_string = arena.optionalString(v.docString)
    (p.pointee.n_metadata_props, p.pointee.metadata_props) = pairs(v.metadata)
    return p
  }

  func typeProto(_ t: TypeInfo) -> UnsafeMutablePointer<Onnx__TypeProto> {
    let p = arena.allocate(Onnx__TypeProto.self)
    onnx__type_proto__init(p)
    p.pointee.denotation = arena.optionalString(t.denotation)
    switch t.kind {
    case .tensor(let e, let s):
      let q = arena.allocate(Onnx__TypeProto__Tensor.self)
      onnx__type_proto__tensor__init(q)
      if e != .undefined { q.pointee.has_elem_type = 1; q.pointee.elem_type = e.rawValue }
      q.pointee.shape = s.map(shape)
      p.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
      p.pointee.tensor_type = q
    case .sparseTensor(let e, let s):
      let q = arena.allocate(Onnx__TypeProto__SparseTensor.self)
      onnx__type_proto__sparse_tensor__init(q)
      if e != .undefined { q.pointee.has_elem_type = 1; q.pointee.elem_type = e.rawValue }
      q.pointee.shape = s.map(shape)
      p.pointee.value_case = ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE
      p.pointee.sparse_tensor_type = q
    case .sequence(let e):
      let q = arena.allocate(Onnx__TypeProto__Sequence.self)
      onnx__type_proto__sequence__init(q)
      q.pointee.elem_type = e.map(typeProto)
      p.pointee.value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE
      p.pointee.sequence_type = q
    case .map(let k, let v):
      let q = arena.allocate(Onnx__TypeProto__Map.self)
      onnx__type_proto__map__init(q)
      if k != .undefined { q.pointee.has_key_type = 1; q.pointee.key_type = k.rawValue }
      q.pointee.value_type = v.map(typeProto)
      p.pointee.value_case = ONNX__TYPE_PROTO__VALUE_MAP_TYPE
      p.pointee.map_type = q
    case .optional(let e):
      let q = arena.allocate(Onnx__TypeProto__Optional.self)
      onnx__type_proto__optional__init(q)
      q.pointee.elem_type = e.map(typeProto)
      p.pointee.value_case = ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE
      p.pointee.optional_type = q
    case .opaque(let d, let n):
      let q = arena.allocate(Onnx__TypeProto__Opaque.self)
      onnx__type_proto__opaque__init(q)
      q.pointee.domain = arena.optionalString(d)
      q.pointee.name = arena.optionalString(n)
      p.pointee.value_case = ONNX__TYPE_PROTO__VALUE_OPAQUE_TYPE
      p.pointee.opaque_type = q
    case .none:
      break
    }
    return p
  }

  func shape(_ s: TensorShape) -> UnsafeMutablePointer<Onnx__TensorShapeProto> {
    let p = arena.allocate(Onnx__TensorShapeProto.self)
    onnx__tensor_shape_proto__init(p)
    p.pointee.n_dim = s.dims.count
    p.pointee.dim = arena.messages(s.dims) { d in
      let q = arena.allocate(Onnx__TensorShapeProto__Dimension.self)
      onnx__tensor_shape_proto__dimension__init(q)
      q.pointee.denotation = arena.optionalString(d.denotation)
      switch d.value {
      case .known(let v):
        q.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
        q.pointee.dim_value = v
      case .symbolic(let s):
        q.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
        q.pointee.dim_param = arena.string(s)
      case .unknown:
        break
      }
      return q
    }
    return p
  }

  func opset(_ o: OpsetImport) -> UnsafeMutablePointer<Onnx__OperatorSetIdProto> {
    let p = arena.allocate(Onnx__OperatorSetIdProto.self)
    onnx__operator_set_id_proto__init(p)
    p.pointee.domain = arena.string(o.domain)  // "" is meaningful here and always written
    p.pointee.has_version = 1
    p.pointee.version = o.version
    return p
  }

  func trainingInfo(_ t: TrainingInfo) throws -> UnsafeMutablePointer<Onnx__TrainingInfoProto> {
    let p = arena.allocate(Onnx__TrainingInfoProto.self)
    onnx__training_info_proto__init(p)
    p.pointee.initialization = try t.initialization.map { try graph($0) }
    p.pointee.algorithm = try t.algorithm.map { try graph($0) }
    (p.pointee.n_initialization_binding, p.pointee.initialization_binding) = pairs(t.initializationBinding)
    (p.pointee.n_update_binding, p.pointee.update_binding) = pairs(t.updateBinding)
    return p
  }

  func function(_ f: Function) throws -> UnsafeMutablePointer<Onnx__FunctionProto> {
    let p = arena.allocate(Onnx__FunctionProto.self)
    onnx__function_proto__init(p)
    p.pointee.name = arena.optionalString(f.name)
    p.pointee.n_input = f.inputs.count
    p.pointee.input = arena.strings(f.inputs)
    p.pointee.n_output = f.outputs.count
    p.pointee.output = arena.strings(f.outputs)
    p.pointee.n_attribute = f.attributeNames.count
    p.pointee.attribute = arena.strings(f.attributeNames)
    p.pointee.n_attribute_proto = f.attributeDefaults.count
    p.pointee.attribute_proto = try arena.messages(f.attributeDefaults, attribute)
    p.pointee.n_node = f.nodes.count
    p.pointee.node = try arena.messages(f.nodes, node)
    p.pointee.doc_string = arena.optionalString(f.docString)
    p.pointee.n_opset_import = f.opsetImports.count
    p.pointee.opset_import = arena.messages(f.opsetImports, opset)
    p.pointee.domain = arena.optionalString(f.domain)
    p.pointee.overload = arena.optionalString(f.overload)
    p.pointee.n_value_info = f.valueInfo.count
    p.pointee.value_info = arena.messages(f.valueInfo, valueInfo)
    (p.pointee.n_metadata_props, p.pointee.metadata_props) = pairs(f.metadata)
    setUnknown(p, f.unknownFields)
    return p
  }

  func sparseTensor(_ s: SparseTensor) throws -> UnsafeMutablePointer<Onnx__SparseTensorProto> {
    let p = arena.allocate(Onnx__SparseTensorProto.self)
    onnx__sparse_tensor_proto__init(p)
    p.pointee.values = try tensor(s.values, mayLeave: false)
    p.pointee.indices = try tensor(s.indices, mayLeave: false)
    p.pointee.n_dims = s.dims.count
    p.pointee.dims = arena.copy(s.dims)
    return p
  }

  func tensor(_ t: Tensor, mayLeave: Bool) throws -> UnsafeMutablePointer<Onnx__TensorProto> {
    let p = arena.allocate(Onnx__TensorProto.self)
    onnx__tensor_proto__init(p)
    p.pointee.n_dims = t.dims.count
    p.pointee.dims = arena.copy(t.dims)
    p.pointee.has_data_type = 1
    p.pointee.data_type = t.dataType.rawValue
    if let s = t.segment {
      let q = arena.allocate(Onnx__TensorProto__Segment.self)
      onnx__tensor_proto__segment__init(q)
      q.pointee.has_begin = 1; q.pointee.begin = s.begin
      q.pointee.has_end = 1; q.pointee.end = s.end
      p.pointee.segment = q
    }
    p.pointee.name = arena.optionalString(t.name)
    p.pointee.doc_string = arena.optionalString(t.docString)
    (p.pointee.n_metadata_props, p.pointee.metadata_props) = pairs(t.metadata)
    setUnknown(p, t.unknownFields)

    if t.dataType == .string {
      p.pointee.n_string_data = t.strings.count
      p.pointee.string_data = arena.copy(t.strings.map { arena.binary($0) })
      return p
    }
    if mayLeave, let ext = try placement.externalize(t) {
      p.pointee.has_data_location = 1
      p.pointee.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
      var entries = [StringPair("location", ext.location), StringPair("offset", String(ext.offset)),
                     StringPair("length", String(ext.length))]
      if let c = ext.checksum { entries.append(StringPair("checksum", c)) }
      (p.pointee.n_external_data, p.pointee.external_data) = pairs(entries)
      return p
    }
    let count = t.data.count
    let src = UnsafeMutableRawPointer(mutating: t.data.base)
    let bits = t.dataType.bitWidth ?? 8
    // Typed fields point at the tensor's bytes when the layout already matches; otherwise widen.
    func direct<T>(_: T.Type) -> UnsafeMutablePointer<T>? {
      guard let src, count > 0 else { return nil }
      if Int(bitPattern: src) % MemoryLayout<T>.alignment == 0 { return src.assumingMemoryBound(to: T.self) }
      let a = arena.allocate(T.self, count: count / MemoryLayout<T>.stride)
      UnsafeMutableRawPointer(a).copyMemory(from: src, byteCount: count)
      return a
    }
    switch t.storedIn {
    case .floatData:
      p.pointee.n_float_data = count / 4
      p.pointee.float_data = direct(Float.self)
    case .doubleData:
      p.pointee.n_double_data = count / 8
      p.pointee.double_data = direct(Double.self)
    case .int64Data:
      p.pointee.n_int64_data = count / 8
      p.pointee.int64_data = direct(Int64.self)
    case .uint64Data where t.dataType == .uint64:
      p.pointee.n_uint64_data = count / 8
      p.pointee.uint64_data = direct(UInt64.self)
    case .uint64Data:
      let n = count / 4
      let a = arena.allocate(UInt64.self, count: n)
      t.data.withUnsafeBytes { raw in for i in 0..<n { a[i] = UInt64(raw.load(fromByteOffset: i * 4, as: UInt32.self)) } }
      p.pointee.n_uint64_data = n
      p.pointee.uint64_data = a
    case .int32Data where t.dataType == .int32:
      p.pointee.n_int32_data = count / 4
      p.pointee.int32_data = direct(Int32.self)
    case .int32Data:
      let signed = t.dataType == .int8 || t.dataType == .int16
      let n = bits == 16 ? count / 2 : count
      let a = arena.allocate(Int32.self, count: n)
      t.data.withUnsafeBytes { raw in
        for i in 0..<n {
          if bits == 16 {
            let v = raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            a[i] = signed ? Int32(Int16(bitPattern: v)) : Int32(v)
          } else {
            let v = raw[i]
            a[i] = signed ? Int32(Int8(bitPattern: v)) : Int32(v)
          }
        }
      }
      p.pointee.n_int32_data = n
      p.pointee.int32_data = a
    case .rawData, .stringData:
      p.pointee.has_raw_data = 1
      p.pointee.raw_data = ProtobufCBinaryData(len: count, data: src?.assumingMemoryBound(to: UInt8.self))
    }
    return p
  }

  private func pairs(_ list: [StringPair]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?) {
    (list.count, arena.messages(list) { e in
      let q = arena.allocate(Onnx__StringStringEntryProto.self)
      onnx__string_string_entry_proto__init(q)
      q.pointee.key = arena.string(e.key)
      q.pointee.value = arena.string(e.value)
      return q
    })
  }

  private func setUnknown<T>(_ message: UnsafeMutablePointer<T>, _ fields: [UnknownField]) {
    if fields.isEmpty { return }
    let a = arena.allocate(ProtobufCMessageUnknownField.self, count: fields.count)
    for (i, f) in fields.enumerated() {
      a[i].tag = f.tag
      a[i].wire_type = ProtobufCWireType(rawValue: UInt32(f.wireType))
      a[i].len = f.data.count
      a[i].data = arena.copy(f.data)
    }
    message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { m in
      m.pointee.n_unknown_fields = UInt32(fields.count)
      m.pointee.unknown_fields = a
    }
  }
}
