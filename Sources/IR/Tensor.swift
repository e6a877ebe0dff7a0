import Support

/// Which `TensorProto` field held a tensor's elements in the file it was read from. The
/// writer puts them back in the same field so a round trip changes nothing a reader can see.
public enum TensorStorageField: String, Sendable, Codable {
  case rawData = "raw_data"
  case floatData = "float_data"
  case int32Data = "int32_data"
  case int64Data = "int64_data"
  case doubleData = "double_data"
  case uint64Data = "uint64_data"
  case stringData = "string_data"

  /// The typed field ONNX defines for elements of `type`.
  public static func typed(for type: DataType) -> TensorStorageField {
    switch type {
    case .float, .complex64: return .floatData
    case .double, .complex128: return .doubleData
    case .int64: return .int64Data
    case .uint32, .uint64: return .uint64Data
    case .string: return .stringData
    default: return .int32Data
    }
  }
}

/// Where an external tensor's bytes were found: `location` relative to the model's directory.
public struct ExternalDataInfo: Equatable, Sendable {
  public var location: String
  public var offset: Int
  public var length: Int
  public var checksum: String?
  public init(location: String, offset: Int, length: Int, checksum: String? = nil) {
    self.location = location; self.offset = offset; self.length = length; self.checksum = checksum
  }
}

public struct TensorSegment: Equatable, Sendable {
  public var begin: Int64
  public var end: Int64
  public init(begin: Int64, end: Int64) { self.begin = begin; self.end = end }
}

/// A constant tensor. Elements are held in one layout whatever the file used: little-endian,
/// densely packed as in `raw_data` (sub-byte types two or four to a byte, low bits first), or
/// a list of byte strings for `string` tensors.
public struct Tensor: Sendable {
  public var name: String
  public var dataType: DataType
  public var dims: [Int64]
  public var data: ByteBuffer
  public var strings: [[UInt8]]
  /// The field the elements came from; the writer keeps it unless external data is requested.
  public var storedIn: TensorStorageField
  /// Set when the elements were read from an external file.
  public var external: ExternalDataInfo?
  public var segment: TensorSegment?
  public var docString: String
  public var metadata: [StringPair]
  public var unknownFields: [UnknownField]

  public init(name: String, dataType: DataType, dims: [Int64], data: ByteBuffer,
              strings: [[UInt8]] = [], storedIn: TensorStorageField = .rawData,
              external: ExternalDataInfo? = nil, segment: TensorSegment? = nil,
              docString: String = "", metadata: [StringPair] = [], unknownFields: [UnknownField] = []) {
    self.name = name; self.dataType = dataType; self.dims = dims; self.data = data
    self.strings = strings; self.storedIn = storedIn; self.external = external
    self.segment = segment; self.docString = docString; self.metadata = metadata
    self.unknownFields = unknownFields
  }

  /// Number of elements; dims were checked for overflow when the tensor was read.
  public var elementCount: Int {
    dims.reduce(1) { a, d in a.multipliedReportingOverflow(by: Int(clamping: d)).partialValue }
  }

  /// Bytes of element data (string tensors: the sum of their lengths).
  public var byteCount: Int {
    dataType == .string ? strings.reduce(0) { $0 + $1.count } : data.count
  }
}

extension Tensor: Equatable {
  /// Content equality: where the bytes live (inline or external, which field) is a matter of
  /// serialization and is not compared.
  public static func == (a: Tensor, b: Tensor) -> Bool {
    a.name == b.name && a.dataType == b.dataType && a.dims == b.dims && a.data == b.data
      && a.strings == b.strings && a.segment == b.segment && a.docString == b.docString
      && a.metadata == b.metadata && a.unknownFields == b.unknownFields
  }
}

/// A sparse tensor in coordinate form (`SparseTensorProto`).
public struct SparseTensor: Equatable, Sendable {
  public var values: Tensor
  public var indices: Tensor
  public var dims: [Int64]
  public init(values: Tensor, indices: Tensor, dims: [Int64]) {
    self.values = values; self.indices = indices; self.dims = dims
  }
  public var name: String { values.name }
}
