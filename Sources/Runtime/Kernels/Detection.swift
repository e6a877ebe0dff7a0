import Foundation
import IR
import Support

/// Object-detection operators: RoiAlign, MaxRoiPool (pooling over regions of a feature map) and
/// NonMaxSuppression. Regions and boxes follow ONNX Runtime's arithmetic, which the ONNX
/// reference reproduces.
extension Kernels {
  static let detection: [String: Kernel] = [
    "RoiAlign": { c in [try roiAlign(c)] },
    "MaxRoiPool": { c in [try maxRoiPool(c)] },
    "NonMaxSuppression": { c in [try nonMaxSuppression(c)] },
  ]
}

/// Checks X is [N, C, H, W] and the regions [R, columns]; returns (n, ch, h, w).
private func featureMap(_ c: KernelContext, _ x: NDArray, rois: NDArray, columns: Int) throws -> (Int, Int, Int, Int) {
  guard x.rank == 4 else { throw c.fail("X must be [N, C, H, W], not \(x.shape)") }
  guard rois.rank == 2, rois.shape[1] == columns else { throw c.fail("rois must be [num_rois, \(columns)], not \(rois.shape)") }
  return (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
}

/// Each region's bins sampled on a grid by bilinear interpolation, averaged (or the largest
/// weighted corner taken, in max mode, as ONNX Runtime does).
private func roiAlign(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), rois = try c.input(1), batchIndices = try c.input(2).integers()
  let (n, ch, h, w) = try featureMap(c, x0, rois: rois, columns: 4)
  let x = try x0.converted(to: .float)
  let r = rois.shape[0]
  guard batchIndices.count == r else { throw c.fail("batch_indices has \(batchIndices.count) values for \(r) rois") }
  let outH = c.int("output_height", 1), outW = c.int("output_width", 1)
  let ratio = c.int("sampling_ratio", 0), scale = c.float("spatial_scale", 1)
  guard outH > 0, outW > 0, ratio >= 0 else { throw c.fail("output_height and output_width must be positive, sampling_ratio not negative") }
  let maxMode: Bool
  switch c.string("mode", "avg").lowercased() {
  case "avg": maxMode = false
  case "max": maxMode = true
  case let m: throw c.fail("mode must be avg or max, not '\(m)'")
  }
  // Opset 10 had no attribute and did not shift by half a pixel; 16 defaults to half_pixel.
  let halfPixel = c.opset >= 16 && c.string("coordinate_transformation_mode", "half_pixel").lowercased() == "half_pixel"
  try NDArray.checkAllocation([r, ch, outH, outW], .float, c)
  var out = NDArray(zeros: .float, [r, ch, outH, outW])
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  let boxes = try rois.floats()
  guard scale.isFinite, boxes.allSatisfy({ $0.isFinite && Swift.abs($0 * scale) < 1e9 }) else {
    throw c.fail("rois and spatial_scale must be finite and within the feature map's coordinate range")
  }
  for k in 0..<r {
    let b = batchIndices[k]
    guard b >= 0 && b < n else { throw c.fail("batch index \(b) is out of range for a batch of \(n)") }
    let offset: Float = halfPixel ? 0.5 : 0
    let startW = boxes[k * 4] * scale - offset, startH = boxes[k * 4 + 1] * scale - offset
    var roiW = boxes[k * 4 + 2] * scale - offset - startW, roiH = boxes[k * 4 + 3] * scale - offset - startH
    if !halfPixel {
      roiW = max(roiW, 1)
      roiH = max(roiH, 1)
    }
    let binH = roiH / Float(outH), binW = roiW / Float(outW)
    // An inverted region (possible with half_pixel) has no samples: its bins are 0, as in the reference.
    let gridH = ratio > 0 ? ratio : max(0, Int((roiH / Float(outH)).rounded(.up)))
    let gridW = ratio > 0 ? ratio : max(0, Int((roiW / Float(outW)).rounded(.up)))
    guard gridH < 1 << 16, gridW < 1 << 16 else { throw c.fail("roi \(k) is too large to sample") }
    let count = Float(max(gridH * gridW, 1))
    // Corner offsets and weights of every sample, shared by all channels.
    var samples = [(Int, Int, Int, Int, Float, Float, Float, Float)]()
    samples.reserveCapacity(outH * outW * gridH * gridW)
    for ph in 0..<outH {
      for pw in 0..<outW {
        for iy in 0..<gridH {
          let y = startH + Float(ph) * binH + (Float(iy) + 0.5) * binH / Float(gridH)
          for ix in 0..<gridW {
            var xx = startW + Float(pw) * binW + (Float(ix) + 0.5) * binW / Float(gridW)
            if y < -1 || y > Float(h) || xx < -1 || xx > Float(w) {
              samples.append((0, 0, 0, 0, 0, 0, 0, 0))
              continue
            }
            var yy = max(y, 0)
            xx = max(xx, 0)
            var yLow = Int(yy), xLow = Int(xx), yHigh: Int, xHigh: Int
            if yLow >= h - 1 { yLow = h - 1; yHigh = yLow; yy = Float(yLow) } else { yHigh = yLow + 1 }
            if xLow >= w - 1 { xLow = w - 1; xHigh = xLow; xx = Float(xLow) } else { xHigh = xLow + 1 }
            let ly = yy - Float(yLow), lx = xx - Float(xLow), hy = 1 - ly, hx = 1 - lx
            samples.append((yLow * w + xLow, yLow * w + xHigh, yHigh * w + xLow, yHigh * w + xHigh,
                             hy * hx, hy * lx, ly * hx, ly * lx))
          }
        }
      }
    }
    let perBin = gridH * gridW
    for channel in 0..<ch {
      let plane = (b * ch + channel) * h * w
      for bin in 0..<(outH * outW) {
        var acc: Float = 0
        for s in 0..<perBin {
          let p = samples[bin * perBin + s]
          if maxMode {
            let v = max(p.4 * src[plane + p.0], p.5 * src[plane + p.1], p.6 * src[plane + p.2], p.7 * src[plane + p.3])
            acc = s == 0 ? v : max(acc, v)
          } else {
            acc += p.4 * src[plane + p.0] + p.5 * src[plane + p.1] + p.6 * src[plane + p.2] + p.7 * src[plane + p.3]
          }
        }
        dst[(k * ch + channel) * outH * outW + bin] = maxMode ? acc : acc / count
      }
    }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// The maximum over each of pooled_shape bins of each region (Caffe's ROI pooling: corners
/// rounded to pixels, bins floored and ceiled, an empty bin gives 0).
private func maxRoiPool(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), rois = try c.input(1)
  let (n, ch, h, w) = try featureMap(c, x0, rois: rois, columns: 5)
  let x = try x0.converted(to: .float)
  guard let pooled = c.ints("pooled_shape"), pooled.count == 2, pooled[0] > 0, pooled[1] > 0 else {
    throw c.fail("pooled_shape must be two positive sizes")
  }
  let scale = c.float("spatial_scale", 1), r = rois.shape[0], outH = pooled[0], outW = pooled[1]
  try NDArray.checkAllocation([r, ch, outH, outW], .float, c)
  var out = NDArray(zeros: .float, [r, ch, outH, outW])
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  let boxes = try rois.floats()
  for k in 0..<r {
    let box = boxes[(k * 5)..<(k * 5 + 5)].map { $0 }
    guard box[0].isFinite, box[0] >= 0, box[0] < Float(n) else { throw c.fail("roi \(k) names batch \(box[0]) of \(n)") }
    let b = Int(box[0])
    func pixel(_ v: Float) throws -> Int {
      let p = (v * scale).rounded(.toNearestOrAwayFromZero)
      guard p.isFinite, Swift.abs(p) < 1e9 else { throw c.fail("roi \(k) has a corner out of range") }
      return Int(p)
    }
    let startW = try pixel(box[1]), startH = try pixel(box[2]), endW = try pixel(box[3]), endH = try pixel(box[4])
    let binH = Float(max(endH - startH + 1, 1)) / Float(outH), binW = Float(max(endW - startW + 1, 1)) / Float(outW)
    for channel in 0..<ch {
      let plane = (b * ch + channel) * h * w
      for ph in 0..<outH {
        let hStart = min(max(Int((Float(ph) * binH).rounded(.down)) + startH, 0), h)
        let hEnd = min(max(Int((Float(ph + 1) * binH).rounded(.up)) + startH, 0), h)
        for pw in 0..<outW {
          let wStart = min(max(Int((Float(pw) * binW).rounded(.down)) + startW, 0), w)
          let wEnd = min(max(Int((Float(pw + 1) * binW).rounded(.up)) + startW, 0), w)
          var m: Float = 0
          if hEnd > hStart && wEnd > wStart {
            m = -.infinity
            for y in hStart..<hEnd { for xx in wStart..<wEnd { m = max(m, src[plane + y * w + xx]) } }
          }
          dst[((k * ch + channel) * outH + ph) * outW + pw] = m
        }
      }
    }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// Greedy non-maximum suppression per batch and class: boxes by descending score (ties to the
/// lower index) above score_threshold, each kept unless its IoU with a kept box exceeds
/// iou_threshold, at most max_output_boxes_per_class of them. [selected, 3] (batch, class, box).
private func nonMaxSuppression(_ c: KernelContext) throws -> NDArray {
  let boxesArray = try c.input(0), scoresArray = try c.input(1)
  guard boxesArray.rank == 3, boxesArray.shape[2] == 4 else { throw c.fail("boxes must be [batch, boxes, 4], not \(boxesArray.shape)") }
  guard scoresArray.rank == 3, scoresArray.shape[0] == boxesArray.shape[0], scoresArray.shape[2] == boxesArray.shape[1] else {
    throw c.fail("scores \(scoresArray.shape) do not match boxes \(boxesArray.shape)")
  }
  let limit = try c.optionalInput(2)?.integers().first ?? 0
  let iouThreshold = try c.optionalInput(3)?.floats().first ?? 0
  let scoreThreshold = try c.optionalInput(4)?.floats().first
  guard iouThreshold >= 0 && iouThreshold <= 1 else { throw c.fail("iou_threshold \(iouThreshold) is outside [0, 1]") }
  let centered = c.int("center_point_box", 0) != 0
  let batch = boxesArray.shape[0], count = boxesArray.shape[1], classes = scoresArray.shape[1]
  let raw = try boxesArray.floats(), scores = try scoresArray.floats()
  // Corners as (y1, x1, y2, x2) with y1 ≤ y2 and x1 ≤ x2, whichever order the file gives them in.
  var corners = [(Float, Float, Float, Float)]()
  corners.reserveCapacity(batch * count)
  for i in 0..<(batch * count) {
    let a = raw[i * 4], b = raw[i * 4 + 1], p = raw[i * 4 + 2], q = raw[i * 4 + 3]
    if centered {
      corners.append((b - q / 2, a - p / 2, b + q / 2, a + p / 2))
    } else {
      corners.append((min(a, p), min(b, q), max(a, p), max(b, q)))
    }
  }
  func suppresses(_ i: Int, _ j: Int) -> Bool {
    let u = corners[i], v = corners[j]
    let ih = min(u.2, v.2) - max(u.0, v.0), iw = min(u.3, v.3) - max(u.1, v.1)
    guard ih > 0, iw > 0 else { return false }
    let inter = ih * iw, areaU = (u.2 - u.0) * (u.3 - u.1), areaV = (v.2 - v.0) * (v.3 - v.1)
    let union = areaU + areaV - inter
    guard areaU > 0, areaV > 0, union > 0 else { return false }
    return inter / union > iouThreshold
  }
  var selected = [Int64]()
  guard limit > 0 else { return NDArray(selected, shape: [0, 3]) }
  for b in 0..<batch {
    // Kept boxes are bucketed by where they start along x, in buckets as wide as the widest box:
    // a box can only overlap kept boxes that start at most one width before it, so each candidate
    // checks a few buckets instead of every kept box. (Exporters' batched NMS offsets each class
    // far apart, thousands of candidates at once; the pairwise check was quadratic in them.)
    var widest: Float = 0
    for i in 0..<count where corners[b * count + i].3.isFinite && corners[b * count + i].1.isFinite {
      widest = max(widest, corners[b * count + i].3 - corners[b * count + i].1)
    }
    let cell = widest > 0 && widest.isFinite ? widest : 1
    func bucket(_ x: Float) -> Int { Int(min(max((x / cell).rounded(.down), -1e15), 1e15)) }
    for k in 0..<classes {
      let base = (b * classes + k) * count
      var order = (0..<count).filter { i in scoreThreshold.map { scores[base + i] > $0 } ?? true }
      order.sort { scores[base + $0] > scores[base + $1] || (scores[base + $0] == scores[base + $1] && $0 < $1) }
      var buckets = [Int: [Int]]()
      var keptCount = 0
      for i in order {
        if keptCount >= limit { break }
        let box = corners[b * count + i]
        // A box with a non-finite corner overlaps nothing (every comparison with NaN is false).
        let finite = box.1.isFinite && box.3.isFinite
        if finite {
          var suppressed = false
          for key in bucket(box.1 - cell)...max(bucket(box.1 - cell), bucket(box.3)) where !suppressed {
            if let members = buckets[key], members.contains(where: { suppresses(b * count + $0, b * count + i) }) { suppressed = true }
          }
          if suppressed { continue }
          buckets[bucket(box.1), default: []].append(i)
        }
        keptCount += 1
        selected += [Int64(b), Int64(k), Int64(i)]
      }
    }
  }
  return NDArray(selected, shape: [selected.count / 3, 3])
}
