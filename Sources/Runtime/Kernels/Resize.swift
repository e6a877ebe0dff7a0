import Foundation
import IR
import Support

/// Resize (opsets 10–19) and the older Upsample. Every output element is a weighted sum of input
/// elements; per axis, each output index has its taps (input index, weight), computed once from
/// the mode, the coordinate transformation and the rounding rule, exactly as the ONNX reference.
extension Kernels {
  static let resize: [String: Kernel] = [
    "Resize": { c in [try resizeOp(c)] },
    "Upsample": { c in
      let x = try c.input(0)
      let scales: [Float]
      if c.opset >= 9 {
        scales = try c.input(1).floats()
      } else if case .floats(let f)? = c.node.attribute("scales")?.value {
        scales = f
      } else {
        throw c.fail("scales are required")
      }
      let mode = c.string("mode", "nearest")
      guard mode == "nearest" || mode == "linear" || mode == "bilinear" else { throw c.unsupported("Upsample mode \(mode)") }
      guard scales.count == x.rank, scales.allSatisfy({ $0 > 0 && $0 < 1e9 }) else { throw c.fail("scales \(scales) do not fit rank \(x.rank)") }
      let outShape = zip(x.shape, scales).map { Int((Float($0) * $1).rounded(.down)) }
      return [try resample(c, x, outShape: outShape, scales: scales.map(Double.init), mode: mode == "nearest" ? "nearest" : "linear",
                           transform: "asymmetric", nearestMode: "floor", roi: [])]
    },
  ]
}

private func resizeOp(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  let rank = x.rank
  if c.int("antialias", 0) != 0 { throw c.unsupported("antialiased Resize is not supported yet") }
  let axes = try (c.ints("axes") ?? Array(0..<rank)).map { try c.axis($0, rank: rank) }
  var roi = [Double]()
  var scaleValues = [Double]()
  var sizeValues = [Int]()
  if c.opset < 11 {
    scaleValues = try c.input(1).floats().map(Double.init)
  } else {
    if let r = c.optionalInput(1), r.count > 0 { roi = try r.floats().map(Double.init) }
    if let s = c.optionalInput(2), s.count > 0 { scaleValues = try s.floats().map(Double.init) }
    if let s = c.optionalInput(3), s.count > 0 { sizeValues = try s.integers() }
  }
  guard scaleValues.isEmpty != sizeValues.isEmpty else { throw c.fail("exactly one of scales and sizes must be given") }
  var scales = [Double](repeating: 1, count: rank)
  var outShape = x.shape
  if !scaleValues.isEmpty {
    guard scaleValues.count == axes.count, scaleValues.allSatisfy({ $0 > 0 && $0 < 1e9 }) else { throw c.fail("scales \(scaleValues) do not fit the axes") }
    for (k, a) in axes.enumerated() {
      scales[a] = scaleValues[k]
      outShape[a] = Int((Double(x.shape[a]) * scaleValues[k]).rounded(.down))
    }
  } else {
    guard sizeValues.count == axes.count, sizeValues.allSatisfy({ $0 >= 0 }) else { throw c.fail("sizes \(sizeValues) do not fit the axes") }
    let policy = c.string("keep_aspect_ratio_policy", "stretch")
    if policy == "stretch" {
      for (k, a) in axes.enumerated() {
        outShape[a] = sizeValues[k]
        scales[a] = x.shape[a] > 0 ? Double(sizeValues[k]) / Double(x.shape[a]) : 1
      }
    } else {
      let ratios = axes.enumerated().map { Double(sizeValues[$0.offset]) / Double(x.shape[$0.element]) }
      let s = policy == "not_larger" ? ratios.min() ?? 1 : ratios.max() ?? 1
      for a in axes {
        scales[a] = s
        outShape[a] = Int((s * Double(x.shape[a])).rounded(.toNearestOrEven))
      }
    }
  }
  var fullRoi = [Double]()
  if !roi.isEmpty {
    guard roi.count == 2 * axes.count else { throw c.fail("roi has \(roi.count) values for \(axes.count) axes") }
    fullRoi = Array(repeating: 0, count: rank) + Array(repeating: 1, count: rank)
    for (k, a) in axes.enumerated() {
      fullRoi[a] = roi[k]
      fullRoi[rank + a] = roi[axes.count + k]
    }
  }
  let defaultTransform = c.opset < 11 ? "asymmetric" : "half_pixel"
  return try resample(c, x, outShape: outShape, scales: scales, mode: c.string("mode", "nearest"),
                      transform: c.string("coordinate_transformation_mode", defaultTransform),
                      nearestMode: c.string("nearest_mode", "round_prefer_floor"), roi: fullRoi)
}

