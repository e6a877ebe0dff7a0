/// Where magnitude pruning stops: zeroing the `count` smallest |w| of some weights (one layer's,
/// or all layers' together) zeroes every weight whose magnitude is below `threshold`, and the
/// first `ties` of those equal to it, in order (layer order, then position: what a stable sort
/// by magnitude would pick).
///
/// Found without sorting or holding the weights: non-negative floats order as their bit
/// patterns, so two counting passes — over the high and then the low 16 bits of each |w| —
/// select the count-th smallest magnitude exactly. Memory is two 64 Ki-entry histograms,
/// whatever the model's size; the weights are visited twice (once each for a single layer held in
/// memory, or read again from a mapped file for all layers).
struct MagnitudeCut {
  var threshold: UInt32
  var ties: Int

  /// `visit` calls its argument with every weight array, in order, each time it is called.
  /// Nil when nothing is to be zeroed.
  static func find(count: Int, visit: ((UnsafeBufferPointer<Float>) throws -> Void) throws -> Void) throws -> MagnitudeCut? {
    guard count > 0 else { return nil }
    var histogram = [Int](repeating: 0, count: 1 << 16)
    try visit { values in
      histogram.withUnsafeMutableBufferPointer { h in
        for v in values { h[Int(key(v) >> 16)] += 1 }
      }
    }
    guard let (high, belowHigh) = bucket(histogram, reaching: count, after: 0) else { return nil }
    for i in histogram.indices { histogram[i] = 0 }
    try visit { values in
      histogram.withUnsafeMutableBufferPointer { h in
        for v in values {
          let k = key(v)
          if k >> 16 == high { h[Int(k & 0xFFFF)] += 1 }
        }
      }
    }
    guard let (low, below) = bucket(histogram, reaching: count, after: belowHigh) else { return nil }
    return MagnitudeCut(threshold: high << 16 | low, ties: count - below)
  }

  /// |v| as an ordered integer.
  @inline(__always) static func key(_ v: Float) -> UInt32 { abs(v).bitPattern }

  /// The first bucket at which `before` plus the counts so far reach `count`, and the total
  /// strictly before it.
  private static func bucket(_ histogram: [Int], reaching count: Int, after before: Int) -> (UInt32, Int)? {
    var total = before
    for (b, n) in histogram.enumerated() {
      if total + n >= count { return (UInt32(b), total) }
      total += n
    }
    return nil
  }

  /// Zeroes what the cut covers in `values`, spending the ties it shares across layers; returns
  /// how many weights it zeroed.
  func apply(to values: UnsafeMutableBufferPointer<Float>, ties: inout Int) -> Int {
    var zeroed = 0
    for i in values.indices {
      let k = Self.key(values[i])
      if k < threshold {
        values[i] = 0
        zeroed += 1
      } else if k == threshold && ties > 0 {
        values[i] = 0
        ties -= 1
        zeroed += 1
      }
    }
    return zeroed
  }
}
