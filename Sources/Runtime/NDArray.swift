import IR
import Support

#if canImport(Glibc)
import Glibc
#endif

/// A tensor value during execution: element type, shape, and densely packed little-endian
/// elements in row-major order. Storage is shared and copy-on-write; initializers borrow the
/// model's bytes (often straight from the mapped file) until a kernel needs them aligned.
public struct NDArray: @unchecked Sendable {
  public internal(set) var dataType: DataType
  public internal(set) var shape: [Int]
  /// Elements; for `string` tensors, `strings` holds them instead.
  public private(set) var storage: Storage
  /// The elements of a `string` tensor. They live in the storage, so an array is two references
  /// (shape and storage), not three: every tensor passed between nodes is retained and released
  /// several times, and string tensors are rare. Written in place when the storage is not shared.
  public var strings: [[UInt8]] {
    get { storage.strings }
    _modify {
      if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
      yield &storage.strings
    }
  }

  /// Owns (or borrows) the element bytes, 64-byte aligned when owned.
  public final class Storage: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer?
    public let byteCount: Int
    private let borrowed: ByteBuffer?
    /// A string tensor's elements (its byte count is 0).
    var strings: [[UInt8]] = []

    init(byteCount: Int, zeroed: Bool) {
      self.byteCount = byteCount
      borrowed = nil
      if byteCount == 0 {
        base = nil
      } else {
        let p = BufferPool.shared.take(byteCount)
        if zeroed { memset(p, 0, byteCount) }
        base = p
        MemoryBudget.claim(byteCount)
      }
    }

    init(borrowing buffer: ByteBuffer) {
      byteCount = buffer.count
      base = UnsafeMutableRawPointer(mutating: buffer.base)
      borrowed = buffer
    }

    deinit {
      if borrowed == nil, let base {
        BufferPool.shared.give(base, byteCount)
        MemoryBudget.release(byteCount)
      }
    }

    var isBorrowed: Bool { borrowed != nil }

