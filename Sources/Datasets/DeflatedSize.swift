import CZlib
import Support

/// How many bytes a file takes deflated (zlib level 6) — what an over-the-air update of a model
/// ships. Streams the file through a fixed buffer; nothing is kept.
public enum DeflatedSize {
  public static func of(_ path: String) throws -> Int {
    let file = try MappedFile(path: path)
    var stream = z_stream()
    guard compressor_deflate_init(&stream, 6) == Z_OK else { throw CompressorError.internalError("deflateInit failed") }
    defer { deflateEnd(&stream) }
    var out = [UInt8](repeating: 0, count: 1 << 16)
    var total = 0
    let bytes = file.bytes
    var offset = 0
    repeat {
      let chunk = min(bytes.count - offset, 1 << 20)
      let flush = offset + chunk == bytes.count ? Z_FINISH : Z_NO_FLUSH
      stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + offset })
      stream.avail_in = UInt32(chunk)
      offset += chunk
      repeat {
        let status: Int32 = out.withUnsafeMutableBufferPointer { o in
          stream.next_out = o.baseAddress
          stream.avail_out = UInt32(o.count)
          return deflate(&stream, flush)
        }
        guard status != Z_STREAM_ERROR else { throw CompressorError.internalError("deflate failed on \(path)") }
        total += out.count - Int(stream.avail_out)
      } while stream.avail_out == 0
    } while offset < bytes.count
    return total
  }
}

/// The same count for bytes that arrive in pieces (a model serialized in memory): deflate's
/// output does not depend on how its input is split, so this equals `DeflatedSize.of` on a file
/// holding the same bytes.
public final class DeflatedSizeCounter {
  private var stream = z_stream()
  private var out = [UInt8](repeating: 0, count: 1 << 16)
  public private(set) var total = 0

  public init() throws {
    guard compressor_deflate_init(&stream, 6) == Z_OK else { throw CompressorError.internalError("deflateInit failed") }
  }

  deinit { deflateEnd(&stream) }

  public func add(_ bytes: UnsafeRawBufferPointer) throws { try run(bytes, flush: Z_NO_FLUSH) }

  /// Flushes what deflate holds; returns the deflated size of everything added.
  public func finish() throws -> Int {
    try run(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH)
    return total
  }

  private func run(_ bytes: UnsafeRawBufferPointer, flush: Int32) throws {
    var offset = 0
    repeat {
      let chunk = min(bytes.count - offset, 1 << 20)
      stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + offset })
      stream.avail_in = UInt32(chunk)
      offset += chunk
      let last = offset == bytes.count
      repeat {
        let status: Int32 = out.withUnsafeMutableBufferPointer { o in
          stream.next_out = o.baseAddress
          stream.avail_out = UInt32(o.count)
          return deflate(&stream, last ? flush : Z_NO_FLUSH)
        }
        guard status != Z_STREAM_ERROR else { throw CompressorError.internalError("deflate failed") }
        total += out.count - Int(stream.avail_out)
      } while stream.avail_out == 0
    } while offset < bytes.count
  }
}
