import Foundation
import Runtime
import Support

/// Samples for calibration, evaluation and training: a directory of data files read in file-name
/// order, or one file. Each file holds one sample or a batch (leading dimension) and binds its
/// arrays to model inputs by name (.npz, named .pb) or by position (.npy, unnamed .pb) for a
/// single-input model. Files are loaded one at a time.
public struct Dataset {
  public let files: [String]
  public let inputNames: [String]

  public init(path: String, inputNames: [String]) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw CompressorError.missing("\(path): no such file or directory")
    }
    if isDirectory.boolValue {
      let names = try FileManager.default.contentsOfDirectory(atPath: path)
        .filter { [".npy", ".npz", ".pb"].contains(where: $0.hasSuffix) }
        .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
      files = names.map { path + "/" + $0 }
    } else {
      files = [path]
    }
    if files.isEmpty { throw CompressorError.usage("\(path) holds no .npy, .npz or .pb files") }
    self.inputNames = inputNames
  }

  /// The feeds of file `index`, checked to name exactly the model's inputs.
  public func batch(_ index: Int) throws -> [String: NDArray] {
    let path = files[index]
    var feeds = [String: NDArray]()
    for (name, array) in try DataFile.load(path) {
      guard let key = name ?? (inputNames.count == 1 ? inputNames[0] : nil) else {
        throw CompressorError.invalid("\(path): an unnamed array, but the model has \(inputNames.count) inputs (use .npz with arrays named \(inputNames.joined(separator: ", ")))")
      }
      guard inputNames.contains(key) else {
        throw CompressorError.invalid("\(path): array '\(key)' is not a model input (inputs: \(inputNames.joined(separator: ", ")))")
      }
      feeds[key] = array
    }
    for name in inputNames where feeds[name] == nil {
      throw CompressorError.invalid("\(path): no array for model input '\(name)'")
    }
    return feeds
  }
}

extension Dataset {
  /// Calls `body` with the samples in order, at most `rows` at a time (files holding a batch are
  /// cut along their leading dimension), until `limit` samples have been given. Memory is one
  /// file and one chunk, whatever the number of samples. Returns the number of samples given.
  @discardableResult
  public func forEachChunk(rows: Int, limit: Int = Int.max, _ body: ([String: NDArray]) throws -> Void) throws -> Int {
    var used = 0
    for file in 0..<files.count where used < limit {
      let feeds = try batch(file)
      // A sample the model rejects is the data file's fault: say which file.
      func run(_ chunk: [String: NDArray]) throws {
        do { try body(chunk) } catch let e as CompressorError where e.kind == .invalidInput && !e.message.hasPrefix(files[file]) {
          throw CompressorError(.invalidInput, "\(files[file]): \(e.message)")
        }
      }
      let count = feeds.values.map { $0.rank == 0 ? 1 : $0.shape[0] }.min() ?? 1
      let batched = feeds.values.allSatisfy { $0.rank > 0 && $0.shape[0] == count }
      guard batched else {
        try run(feeds)
        used += 1
        continue
      }
      var start = 0
      while start < count && used < limit {
        let n = min(rows, count - start, limit - used)
        try run(feeds.mapValues { $0.leadingRows(start..<(start + n)) })
        used += n
        start += n
      }
    }
    return used
  }
}

extension Dataset {
  /// The input shapes of one sample: the first file's arrays with a leading dimension of 1 (for
  /// counting MACs per sample).
  public func sampleShapes() throws -> [String: [Int]] {
    try batch(0).mapValues { $0.rank == 0 ? [] : [1] + $0.shape.dropFirst() }
  }
}
