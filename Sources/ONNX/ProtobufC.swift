#if canImport(Glibc)
import Glibc
#endif
import CONNX
import CProtobufC
import Support

/// Thin wrappers over the protobuf-c runtime. Decoding and encoding of individual ONNX
/// messages live in Decoder.swift and Encoder.swift; this file owns allocation and I/O.
enum ProtobufC {
  /// Counts what protobuf-c allocates while unpacking and refuses past a budget, so a small
  /// hostile file cannot make the decoder allocate without bound.
  final class AllocationBudget {
    var remaining: Int
    var exceeded = false
    init(bytes: Int) { remaining = bytes }
  }

  /// `protobuf_c_message_unpack` of a ModelProto with a budgeted allocator. Returns nil when
  /// protobuf-c rejects the bytes; `budget.exceeded` tells the two failures apart.
  static func unpackModel(_ bytes: UnsafeRawBufferPointer, budget: AllocationBudget)
    -> UnsafeMutablePointer<Onnx__ModelProto>?
  {
    var allocator = budgetedAllocator(budget)
    return withExtendedLifetime(budget) {
      onnx__model_proto__unpack(&allocator, bytes.count,
                                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
    }
  }

  /// The same for a lone TensorProto (test-data files).
  static func unpackTensor(_ bytes: UnsafeRawBufferPointer, budget: AllocationBudget)
    -> UnsafeMutablePointer<Onnx__TensorProto>?
  {
    var allocator = budgetedAllocator(budget)
    return withExtendedLifetime(budget) {
      onnx__tensor_proto__unpack(&allocator, bytes.count,
                                 bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
    }
  }

  static func freeTensor(_ t: UnsafeMutablePointer<Onnx__TensorProto>) {
    var allocator = mallocAllocator()
    onnx__tensor_proto__free_unpacked(t, &allocator)
  }

  /// `onnx__sequence_proto__unpack` with a budgeted allocator (sequence test data).
  static func unpackSequence(_ bytes: UnsafeRawBufferPointer, budget: AllocationBudget)
    -> UnsafeMutablePointer<Onnx__SequenceProto>?
  {
    var allocator = budgetedAllocator(budget)
    return withExtendedLifetime(budget) {
      onnx__sequence_proto__unpack(&allocator, bytes.count,
                                   bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
    }
  }

  /// `onnx__sequence_proto__free_unpacked`.
  static func freeSequence(_ s: UnsafeMutablePointer<Onnx__SequenceProto>) {
    var allocator = mallocAllocator()
    onnx__sequence_proto__free_unpacked(s, &allocator)
  }

  /// `onnx__optional_proto__unpack` with a budgeted allocator (optional test data).
  static func unpackOptional(_ bytes: UnsafeRawBufferPointer, budget: AllocationBudget)
    -> UnsafeMutablePointer<Onnx__OptionalProto>?
  {
    var allocator = budgetedAllocator(budget)
    return withExtendedLifetime(budget) {
      onnx__optional_proto__unpack(&allocator, bytes.count,
                                   bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
    }
  }

  /// `onnx__optional_proto__free_unpacked`.
  static func freeOptional(_ o: UnsafeMutablePointer<Onnx__OptionalProto>) {
    var allocator = mallocAllocator()
    onnx__optional_proto__free_unpacked(o, &allocator)
  }

  /// An allocator that charges `budget` (which the caller keeps alive) for every allocation.
  private static func budgetedAllocator(_ budget: AllocationBudget) -> ProtobufCAllocator {
    ProtobufCAllocator(
      alloc: { data, size in
        guard let data else { return nil }
        let budget = Unmanaged<AllocationBudget>.fromOpaque(data).takeUnretainedValue()
        if size > budget.remaining {
          budget.exceeded = true
          return nil
        }
        guard let p = malloc(size == 0 ? 1 : size) else {
          budget.exceeded = true
          return nil
        }
        budget.remaining -= malloc_usable_size(p)
        return p
      },
      free: { data, p in
        guard let p, let data else { return }
        let budget = Unmanaged<AllocationBudget>.fromOpaque(data).takeUnretainedValue()
        budget.remaining += malloc_usable_size(p)
        Glibc.free(p)
      },
      allocator_data: Unmanaged.passUnretained(budget).toOpaque())
  }

  private static func mallocAllocator() -> ProtobufCAllocator {
    ProtobufCAllocator(alloc: { _, size in malloc(size) }, free: { _, p in Glibc.free(p) }, allocator_data: nil)
  }

  /// Frees an unpacked model. Buffers the decoder took over were set to NULL first, and were
  /// allocated with `malloc` like the rest, so `free` on their own is right.
  static func freeModel(_ model: UnsafeMutablePointer<Onnx__ModelProto>) {
    var allocator = mallocAllocator()
    onnx__model_proto__free_unpacked(model, &allocator)
  }

  static func packedSize(_ message: UnsafePointer<ProtobufCMessage>) -> Int {
    protobuf_c_message_get_packed_size(message)
  }

  /// `protobuf_c_message_pack_to_buffer` streaming straight into `writer`, never holding the
  /// whole serialized model in memory.
  static func pack(_ message: UnsafePointer<ProtobufCMessage>, into writer: AtomicFileWriter) throws {
    try pack(message) { try writer.write($0) }
  }

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

  /// The field of `descriptor` with number `id`, or nil when the schema does not know it.
  static func field(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, _ id: UInt32)
    -> UnsafePointer<ProtobufCFieldDescriptor>?
  {
    protobuf_c_message_descriptor_get_field(descriptor, UInt32(id))
  }

  /// The ModelProto descriptor, taken from an initialized message so that it is the C
  /// global itself rather than a Swift copy.
  static let modelDescriptor: UnsafePointer<ProtobufCMessageDescriptor> = {
    var m = Onnx__ModelProto()
    onnx__model_proto__init(&m)
    return m.base.descriptor
  }()

  static let sequenceDescriptor: UnsafePointer<ProtobufCMessageDescriptor> = {
    var s = Onnx__SequenceProto()
    onnx__sequence_proto__init(&s)
    return s.base.descriptor
  }()

  static let optionalDescriptor: UnsafePointer<ProtobufCMessageDescriptor> = {
    var o = Onnx__OptionalProto()
    onnx__optional_proto__init(&o)
    return o.base.descriptor
  }()

  static let tensorDescriptor: UnsafePointer<ProtobufCMessageDescriptor> = {
    var t = Onnx__TensorProto()
    onnx__tensor_proto__init(&t)
    return t.base.descriptor
  }()
}
