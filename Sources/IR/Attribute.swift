/// A node or function attribute (`AttributeProto`).
public struct Attribute: Equatable, Sendable {
  public indirect enum Value: Sendable {
    case float(Float)
    case int(Int64)
    case string([UInt8])
    case tensor(Tensor)
    case graph(Graph)
    case sparseTensor(SparseTensor)
    case type(TypeInfo)
    case floats([Float])
    case ints([Int64])
    case strings([[UInt8]])
    case tensors([Tensor])
    case graphs([Graph])
    case sparseTensors([SparseTensor])
    case types([TypeInfo])
    /// No value: a reference to a function attribute (`ref_attr_name`) of the declared type.
    case undefined(declaredType: Int32)
  }

  public var name: String
  public var value: Value
  /// In a function body: take the value of the caller's attribute with this name.
  public var refAttrName: String
  public var docString: String
  public var unknownFields: [UnknownField]

  public init(name: String, value: Value, refAttrName: String = "", docString: String = "",
              unknownFields: [UnknownField] = []) {
    self.name = name; self.value = value; self.refAttrName = refAttrName
    self.docString = docString; self.unknownFields = unknownFields
  }

  /// The subgraphs this attribute holds (If branches, Loop/Scan bodies).
  public var subgraphs: [Graph] {
    switch value {
    case .graph(let g): return [g]
    case .graphs(let gs): return gs
    default: return []
    }
  }

  public var int: Int64? { if case .int(let v) = value { return v } else { return nil } }
  public var ints: [Int64]? { if case .ints(let v) = value { return v } else { return nil } }
  public var float: Float? { if case .float(let v) = value { return v } else { return nil } }
  public var tensor: Tensor? { if case .tensor(let t) = value { return t } else { return nil } }
  public var string: String? {
    if case .string(let s) = value { return String(decoding: s, as: UTF8.self) } else { return nil }
  }
}

extension Attribute.Value: Equatable {
  /// Floats compare by bit pattern so that NaN attributes survive a round-trip comparison.
  public static func == (a: Self, b: Self) -> Bool {
    switch (a, b) {
    case (.float(let x), .float(let y)): return x.bitPattern == y.bitPattern
    case (.floats(let x), .floats(let y)): return x.map(\.bitPattern) == y.map(\.bitPattern)
    case (.int(let x), .int(let y)): return x == y
    case (.string(let x), .string(let y)): return x == y
    case (.tensor(let x), .tensor(let y)): return x == y
    case (.graph(let x), .graph(let y)): return x == y
    case (.sparseTensor(let x), .sparseTensor(let y)): return x == y
    case (.type(let x), .type(let y)): return x == y
    case (.ints(let x), .ints(let y)): return x == y
    case (.strings(let x), .strings(let y)): return x == y
    case (.tensors(let x), .tensors(let y)): return x == y
    case (.graphs(let x), .graphs(let y)): return x == y
    case (.sparseTensors(let x), .sparseTensors(let y)): return x == y
    case (.types(let x), .types(let y)): return x == y
    case (.undefined(let x), .undefined(let y)): return x == y
    default: return false
    }
  }
}
