import Datasets
import IR
import Runtime
import Support

/// A training set held in memory, one array per model input with the samples along the leading
/// axis, so every epoch can visit them in a new order.
struct Samples {
  var arrays: [String: NDArray]
  var count: Int

  /// Reads every sample of `path` (a data file or a directory of them).
  static func load(_ path: String, inputNames: [String]) throws -> Samples {
    let dataset = try Dataset(path: path, inputNames: inputNames)
    var chunks = [[String: NDArray]]()
    let count = try dataset.forEachChunk(rows: 1 << 16) { chunks.append($0) }
    var arrays = [String: NDArray]()
    for name in inputNames {
      let parts = chunks.compactMap { $0[name] }
      guard let first = parts.first, first.rank > 0 else {
        throw CompressorError.invalid("\(path): input '\(name)' needs a leading sample axis to train on")
      }
      let tail = Array(first.shape.dropFirst())
      guard parts.allSatisfy({ $0.rank == first.rank && Array($0.shape.dropFirst()) == tail && $0.dataType == first.dataType }) else {
        throw CompressorError.invalid("\(path): the samples of input '\(name)' do not all have one shape and type")
      }
      guard let joined = concatenateRows(parts) else { continue }
      guard joined.shape[0] == count else {
        throw CompressorError.invalid("\(path): input '\(name)' has \(joined.shape[0]) samples, the others \(count)")
      }
      arrays[name] = joined
    }
    return Samples(arrays: arrays, count: count)
  }

  /// The samples at `indices`, in that order, as one batch.
  func rows<C: Collection>(_ indices: C) -> [String: NDArray] where C.Element == Int {
    arrays.mapValues { a in
      let rowBytes = a.count == 0 ? 0 : (a.dataType.byteCount(elements: a.count / a.shape[0]) ?? 0)
      var out = NDArray(uninitialized: a.dataType, [indices.count] + a.shape.dropFirst())
      out.withUnsafeMutableBytes { dst in
        a.withUnsafeBytes { src in
          guard let d = dst.baseAddress, let s = src.baseAddress else { return }
          for (k, i) in indices.enumerated() { (d + k * rowBytes).copyMemory(from: s + i * rowBytes, byteCount: rowBytes) }
        }
      }
      return out
    }
  }
}

/// Concatenates same-shaped float batches along the leading axis.
func concatenateRows(_ parts: [NDArray]) -> NDArray? {
  guard let first = parts.first else { return nil }
  let rows = parts.reduce(0) { $0 + ($1.shape.first ?? 1) }
  var out = NDArray(uninitialized: first.dataType, [rows] + first.shape.dropFirst())
  var offset = 0
  out.withUnsafeMutableBytes { dst in
    for p in parts {
      p.withUnsafeBytes { src in
        if let d = dst.baseAddress, let s = src.baseAddress { (d + offset).copyMemory(from: s, byteCount: src.count) }
        offset += src.count
      }
    }
  }
  return out
}
