import CVectorMath
import Foundation

/// The distribution of one activation over every calibration sample, in a fixed number of bins:
/// memory does not grow with the number of samples. The bins cover [lo, lo + width·count); when
/// a value falls outside, neighbouring bins merge pairwise and the covered range doubles toward
/// it, so the histogram always spans everything seen at a resolution of at least count/2 bins.
/// Non-finite values and magnitudes of `excludedMagnitude` or more (attention masks of -1e9 or
/// -3.4e38) are counted apart and never widen the range.
struct StreamingHistogram {
  static let binCount = 2048
  static let excludedMagnitude: Float = 1e6

  private(set) var counts: [Double]
  private(set) var lo: Float = 0
  private(set) var width: Float = 0
  private(set) var minimum = Float.infinity
  private(set) var maximum = -Float.infinity
  private(set) var total = 0
  private(set) var excluded = 0
  /// Exact zeros (ReLU outputs, padding) are kept apart from the bins: every range holds 0
  /// exactly, so they are never clipped nor rounded, and a spike of them would otherwise swamp
  /// the entropy and error searches.
  private(set) var zeros = 0
  let keepsBins: Bool

  /// Without bins (minmax calibration) only the extremes and counts are kept.
  init(keepsBins: Bool) {
    self.keepsBins = keepsBins
    counts = keepsBins ? [Double](repeating: 0, count: Self.binCount) : []
  }

  var isEmpty: Bool { total == excluded }

  mutating func add(_ values: UnsafeBufferPointer<Float>) {
    guard let base = values.baseAddress, !values.isEmpty else { return }
    let n = values.count
    // Fast path, in wide lanes (C): extremes, zeros, and whether any value is NaN or infinite.
    // Almost every activation takes it.
    var bmin: Float = 0, bmax: Float = 0, zeroCount = 0, nonfinite: Int32 = 0
    vm_scan_extremes(base, n, &bmin, &bmax, &zeroCount, &nonfinite)
    let limit = Self.excludedMagnitude
    let clean = nonfinite == 0 && bmin > -limit && bmax < limit
    var skipped = 0
    if !clean {
      bmin = .infinity; bmax = -.infinity; zeroCount = 0
      for v in values {
        if v.isFinite && abs(v) < limit {
          bmin = min(bmin, v)
          bmax = max(bmax, v)
          zeroCount += v == 0 ? 1 : 0
        } else {
          skipped += 1
        }
      }
    }
    total += n
    excluded += skipped
    guard bmin <= bmax else { return }
    minimum = min(minimum, bmin)
    maximum = max(maximum, bmax)
    guard keepsBins else { zeros += zeroCount; return }
    cover(bmin, bmax)
    let inverse = 1 / width, last = Float(Self.binCount - 1), origin = lo
    // Four interleaved integer histograms: consecutive values often share a bin, and one
    // histogram would serialize on its load-add-store.
    let bins = Self.binCount
    var local = [UInt32](repeating: 0, count: 4 * bins)
    local.withUnsafeMutableBufferPointer { h in
      guard let h = h.baseAddress else { return }
      // (v - origin) · inverse is ≥ 0 for every kept value, so truncation is floor.
      @inline(__always) func bin(_ v: Float) -> Int { Int(Swift.min(Swift.max((v - origin) * inverse, 0), last)) }
      if clean {
        var i = 0
        while i + 4 <= n {
          h[bin(base[i])] &+= 1
          h[bins + bin(base[i + 1])] &+= 1
          h[2 * bins + bin(base[i + 2])] &+= 1
          h[3 * bins + bin(base[i + 3])] &+= 1
          i += 4
        }
        while i < n { h[bin(base[i])] &+= 1; i += 1 }
      } else {
        for v in values where v.isFinite && abs(v) < limit { h[bin(v)] &+= 1 }
      }
    }
    counts.withUnsafeMutableBufferPointer { c in
      for b in 0..<bins { c[b] += Double(local[b]) + Double(local[bins + b]) + Double(local[2 * bins + b]) + Double(local[3 * bins + b]) }
      // Zeros went into their bin with the rest; they are counted apart.
      if zeroCount > 0 { c[Int(Swift.min(Swift.max((0 - origin) * inverse, 0), last))] -= Double(zeroCount) }
    }
    zeros += zeroCount
  }