/// One output index's contribution along one axis.
private struct Taps {
  var indices: [Int]
  var weights: [Double]
  /// tf_crop_and_resize: the position lies outside the input; the element takes extrapolation_value.
  var outside = false
}

private func resample(_ c: KernelContext, _ x: NDArray, outShape: [Int], scales: [Double], mode: String,
                      transform: String, nearestMode: String, roi: [Double]) throws -> NDArray {
  guard ["nearest", "linear", "cubic"].contains(mode) else { throw c.unsupported("Resize mode \(mode)") }
  try NDArray.checkAllocation(outShape, x.dataType, c)
  let a = Double(c.float("cubic_coeff_a", -0.75))
  let excludeOutside = c.int("exclude_outside", 0) != 0
  let rank = x.rank
  var axisTaps = [[Taps]]()
  for d in 0..<rank {
    let n = x.shape[d], m = outShape[d]
    var list = [Taps]()
    list.reserveCapacity(m)
    for i in 0..<m {
      if n == m && scales[d] == 1 && transform != "tf_crop_and_resize" {
        list.append(Taps(indices: [i], weights: [1]))
        continue
      }
      // With scales, the transforms use the unrounded resized length (input length × scale).
      let xo = try originalCoordinate(c, Double(i), scale: scales[d], inLength: n, outLength: Double(n) * scales[d],
                                      roundedOutLength: m, transform: transform,
                                      roiStart: roi.isEmpty ? 0 : roi[d], roiEnd: roi.isEmpty ? 1 : roi[rank + d])
      if transform == "tf_crop_and_resize" && (xo < 0 || xo > Double(n - 1)) {
        list.append(Taps(indices: [0], weights: [0], outside: true))
        continue
      }
      switch mode {
      case "nearest":
        let r: Double
        switch nearestMode {
        case "round_prefer_ceil": r = (xo - xo.rounded(.down)) == 0.5 ? xo.rounded(.up) : xo.rounded()
        case "floor": r = xo.rounded(.down)
        case "ceil": r = xo.rounded(.up)
        default: r = (xo - xo.rounded(.down)) == 0.5 ? xo.rounded(.down) : xo.rounded()
        }
        list.append(Taps(indices: [min(max(Int(r), 0), n - 1)], weights: [1]))
      case "linear":
        let base = xo.rounded(.down), t = xo - base
        let i0 = Int(base)
        list.append(Taps(indices: [min(max(i0, 0), n - 1), min(max(i0 + 1, 0), n - 1)], weights: [1 - t, t]))
      default:
        let base = xo.rounded(.down), t = xo - base
        let i0 = Int(base)
        var idx = [Int](), w = [Double]()
        for k in -1...2 {
          let dist = abs(t - Double(k))
          let weight: Double
          if dist <= 1 { weight = ((a + 2) * dist - (a + 3)) * dist * dist + 1 } else if dist < 2 {
            weight = ((a * dist - 5 * a) * dist + 8 * a) * dist - 4 * a
          } else { weight = 0 }
          let j = i0 + k
          if excludeOutside && (j < 0 || j >= n) { continue }
          idx.append(min(max(j, 0), n - 1))
          w.append(weight)
        }
        if excludeOutside {
          let total = w.reduce(0, +)
          if total != 0 { w = w.map { $0 / total } }
        }
        list.append(Taps(indices: idx, weights: w))
      }
    }
    axisTaps.append(list)
  }
  if x.dataType == .float {
    return resampleFloat(x, outShape: outShape, axisTaps: axisTaps, extrapolation: c.float("extrapolation_value", 0))
  }
  let src = try x.converted(to: .double).elements(Double.self)
  let inStrides = strides(x.shape)
  let extrapolation = Double(c.float("extrapolation_value", 0))
  let total = outShape.reduce(1, *)
  var values = [Double](repeating: 0, count: total)
  var index = [Int](repeating: 0, count: rank)
  for o in 0..<total {
    var outside = false
    for d in 0..<rank where axisTaps[d][index[d]].outside { outside = true }
    if outside {
      values[o] = extrapolation
    } else {
      // Sum over the product of every axis's taps (a single tap on untouched axes).
      var acc = 0.0
      var tap = [Int](repeating: 0, count: rank)
      outer: while true {
        var w = 1.0, offset = 0
        for d in 0..<rank {
          let t = axisTaps[d][index[d]]
          w *= t.weights[tap[d]]
          offset += t.indices[tap[d]] * inStrides[d]
        }
        acc += w * src[offset]
        var d = rank - 1
        while d >= 0 {
          tap[d] += 1
          if tap[d] < axisTaps[d][index[d]].indices.count { continue outer }
          tap[d] = 0
          d -= 1
        }
        break
      }
      values[o] = acc
    }
    advance(&index, within: outShape)
  }
  if !x.dataType.isFloatingPoint && mode == "nearest" {
    return try NDArray(doubles: values, as: x.dataType, shape: outShape)
  }
  return try NDArray(doubles: x.dataType.isFloatingPoint ? values : values.map { $0.rounded() }, as: x.dataType, shape: outShape)
}

