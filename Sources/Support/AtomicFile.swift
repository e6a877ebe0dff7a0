#if canImport(Glibc)
import Glibc
#endif

/// Identity of a file on disk: two paths name the same file exactly when these are equal,
/// whatever symlinks, `..` components or hard links lie between them.
public struct FileIdentity: Hashable, Sendable {
  public let device: UInt64
  public let inode: UInt64

  /// The identity of what `path` names (following symlinks), or nil when nothing is there.
  public init?(path: String) {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    device = UInt64(st.st_dev)
    inode = UInt64(st.st_ino)
  }

  public init(device: UInt64, inode: UInt64) {
    self.device = device
    self.inode = inode
  }
}

/// Checks that `path` may be written: never over an input, never over an existing file
/// without `force`, and only into an existing directory. Runs before any work is done.
public func checkOutputPath(_ path: String, force: Bool, inputs: [FileIdentity]) throws {
  if path.isEmpty { throw CompressorError.usage("the output path is empty") }
  if let id = FileIdentity(path: path) {
    if inputs.contains(id) {
      throw CompressorError.output("\(path) is an input of this run; choose another output path")
    }
    var st = stat()
    if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
      throw CompressorError.output("\(path) is a directory")
    }
    if !force { throw CompressorError.output("\(path) exists (use --force to replace it)") }
  } else {
    var lst = stat()
    if lstat(path, &lst) == 0, !force {
      // A dangling symlink: replacing it would write somewhere the user did not name.
      throw CompressorError.output("\(path) exists (use --force to replace it)")
    }
  }
  let dir = directoryName(path)
  var st = stat()
  if stat(dir, &st) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
    throw CompressorError.output("output directory \(dir) does not exist")
  }
}

public func directoryName(_ path: String) -> String {
  guard let slash = path.lastIndex(of: "/") else { return "." }
  let d = String(path[..<slash])
  return d.isEmpty ? "/" : d
}

public func baseName(_ path: String) -> String {
  guard let slash = path.lastIndex(of: "/") else { return path }
  return String(path[path.index(after: slash)...])
}

/// A file written under a temporary name beside its destination, then fsynced and renamed
/// into place, so a reader sees either the old file or the complete new one. Until
/// `commit`, the temporary is registered for removal on SIGINT/SIGTERM; if the writer is
/// dropped without a commit, the temporary is removed.
public final class AtomicFileWriter {
  public let destination: String
  public private(set) var tempPath: String
  private var fd: Int32
  private var buffer: UnsafeMutableRawPointer
  private var used = 0
  private let capacity = 1 << 20
  private var finished = false
  public private(set) var bytesWritten = 0
  /// Bytes handed to the kernel so far, and how many of them writeback was started for.
  private var flushed = 0
  private var writebackStarted = 0

  public init(destination: String) throws {
    self.destination = destination
    let dir = directoryName(destination)
    // SIGINT/SIGTERM are held from the temporary's creation until it is registered: a signal in
    // between would find nothing to remove and leave the temporary behind.
    var held = sigset_t(), previous = sigset_t()
    sigemptyset(&held)
    sigaddset(&held, SIGINT)
    sigaddset(&held, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &held, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    var template = Array("\(dir)/.\(baseName(destination)).tmp-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { buf in buf.baseAddress.map { mkstemp($0) } ?? -1 }
    if fd < 0 {
      let e = errno
      switch e {
      case EACCES, EPERM, EROFS:
        throw CompressorError(.permission, "cannot create output in \(dir): \(errnoText(e))")
      case ENOSPC, EDQUOT, EIO: throw CompressorError.io("cannot create output in \(dir): \(errnoText(e))")
      default: throw CompressorError.output("cannot create output in \(dir): \(errnoText(e))")
      }
    }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    self.fd = fd
    self.tempPath = template.withUnsafeBufferPointer { buf in buf.baseAddress.map { String(cString: $0) } ?? "" }
    fchmod(fd, 0o644)
    self.buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
    TemporaryFiles.register(tempPath)
  }

  deinit {
    if !finished { abort() }
    buffer.deallocate()
  }

  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    guard let src = bytes.baseAddress, bytes.count > 0 else { return }
    if used + bytes.count <= capacity {
      (buffer + used).copyMemory(from: src, byteCount: bytes.count)
      used += bytes.count
    } else {
      try flush()
      if bytes.count >= capacity {
        try writeFully(src, bytes.count)
      } else {
        buffer.copyMemory(from: src, byteCount: bytes.count)
        used = bytes.count
      }
    }
    bytesWritten += bytes.count
  }

  public func write(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try write($0) }
  }

