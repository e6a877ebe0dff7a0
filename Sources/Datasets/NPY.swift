import IR
import Runtime
import Support

/// NumPy `.npy` files: version 1–3 headers, little-endian numeric and bool dtypes, and fixed-width
/// strings (`<U` UTF-32 and `|S` bytes, NUL-padded) for string tensors; C order.
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
    if let kind = d.dropFirst().first, kind == "U" || kind == "S" {
      return try decodeStrings(bytes, name: name, descr: d, shapeText: shapeText, dataStart: headerStart + headerLength)
    }
    guard let order = d.first, let type = dtypes[String(d.dropFirst())] else { throw bad("dtype \(d) is not supported") }
    if order == ">" && (type.bitWidth ?? 8) > 8 { throw bad("big-endian dtype \(d) is not supported") }
    let shape = try parseShape(shapeText, bad)
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

  private static func parseShape(_ shapeText: String, _ bad: (String) -> CompressorError) throws -> [Int] {
    guard shapeText.hasPrefix("(") else { throw bad("shape \(shapeText) is not a tuple") }
    let inner = shapeText.dropFirst().prefix { $0 != ")" }
    let parts = inner.split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
    var shape = [Int]()
    for p in parts {
      guard let v = Int(p), v >= 0 else { throw bad("shape \(shapeText) has an invalid dimension") }
      shape.append(v)
    }
    return shape
  }

  /// A string tensor from `<Un` (n UTF-32 code units per element) or `|Sn` (n bytes) data, each
  /// element NUL-padded to its width.
  private static func decodeStrings(_ bytes: UnsafeRawBufferPointer, name: String, descr: String, shapeText: String,
                                    dataStart: Int) throws -> NDArray {
    func bad(_ why: String) -> CompressorError { .invalid("\(name): not a valid .npy file: \(why)") }
    let wide = descr.dropFirst().first == "U"
    guard let width = Int(descr.dropFirst(2)), width >= 0, width < 1 << 24 else { throw bad("dtype \(descr) is not supported") }
    if wide && descr.first == ">" { throw bad("big-endian dtype \(descr) is not supported") }
    let shape = try parseShape(shapeText, bad)
    let count = try Checked.product(shape.map { Int64($0) }, "\(name): shape")
    let unit = wide ? 4 : 1
    let (stride, o1) = width.multipliedReportingOverflow(by: unit)
    let (size, o2) = stride.multipliedReportingOverflow(by: count)
    guard !o1, !o2, bytes.count - dataStart == size else {
      throw bad("the header promises shape \(shape) of \(descr) but \(bytes.count - dataStart) bytes follow")
    }
    var out = NDArray(zeros: .string, shape)
    for i in 0..<count {
      let start = dataStart + i * stride
      if wide {
        var scalars = String.UnicodeScalarView()
        for k in 0..<width {
          let at = start + k * 4
          let code = UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
          if code == 0 { break }
          guard let scalar = Unicode.Scalar(code) else { throw bad("element \(i) is not valid UTF-32") }
          scalars.append(scalar)
        }
        out.strings[i] = Array(String(scalars).utf8)
      } else {
        var element = Array(bytes[start..<(start + stride)])
        while element.last == 0 { element.removeLast() }
        out.strings[i] = element
      }
    }
    return out
  }

  /// `<Un` data of a string tensor: each element's Unicode scalars as UTF-32, NUL-padded to the
  /// longest (numpy's own layout for str arrays; bytes that are not UTF-8 become U+FFFD).
  private static func encodeStrings(_ array: NDArray) -> (descr: String, data: [UInt8]) {
    let decoded = array.strings.map { Array(String(decoding: $0, as: UTF8.self).unicodeScalars) }
    let width = max(1, decoded.map(\.count).max() ?? 1)
    var data = [UInt8]()
    data.reserveCapacity(decoded.count * width * 4)
    for scalars in decoded {
      for k in 0..<width {
        let v = k < scalars.count ? scalars[k].value : 0
        data += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
      }
    }
    return ("<U\(width)", data)
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
    let descr: String
    var strings: [UInt8]?
    if array.dataType == .string {
      let encoded = encodeStrings(array)
      descr = encoded.descr
      strings = encoded.data
    } else if array.dataType.isNarrow {
      // numpy has no float8, float4, int4 or int2: float codes are written as 1-byte voids (the
      // layout of ml_dtypes' types, one element per byte), 2- and 4-bit integers as int8/uint8.
      let t = array.dataType
      descr = t == .int4 || t == .int2 ? "|i1" : t == .uint4 || t == .uint2 ? "|u1" : "|V1"
      strings = array.unpackedNarrowBytes()
    } else {
      // bfloat16 has no numpy dtype; like numpy with ml_dtypes, write its bits as 2-byte voids.
      guard let code = array.dataType == .bfloat16 ? "V2" : dtypes.first(where: { $0.value == array.dataType })?.key else {
        throw CompressorError.unsupported("\(array.dataType) tensors cannot be written as .npy")
      }
      descr = (code == "i1" || code == "u1" || code == "b1" ? "|" : "<") + code
    }
    let dims = array.shape.map(String.init)
    let shape = dims.count == 1 ? "(\(dims[0]),)" : "(" + dims.joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var out = magic + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
    out += Array(header.utf8)
    if let strings { out += strings } else { array.withUnsafeBytes { out += $0 } }
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