    /// Owned, aligned bytes (and strings) equal to these.
    func copy() -> Storage {
      let c = Storage(byteCount: byteCount, zeroed: false)
      if let d = c.base, let s = base { d.copyMemory(from: s, byteCount: byteCount) }
      c.strings = strings
      return c
    }
    func releaseBorrowedPages() { borrowed?.releaseResidentPages() }
  }

  public var count: Int { shape.reduce(1, *) }
  public var rank: Int { shape.count }

  /// A zero-filled tensor.
  public init(zeros type: DataType, _ shape: [Int]) {
    self.dataType = type
    self.shape = shape
    let n = shape.reduce(1, *)
    self.storage = Storage(byteCount: type.byteCount(elements: n) ?? 0, zeroed: true)
    if type == .string { storage.strings = Array(repeating: [], count: n) }
  }

  /// A tensor whose elements the caller writes immediately (not zeroed).
  public init(uninitialized type: DataType, _ shape: [Int]) {
    self.dataType = type
    self.shape = shape
    let n = shape.reduce(1, *)
    self.storage = Storage(byteCount: type.byteCount(elements: n) ?? 0, zeroed: type == .string)
    if type == .string { storage.strings = Array(repeating: [], count: n) }
  }

  public init<T: ElementType>(_ values: [T], shape: [Int]) {
    self.init(uninitialized: T.dataType, shape)
    values.withUnsafeBytes { src in
      guard let dst = storage.base else { return }
      // Never past the end of either buffer, whatever a caller got wrong about the count.
      let n = Swift.min(src.count, storage.byteCount)
      if let s = src.baseAddress { dst.copyMemory(from: s, byteCount: n) }
      if n < storage.byteCount { memset(dst + n, 0, storage.byteCount - n) }
    }
  }

  /// A view of an IR tensor's elements without copying.
  public init(_ t: Tensor) throws {
    guard t.segment == nil else { throw CompressorError.unsupported("tensor '\(t.name)' is a segment of a larger tensor") }
    dataType = t.dataType
    shape = t.dims.map { Int($0) }
    storage = Storage(borrowing: t.data)
    storage.strings = t.strings
  }

  /// The same elements under another shape of the same element count.
  public func reshaped(_ newShape: [Int]) -> NDArray {
    var r = self
    r.shape = newShape
    return r
  }

  /// Typed elements. The view keeps the storage alive, so it stays valid however long the
  /// array it came from lives; written elements must come from `mutableElements`.
  public func elements<T: ElementType>(_: T.Type = T.self) -> Elements<T> {
    Elements(owner: storage, count: storage.byteCount / MemoryLayout<T>.stride)
  }

  /// Writable typed elements; copies first if the storage is shared or borrowed.
  public mutating func mutableElements<T: ElementType>(_: T.Type = T.self) -> Elements<T> {
    if !isKnownUniquelyReferenced(&storage) || storage.isBorrowed { storage = storage.copy() }
    return Elements(owner: storage, count: storage.byteCount / MemoryLayout<T>.stride)
  }

  /// Makes borrowed, possibly unaligned bytes owned and aligned (once, when a model is prepared).
  public mutating func makeAligned() {
    guard storage.isBorrowed, let base = storage.base, Int(bitPattern: base) % 64 != 0 else { return }
    let copy = storage.copy()
    // The mapped file's pages are not needed twice in memory: the kernel may drop them.
    storage.releaseBorrowedPages()
    storage = copy
  }

  /// The elements converted to Int (for shape and index inputs of any integer type).
  public func integers() throws -> [Int] {
    switch dataType {
    case .int64: return elements(Int64.self).map { Int($0) }
    case .int32: return elements(Int32.self).map { Int($0) }
    case .uint8: return elements(UInt8.self).map { Int($0) }
    case .int8: return elements(Int8.self).map { Int($0) }
    case .bool: return elements(UInt8.self).map { Int($0) }
    case .uint64: return elements(UInt64.self).map { Int(clamping: $0) }
    case .uint32: return elements(UInt32.self).map { Int($0) }
    case .int16: return elements(Int16.self).map { Int($0) }
    case .uint16: return elements(UInt16.self).map { Int($0) }
    case .int4, .uint4, .int2, .uint2: return narrowIntegers()
    default: throw CompressorError.invalid("expected an integer tensor, got \(dataType)")
    }
  }

  /// The elements converted to Float (for float-like inputs of any width).
  public func floats() throws -> [Float] {
    switch dataType {
    case .float: return Array(elements(Float.self))
    case .double: return elements(Double.self).map { Float($0) }
    case .float16: return elements(Float16.self).map { Float($0) }
    case .bfloat16: return elements(UInt16.self).map { Float(bitPattern: UInt32($0) << 16) }
    case let t where t.isNarrow: return narrowValues().map { Float($0) }
    default: return try integers().map { Float($0) }
    }
  }

  /// An IR tensor holding a copy of these elements.
  public func irTensor(name: String) -> Tensor {
    let bytes = ByteBuffer.make(count: storage.byteCount) { dst in
      if let s = storage.base, let d = dst.baseAddress { d.copyMemory(from: s, byteCount: storage.byteCount) }
    }
    return Tensor(name: name, dataType: dataType, dims: shape.map { Int64($0) }, data: bytes, strings: strings,
                  storedIn: dataType == .string ? .stringData : .rawData)
  }
}

extension NDArray {
  /// The memory budget (`--max-memory`); what is in use counts against it too.
  static var maxTensorBytes: Int { MemoryBudget.limit }

  /// Checks a shape computed from tensor values or attributes before anything is allocated for
  /// it: non-negative, element count within 64 bits, bytes within the memory budget.
  public static func checkAllocation(_ shape: [Int], _ type: DataType, _ c: KernelContext) throws {
    try checkAllocation(shape, type) { c.fail("the result\($0)") }
  }