  /// Pads with zero bytes until the file size is a multiple of `alignment`.
  public func pad(toMultipleOf alignment: Int) throws {
    let rem = bytesWritten % alignment
    if rem == 0 { return }
    let zeros = [UInt8](repeating: 0, count: alignment - rem)
    try write(zeros)
  }

  private func flush() throws {
    if used > 0 { try writeFully(buffer, used) }
    used = 0
  }

  private func writeFully(_ p: UnsafeRawPointer, _ n: Int) throws {
    var done = 0
    while done < n {
      let r = Glibc.write(fd, p + done, n - done)
      if r < 0 {
        if errno == EINTR { continue }
        throw CompressorError.io("cannot write \(destination): \(errnoText())")
      }
      if r == 0 { throw CompressorError.io("cannot write \(destination): short write") }
      done += r
    }
    flushed += n
    // Start writeback of every finished 8 MiB while later bytes are still being produced, so
    // the fsync at the end has little left to wait for (on Linux, FADV_DONTNEED starts writeback
    // of dirty pages). Only a hint: errors surface at fsync.
    if flushed - writebackStarted >= 8 << 20 {
      _ = posix_fadvise(fd, off_t(writebackStarted), off_t(flushed - writebackStarted), POSIX_FADV_DONTNEED)
      writebackStarted = flushed
    }
  }

  /// Flushes and fsyncs the temporary; the rename happens in `commit`.
  public func finishWriting() throws {
    try flush()
    if fsync(fd) != 0 { throw CompressorError.io("cannot write \(destination): \(errnoText())") }
  }

  /// Renames the finished temporary over the destination and syncs the directory.
  public func commit() throws {
    try finishWriting()
    if close(fd) != 0 { fd = -1; throw CompressorError.io("cannot write \(destination): \(errnoText())") }
    fd = -1
    if rename(tempPath, destination) != 0 {
      throw CompressorError.output("cannot move the finished output to \(destination): \(errnoText())")
    }
    finished = true
    TemporaryFiles.unregister(tempPath)
    let dfd = open(directoryName(destination), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
  }

  /// Removes the temporary; the destination is untouched.
  public func abort() {
    if finished { return }
    finished = true
    if fd >= 0 { close(fd); fd = -1 }
    unlink(tempPath)
    TemporaryFiles.unregister(tempPath)
  }

  /// Commits several files as one output (a model and its external data): all are written and
  /// synced before the first rename, and the file that refers to the others is renamed last.
  public static func commitTogether(_ writers: [AtomicFileWriter]) throws {
    do {
      for w in writers { try w.finishWriting() }
      for w in writers { try w.commit() }
    } catch {
      for w in writers { w.abort() }
      throw error
    }
  }
}

/// Temporary files to delete if the process is interrupted. Signal handlers may only use
/// async-signal-safe calls, so paths live in a fixed C array filled before the handler runs.
public enum TemporaryFiles {
  private static let slots = 16
  nonisolated(unsafe) private static let table: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
    let t = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 16)
    t.initialize(repeating: nil, count: 16)
    return t
  }()

  /// Installs SIGINT/SIGTERM handlers that remove registered temporaries and exit 130/143,
  /// and ignores SIGXFSZ so a file-size limit surfaces as a write error (exit 74).
  public static func installSignalHandlers() {
    _ = table
    signal(SIGINT) { sig in TemporaryFiles.removeAllAndExit(sig) }
    signal(SIGTERM) { sig in TemporaryFiles.removeAllAndExit(sig) }
    signal(SIGXFSZ, SIG_IGN)
    MappedRegions.installBusHandler()
  }

  static func register(_ path: String) {
    for i in 0..<slots where table[i] == nil {
      table[i] = strdup(path)
      return
    }
  }

  static func unregister(_ path: String) {
    for i in 0..<slots {
      if let p = table[i], strcmp(p, path) == 0 {
        table[i] = nil
        free(p)
        return
      }
    }
  }

  /// Unlinks every registered temporary (async-signal-safe).
  static func removeAll() {
    for i in 0..<slots {
      if let p = table[i] { unlink(p) }
    }
  }

  private static func removeAllAndExit(_ sig: Int32) -> Never {
    removeAll()
    _exit(128 + sig)
  }
}
