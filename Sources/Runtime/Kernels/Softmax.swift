import Foundation
import IR
import Support

/// Softmax, LogSoftmax and Hardmax. Before opset 13 the input is viewed as 2-D at `axis` (default 1);
/// from 13 on the operation runs along `axis` (default -1). A row of -inf gives NaN, as in ONNX.
extension Kernels {
  static let softmax: [String: Kernel] = [
    "Softmax": { c in [try softmaxOp(c, log: false)] },
    "LogSoftmax": { c in [try softmaxOp(c, log: true)] },
    "Hardmax": { c in [try hardmax(c)] },
  ]
}

private func softmaxOp(_ c: KernelContext, log: Bool) throws -> NDArray {
  let x0 = try c.input(0)
  var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let legacy = c.opset < 13
  let axis = try c.axis(c.int("axis", legacy ? 1 : -1), rank: x.rank)
  let outer: Int, length: Int, inner: Int
  if legacy {
    outer = x.shape[..<axis].reduce(1, *)
    length = x.shape[axis...].reduce(1, *)
    inner = 1
  } else {
    outer = x.shape[..<axis].reduce(1, *)
    length = x.rank == 0 ? 1 : x.shape[axis]
    inner = x.shape[(axis + 1)...].reduce(1, *)
  }
  if inner == 1 && x.dataType == .float && x.count > 0 {
    // Rows are contiguous (the usual last-axis softmax): pointer loops over each row, reading the
    // input and writing a new output (not a copy of the input and then a pass over it).
    var y = NDArray(uninitialized: .float, x.shape)
    let src = x.elements(Float.self), dst = y.mutableElements(Float.self)
    withExtendedLifetime((src, dst)) {
      guard let from = src.baseAddress, let base = dst.baseAddress else { return }
      Parallel.forEach(outer, costPerItem: length * 8) { rows in
      for o in rows {
        let input = from + o * length, row = base + o * length
        if log {
          let m = FastMath.rowMaximum(input, length)
          for k in 0..<length { row[k] = input[k] - m }
          FastMath.expNonPositive(row, row, length)
          var sum: Float = 0
          for k in 0..<length { sum += row[k] }
          let shift = m + Foundation.log(sum)
          for k in 0..<length { row[k] = input[k] - shift }
        } else {
          FastMath.softmaxRow(input, row, length)
        }
      }
      }
    }
    return x0.dataType == .float ? y : try y.converted(to: x0.dataType)
  }
  // The axis is not the last (YOLOv8's distribution head: softmax over 16 bins of [1, 16, 4, 8400]):
  // each of the `length` rows of a block is contiguous over the positions after the axis, so every
  // step walks rows — maxima, differences, exponentials (the vectorized ones), sums in the axis's
  // order — for a range of positions at a time, ranges split among the threads.
  let e = x.mutableElements(Float.self)
  withExtendedLifetime(e) {
    guard let base = e.baseAddress, length > 0 else { return }
    Parallel.forEach(inner, costPerItem: outer * length * 8) { columns in
      let width = columns.count
      var scratch = [Float](repeating: 0, count: 3 * width)
      scratch.withUnsafeMutableBufferPointer { buffer in
        guard let m = buffer.baseAddress else { return }
        let sum = m + width, power = m + 2 * width
        for o in 0..<outer {
          let block = base + o * length * inner + columns.lowerBound
          m.update(repeating: -.infinity, count: width)
          sum.update(repeating: 0, count: width)
          for k in 0..<length {
            let row = block + k * inner
            for i in 0..<width { m[i] = max(m[i], row[i]) }
          }
          for k in 0..<length {
            let row = block + k * inner
            for i in 0..<width { row[i] -= m[i] }
            FastMath.expNonPositive(row, power, width)
            for i in 0..<width { sum[i] += power[i] }
            if !log { row.update(from: power, count: width) }
          }
          if log {
            for i in 0..<width { sum[i] = Foundation.log(sum[i]) }
            for k in 0..<length {
              let row = block + k * inner
              for i in 0..<width { row[i] -= sum[i] }
            }
          } else {
            for k in 0..<length {
              let row = block + k * inner
              for i in 0..<width { row[i] /= sum[i] }
            }
          }
        }
      }
    }
  }
  return x0.dataType == .float ? x : try x.converted(to: x0.dataType)
}

/// 1 at the first maximum of each row along the axis (the axes after it, before opset 13), 0
/// elsewhere, in the input's type.
private func hardmax(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let legacy = c.opset < 13
  let axis = try c.axis(c.int("axis", legacy ? 1 : -1), rank: x.rank)
  let outer = x.shape[..<axis].reduce(1, *)
  let length = legacy ? x.shape[axis...].reduce(1, *) : (x.rank == 0 ? 1 : x.shape[axis])
  let inner = legacy ? 1 : x.shape[(axis + 1)...].reduce(1, *)
  var out = NDArray(zeros: .float, x.shape)
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  for o in 0..<outer {
    for i in 0..<inner {
      let base = o * length * inner + i
      guard length > 0 else { continue }
      var best = 0
      for k in 1..<max(length, 1) where src[base + k * inner] > src[base + best * inner] { best = k }
      dst[base + best * inner] = 1
    }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}
