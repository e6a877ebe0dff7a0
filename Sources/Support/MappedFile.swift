#if canImport(Glibc)
import Glibc
#endif

/// A whole file mapped read-only. Pages are loaded on first touch, so a multi-gigabyte
/// weight file costs nothing until a tensor in it is read.
public final class MappedFile: @unchecked Sendable, ResidentPages {
  public let path: String
  public let size: Int
  public let base: UnsafeRawPointer?
  public let device: UInt64
  public let inode: UInt64

  /// Maps an already opened descriptor (the caller checked what it refers to); the descriptor is
  /// not kept.
  public init(fd: Int32, path: String) throws {
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw CompressorError.io("cannot stat \(path): \(errnoText())") }
    self.path = path
    self.size = Int(st.st_size)
    self.device = UInt64(st.st_dev)
    self.inode = UInt64(st.st_ino)
    if size == 0 {
      base = nil
      return
    }
    let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
    guard let p, p != MAP_FAILED else { throw CompressorError.io("cannot map \(path): \(errnoText())") }
    base = UnsafeRawPointer(p)
    MappedRegions.register(base: UnsafeRawPointer(p), size: size, path: path)
  }

  /// Opens and maps a regular file.
  public convenience init(path: String) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw FileErrors.openForReading(path) }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
      throw CompressorError.missing("\(path) is not a regular file")
    }
    try self.init(fd: fd, path: path)
  }

  deinit {
    if let base {
      MappedRegions.unregister(base: base)
      munmap(UnsafeMutableRawPointer(mutating: base), size)
    }
  }

  public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

  /// A buffer over `[offset, offset+count)`, which the caller has checked lies inside the file.
  public func slice(offset: Int, count: Int) -> ByteBuffer {
    ByteBuffer(borrowing: count == 0 ? nil : base.map { $0 + offset }, count: count, owner: self)
  }

  func dropPages(in pointer: UnsafeRawPointer, count: Int) {
    guard let base else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (pointer - base) / page * page
    let end = min(size, (pointer - base) + count)
    guard end > start else { return }
    madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
  }

  /// Ask for sequential read-ahead over the whole mapping.
  public func adviseSequential() {
    if let base { madvise(UnsafeMutableRawPointer(mutating: base), size, MADV_SEQUENTIAL) }
  }
}

public func errnoText(_ code: Int32 = errno) -> String {
  String(cString: strerror(code))
}

public enum FileErrors {
  /// The error for a file that cannot be opened for reading: missing, unreadable, or a directory.
  public static func openForReading(_ path: String, _ code: Int32 = errno) -> CompressorError {
    switch code {
    case ENOENT, ENOTDIR: return .missing("\(path): no such file")
    case EACCES, EPERM: return .missing("\(path): permission denied")
    case EISDIR: return .missing("\(path) is a directory")
    default: return .missing("cannot open \(path): \(errnoText(code))")
    }
  }
}

/// Files mapped now, for the SIGBUS handler: a file that shrinks while mapped (another process
/// truncates a model's external data mid-run) makes the next read of a vanished page raise
/// SIGBUS. The handler names the file whose mapping holds the faulting address, removes the
/// temporaries and exits 74, as for any other read error. Handlers may only use
/// async-signal-safe calls, so the table is a fixed C array filled before they run.
public enum MappedRegions {
  private static let slots = 64
  private struct Region {
    var base: UInt
    var end: UInt
    var message: UnsafeMutablePointer<CChar>?
  }
  nonisolated(unsafe) private static let table: UnsafeMutablePointer<Region> = {
    let t = UnsafeMutablePointer<Region>.allocate(capacity: 64)
    t.initialize(repeating: Region(base: 0, end: 0, message: nil), count: 64)
    return t
  }()
  nonisolated(unsafe) private static var lock = pthread_mutex_t()
  nonisolated(unsafe) private static let fallback = strdup("compressor: error: an input file changed size while it was being read\n")

  static func register(base: UnsafeRawPointer, size: Int, path: String) {
    _ = table
    pthread_mutex_lock(&lock)
    defer { pthread_mutex_unlock(&lock) }
    for i in 0..<slots where table[i].base == 0 {
      let start = UInt(bitPattern: base)
      table[i] = Region(base: start, end: start + UInt(size),
                        message: strdup("compressor: error: \(path) changed size while it was being read\n"))
      return
    }
  }

  static func unregister(base: UnsafeRawPointer) {
    pthread_mutex_lock(&lock)
    defer { pthread_mutex_unlock(&lock) }
    for i in 0..<slots where table[i].base == UInt(bitPattern: base) {
      let message = table[i].message
      table[i] = Region(base: 0, end: 0, message: nil)
      free(message)
      return
    }
  }

  /// Installs the SIGBUS handler (with the SIGINT/SIGTERM ones).
  static func installBusHandler() {
    _ = table
    _ = fallback
    var action = sigaction()
    action.__sigaction_handler.sa_sigaction = { _, info, _ in
      let address = UInt(bitPattern: info?.pointee._sifields._sigfault.si_addr)
      var message = MappedRegions.fallback
      for i in 0..<MappedRegions.slots {
        let r = MappedRegions.table[i]
        if r.base != 0 && address >= r.base && address < r.end, let m = r.message { message = m; break }
      }
      if let message { _ = Glibc.write(2, message, strlen(message)) }
      TemporaryFiles.removeAll()
      _exit(CompressorError.Kind.io.rawValue)
    }
    action.sa_flags = SA_SIGINFO
    sigemptyset(&action.sa_mask)
    sigaction(SIGBUS, &action, nil)
  }
}
