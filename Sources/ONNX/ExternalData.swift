#if canImport(Glibc)
import Glibc
#endif
import IR
import Support

/// Finds and maps the files that external tensors live in. A location is opened only when it
/// resolves inside the model's directory without `..`, absolute paths, symlinks (in any
/// component) or hard links, so a downloaded model can never make compressor read elsewhere.
final class ExternalDataResolver {
  let modelFile: String
  let modelDirectory: String
  private var mapped: [String: MappedFile] = [:]
  /// Data files in the order first used, for reports and for output-over-input checks.
  private(set) var files: [MappedFile] = []

  init(modelFile: String) {
    self.modelFile = modelFile
    self.modelDirectory = directoryName(modelFile)
  }

  /// The bytes of an external tensor, checked against the size its dims and type require.
  func bytes(tensor: String, entries: [StringPair], expectedLength: Int) throws -> (ByteBuffer, ExternalDataInfo) {
    var location: String?
    var offset = 0
    var length: Int?
    var checksum: String?
    for e in entries {
      switch e.key {
      case "location": location = e.value
      case "offset": offset = try number(e.value, key: "offset", tensor: tensor)
      case "length": length = try number(e.value, key: "length", tensor: tensor)
      case "checksum": checksum = e.value
      default:
        throw CompressorError.invalid("\(modelFile): tensor '\(tensor)' has unknown external data key '\(e.key)'")
      }
    }
    guard let location, !location.isEmpty else {
      throw CompressorError.invalid("\(modelFile): tensor '\(tensor)' is external but names no location")
    }
    let file = try map(location, tensor: tensor)
    let length_ = length ?? expectedLength
    if length_ != expectedLength {
      throw CompressorError.invalid(
        "\(modelFile): tensor '\(tensor)' declares external length \(length_) but its dims and type need \(expectedLength) bytes")
    }
    let (end, overflow) = offset.addingReportingOverflow(length_)
    if overflow || end > file.size {
      throw CompressorError.invalid(
        "\(modelFile): tensor '\(tensor)' reads bytes \(offset)..<\(offset &+ length_) of \(location), which has only \(file.size)")
    }
    return (file.slice(offset: offset, count: length_),
            ExternalDataInfo(location: location, offset: offset, length: length_, checksum: checksum))
  }

  private func number(_ text: String, key: String, tensor: String) throws -> Int {
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let v = Int(text) else {
      throw CompressorError.invalid("\(modelFile): tensor '\(tensor)' has external \(key) '\(text)', not a non-negative integer")
    }
    return v
  }

  private func map(_ location: String, tensor: String) throws -> MappedFile {
    if let m = mapped[location] { return m }
    let unsafe = { (why: String) in
      CompressorError.invalid("\(self.modelFile): external data location '\(location)' of tensor '\(tensor)' \(why)")
    }
    if location.hasPrefix("/") { throw unsafe("is an absolute path") }
    let components = location.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    if components.isEmpty { throw unsafe("is empty") }
    if components.contains("..") { throw unsafe("leaves the model's directory") }
    // Walk component by component with lstat so that no symlink is ever followed.
    var path = modelDirectory
    var st = stat()
    for (i, c) in components.enumerated() where c != "." {
      path += "/" + c
      if lstat(path, &st) != 0 {
        if errno == ENOENT || errno == ENOTDIR {
          throw CompressorError.missing("\(modelFile): external data file '\(location)' of tensor '\(tensor)' is missing")
        }
        throw CompressorError.missing("\(modelFile): cannot read external data '\(location)': \(errnoText())")
      }
      let type = st.st_mode & S_IFMT
      if type == S_IFLNK { throw unsafe("goes through a symbolic link") }
      if i < components.count - 1 && type != S_IFDIR { throw unsafe("is not inside a directory") }
    }
    if (st.st_mode & S_IFMT) != S_IFREG { throw unsafe("is not a regular file") }
    if st.st_nlink > 1 { throw unsafe("is a hard link") }
    let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    if fd < 0 { throw FileErrors.openForReading(path) }
    defer { close(fd) }
    var opened = stat()
    // The file must still be the one that was checked (no swap between lstat and open).
    guard fstat(fd, &opened) == 0, opened.st_ino == st.st_ino, opened.st_dev == st.st_dev else {
      throw unsafe("changed while it was being opened")
    }
    let file = try MappedFile(fd: fd, path: path)
    mapped[location] = file
    files.append(file)
    return file
  }
}