private func originalCoordinate(_ c: KernelContext, _ x: Double, scale: Double, inLength n: Int, outLength m: Double,
                                roundedOutLength: Int, transform: String, roiStart: Double, roiEnd: Double) throws -> Double {
  switch transform {
  case "half_pixel": return (x + 0.5) / scale - 0.5
  case "half_pixel_symmetric":
    let adjustment = Double(roundedOutLength) / (scale * Double(n))
    let center = Double(n) / 2
    let offset = center * (1 - adjustment)
    return offset + (x + 0.5) / scale - 0.5
  case "pytorch_half_pixel": return m > 1 ? (x + 0.5) / scale - 0.5 : 0
  case "align_corners": return m == 1 ? 0 : x * Double(n - 1) / (m - 1)
  case "asymmetric": return x / scale
  case "tf_half_pixel_for_nearest": return (x + 0.5) / scale
  case "tf_crop_and_resize":
    if m > 1 { return roiStart * Double(n - 1) + x * (roiEnd - roiStart) * Double(n - 1) / (m - 1) }
    return 0.5 * (roiStart + roiEnd) * Double(n - 1)
  default: throw c.unsupported("coordinate_transformation_mode \(transform)")
  }
}

/// One axis's taps as flat tables: `taps` (input index, weight) pairs per output index, padded
/// with zero weights where an index has fewer (cubic with exclude_outside).
private struct AxisTable {
  var taps: Int
  var index: [Int]
  var weight: [Float]
  var outside: [Bool]
  /// Every output index reads its own input index, whole: the axis is left as it is.
  var identity: Bool
  /// One tap of weight 1 per output index (nearest, or an axis left as it is).
  var single: Bool {
    taps == 1 && weight.indices.allSatisfy { weight[$0] == 1 || outside[$0] }
  }

  init(_ list: [Taps], inLength n: Int) {
    taps = list.map(\.indices.count).max() ?? 1
    index = [Int](repeating: 0, count: list.count * taps)
    weight = [Float](repeating: 0, count: list.count * taps)
    outside = list.map(\.outside)
    for (o, t) in list.enumerated() {
      for k in 0..<t.indices.count {
        index[o * taps + k] = t.indices[k]
        weight[o * taps + k] = Float(t.weights[k])
      }
      // Padding taps read a valid element with weight 0.
      for k in t.indices.count..<taps { index[o * taps + k] = t.indices.first ?? 0 }
    }
    identity = list.count == n && !outside.contains(true)
      && list.enumerated().allSatisfy { $0.element.indices == [$0.offset] && $0.element.weights == [1] }
  }

