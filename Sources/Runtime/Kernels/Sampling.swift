import Foundation
import IR
import Support

/// Spatial transformers: AffineGrid builds sampling grids from affine matrices, GridSample reads a
/// feature map at grid points (nearest, linear or cubic, any number of spatial dimensions from
/// opset 20; 2-D before) with zeros, border or reflection padding.
extension Kernels {
  static let sampling: [String: Kernel] = [
    "GridSample": { c in [try gridSample(c)] },
    "AffineGrid": { c in [try affineGrid(c)] },
  ]
}

private enum GridPadding { case zeros, border, reflection }

private func gridSample(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), grid0 = try c.input(1)
  guard x0.rank >= 3 else { throw c.fail("X must be [N, C, D1, ...], not \(x0.shape)") }
  let r = x0.rank - 2
  if c.opset < 20 && r != 2 { throw c.fail("X must be 4-D before opset 20, not \(x0.shape)") }
  guard r <= 8 else { throw c.unsupported("GridSample over \(r) spatial dimensions (at most 8 are supported)") }
  guard grid0.rank == r + 2, grid0.shape[0] == x0.shape[0], grid0.shape[r + 1] == r else {
    throw c.fail("grid \(grid0.shape) does not fit X \(x0.shape): it must be [N, ..., \(r)]")
  }
  enum Mode { case nearest, linear, cubic }
  let mode: Mode
  switch c.string("mode", c.opset < 20 ? "bilinear" : "linear") {
  case "nearest": mode = .nearest
  case "linear", "bilinear": mode = .linear
  case "cubic", "bicubic": mode = .cubic
  case let m: throw c.fail("mode '\(m)' is not nearest, linear or cubic")
  }
  if mode == .cubic && r != 2 { throw c.fail("cubic sampling is defined for 2-D inputs only") }
  let padding: GridPadding
  switch c.string("padding_mode", "zeros") {
  case "zeros": padding = .zeros
  case "border": padding = .border
  case "reflection": padding = .reflection
  case let p: throw c.fail("padding_mode '\(p)' is not zeros, border or reflection")
  }
  let alignCorners = c.int("align_corners", 0) != 0
  let n = x0.shape[0], ch = x0.shape[1], dims = Array(x0.shape.dropFirst(2))
  let points = Array(grid0.shape[1...r])
  let outShape = [n, ch] + points
  try NDArray.checkAllocation(outShape, .double, c)
  let x = try x0.converted(to: .double).elements(Double.self), grid = try grid0.converted(to: .double).elements(Double.self)
  let plane = dims.reduce(1, *), pointCount = points.reduce(1, *), dimStrides = strides(dims)
  // Reflection and the out-of-range test use the borders of the sampled extent.
  let low: [Double] = dims.map { _ in alignCorners ? 0 : -0.5 }
  let high: [Double] = dims.map { alignCorners ? Double($0 - 1) : Double($0) - 0.5 }
  func reflect(_ v: Double, _ d: Int) -> Double {
    let lo = low[d], hi = high[d], span = hi - lo
    guard span > 0 else { return lo }
    if v < lo {
      let dx = lo - v, k = (dx / span).rounded(.towardZero), rest = dx - k * span
      return k.truncatingRemainder(dividingBy: 2) == 0 ? lo + rest : hi - rest
    }
    if v > hi {
      let dx = v - hi, k = (dx / span).rounded(.towardZero), rest = dx - k * span
      return k.truncatingRemainder(dividingBy: 2) == 0 ? hi - rest : lo + rest
    }
    return v
  }
  /// The element index along d that tap i reads, or nil for a zero.
  func tap(_ i: Int, _ d: Int) -> Int? {
    switch padding {
    case .zeros: return i >= 0 && i < dims[d] ? i : nil
    case .border: return min(max(i, 0), dims[d] - 1)
    case .reflection: return min(max(Int(reflect(Double(i), d)), 0), dims[d] - 1)
    }
  }
  let taps = mode == .nearest ? 1 : (mode == .linear ? 2 : 4)
  let combos = Int(pow(Double(taps), Double(r)))
  var out = NDArray(uninitialized: .double, outShape)
  let dst = out.mutableElements(Double.self)
  var first = [Int](repeating: 0, count: r), weights = [[Double]](repeating: [Double](repeating: 0, count: taps), count: r)
  var offsets = [Int](repeating: 0, count: combos), factors = [Double](repeating: 0, count: combos)
  for b in 0..<n {
    for p in 0..<pointCount {
      // Unnormalize; the grid lists coordinates innermost dimension first (x, y, z).
      var coordinate = [Double](repeating: 0, count: r)
      for d in 0..<r {
        let g = grid[(b * pointCount + p) * r + (r - 1 - d)], size = Double(dims[d])
        var v = alignCorners ? (g + 1) / 2 * (size - 1) : ((g + 1) * size - 1) / 2
        if mode == .nearest { v = v.rounded(.toNearestOrEven) }
        // Cubic sampling pads each tap instead (as PyTorch and ONNX Runtime do; the ONNX reference
        // also moves the point, which changes the taps near a border — no node case covers it).
        if mode != .cubic && (v < low[d] || v > high[d]) {
          if padding == .border { v = min(max(v, 0), size - 1) } else if padding == .reflection { v = reflect(v, d) }
        }
        // Far outside the image every mode reads padding or the reflected point: keep Int conversion safe.
        coordinate[d] = v.isNaN ? v : min(max(v, -1e12), 1e12)
      }
      for d in 0..<r {
        let v = coordinate[d]
        switch mode {
        case .nearest:
          first[d] = v.isFinite ? Int(v.rounded(.towardZero)) : Int.min / 2
          weights[d][0] = 1
        case .linear:
          let f = v.rounded(.down), t = v - f
          first[d] = f.isFinite ? Int(f) : Int.min / 2
          weights[d][0] = 1 - t
          weights[d][1] = t
        case .cubic:
          let f = v.rounded(.down)
          first[d] = f.isFinite ? Int(f) - 1 : Int.min / 2
          weights[d] = cubicCoefficients(v - f)
        }
      }
      // Every combination of taps: its element offset (−1 for a zero) and weight.
      var combosUsed = 0
      for k in 0..<combos {
        var rest = k, offset = 0, factor = 1.0, zero = false
        for d in (0..<r).reversed() {
          let t = rest % taps
          rest /= taps
          guard let i = tap(first[d] + t, d) else { zero = true; break }
          offset += i * dimStrides[d]
          factor *= weights[d][t]
        }
        if zero { continue }
        offsets[combosUsed] = offset
        factors[combosUsed] = factor
        combosUsed += 1
      }
      for channel in 0..<ch {
        let base = (b * ch + channel) * plane
        var acc = 0.0
        for k in 0..<combosUsed { acc += factors[k] * x[base + offsets[k]] }
        dst[(b * ch + channel) * pointCount + p] = acc
      }
    }
  }
  return try out.converted(to: x0.dataType)
}

