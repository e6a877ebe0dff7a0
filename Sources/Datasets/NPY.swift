import IR
import Runtime
import Support

/// NumPy `.npy` files: version 1–3 headers, little-endian numeric and bool dtypes, C order.
public enum NPY {
  static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

  private static let dtypes: [String: DataType] = [
    "f4": .float, "f8": .double, "f2": .float16, "i8": .int64, "i4": .int32, "i2": .int16, "i1": .int8,
    "u1": .uint8, "u2": .uint16, "u4": .uint32, "u8": .uint64, "b1": .bool,
  ]

  /// Parses one `.npy` image; `name` is used in error messages.
  public static func decode(_ bytes: UnsafeRawBufferPointer, name: String) throws -> NDArray {
    func bad(_ why: String) -> CompressorError { .invalid("\(name): not a valid .npy file: \(why)") }
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw bad("wrong magic") }
    let major = bytes[6]
    let headerLength: Int, headerStart: Int
    switch major {
    case 1:
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
      headerStart = 10
    case 2, 3:
      guard bytes.count >= 12 else { throw bad("truncated header") }
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
      headerStart = 12
    default:
      throw bad("version \(major) is not supported")
    }
    guard headerLength <= 1 << 20, headerStart + headerLength <= bytes.count else { throw bad("truncated header") }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    guard let descr = field(header, "descr"), let fortran = field(header, "fortran_order"), let shapeText = field(header, "shape") else {
      throw bad("the header lacks descr, fortran_order or shape")
    }
    if fortran.hasPrefix("True") {
      throw CompressorError.invalid("\(name): Fortran-ordered arrays are not supported; save it with numpy.ascontiguousarray")
    }
    let d = descr.trimmingQuotes()
    guard let order = d.first, let type = dtypes[String(d.dropFirst())] else { throw bad("dtype \(d) is not supported") }
    if order == ">" && (type.bitWidth ?? 8) > 8 { throw bad("big-endian dtype \(d) is not supported") }
    guard shapeText.hasPrefix("(") else { throw bad("shape \(shapeText) is not a tuple") }
    let inner = shapeText.dropFirst().prefix { $0 != ")" }
    let parts = inner.split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
    var shape = [Int]()
    for p in parts {
      guard let v = Int(p), v >= 0 else { throw bad("shape \(shapeText) has an invalid dimension") }
      shape.append(v)
    }
    let count = try Checked.product(shape.map { Int64($0) }, "\(name): shape")
    guard let size = type.byteCount(elements: count) else { throw bad("shape \(shape) is too large") }
    let dataStart = headerStart + headerLength
    guard bytes.count - dataStart == size else {
      throw bad("the header promises shape \(shape) of \(type) (\(size) bytes) but \(bytes.count - dataStart) bytes follow")
    }
    try NDArray.checkAllocation(shape, type, what: "\(name): the array")
    var out = NDArray(uninitialized: type, shape)
    if size > 0, let src = bytes.baseAddress {
      out.withUnsafeMutableBytes { $0.baseAddress?.copyMemory(from: src + dataStart, byteCount: size) }
    }
    return out
  }

  /// The value of `key` in a Python dict literal header (simple, as numpy writes it).
  private static func field(_ header: String, _ key: String) -> String? {
    guard let r = header.range(of: "'\(key)':") ?? header.range(of: "\"\(key)\":") else { return nil }
    let rest = header[r.upperBound...].drop { $0 == " " }
    if rest.hasPrefix("(") { return String(rest.prefix { $0 != ")" }) + ")" }
    return String(rest.prefix { $0 != "," && $0 != "}" }).trimmingCharacters()
  }

  /// A version 1.0 `.npy` image of `array`.
  public static func encode(_ array: NDArray) throws -> [UInt8] {
    // bfloat16 has no numpy dtype; like numpy with ml_dtypes, write its bits as 2-byte voids.
    guard let code = array.dataType == .bfloat16 ? "V2" : dtypes.first(where: { $0.value == array.dataType })?.key else {
      throw CompressorError.unsupported("\(array.dataType) tensors cannot be written as .npy")
    }
    let order = code == "i1" || code == "u1" || code == "b1" ? "|" : "<"
    let dims = array.shape.map(String.init)
    let shape = dims.count == 1 ? "(\(dims[0]),)" : "(" + dims.joined(separator: ", ") + ")"
    var header = "{'descr': '\(order)\(code)', 'fortran_order': False, 'shape': \(shape), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var out = magic + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
    out += Array(header.utf8)
    array.withUnsafeBytes { out += $0 }
    return out
  }
}

extension String {
  func trimmingCharacters() -> String {
    String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
  }
  func trimmingQuotes() -> String {
    String(filter { $0 != "'" && $0 != "\"" })
  }
}

extension Substring {
  func trimmingCharacters() -> String { String(self).trimmingCharacters() }
}
