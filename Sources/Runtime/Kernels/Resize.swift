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
    var d = rank - 1
    while d >= 0 {
      index[d] += 1
      if index[d] < outShape[d] { break }
      index[d] = 0
      d -= 1
    }
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
