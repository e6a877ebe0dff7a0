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
