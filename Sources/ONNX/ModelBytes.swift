import CONNX
import CProtobufC
import IR
import Support

extension ModelWriter {
  /// Serializes `model` exactly as `write` does without external data (every tensor inline),
  /// handing the bytes to `body` piece by piece as protobuf-c produces them; never holds the whole
  /// serialized model. Returns the byte count. `compressor pipeline` measures the models it keeps
  /// in memory between steps with this, so their sizes equal those of the files a chain of
  /// subcommands would write.
  @discardableResult
  public static func encode(_ model: Model, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
    let encoder = Encoder(placement: TensorPlacement { _ in nil })
    let message = try encoder.model(model)
    return try withExtendedLifetime(encoder) {
      try message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { m -> Int in
        let size = ProtobufC.packedSize(m)
        if size > ModelReader.maxFileBytes {
          throw CompressorError.output("the model would be \(size) bytes, over protobuf's 2 GiB limit for one file")
        }
        try ProtobufC.pack(m, to: body)
        return size
      }
    }
  }

  /// The serialized size alone (nothing is packed).
  public static func encodedSize(_ model: Model) throws -> Int {
    let encoder = Encoder(placement: TensorPlacement { _ in nil })
    let message = try encoder.model(model)
    return withExtendedLifetime(encoder) {
      message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { ProtobufC.packedSize($0) }
    }
  }
}

extension ProtobufC {
  /// Receives the bytes protobuf-c produces while packing, for a closure.
  final class ClosureSink {
    let body: (UnsafeRawBufferPointer) throws -> Void
    var error: Error?
    init(_ body: @escaping (UnsafeRawBufferPointer) throws -> Void) { self.body = body }
  }

  /// `protobuf_c_message_pack_to_buffer` into `body`, piece by piece.
  static func pack(_ message: UnsafePointer<ProtobufCMessage>, to body: (UnsafeRawBufferPointer) throws -> Void) throws {
    try withoutActuallyEscaping(body) { escaping in
      let sink = ClosureSink(escaping)
      var stream = CompressorStreamBuffer()
      stream.base.append = { buffer, len, data in
        guard let buffer, let data, len > 0 else { return }
        let raw = UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: CompressorStreamBuffer.self)
        let sink = Unmanaged<ClosureSink>.fromOpaque(raw.pointee.context).takeUnretainedValue()
        if sink.error != nil { return }
        do { try sink.body(UnsafeRawBufferPointer(start: data, count: len)) } catch { sink.error = error }
      }
      stream.context = Unmanaged.passUnretained(sink).toOpaque()
      withExtendedLifetime(sink) {
        withUnsafeMutablePointer(to: &stream) { s in
          s.withMemoryRebound(to: ProtobufCBuffer.self, capacity: 1) { buffer in
            _ = protobuf_c_message_pack_to_buffer(message, buffer)
          }
        }
      }
      if let error = sink.error { throw error }
    }
  }
}
