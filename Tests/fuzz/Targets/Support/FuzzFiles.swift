import Support

#if canImport(Glibc)
import Glibc
#endif

/// What every fuzz entry point shares: a private scratch directory in /dev/shm (writes there cost
/// no disk I/O, and the writer's fsync is cheap), and the rule that a CompressorError is a
/// correct refusal unless it is an internal error.
public final class FuzzFiles: @unchecked Sendable {
  public static let shared = FuzzFiles()
  private let directory: String
  private var configured = false

  private init() {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(base)/compressor-fuzz-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    directory = made.map { String(cString: $0) } ?? "/tmp"
    atexit { FuzzFiles.shared.removeAll() }
  }

  public func path(_ name: String) -> String { directory + "/" + name }

  /// A small memory budget and loop limit, so hostile sizes are refused fast.
  public func configureOnce() {
    guard !configured else { return }
    configured = true
    MemoryBudget.setLimit(256 << 20)
    setenv("COMPRESSOR_LOOP_LIMIT", "1000", 0)
  }

  public func write(_ data: UnsafePointer<UInt8>, _ size: Int, to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { fail("cannot write \(path)") }
    var done = 0
    while done < size {
      let r = Glibc.write(fd, data + done, size - done)
      if r <= 0 { break }
      done += r
    }
    close(fd)
  }

  public func expectNotInternal(_ e: CompressorError) {
    if e.kind == .internalError { fail("internal error: \(e.message)") }
  }

  /// A finding: libFuzzer saves the input that led here.
  public func fail(_ message: String) -> Never {
    fputs("fuzz finding: \(message)\n", stderr)
    abort()
  }

  private func removeAll() {
    if let d = opendir(directory) {
      while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { unlink(directory + "/" + name) }
      }
      closedir(d)
    }
    rmdir(directory)
  }
}
