import CVectorMath
import Foundation
import IR
import Support

/// MaxPool, AveragePool (1-D and 2-D), GlobalAveragePool and GlobalMaxPool on float tensors;
/// LpPool and GlobalLpPool (any spatial rank), and MaxUnpool, which scatters MaxPool's maxima back.
extension Kernels {
  static let pooling: [String: Kernel] = [
    "MaxPool": { c in
      if c.node.outputs.count > 1 && !c.node.outputs[1].isEmpty { return try maxPoolWithIndices(c) }
      return [try pool(c, max: true)]
    },
    "AveragePool": { c in [try pool(c, max: false)] },
    "GlobalAveragePool": { c in [try globalPool(c, max: false)] },
    "GlobalMaxPool": { c in [try globalPool(c, max: true)] },
    "LpPool": { c in
      let x0 = try c.input(0)
      let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      guard x.rank >= 3 else { throw c.fail("input \(x.shape) has no spatial dimensions") }
      let p = c.int("p", 2)
      guard p > 0 else { throw c.fail("p must be positive, not \(p)") }
      let out = try lpPoolND(c, x: x, p: Float(p))
      return [x0.dataType == .float ? out : try out.converted(to: x0.dataType)]
    },
    "GlobalLpPool": { c in
      let x0 = try c.input(0)
      let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      guard x.rank >= 3 else { throw c.fail("input \(x.shape) has no spatial dimensions") }
      let p = c.int("p", 2)
      guard p > 0 else { throw c.fail("p must be positive, not \(p)") }
      let planes = x.shape[0] * x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
      var out = NDArray(uninitialized: .float, [x.shape[0], x.shape[1]] + Array(repeating: 1, count: x.rank - 2))
      let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
      for q in 0..<planes {
        var acc: Float = 0
        for i in 0..<size { acc += lpTerm(src[q * size + i], p) }
        dst[q] = lpRoot(acc, p)
      }
      return [x0.dataType == .float ? out : try out.converted(to: x0.dataType)]
    },
    "MaxUnpool": { c in [try maxUnpool(c)] },
  ]
}

