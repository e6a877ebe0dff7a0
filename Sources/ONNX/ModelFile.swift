#if canImport(Glibc)
import Glibc
#endif
import CONNX
import IR
import Support

/// A model read from disk, with what is needed to refuse overwriting any of its files.
public struct LoadedModel {
  public var model: Model
  public let path: String
  public let fileBytes: Int
  /// The model file and every external data file it uses.
  public let inputFiles: [FileIdentity]
  /// External data files, as paths relative to the model's directory, in first-use order.
  public let externalDataFiles: [String]
  /// Fields the schema does not know, carried through unchanged.
  public let unknownFieldCount: Int
  /// Bytes of the model file and every external data file it uses.
  public let totalBytes: Int
}

public enum ModelReader {
  /// protobuf's hard limit for one message; larger models must keep weights in external data.
  public static let maxFileBytes = Int(Int32.max)

  /// Reads, checks and decodes a model. Errors name the file and exit with the codes of
  /// design.md: 66 when it cannot be read, 65 when it is not a valid and safe ONNX model,
  /// 69 when it is valid but uses something this build does not support.
  public static func read(_ path: String, validate shouldValidate: Bool = true) throws -> LoadedModel {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw FileErrors.openForReading(path) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { close(fd); throw FileErrors.openForReading(path) }
    if (st.st_mode & S_IFMT) == S_IFDIR { close(fd); throw CompressorError.missing("\(path) is a directory") }
    if (st.st_mode & S_IFMT) != S_IFREG { close(fd); throw CompressorError.missing("\(path) is not a regular file") }
    let size = Int(st.st_size)
    if size == 0 { close(fd); throw CompressorError.invalid("\(path): the file is empty, not an ONNX model") }
    if size > maxFileBytes {
      close(fd)
      throw CompressorError.invalid(
        "\(path): \(size) bytes is over protobuf's 2 GiB limit for one file; store the weights as external data (compressor convert --external-data)")
    }
    let file: MappedFile
    do { file = try MappedFile(fd: fd, path: path) } catch { close(fd); throw error }
    close(fd)
    file.adviseSequential()

    let scan = try WireScanner(file: path, tensorDescriptor: ProtobufC.tensorDescriptor)
      .scan(file.bytes, root: ProtobufC.modelDescriptor)

    let budget = ProtobufC.AllocationBudget(bytes: decodeBudget(fileBytes: size))
    let unpackedOrNil = scan.stripped.map { stripped in
      stripped.withUnsafeBytes { ProtobufC.unpackModel($0, budget: budget) }
    } ?? ProtobufC.unpackModel(file.bytes, budget: budget)
    guard let unpacked = unpackedOrNil else {
      if budget.exceeded {
        throw CompressorError.invalid("\(path): decoding needs more memory than the budget of \(decodeBudget(fileBytes: size) >> 20) MiB")
      }
      throw CompressorError.invalid("\(path): not a valid ONNX model (protobuf decoding failed)")
    }
    defer { ProtobufC.freeModel(unpacked) }

    let resolver = ExternalDataResolver(modelFile: path)
    let inFile = scan.payloads.map { file.slice(offset: $0.offset, count: $0.length) }
    let decoder = Decoder(file: path, externalData: resolver, rawDataInFile: inFile)
    let model = try decoder.model(unpacked)
    if shouldValidate { try validate(model, file: path) }
    let dataFiles = resolver.files
    return LoadedModel(
      model: model, path: path, fileBytes: size,
      inputFiles: [FileIdentity(device: file.device, inode: file.inode)]
        + dataFiles.map { FileIdentity(device: $0.device, inode: $0.inode) },
      externalDataFiles: dataFiles.map { String($0.path.dropFirst(resolver.modelDirectory.count + 1)) },
      unknownFieldCount: decoder.unknownFieldCount,
      totalBytes: size + dataFiles.reduce(0) { $0 + $1.size })
  }

  /// What protobuf-c may allocate for a file: generous for real models (whose bytes are mostly
  /// tensor data decoded one to one), bounded for hostile ones (tiny messages that expand).
  static func decodeBudget(fileBytes: Int) -> Int {
    let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    let wanted = (64 << 20) + fileBytes.multipliedReportingOverflow(by: 32).partialValue
    return min(wanted, max(min(physical / 2, MemoryBudget.limit), 256 << 20))
  }
}