  /// The same check for a tensor the caller is about to make from a model's declared shape
  /// (generated inputs, shape probes): `what` names it in the error (exit 65).
  public static func checkAllocation(_ shape: [Int], _ type: DataType, what: String) throws {
    try checkAllocation(shape, type) { CompressorError.invalid("\(what)\($0)") }
  }

  private static func checkAllocation(_ shape: [Int], _ type: DataType, _ error: (String) -> CompressorError) throws {
    var count = 1
    for d in shape {
      guard d >= 0 else { throw error(": a dimension would be \(d)") }
      let (r, o) = count.multipliedReportingOverflow(by: d)
      guard !o else { throw error("'s shape \(shape) has more elements than fit in 64 bits") }
      count = r
    }
    guard let bytes = type.byteCount(elements: count) ?? (type == .string ? count.multipliedReportingOverflow(by: 24).partialValue : nil) else {
      throw error(" has element type \(type), which has no size")
    }
    try MemoryBudget.check(bytes: bytes, error(" of shape \(shape)").message)
  }

  /// Checks a scratch buffer of `count` elements of `type` (im2col, workspaces) against the budget.
  public static func checkScratch(_ count: Int, _ type: DataType, _ c: KernelContext, _ what: String) throws {
    guard count >= 0, let bytes = type.byteCount(elements: count) else { throw c.fail("\(what) of \(count) elements is too large") }
    try MemoryBudget.check(bytes: bytes, c.fail(what).message)
  }
}

/// Swift types that are ONNX element types.
public protocol ElementType {
  static var dataType: DataType { get }
}
extension Float: ElementType { public static var dataType: DataType { .float } }
extension Double: ElementType { public static var dataType: DataType { .double } }
extension Float16: ElementType { public static var dataType: DataType { .float16 } }
extension Int64: ElementType { public static var dataType: DataType { .int64 } }
extension Int32: ElementType { public static var dataType: DataType { .int32 } }
extension Int16: ElementType { public static var dataType: DataType { .int16 } }
extension Int8: ElementType { public static var dataType: DataType { .int8 } }
extension UInt8: ElementType { public static var dataType: DataType { .uint8 } }
extension UInt16: ElementType { public static var dataType: DataType { .uint16 } }
extension UInt32: ElementType { public static var dataType: DataType { .uint32 } }
extension UInt64: ElementType { public static var dataType: DataType { .uint64 } }

/// Row-major strides of a shape, in elements.
func strides(_ shape: [Int]) -> [Int] {
  var s = [Int](repeating: 1, count: shape.count)
  var acc = 1
  for i in shape.indices.reversed() {
    s[i] = acc
    acc *= shape[i]
  }
  return s
}

extension NDArray {
  /// The element bytes, read-only.
  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withExtendedLifetime(storage) { try body(UnsafeRawBufferPointer(start: storage.base, count: storage.byteCount)) }
  }

  /// The element bytes, writable (made unique first).
  public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
    let e = mutableElements(UInt8.self)
    return try e.withPointer { try body(UnsafeMutableRawBufferPointer(start: $0, count: e.count)) }
  }
}

/// A typed view of a tensor's elements that owns a reference to their storage.
public struct Elements<T>: RandomAccessCollection {
  let owner: NDArray.Storage
  public let baseAddress: UnsafeMutablePointer<T>?
  public let count: Int

  init(owner: NDArray.Storage, count: Int) {
    self.owner = owner
    self.count = count
    baseAddress = owner.base?.assumingMemoryBound(to: T.self)
  }

  public var startIndex: Int { 0 }
  public var endIndex: Int { count }

  @inline(__always)
  public subscript(i: Int) -> T {
    get { baseAddress.unsafelyUnwrapped[i] }
    nonmutating set { baseAddress.unsafelyUnwrapped[i] = newValue }
  }

