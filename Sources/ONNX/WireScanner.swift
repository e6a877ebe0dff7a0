import CProtobufC
import Support

/// Walks the protobuf wire format of a whole file before protobuf-c sees it. protobuf-c has
/// no recursion limit, so a few kilobytes of nested messages would overflow the stack inside
/// `unpack`; this walk is iterative and rejects excessive nesting, lengths that run past their
/// enclosing message, malformed varints and tags, and wire types ONNX never uses.
struct WireScanner {
  /// Deepest message nesting accepted: about twenty levels of nested If/Loop/Scan bodies,
  /// far beyond what any exporter produces.
  static let maxDepth = 64

  let file: String

  func scan(_ bytes: UnsafeRawBufferPointer, root: UnsafePointer<ProtobufCMessageDescriptor>) throws {
    guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
    let count = bytes.count
    var pos = 0
    // Each open message: where it ends, and its descriptor (nil for bytes we do not descend into).
    var ends: [Int] = [count]
    var descriptors: [UnsafePointer<ProtobufCMessageDescriptor>?] = [root]

    func fail(_ what: String) -> CompressorError {
      .invalid("\(file): not a valid ONNX model: \(what) at byte \(pos)")
    }

    func readVarint(maxBytes: Int, end: Int) throws -> UInt64 {
      var value: UInt64 = 0
      var shift: UInt64 = 0
      for i in 0..<maxBytes {
        if pos >= end { throw fail("truncated varint") }
        let b = base[pos]
        pos += 1
        if i == 9 && b > 1 { throw fail("varint longer than 64 bits") }
        value |= UInt64(b & 0x7F) << shift
        if b & 0x80 == 0 { return value }
        shift += 7
      }
      throw fail("varint longer than \(maxBytes) bytes")
    }

    while true {
      while let end = ends.last, pos == end {
        ends.removeLast()
        descriptors.removeLast()
      }
      guard let end = ends.last else { return }
      let tagStart = pos
      let tag = try readVarint(maxBytes: 5, end: end)
      if tag > UInt64(UInt32.max) {
        pos = tagStart
        throw fail("field tag does not fit in 32 bits")
      }
      let fieldNumber = UInt32(tag >> 3)
      let wireType = tag & 7
      if fieldNumber == 0 || fieldNumber > 536_870_911 {
        pos = tagStart
        throw fail("invalid field number \(fieldNumber)")
      }
      switch wireType {
      case 0:
        _ = try readVarint(maxBytes: 10, end: end)
      case 1, 5:
        let size = wireType == 1 ? 8 : 4
        if end - pos < size { throw fail("truncated \(size)-byte field \(fieldNumber)") }
        pos += size
      case 2:
        let length = try readVarint(maxBytes: 10, end: end)
        if length > UInt64(end - pos) {
          throw fail("field \(fieldNumber) declares \(length) bytes but only \(end - pos) remain")
        }
        let fieldEnd = pos + Int(length)
        if let desc = descriptors.last ?? nil, let field = ProtobufC.field(desc, fieldNumber),
           compressor_field_is_message(field) != 0
        {
          if ends.count >= Self.maxDepth {
            throw CompressorError.invalid(
              "\(file): not a valid ONNX model: nesting depth > \(Self.maxDepth) at byte \(pos) (subgraphs or types nested too deeply)")
          }
          ends.append(fieldEnd)
          descriptors.append(field.pointee.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self))
          if fieldEnd == pos { continue }
        } else {
          pos = fieldEnd
        }
      default:
        pos = tagStart
        throw fail("wire type \(wireType) (field \(fieldNumber)) is not used by ONNX")
      }
    }
  }
}
