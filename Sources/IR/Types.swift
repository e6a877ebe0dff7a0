/// A key/value pair (`StringStringEntryProto`): metadata, external-data keys, bindings.
public struct StringPair: Equatable, Sendable {
  public var key: String
  public var value: String
  public init(_ key: String, _ value: String) { self.key = key; self.value = value }
}

/// A field the schema does not know (from a newer IR version, or a private extension),
/// carried verbatim so that writing the model back loses nothing.
public struct UnknownField: Equatable, Sendable {
  public var tag: UInt32
  public var wireType: UInt8
  /// The bytes after the tag, as protobuf-c keeps them (with the length prefix for wire type 2).
  public var data: [UInt8]
  public init(tag: UInt32, wireType: UInt8, data: [UInt8]) {
    self.tag = tag; self.wireType = wireType; self.data = data
  }
}

/// One dimension of a shape: a number, a symbol such as "batch", or nothing known.
public struct Dimension: Equatable, Sendable, CustomStringConvertible {
  public enum Value: Equatable, Sendable {
    case known(Int64)
    case symbolic(String)
    case unknown
  }
  public var value: Value
  public var denotation: String

  public init(_ value: Value, denotation: String = "") {
    self.value = value; self.denotation = denotation
  }

  /// The size this dimension fixes, if it fixes one. ONNX Runtime reads a `dim_value` of 0 or
  /// less as unknown (Paddle2ONNX writes -1 for "any"), so only positive values are sizes; the
  /// value itself is kept as read so that the model is written back unchanged.
  public var size: Int64? {
    if case .known(let v) = value, v > 0 { return v }
    return nil
  }

  public var description: String {
    switch value {
    case .known(let v): return v > 0 ? String(v) : "?"
    case .symbolic(let s): return s
    case .unknown: return "?"
    }
  }
}

public struct TensorShape: Equatable, Sendable, CustomStringConvertible {
  public var dims: [Dimension]
  public init(_ dims: [Dimension]) { self.dims = dims }
  public var description: String { "[" + dims.map(\.description).joined(separator: ", ") + "]" }
}

/// The type of a value (`TypeProto`).
public struct TypeInfo: Equatable, Sendable {
  public indirect enum Kind: Equatable, Sendable {
    case tensor(elementType: DataType, shape: TensorShape?)
    case sparseTensor(elementType: DataType, shape: TensorShape?)
    case sequence(TypeInfo?)
    case map(keyType: DataType, valueType: TypeInfo?)
    case optional(TypeInfo?)
    case opaque(domain: String, name: String)
    case none
  }
  public var kind: Kind
  public var denotation: String

  public init(_ kind: Kind, denotation: String = "") {
    self.kind = kind; self.denotation = denotation
  }

  public static func tensor(_ t: DataType, _ shape: TensorShape?) -> TypeInfo {
    TypeInfo(.tensor(elementType: t, shape: shape))
  }

  public var description: String {
    switch kind {
    case .tensor(let t, let s): return "tensor(\(t))" + (s.map { " \($0)" } ?? "")
    case .sparseTensor(let t, let s): return "sparse_tensor(\(t))" + (s.map { " \($0)" } ?? "")
    case .sequence(let e): return "seq(\(e?.description ?? "?"))"
    case .map(let k, let v): return "map(\(k), \(v?.description ?? "?"))"
    case .optional(let e): return "optional(\(e?.description ?? "?"))"
    case .opaque(let d, let n): return "opaque(\(d).\(n))"
    case .none: return "?"
    }
  }
}

/// Name, type and shape of a graph input, output or intermediate value.
public struct ValueInfo: Equatable, Sendable {
  public var name: String
  public var type: TypeInfo?
  public var docString: String
  public var metadata: [StringPair]

  public init(name: String, type: TypeInfo?, docString: String = "", metadata: [StringPair] = []) {
    self.name = name; self.type = type; self.docString = docString; self.metadata = metadata
  }
}

public struct OpsetImport: Equatable, Sendable {
  public var domain: String
  public var version: Int64
  public init(domain: String, version: Int64) { self.domain = domain; self.version = version }

  /// "" and "ai.onnx" both name the standard operator set.
  public var isDefaultDomain: Bool { domain.isEmpty || domain == "ai.onnx" }
}