  /// Runs `body` with the raw pointer while the storage is guaranteed alive (for BLAS calls).
  public func withPointer<R>(_ body: (UnsafeMutablePointer<T>?) throws -> R) rethrows -> R {
    try withExtendedLifetime(owner) { try body(baseAddress) }
  }
}

/// Freed tensor buffers kept for reuse, by size class. Values die as soon as their last reader
/// has run (the executor's liveness), and the next run or the next node takes their buffers
/// back instead of asking the allocator for fresh, page-faulting memory.
final class BufferPool: @unchecked Sendable {
  static let shared = BufferPool()
  /// Buffers up to this size are kept in 64-byte classes (`small`); above, in power-of-two
  /// classes (`free`).
  private let minimum = 16 << 10
  private let maxRetained = 512 << 20
  private var free: [Int: [UnsafeMutableRawPointer]] = [:]
  private var retained = 0
  /// Small buffers by size in 64-byte steps, at most `perSmallClass` each and 8 MB in all: malloc's aligned
  /// allocation takes no cached chunk (it splits a larger one and later consolidates the pieces),
  /// and the tensors of a transformer's shape arithmetic and small layers are made and dropped
  /// by the hundred per inference (a tenth of GPT-2-with-cache's time).
  private var small = [[UnsafeMutableRawPointer]](repeating: [], count: (16 << 10) / 64 + 1)
  private let perSmallClass = 32
  private let maxSmallRetained = 8 << 20
  private var smallRetained = 0
  private var lock = pthread_mutex_t()

  private init() { pthread_mutex_init(&lock, nil) }

  /// Size class: the next power of two, so a buffer serves any request in its class; small
  /// sizes round up to 64 bytes.
  private func sizeClass(_ n: Int) -> Int { n <= minimum ? (n + 63) & ~63 : 1 << (Int.bitWidth - (n - 1).leadingZeroBitCount) }

  func take(_ byteCount: Int) -> UnsafeMutableRawPointer {
    let size = sizeClass(byteCount)
    pthread_mutex_lock(&lock)
    if byteCount <= minimum {
      if let p = small[size / 64].popLast() {
        smallRetained -= size
        pthread_mutex_unlock(&lock)
        return p
      }
    } else if let p = free[size]?.popLast() {
      retained -= size
      pthread_mutex_unlock(&lock)
      return p
    }
    pthread_mutex_unlock(&lock)
    return UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
  }

  func give(_ p: UnsafeMutableRawPointer, _ byteCount: Int) {
    let size = sizeClass(byteCount)
    pthread_mutex_lock(&lock)
    if byteCount <= minimum {
      if small[size / 64].count < perSmallClass && smallRetained + size <= maxSmallRetained {
        small[size / 64].append(p)
        smallRetained += size
        pthread_mutex_unlock(&lock)
        return
      }
    } else if retained + size <= maxRetained {
      free[size, default: []].append(p)
      retained += size
      pthread_mutex_unlock(&lock)
      return
    }
    pthread_mutex_unlock(&lock)
    p.deallocate()
  }
}

extension NDArray {
  /// Rows `range` of the leading dimension, copied (samples of a batch).
  public func leadingRows(_ range: Range<Int>) -> NDArray {
    guard rank > 0, range.lowerBound >= 0, range.upperBound <= shape[0] else { return self }
    var out = NDArray(uninitialized: dataType, [range.count] + shape.dropFirst())
    let rowBytes = (dataType.byteCount(elements: shape.dropFirst().reduce(1, *)) ?? 0)
    if dataType == .string {
      let per = shape.dropFirst().reduce(1, *)
      out.strings = Array(strings[(range.lowerBound * per)..<(range.upperBound * per)])
    } else if let src = storage.base, let dst = out.storage.base, rowBytes > 0 {
      dst.copyMemory(from: src + range.lowerBound * rowBytes, byteCount: range.count * rowBytes)
    }
    return out
  }
}
