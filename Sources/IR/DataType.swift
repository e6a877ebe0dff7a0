/// An ONNX tensor element type (`TensorProto.DataType`). A struct rather than an enum so that
/// a type code this build does not know (a newer IR version) can still be carried and written
/// back; `isKnown` says whether the code has a layout here.
public struct DataType: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public let rawValue: Int32
  public init(rawValue: Int32) { self.rawValue = rawValue }

  public static let undefined = DataType(rawValue: 0)
  public static let float = DataType(rawValue: 1)
  public static let uint8 = DataType(rawValue: 2)
  public static let int8 = DataType(rawValue: 3)
  public static let uint16 = DataType(rawValue: 4)
  public static let int16 = DataType(rawValue: 5)
  public static let int32 = DataType(rawValue: 6)
  public static let int64 = DataType(rawValue: 7)
  public static let string = DataType(rawValue: 8)
  public static let bool = DataType(rawValue: 9)
  public static let float16 = DataType(rawValue: 10)
  public static let double = DataType(rawValue: 11)
  public static let uint32 = DataType(rawValue: 12)
  public static let uint64 = DataType(rawValue: 13)
  public static let complex64 = DataType(rawValue: 14)
  public static let complex128 = DataType(rawValue: 15)
  public static let bfloat16 = DataType(rawValue: 16)
  public static let float8e4m3fn = DataType(rawValue: 17)
  public static let float8e4m3fnuz = DataType(rawValue: 18)
  public static let float8e5m2 = DataType(rawValue: 19)
  public static let float8e5m2fnuz = DataType(rawValue: 20)
  public static let uint4 = DataType(rawValue: 21)
  public static let int4 = DataType(rawValue: 22)
  public static let float4e2m1 = DataType(rawValue: 23)
  public static let float8e8m0 = DataType(rawValue: 24)
  public static let uint2 = DataType(rawValue: 25)
  public static let int2 = DataType(rawValue: 26)

  /// (name, bits per element) for every code with a storage layout, indexed by code; nil bits
  /// for string. An array, not a dictionary: `bitWidth` is read for every tensor a kernel makes,
  /// and hashing the code was a visible part of running small nodes.
  private static let traits: [(String, Int?)?] = [
    nil, ("float", 32), ("uint8", 8), ("int8", 8), ("uint16", 16), ("int16", 16),
    ("int32", 32), ("int64", 64), ("string", nil), ("bool", 8), ("float16", 16),
    ("double", 64), ("uint32", 32), ("uint64", 64), ("complex64", 64),
    ("complex128", 128), ("bfloat16", 16), ("float8e4m3fn", 8),
    ("float8e4m3fnuz", 8), ("float8e5m2", 8), ("float8e5m2fnuz", 8),
    ("uint4", 4), ("int4", 4), ("float4e2m1", 4), ("float8e8m0", 8),
    ("uint2", 2), ("int2", 2),
  ]

  private var traits: (String, Int?)? {
    rawValue >= 0 && Int(rawValue) < Self.traits.count ? Self.traits[Int(rawValue)] : nil
  }

  public var isKnown: Bool { traits != nil }

  public var name: String {
    if rawValue == 0 { return "undefined" }
    return traits?.0 ?? "unknown(\(rawValue))"
  }

  public var description: String { name }

  /// Bits per element; nil for string and for codes without a layout.
  public var bitWidth: Int? { traits?.1 ?? nil }

  /// Bytes needed for `count` elements packed as in `raw_data` (sub-byte types round up).
  public func byteCount(elements count: Int) -> Int? {
    guard let bits = bitWidth else { return nil }
    if bits >= 8 {
      let (r, o) = count.multipliedReportingOverflow(by: bits / 8)
      return o ? nil : r
    }
    let perByte = 8 / bits
    return count / perByte + (count % perByte == 0 ? 0 : 1)
  }

  public var isFloatingPoint: Bool {
    [1, 10, 11, 16, 17, 18, 19, 20, 23, 24].contains(rawValue)
  }

  public static func < (a: DataType, b: DataType) -> Bool { a.rawValue < b.rawValue }
}