  /// s when output index o reads input index o / s for every o (nearest upsampling by a whole factor).
  func repeatFactor(inLength n: Int) -> Int? {
    guard single, n > 0, index.count % n == 0 else { return nil }
    let s = index.count / n
    for o in 0..<index.count where index[o] != o / s { return nil }
    return s
  }
}

/// Resize of float tensors. Nearest is a gather: each output row reads one input row through the
/// last axis's index table (a plain repeat for whole factors), and an output row whose source row
/// is the previous row's is a copy of it. Linear and cubic are separable: one pass per resized
/// axis, each output slice a weighted sum of 2 or 4 input slices (vector loops when the slices are
/// rows or larger). Results do not depend on the thread count: each element is computed alike.
private func resampleFloat(_ x: NDArray, outShape: [Int], axisTaps: [[Taps]], extrapolation: Float) -> NDArray {
  let rank = x.rank
  let tables = (0..<rank).map { AxisTable(axisTaps[$0], inLength: x.shape[$0]) }
  var out: NDArray
  if rank == 0 {
    out = x
  } else if tables.allSatisfy(\.single) {
    out = gatherNearest(x, outShape: outShape, tables: tables)
  } else {
    // Shrinking axes first: later passes then move fewer elements.
    let order = (0..<rank).filter { !tables[$0].identity }.sorted {
      let a = Double(outShape[$0]) / Double(max(1, x.shape[$0])), b = Double(outShape[$1]) / Double(max(1, x.shape[$1]))
      return a != b ? a < b : $0 > $1
    }
    out = x
    for axis in order {
      out = resampleAxis(out, axis: axis, length: outShape[axis], table: tables[axis])
    }
  }
  // tf_crop_and_resize: an element any of whose axes falls outside the input is the extrapolation value.
  if tables.contains(where: { $0.outside.contains(true) }), out.count > 0 {
    let e = out.mutableElements(Float.self)
    var index = [Int](repeating: 0, count: rank)
    for i in 0..<out.count {
      var outside = false
      for d in 0..<rank where tables[d].outside[index[d]] { outside = true }
      if outside { e[i] = extrapolation }
      advance(&index, within: outShape)
    }
  }
  return out
}

/// Nearest: every output row (all axes but the last fixed) is input row `source(row)` gathered
/// through the last axis's table.
private func gatherNearest(_ x: NDArray, outShape: [Int], tables: [AxisTable]) -> NDArray {
  let rank = x.rank
  var out = NDArray(uninitialized: .float, outShape)
  let inW = x.shape[rank - 1], outW = outShape[rank - 1]
  let rows = outShape.dropLast().reduce(1, *)
  guard rows > 0, outW > 0 else { return out }
  let inStrides = strides(x.shape)
  // Per outer axis, the input offset of each output index.
  let offsets = (0..<(rank - 1)).map { d in tables[d].index.map { $0 * inStrides[d] } }
  let outerShape = Array(outShape.dropLast())
  let columns = tables[rank - 1].index
  let factor = tables[rank - 1].repeatFactor(inLength: inW)
  let plain = tables[rank - 1].identity
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  guard let sp = src.baseAddress, let dp = dst.baseAddress else { return out }
  withExtendedLifetime((src, dst)) {
    columns.withUnsafeBufferPointer { cols in
      Parallel.forEach(rows, costPerItem: outW) { part in
        var previous = -1
        for r in part {
          var rest = r, offset = 0
          for d in stride(from: rank - 2, through: 0, by: -1) {
            offset += offsets[d][rest % outerShape[d]]
            rest /= outerShape[d]
          }
          let line = dp + r * outW
          if offset == previous {
            line.update(from: line - outW, count: outW)
            continue
          }
          previous = offset
          let row = sp + offset
          if plain {
            line.update(from: row, count: outW)
          } else if let s = factor {
            repeatEach(row, inW, s, into: line)
          } else {
            for o in 0..<outW { line[o] = row[cols[o]] }
          }
        }
      }
    }
  }
  return out
}

