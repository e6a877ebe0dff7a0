#if canImport(Glibc)
import Glibc
#endif

/// Bytes that a tensor owns or borrows: heap memory taken over from the protobuf decoder,
/// a slice of a memory-mapped file, or a fresh allocation. Immutable once made; the owner
/// object keeps the memory alive for as long as any tensor refers to it.
public final class ByteBuffer: @unchecked Sendable {
  public let base: UnsafeRawPointer?
  public let count: Int
  private let owner: AnyObject?
  private let freeOnDeinit: Bool

  /// Takes ownership of `malloc`ed memory; it is `free`d when the buffer goes away.
  public init(adoptingMalloced pointer: UnsafeMutableRawPointer?, count: Int) {
    self.base = UnsafeRawPointer(pointer)
    self.count = count
    self.owner = nil
    self.freeOnDeinit = pointer != nil
  }

  /// Borrows memory kept alive by `owner` (a mapped file, usually).
  public init(borrowing pointer: UnsafeRawPointer?, count: Int, owner: AnyObject) {
    self.base = pointer
    self.count = count
    self.owner = owner
    self.freeOnDeinit = false
  }

  /// Copies `bytes` (into a spill file when spilling is on and they are many: `SpillStorage`).
  public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
    let n = bytes.count
    if let spill = SpillStorage.file(count: n) {
      let typed = spill.base.bindMemory(to: UInt8.self, capacity: n)
      _ = UnsafeMutableBufferPointer(start: typed, count: n).initialize(from: bytes)
      self.init(borrowing: spill.base, count: n, owner: spill)
      releaseResidentPages()
      return
    }
    let p = n == 0 ? nil : malloc(n)
    if let p {
      let typed = p.bindMemory(to: UInt8.self, capacity: n)
      _ = UnsafeMutableBufferPointer(start: typed, count: n).initialize(from: bytes)
    }
    self.init(adoptingMalloced: p, count: p == nil ? 0 : n)
  }

  /// A zero-filled buffer of `count` bytes that the caller fills through `body` before sharing.
  /// Large buffers go to a spill file when spilling is on (`SpillStorage`).
  public static func make(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows -> ByteBuffer {
    if let spill = SpillStorage.file(count: count) {
      let b = ByteBuffer(borrowing: spill.base, count: count, owner: spill)
      try body(UnsafeMutableRawBufferPointer(start: spill.base, count: count))
      b.releaseResidentPages()
      return b
    }
    let p = count == 0 ? nil : calloc(count, 1)
    let b = ByteBuffer(adoptingMalloced: p, count: p == nil ? 0 : count)
    try body(UnsafeMutableRawBufferPointer(start: p, count: b.count))
    return b
  }

  deinit {
    if freeOnDeinit, let base { free(UnsafeMutableRawPointer(mutating: base)) }
  }

  public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withExtendedLifetime(self) { try body(bytes) }
  }

  /// Lets the kernel drop the resident pages of a file-backed buffer (a mapped input, a spill
  /// file) after a streaming pass, so a large external-data model does not grow the resident set.
  public func releaseResidentPages() {
    guard let mapped = owner as? ResidentPages, let base, count > 0 else { return }
    mapped.dropPages(in: base, count: count)
  }
}

extension ByteBuffer: Equatable {
  public static func == (a: ByteBuffer, b: ByteBuffer) -> Bool {
    guard a.count == b.count else { return false }
    guard a.count > 0, let x = a.base, let y = b.base else { return true }
    return memcmp(x, y, a.count) == 0
  }
}
