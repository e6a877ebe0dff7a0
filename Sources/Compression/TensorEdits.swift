import Runtime
import Support

/// Reshaping edits several passes make to weights.
enum TensorEdits {
  /// `array` with only the indices `keep` (ascending) along `axis`, any element type.
  static func keeping(_ keep: [Int], along axis: Int, of array: NDArray, tensor: String) throws -> NDArray {
    guard axis < array.rank else { throw CompressorError.internalError("slicing axis \(axis) of '\(tensor)' (rank \(array.rank))") }
    let outer = array.shape[..<axis].reduce(1, *), inner = array.shape[(axis + 1)...].reduce(1, *)
    guard let width = array.dataType.byteCount(elements: inner) else { return array }
    var shape = array.shape
    shape[axis] = keep.count
    var out = NDArray(uninitialized: array.dataType, shape)
    array.withUnsafeBytes { src in
      out.withUnsafeMutableBytes { dst in
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        var o = 0
        for outerIndex in 0..<outer {
          for k in keep {
            d.advanced(by: o).copyMemory(from: s.advanced(by: (outerIndex * array.shape[axis] + k) * width), byteCount: width)
            o += width
          }
        }
      }
    }
    return out
  }

  /// The row-major rows×cols matrix `values`, transposed (cols×rows).
  static func transposed(_ values: [Float], rows: Int, cols: Int) -> [Float] {
    var t = [Float](repeating: 0, count: values.count)
    for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = values[r * cols + c] } }
    return t
  }
}