/// Keys' cubic convolution weights (a = −0.75) of the four taps around a point at fraction t.
private func cubicCoefficients(_ t: Double) -> [Double] {
  let a = -0.75, x = Swift.abs(t)
  return [((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a,
          ((a + 2) * x - (a + 3)) * x * x + 1,
          ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1,
          ((a * (2 - x) - 5 * a) * (2 - x) + 8 * a) * (2 - x) - 4 * a]
}

/// theta [N, 2, 3] (or [N, 3, 4]) applied to the normalized coordinates of every point of size
/// [N, C, H, W] (or [N, C, D, H, W]): the grid [N, H, W, 2] (or [N, D, H, W, 3]) GridSample reads.
private func affineGrid(_ c: KernelContext) throws -> NDArray {
  let theta0 = try c.input(0), size = try c.input(1).integers()
  guard size.count == 4 || size.count == 5 else { throw c.fail("size must have 4 or 5 values, not \(size.count)") }
  let r = size.count - 2
  guard theta0.rank == 3, theta0.shape[0] == size[0], theta0.shape[1] == r, theta0.shape[2] == r + 1 else {
    throw c.fail("theta \(theta0.shape) must be [\(size[0]), \(r), \(r + 1)]")
  }
  let alignCorners = c.int("align_corners", 0) != 0
  let n = size[0], spatial = Array(size.dropFirst(2))
  try NDArray.checkAllocation([n] + spatial + [r], .double, c)
  let theta = try theta0.converted(to: .double).elements(Double.self)
  func coordinate(_ i: Int, _ count: Int) -> Double {
    if alignCorners { return count > 1 ? -1 + 2 * Double(i) / Double(count - 1) : -1 }
    return -1 + (2 * Double(i) + 1) / Double(count)
  }
  let points = spatial.reduce(1, *), pointStrides = strides(spatial)
  var values = [Double](repeating: 0, count: n * points * r)
  for b in 0..<n {
    for p in 0..<points {
      // Homogeneous point, innermost dimension first: (x, y[, z], 1).
      var h = [Double](repeating: 1, count: r + 1)
      for d in 0..<r {
        let idx = (p / pointStrides[d]) % spatial[d]
        h[r - 1 - d] = coordinate(idx, spatial[d])
      }
      for row in 0..<r {
        var acc = 0.0
        for k in 0...r { acc += theta[(b * r + row) * (r + 1) + k] * h[k] }
        values[(b * points + p) * r + row] = acc
      }
    }
  }
  return try NDArray(doubles: values, as: theta0.dataType, shape: [n] + spatial + [r])
}