/// dst[i·s + k] = src[i] for k < s: nearest upsampling of a row by a whole factor.
@inline(__always)
private func repeatEach(_ src: UnsafePointer<Float>, _ n: Int, _ s: Int, into dst: UnsafeMutablePointer<Float>) {
  switch s {
  case 2:
    var i = 0
    while i + 8 <= n {
      let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
      let lo = SIMD8<Float>(v[0], v[0], v[1], v[1], v[2], v[2], v[3], v[3])
      let hi = SIMD8<Float>(v[4], v[4], v[5], v[5], v[6], v[6], v[7], v[7])
      UnsafeMutableRawPointer(dst + 2 * i).storeBytes(of: SIMD16(lowHalf: lo, highHalf: hi), as: SIMD16<Float>.self)
      i += 8
    }
    while i < n { dst[2 * i] = src[i]; dst[2 * i + 1] = src[i]; i += 1 }
  case 4:
    for i in 0..<n { UnsafeMutableRawPointer(dst + 4 * i).storeBytes(of: SIMD4<Float>(repeating: src[i]), as: SIMD4<Float>.self) }
  case 8:
    for i in 0..<n { UnsafeMutableRawPointer(dst + 8 * i).storeBytes(of: SIMD8<Float>(repeating: src[i]), as: SIMD8<Float>.self) }
  default:
    for i in 0..<n {
      let v = src[i]
      for k in 0..<s { dst[i * s + k] = v }
    }
  }
}

/// One separable pass: `x` viewed as [outer, n, inner] becomes [outer, length, inner], output index
/// o the weighted sum of the input slices its taps name.
private func resampleAxis(_ x: NDArray, axis: Int, length m: Int, table: AxisTable) -> NDArray {
  var shape = x.shape
  let n = shape[axis]
  shape[axis] = m
  var out = NDArray(uninitialized: .float, shape)
  let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
  guard outer * m * inner > 0 else { return out }
  let taps = table.taps
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  guard let sp = src.baseAddress, let dp = dst.baseAddress else { return out }
  withExtendedLifetime((src, dst)) {
    table.index.withUnsafeBufferPointer { idx in
      table.weight.withUnsafeBufferPointer { wts in
        if inner == 1 {
          // The last axis: each output element gathers its taps from one row.
          Parallel.forEach(outer, costPerItem: m * taps) { part in
            for r in part {
              let row = sp + r * n, line = dp + r * m
              for o in 0..<m {
                var acc = wts[o * taps] * row[idx[o * taps]]
                for t in 1..<max(taps, 1) { acc += wts[o * taps + t] * row[idx[o * taps + t]] }
                line[o] = acc
              }
            }
          }
        } else {
          // Slices of `inner` contiguous elements: weighted sums of whole slices, vectorized.
          Parallel.forEach(outer * m, costPerItem: inner * taps) { part in
            for job in part {
              let b = job / m, o = job % m
              let base = sp + b * n * inner, line = dp + job * inner
              let w0 = wts[o * taps], s0 = base + idx[o * taps] * inner
              switch taps {
              case 1:
                for i in 0..<inner { line[i] = w0 * s0[i] }
              case 2:
                let w1 = wts[o * taps + 1], s1 = base + idx[o * taps + 1] * inner
                for i in 0..<inner { line[i] = w0 * s0[i] + w1 * s1[i] }
              case 4:
                let w1 = wts[o * taps + 1], s1 = base + idx[o * taps + 1] * inner
                let w2 = wts[o * taps + 2], s2 = base + idx[o * taps + 2] * inner
                let w3 = wts[o * taps + 3], s3 = base + idx[o * taps + 3] * inner
                for i in 0..<inner { line[i] = ((w0 * s0[i] + w1 * s1[i]) + w2 * s2[i]) + w3 * s3[i] }
              default:
                for i in 0..<inner { line[i] = w0 * s0[i] }
                for t in 1..<taps {
                  let w = wts[o * taps + t], s = base + idx[o * taps + t] * inner
                  for i in 0..<inner { line[i] += w * s[i] }
                }
              }
            }
          }
        }
      }
    }
  }
  return out
}
