import CZlib
import IR
import Runtime
import Support

/// NumPy `.npz` archives: zip files of `.npy` members, stored or deflated. Members are
/// inflated into a buffer of their declared size and no more, so a zip bomb costs at most
/// what its directory admits, and that is bounded too.
public enum NPZ {
  /// The largest total uncompressed size accepted from one archive.
  public static let maxUncompressedBytes = 8 << 30

  public static func decode(_ bytes: UnsafeRawBufferPointer, name: String) throws -> [(String, NDArray)] {
    func bad(_ why: String) -> CompressorError { .invalid("\(name): not a valid .npz archive: \(why)") }
    func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
    func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    guard bytes.count >= 22 else { throw bad("too short") }
    var eocd = -1
    for o in stride(from: bytes.count - 22, through: max(0, bytes.count - 22 - 65535), by: -1) where u32(o) == 0x0605_4B50 {
      eocd = o
      break
    }
    guard eocd >= 0 else { throw bad("no end of central directory") }
    let entries = u16(eocd + 10), dirOffset = u32(eocd + 16)
    var arrays = [(String, NDArray)]()
    var p = dirOffset
    var total = 0
    for _ in 0..<entries {
      guard p + 46 <= bytes.count, u32(p) == 0x0201_4B50 else { throw bad("corrupt central directory") }
      let method = u16(p + 10), crc = u32(p + 16), compressed = u32(p + 20), size = u32(p + 24)
      let nameLength = u16(p + 28), extra = u16(p + 30), comment = u16(p + 32), local = u32(p + 42)
      guard p + 46 + nameLength <= bytes.count else { throw bad("corrupt central directory") }
      let member = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
      p += 46 + nameLength + extra + comment
      guard compressed != 0xFFFF_FFFF, size != 0xFFFF_FFFF else { throw CompressorError.unsupported("\(name): zip64 members are not supported") }
      guard local + 30 <= bytes.count, u32(local) == 0x0403_4B50 else { throw bad("corrupt local header of \(member)") }
      let start = local + 30 + u16(local + 26) + u16(local + 28)
      guard start + compressed <= bytes.count else { throw bad("\(member) runs past the end of the file") }
      total += size
      guard total <= maxUncompressedBytes else { throw bad("members expand to more than \(maxUncompressedBytes >> 30) GiB") }
      // The member is inflated into a buffer of its declared size: within the memory budget.
      try MemoryBudget.check(bytes: size, "\(name): member \(member), \(size) bytes uncompressed,")
      let data = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + compressed)])
      var plain: [UInt8]
      switch method {
      case 0:
        guard compressed == size else { throw bad("stored member \(member) has inconsistent sizes") }
        plain = Array(data)
      case 8:
        plain = try inflate(data, size: size, member: member, archive: name)
      default:
        throw CompressorError.unsupported("\(name): compression method \(method) of \(member) is not supported")
      }
      let actual = plain.withUnsafeBytes { Int(crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count))) }
      guard actual == crc else { throw bad("CRC mismatch in \(member)") }
      guard member.hasSuffix(".npy") else { continue }
      let array = try plain.withUnsafeBytes { try NPY.decode($0, name: "\(name):\(member)") }
      arrays.append((String(member.dropLast(4)), array))
    }
    return arrays
  }

  private static func inflate(_ data: UnsafeRawBufferPointer, size: Int, member: String, archive: String) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: size)
    var stream = z_stream()
    guard compressor_inflate_init_raw(&stream) == Z_OK else { throw CompressorError.io("\(archive): cannot start inflate") }
    defer { inflateEnd(&stream) }
    let status: Int32 = out.withUnsafeMutableBytes { dst in
      stream.next_in = UnsafeMutablePointer(mutating: data.bindMemory(to: Bytef.self).baseAddress)
      stream.avail_in = uInt(data.count)
      stream.next_out = dst.bindMemory(to: Bytef.self).baseAddress
      stream.avail_out = uInt(dst.count)
      return CZlib.inflate(&stream, Z_FINISH)
    }
    guard status == Z_STREAM_END, Int(stream.total_out) == size else {
      throw CompressorError.invalid("\(archive): member \(member) does not inflate to its declared \(size) bytes")
    }
    return out
  }

  /// A zip archive of stored (uncompressed) `.npy` members, in the given order.
  public static func encode(_ arrays: [(String, NDArray)]) throws -> [UInt8] {
    var out = [UInt8]()
    var directory = [UInt8]()
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16((v >> 16) & 0xFFFF) }
    for (name, array) in arrays {
      let data = try NPY.encode(array)
      guard data.count < 0xFFFF_FFFF else { throw CompressorError.unsupported("array \(name) is too large for a zip member") }
      let crc = data.withUnsafeBytes { Int(crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count))) }
      let file = Array((name + ".npy").utf8)
      // Fixed DOS time (1980-01-01) so that archives are byte-identical across runs.
      let common = le16(20) + le16(0) + le16(0) + le16(0) + le16(0x21) + le32(crc) + le32(data.count) + le32(data.count)
        + le16(file.count) + le16(0)
      directory += le32(0x0201_4B50) + le16(20) + common + le16(0) + le16(0) + le16(0) + le32(0) + le32(out.count) + file
      out += le32(0x0403_4B50) + common + file + data
    }
    let dirOffset = out.count
    out += directory
    out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(arrays.count) + le16(arrays.count)
      + le32(directory.count) + le32(dirOffset) + le16(0)
    return out
  }
}