private func pool(_ c: KernelContext, max isMax: Bool) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  guard x.rank >= 3 else { throw c.fail("input \(x.shape) has no spatial dimensions") }
  if x.rank > 4 {
    let out = try poolND(c, x: x, max: isMax)
    return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
  }
  guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
  let win = try Window(c, spatialRank: x.rank - 2, kernel: kernel, input: Array(x.shape.dropFirst(2)))
  let n = x.shape[0], ch = x.shape[1], h = x.rank == 4 ? x.shape[2] : 1, w = x.shape[x.rank - 1]
  let (oh, ow) = win.outputSize(h: h, w: w, ceilMode: c.int("ceil_mode", 0) != 0)
  let includePad = c.int("count_include_pad", 0) != 0
  try NDArray.checkAllocation([n, ch, oh, ow], .float, c)
  // Every path below writes every output.
  var out = NDArray(uninitialized: .float, x.rank == 4 ? [n, ch, oh, ow] : [n, ch, ow])
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  if isMax && win.dh == 1 && win.dw == 1 {
    // Max pooling without dilation, a plane at a time (`vm_max_pool_plane`): padding never wins a
    // max, so each window is clamped to the input; the column buffer's margins hold −∞.
    withExtendedLifetime((src, dst)) {
      guard let sp = src.baseAddress, let dp = dst.baseAddress else { return }
      let span = win.padLeft + max(w, (ow + 15) / 16 * 16 * win.sw + win.kw) + 16
      Parallel.forEach(n * ch, costPerItem: oh * ow * win.kh * win.kw) { planes in
        var column = [Float](repeating: -.infinity, count: span)
        column.withUnsafeMutableBufferPointer { colBuffer in
          guard let col = colBuffer.baseAddress else { return }
          for plane in planes {
            vm_max_pool_plane(sp + plane * h * w, h, w, win.kh, win.kw, win.sh, win.sw, win.padTop, win.padLeft, oh, ow,
                              col + win.padLeft, dp + plane * oh * ow)
          }
        }
      }
    }
    return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
  }
  if !isMax && win.dh == 1 && win.dw == 1 {
    averagePool(src, dst, planes: n * ch, h: h, w: w, oh: oh, ow: ow, win: win, includePad: includePad)
    return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
  }
  for plane in 0..<(n * ch) {
    let p = plane * h * w, q = plane * oh * ow
    for oy in 0..<oh {
      for ox in 0..<ow {
        var acc: Float = isMax ? -.infinity : 0
        var count = 0
        for ky in 0..<win.kh {
          let iy = oy * win.sh - win.padTop + ky * win.dh
          for kx in 0..<win.kw {
            let ix = ox * win.sw - win.padLeft + kx * win.dw
            if iy < 0 || iy >= h || ix < 0 || ix >= w {
              // Padding inside the padded extent counts for averages with count_include_pad.
              if includePad && iy < h + win.padBottom && ix < w + win.padRight { count += 1 }
              continue
            }
            let v = src[p + iy * w + ix]
            if isMax { if v > acc || v.isNaN { acc = v } } else { acc += v }
            count += 1
          }
        }
        dst[q + oy * ow + ox] = isMax ? acc : (count > 0 ? acc / Float(count) : 0)
      }
    }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// AveragePool without dilation: each output row sums its window's input rows into a buffer with
/// zero margins (a vector pass over whole rows), then each output sums its window's columns of
/// that and divides by the window's count — rows counted × columns counted, as the window is a
/// rectangle clipped to the input (or to the padded input with count_include_pad).
private func averagePool(_ src: Elements<Float>, _ dst: Elements<Float>, planes: Int, h: Int, w: Int, oh: Int, ow: Int,
                         win: Window, includePad: Bool) {
  withExtendedLifetime((src, dst)) {
    guard let sp = src.baseAddress, let dp = dst.baseAddress, oh > 0, ow > 0 else { return }
    let span = win.padLeft + max(w, (ow - 1) * win.sw + win.kw) + 16
    // Columns each output counts: those inside the input, or inside the padded input.
    var columnCount = [Float](repeating: 0, count: ow)
    for ox in 0..<ow {
      let x0 = ox * win.sw - win.padLeft, x1 = x0 + win.kw
      columnCount[ox] = Float(max(0, includePad ? min(x1, w + win.padRight) - x0 : min(x1, w) - max(x0, 0)))
    }
    Parallel.forEach(planes, costPerItem: oh * ow * win.kh * win.kw) { part in
      var column = [Float](repeating: 0, count: span)
      column.withUnsafeMutableBufferPointer { colBuffer in
        columnCount.withUnsafeBufferPointer { counts in
          let col = colBuffer.baseAddress.unsafelyUnwrapped + win.padLeft
          for plane in part {
            let p = sp + plane * h * w, q = dp + plane * oh * ow
            for oy in 0..<oh {
              let top = oy * win.sh - win.padTop
              let y0 = max(0, top), y1 = min(h, top + win.kh)
              let rows = Float(max(0, includePad ? min(top + win.kh, h + win.padBottom) - top : y1 - y0))
              if y0 < y1 {
                col.update(from: p + y0 * w, count: w)
              } else {
                col.update(repeating: 0, count: w)
              }
              for iy in (y0 + 1)..<max(y0 + 1, y1) {
                let row = p + iy * w
                for ix in 0..<w { col[ix] += row[ix] }
              }
              let line = q + oy * ow
              var ox = 0
              if win.sw == 1, let countPointer = counts.baseAddress {
                // Eight outputs at a time, each summed and divided as the scalar loop does it.
                while ox + 8 <= ow {
                  let start = col + ox - win.padLeft
                  var acc = SIMD8<Float>(repeating: 0)
                  for kx in 0..<win.kw { acc += UnsafeRawPointer(start + kx).loadUnaligned(as: SIMD8<Float>.self) }
                  let count = rows * UnsafeRawPointer(countPointer + ox).loadUnaligned(as: SIMD8<Float>.self)
                  let mean = (acc / count).replacing(with: 0, where: count .<= 0)
                  UnsafeMutableRawPointer(line + ox).storeBytes(of: mean, as: SIMD8<Float>.self)
                  ox += 8
                }
              }
              for ox in ox..<ow {
                let start = col + ox * win.sw - win.padLeft
                var acc: Float = 0
                for kx in 0..<win.kw { acc += start[kx] }
                let count = rows * counts[ox]
                line[ox] = count > 0 ? acc / count : 0
              }
            }
          }
        }
      }
    }
  }
}

/// MaxPool with its second output: for each maximum, its flat index in the input (row-major, or
/// column-major within each plane with storage_order 1), the first one on ties.
private func maxPoolWithIndices(_ c: KernelContext) throws -> [NDArray] {
  let x = try c.input(0).converted(to: .float)
  guard x.rank == 4, let kernel = c.ints("kernel_shape") else { throw c.unsupported("MaxPool indices for \(x.rank - 2)-D inputs") }
  let win = try Window(c, spatialRank: 2, kernel: kernel, input: Array(x.shape.dropFirst(2)))
  let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
  let (oh, ow) = win.outputSize(h: h, w: w, ceilMode: c.int("ceil_mode", 0) != 0)
  try NDArray.checkAllocation([n, ch, oh, ow], .float, c)
  let columnMajor = c.int("storage_order", 0) == 1
  var values = NDArray(uninitialized: .float, [n, ch, oh, ow])
  var indices = NDArray(uninitialized: .int64, [n, ch, oh, ow])
  let src = x.elements(Float.self), dv = values.mutableElements(Float.self), di = indices.mutableElements(Int64.self)
  for plane in 0..<(n * ch) {
    for oy in 0..<oh {
      for ox in 0..<ow {
        var best = -Float.infinity, at = -1
        for ky in 0..<win.kh {
          let iy = oy * win.sh - win.padTop + ky * win.dh
          if iy < 0 || iy >= h { continue }
          for kx in 0..<win.kw {
            let ix = ox * win.sw - win.padLeft + kx * win.dw
            if ix < 0 || ix >= w { continue }
            let v = src[plane * h * w + iy * w + ix]
            if at < 0 || v > best { best = v; at = columnMajor ? ix * h + iy : iy * w + ix }
          }
        }
        let o = plane * oh * ow + oy * ow + ox
        dv[o] = best
        di[o] = Int64(plane * h * w + max(at, 0))
      }
    }
  }
  let type = try c.input(0).dataType
  return [type == .float ? values : try values.converted(to: type), indices]
}

private func globalPool(_ c: KernelContext, max isMax: Bool) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  guard x.rank >= 3 else { throw c.fail("input \(x.shape) has no spatial dimensions") }
  let planes = x.shape[0] * x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
  var out = NDArray(zeros: .float, [x.shape[0], x.shape[1]] + Array(repeating: 1, count: x.rank - 2))
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  withExtendedLifetime(src) {
    guard let sp = src.baseAddress else { return }
    for p in 0..<planes {
      let plane = sp + p * size
      if isMax {
        var m = -Float.infinity
        for i in 0..<size { m = Swift.max(m, plane[i]) }
        dst[p] = m
      } else {
        // Sixteen partial sums: a vectorized loop (one running sum cannot be reordered).
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= size {
          acc += UnsafeRawPointer(plane + i).loadUnaligned(as: SIMD16<Float>.self)
          i += 16
        }
        var s = acc.sum()
        while i < size { s += plane[i]; i += 1 }
        dst[p] = size > 0 ? s / Float(size) : 0
      }
    }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// |v|^p, with the common powers as products (exact, and what other runtimes compute).
@inline(__always)
func lpTerm(_ v: Float, _ p: Int) -> Float {
  switch p {
  case 1: return Swift.abs(v)
  case 2: return v * v
  default: return Foundation.pow(Swift.abs(v), Float(p))
  }
}

@inline(__always)
func lpRoot(_ s: Float, _ p: Int) -> Float {
  switch p {
  case 1: return s
  case 2: return s.squareRoot()
  default: return Foundation.pow(s, 1 / Float(p))
  }
}

/// MaxUnpool(X, I[, output_shape]): zeros of the unpooled shape with each X value at the flat
/// index I gives for it (MaxPool's second output: an index over the whole tensor). With an
/// output_shape the indices address that shape, as in ONNX Runtime and PyTorch — they come from
/// a MaxPool over an input of that shape. (The ONNX reference addresses the inferred shape and
/// pads it, so test_maxunpool_export_with_output_shape expects otherwise.)
private func maxUnpool(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0), indices = try c.input(1).integers()
  guard x.rank >= 3 else { throw c.fail("input \(x.shape) has no spatial dimensions") }
  guard indices.count == x.count else { throw c.fail("indices have \(indices.count) values for \(x.count) inputs") }
  guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
  let r = x.rank - 2
  let strides = c.ints("strides") ?? Array(repeating: 1, count: r)
  let pads = c.ints("pads") ?? Array(repeating: 0, count: 2 * r)
  guard kernel.count == r, strides.count == r, pads.count == 2 * r,
        (kernel + strides).allSatisfy({ $0 > 0 && $0 < 1 << 20 }), pads.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
    throw c.fail("kernel_shape, strides or pads do not fit a \(r)-D input")
  }
  var shape = Array(x.shape.prefix(2)) + (0..<r).map { i in
    (x.shape[i + 2] - 1) * strides[i] - pads[i] - pads[i + r] + kernel[i]
  }
  if let given = c.optionalInput(2) {
    let s = try given.integers()
    guard s.count == x.rank, s[0] == x.shape[0], s[1] == x.shape[1] else {
      throw c.fail("output_shape \(s) does not fit the input \(x.shape)")
    }
    shape = s
  }
  try NDArray.checkAllocation(shape, x.dataType, c)
  var out = NDArray(zeros: x.dataType, shape)
  let total = out.count, width = x.elementWidth
  let dst = out.mutableBytes()
  try x.withUnsafeBytes { src in
    for (k, i) in indices.enumerated() {
      guard i >= 0 && i < total else { throw c.fail("index \(i) is outside the output of \(total) elements") }
      (dst + i * width).copyMemory(from: src.baseAddress.unsafelyUnwrapped + k * width, byteCount: width)
    }
  }
  return out
}
