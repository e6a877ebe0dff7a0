import CProtobufC
import Support

/// Walks the protobuf wire format of a whole file before protobuf-c sees it. protobuf-c has
/// no recursion limit, so a few kilobytes of nested messages would overflow the stack inside
/// `unpack`; this walk is iterative and rejects excessive nesting, lengths that run past their
/// enclosing message, malformed varints and tags, and wire types ONNX never uses.
///
/// The same walk finds every large `TensorProto.raw_data` payload. Those are left in the
/// memory-mapped file, where tensors point at them directly, and protobuf-c decodes a small
/// copy of the model in which each is replaced by a marker field carrying its index; so
/// reading a model costs its weights' size once, in clean pages of the file.
struct WireScanner {
  /// Deepest message nesting accepted: about twenty levels of nested If/Loop/Scan bodies,
  /// far beyond what any exporter produces.
  static let maxDepth = 64
  /// raw_data payloads at least this large stay in the file instead of being copied.
  static let zeroCopyThreshold = 256
  /// The field number of the marker that stands in for a raw_data payload left in the file:
  /// the largest legal field number, which the ONNX schema will never use.
  static let markerField: UInt32 = 536_870_911

  /// A raw_data payload left in the file: byte range of its elements.
  struct Payload {
    var offset: Int
    var length: Int
  }

  struct Result {
    /// The bytes to hand to protobuf-c: nil when nothing was left out (use the file itself).
    var stripped: [UInt8]?
    var payloads: [Payload]
  }

  let file: String
  let tensorDescriptor: UnsafePointer<ProtobufCMessageDescriptor>?

  func scan(_ bytes: UnsafeRawBufferPointer, root: UnsafePointer<ProtobufCMessageDescriptor>) throws -> Result {
    guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return Result(stripped: nil, payloads: []) }
    let count = bytes.count
    var pos = 0

    // One entry per nested message field, in file order, for rewriting lengths.
    struct Message { var lengthStart: Int; var payloadStart: Int; var payloadEnd: Int; var newLength = 0 }
    var messages: [Message] = []
    // One entry per raw_data payload left in the file, in file order.
    struct Removal { var tagStart: Int; var end: Int }
    var removals: [Removal] = []
    var payloads: [Payload] = []

    // The open messages: where each ends, its descriptor (nil: not descended into), its index in
    // `messages` (-1 for the root), and how much its content shrinks or grows when stripped.
    var ends: [Int] = [count]
    var descriptors: [UnsafePointer<ProtobufCMessageDescriptor>?] = [root]
    var indices: [Int] = [-1]
    var deltas: [Int] = [0]

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

    func closeFrame() {
      let index = indices.removeLast()
      let delta = deltas.removeLast()
      ends.removeLast()
      descriptors.removeLast()
      guard index >= 0 else { return }
      let m = messages[index]
      let newLength = m.payloadEnd - m.payloadStart + delta
      messages[index].newLength = newLength
      let oldHeader = m.payloadStart - m.lengthStart
      deltas[deltas.count - 1] += delta + Self.varintSize(UInt64(newLength)) - oldHeader
    }

    while true {
      while let end = ends.last, pos == end {
        closeFrame()
      }
      guard let end = ends.last else { break }
      let tagStart = pos
      let tag = try readVarint(maxBytes: 5, end: end)
      if tag > UInt64(UInt32.max) {
        pos = tagStart
        throw fail("field tag does not fit in 32 bits")
      }
      let fieldNumber = UInt32(tag >> 3)
      let wireType = tag & 7
      if fieldNumber == 0 || fieldNumber > Self.markerField {
        pos = tagStart
        throw fail("invalid field number \(fieldNumber)")
      }
      let descriptor = descriptors.last ?? nil
      let inTensor = descriptor != nil && descriptor == tensorDescriptor
      if inTensor && fieldNumber == Self.markerField {
        pos = tagStart
        throw fail("a tensor uses the reserved field number \(fieldNumber)")
      }
      switch wireType {
      case 0:
        _ = try readVarint(maxBytes: 10, end: end)
      case 1, 5:
        let size = wireType == 1 ? 8 : 4
        if end - pos < size { throw fail("truncated \(size)-byte field \(fieldNumber)") }
        pos += size
      case 2:
        let lengthStart = pos
        let length = try readVarint(maxBytes: 10, end: end)
        if length > UInt64(end - pos) {
          throw fail("field \(fieldNumber) declares \(length) bytes but only \(end - pos) remain")
        }
        let fieldEnd = pos + Int(length)
        if let desc = descriptor, let field = ProtobufC.field(desc, fieldNumber), compressor_field_is_message(field) != 0 {
          if ends.count >= Self.maxDepth {
            throw CompressorError.invalid(
              "\(file): not a valid ONNX model: nesting depth > \(Self.maxDepth) at byte \(pos) (subgraphs or types nested too deeply)")
          }
          messages.append(Message(lengthStart: lengthStart, payloadStart: pos, payloadEnd: fieldEnd))
          ends.append(fieldEnd)
          descriptors.append(field.pointee.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self))
          indices.append(messages.count - 1)
          deltas.append(0)
        } else {
          if inTensor && fieldNumber == 9 && Int(length) >= Self.zeroCopyThreshold {
            let marker = Self.markerSize(index: payloads.count)
            payloads.append(Payload(offset: pos, length: Int(length)))
            removals.append(Removal(tagStart: tagStart, end: fieldEnd))
            deltas[deltas.count - 1] += marker - (fieldEnd - tagStart)
          }
          pos = fieldEnd
        }
      default:
        pos = tagStart
        throw fail("wire type \(wireType) (field \(fieldNumber)) is not used by ONNX")
      }
    }
    if removals.isEmpty { return Result(stripped: nil, payloads: []) }

    // Emit the stripped copy: message headers get their new lengths, payloads become markers.
    var out = [UInt8]()
    out.reserveCapacity(count - payloads.reduce(0) { $0 + $1.length } + 16 * payloads.count)
    var cursor = 0
    func copy(to end: Int) {
      if end > cursor { out.append(contentsOf: UnsafeBufferPointer(start: base + cursor, count: end - cursor)) }
      cursor = end
    }
    var m = 0, r = 0
    while m < messages.count || r < removals.count {
      if r >= removals.count || (m < messages.count && messages[m].lengthStart < removals[r].tagStart) {
        copy(to: messages[m].lengthStart)
        Self.appendVarint(UInt64(messages[m].newLength), to: &out)
        cursor = messages[m].payloadStart
        m += 1
      } else {
        copy(to: removals[r].tagStart)
        Self.appendVarint(UInt64(Self.markerField) << 3, to: &out)
        Self.appendVarint(UInt64(r), to: &out)
        cursor = removals[r].end
        r += 1
      }
    }
    copy(to: count)
    return Result(stripped: out, payloads: payloads)
  }

  static func varintSize(_ v: UInt64) -> Int {
    var n = 1
    var v = v >> 7
    while v != 0 { n += 1; v >>= 7 }
    return n
  }

  static func markerSize(index: Int) -> Int {
    varintSize(UInt64(markerField) << 3) + varintSize(UInt64(index))
  }

  static func appendVarint(_ v: UInt64, to out: inout [UInt8]) {
    var v = v
    while v >= 0x80 {
      out.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    out.append(UInt8(v))
  }
}
