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
