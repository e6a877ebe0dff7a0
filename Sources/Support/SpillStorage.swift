#if canImport(Glibc)
import Glibc
#endif

/// Where the large tensors a command makes wait until they are written, when the model is one
/// that does not fit the memory a command should use (it came with external data).
///
/// A pass that quantizes or prunes a 3 GB model produces gigabytes of new tensors before the
/// writer runs. With spilling on, every new buffer of at least `threshold` bytes lives in its own
/// unlinked file beside the output, mapped shared: once filled, its pages are dropped from the
/// resident set (the page cache keeps them, the disk backs them), and the writer faults them back
/// in one tensor at a time and drops them again. The resident set stays near the largest tensor
/// instead of the model's size. The files are unlinked as soon as they exist, so nothing is left
/// behind whatever ends the process. Space is reserved up front (`posix_fallocate`): a full disk
/// means the buffer stays in memory, never a SIGBUS on a page written later.
public enum SpillStorage {
  /// Buffers of at least this many bytes spill.
  public static let threshold = 16 << 20
  nonisolated(unsafe) private static var directory: String?

  /// Turns spilling on, into `directory` (the output's, where the space for the result must exist
  /// anyway). Set once, before any pass runs.
  public static func enable(in directory: String) { self.directory = directory }
  public static func disable() { directory = nil }
  public static var isEnabled: Bool { directory != nil }

  /// A zero-filled spill file of `count` bytes, or nil: spilling is off, the buffer is small, or
  /// the file cannot be made (then the caller allocates memory as usual).
  static func file(count: Int) -> SpillFile? {
    guard let directory, count >= threshold else { return nil }
    return SpillFile(directory: directory, count: count)
  }
}

/// One unlinked, shared-mapped scratch file holding a single buffer.
final class SpillFile: @unchecked Sendable, ResidentPages {
  let base: UnsafeMutableRawPointer
  let count: Int

  init?(directory: String, count: Int) {
    var template = Array("\(directory)/.compressor-spill-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { buf in buf.baseAddress.map { mkstemp($0) } ?? -1 }
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    _ = template.withUnsafeBufferPointer { $0.baseAddress.map { unlink($0) } }
    guard posix_fallocate(fd, 0, off_t(count)) == 0 else { return nil }
    let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    guard let p, p != MAP_FAILED else { return nil }
    base = p
    self.count = count
  }

  deinit { munmap(base, count) }

  func dropPages(in pointer: UnsafeRawPointer, count: Int) {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (pointer - UnsafeRawPointer(base)) / page * page
    let end = min(self.count, (pointer - UnsafeRawPointer(base)) + count)
    guard end > start else { return }
    madvise(base + start, end - start, MADV_DONTNEED)
  }
}

/// Memory whose resident pages can be given back without losing their content: a mapped input
/// file, a spill file.
protocol ResidentPages: AnyObject {
  func dropPages(in pointer: UnsafeRawPointer, count: Int)
}