public struct ExternalDataOptions: Sendable {
  /// File name of the data file, beside the model; default: the model's file name + ".data".
  public var location: String?
  /// Tensors of at least this many bytes go to the data file; smaller ones stay inline.
  public var sizeThreshold: Int
  public init(location: String? = nil, sizeThreshold: Int = 1024) {
    self.location = location
    self.sizeThreshold = sizeThreshold
  }
}

public struct WriteOptions: Sendable {
  public var force: Bool
  public var externalData: ExternalDataOptions?
  /// The input's size, for results that must never be larger (compressed models): a larger one
  /// is refused (69) before any output is in place.
  public var notLargerThanInput: Int?
  public init(force: Bool = false, externalData: ExternalDataOptions? = nil, notLargerThanInput: Int? = nil) {
    self.force = force
    self.externalData = externalData
    self.notLargerThanInput = notLargerThanInput
  }
}

public struct WriteResult: Sendable {
  public let modelBytes: Int
  public let dataPath: String?
  public let dataBytes: Int
  public let externalTensors: Int
}

public enum ModelWriter {
  /// Offsets in the data file are aligned so that runtimes can map tensors directly.
  static let smallAlignment = 64
  static let pageAlignment = 4096

  /// Checks that `path` (and its data file) may be written; call before doing any work.
  public static func checkOutput(_ path: String, options: WriteOptions, inputs: [FileIdentity]) throws {
    try checkOutputPath(path, force: options.force, inputs: inputs)
    if let ext = options.externalData {
      let dataPath = try dataFilePath(for: path, ext)
      try checkOutputPath(dataPath, force: options.force, inputs: inputs)
    }
  }

  static func dataFilePath(for path: String, _ ext: ExternalDataOptions) throws -> String {
    let location = ext.location ?? baseName(path) + ".data"
    if location.isEmpty || location.contains("/") || location == "." || location == ".." {
      throw CompressorError.usage("external data location '\(location)' must be a plain file name")
    }
    let dataPath = directoryName(path) + "/" + location
    if baseName(path) == location { throw CompressorError.usage("the external data file cannot be the model file itself") }
    return dataPath
  }

  /// Writes `model` atomically: temporaries beside the destination, fsync, rename; nothing is
  /// left behind if anything fails or the process is interrupted.
  @discardableResult
  public static func write(_ model: Model, to path: String, options: WriteOptions = .init(),
                           inputs: [FileIdentity] = []) throws -> WriteResult {
    try checkOutput(path, options: options, inputs: inputs)
    var dataWriter: AtomicFileWriter?
    var location = ""
    var threshold = Int.max
    var externalCount = 0
    if let ext = options.externalData {
      let dataPath = try dataFilePath(for: path, ext)
      location = baseName(dataPath)
      threshold = max(ext.sizeThreshold, 0)
      dataWriter = try AtomicFileWriter(destination: dataPath)
    }
    let placement = TensorPlacement { tensor in
      guard let data = dataWriter, tensor.dataType != .string, tensor.data.count >= threshold else { return nil }
      try data.pad(toMultipleOf: tensor.data.count >= (1 << 20) ? pageAlignment : smallAlignment)
      let offset = data.bytesWritten
      try tensor.data.withUnsafeBytes { try data.write($0) }
      tensor.data.releaseResidentPages()
      externalCount += 1
      return ExternalDataInfo(location: location, offset: offset, length: tensor.data.count)
    }
    let encoder = Encoder(placement: placement)
    let message = try encoder.model(model)
    let size = message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { ProtobufC.packedSize($0) }
    if let limit = options.notLargerThanInput, size + (dataWriter?.bytesWritten ?? 0) > limit {
      throw CompressorError.unsupported(
        "\(path): not written: the result would be \(size + (dataWriter?.bytesWritten ?? 0)) bytes, larger than its input (\(limit) bytes); its weights are too small for what the added nodes cost")
    }
    if size > ModelReader.maxFileBytes {
      throw CompressorError.output(
        "\(path): the model would be \(size) bytes, over protobuf's 2 GiB limit; write it with --external-data")
    }
    let modelWriter = try AtomicFileWriter(destination: path)
    try message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) {
      try ProtobufC.pack($0, into: modelWriter)
    }
    if let dataWriter {
      try AtomicFileWriter.commitTogether([dataWriter, modelWriter])
    } else {
      try modelWriter.commit()
    }
    return WriteResult(modelBytes: modelWriter.bytesWritten, dataPath: dataWriter?.destination,
                       dataBytes: dataWriter?.bytesWritten ?? 0, externalTensors: externalCount)
  }
}