  /// Widens the bins until [a, b] is inside them.
  private mutating func cover(_ a: Float, _ b: Float) {
    let n = Self.binCount
    if width == 0 {
      lo = a
      width = b > a ? (b - a) / Float(n) * 1.0001 : max(abs(a), 1e-3) / Float(n)
      if !(width.isNormal) { width = Float.leastNormalMagnitude * Float(n) }
      return
    }
    while b >= lo + width * Float(n) {
      for i in 0..<(n / 2) { counts[i] = counts[2 * i] + counts[2 * i + 1] }
      for i in (n / 2)..<n { counts[i] = 0 }
      width *= 2
    }
    while a < lo {
      var merged = [Double](repeating: 0, count: n)
      for i in 0..<(n / 2) { merged[n / 2 + i] = counts[2 * i] + counts[2 * i + 1] }
      counts = merged
      lo -= width * Float(n)
      width *= 2
    }
  }

  /// Fraction of the kept values outside [a, b], interpolating within the edge bins.
  func fractionOutside(_ a: Float, _ b: Float) -> Double {
    guard keepsBins, width > 0 else { return 0 }
    let kept = counts.reduce(0, +) + Double(zeros)
    guard kept > 0 else { return 0 }
    var outside = 0.0
    for (i, c) in counts.enumerated() where c > 0 {
      let start = lo + Float(i) * width, end = start + width
      if end <= a || start >= b { outside += c; continue }
      if start < a { outside += c * Double((a - start) / width) }
      if end > b { outside += c * Double((end - b) / width) }
    }
    return outside / kept
  }

  /// The value below which `q` of the kept values lie.
  func quantile(_ q: Double) -> Float {
    var withZeros = counts
    let zeroBin = Int(((0 - lo) / width).rounded(.down))
    if zeroBin >= 0 && zeroBin < counts.count { withZeros[zeroBin] += Double(zeros) }
    let kept = withZeros.reduce(0, +)
    guard kept > 0 else { return 0 }
    let target = q * kept
    var seen = 0.0
    for (i, c) in withZeros.enumerated() where c > 0 {
      if seen + c >= target {
        let within = Float((target - seen) / c)
        return lo + (Float(i) + within) * width
      }
      seen += c
    }
    return lo + Float(counts.count) * width
  }

  /// Mean squared error of quantizing the kept values to `levels` steps over [a, b]: rounding
  /// noise inside, the distance to the edge outside.
  func quantizationError(_ a: Float, _ b: Float, levels: Int) -> Double {
    let step = Double(b - a) / Double(levels)
    let rounding = step * step / 12
    var error = 0.0
    for (i, c) in counts.enumerated() where c > 0 {
      let x = Double(lo + (Float(i) + 0.5) * width)
      if x < Double(a) { error += c * (Double(a) - x) * (Double(a) - x) }
      else if x > Double(b) { error += c * (x - Double(b)) * (x - Double(b)) }
      else { error += c * rounding }
    }
    return error
  }

  /// Kullback–Leibler divergence between the kept distribution clipped to [a, b] and the same
  /// distribution after quantization to `levels` steps (TensorRT's entropy calibration, over a
  /// signed histogram): the smaller, the less information the range loses.
  func clippingDivergence(_ a: Float, _ b: Float, levels: Int) -> Double? {
    let first = max(0, min(counts.count - 1, Int(((a - lo) / width).rounded(.down))))
    let last = max(first, min(counts.count - 1, Int(((b - lo) / width).rounded(.up)) - 1))
    let span = last - first + 1
    // Fewer bins than levels: quantization loses nothing measurable; only clipping counts.
    let levels = min(levels, span)
    let inside = Array(counts[first...last])
    // P: the distribution clipped to the range (outliers pile up in the edge bins).
    var p = inside
    p[0] += counts[..<first].reduce(0, +)
    p[span - 1] += counts[(last + 1)...].reduce(0, +)
    // Q: what quantization keeps of the values inside the range — each of `levels` chunks spread
    // evenly over its non-empty bins. The clipped mass is missing from Q, so clipping costs.
    var q = [Double](repeating: 0, count: span)
    for level in 0..<levels {
      let s = level * span / levels, e = (level + 1) * span / levels
      let mass = inside[s..<e].reduce(0, +)
      let nonEmpty = p[s..<e].filter { $0 > 0 }.count
      guard nonEmpty > 0 else { continue }
      for j in s..<e where p[j] > 0 { q[j] = mass / Double(nonEmpty) }
    }
    let pSum = p.reduce(0, +), qSum = q.reduce(0, +)
    guard pSum > 0, qSum > 0 else { return nil }
    var kl = 0.0
    for j in 0..<span where p[j] > 0 {
      let pj = p[j] / pSum, qj = q[j] / qSum
      kl += pj * log(pj / max(qj, 1e-12 / qSum))
    }
    return kl
  }
}
