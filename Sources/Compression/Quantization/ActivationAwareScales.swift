import Foundation

/// AWQ (Lin et al., 2024): a weight row matters as much as the activation channel it multiplies,
/// and an int4 block gives all its rows one step. Multiplying the rows of the large channels by
/// sₖ (and the activation by 1/sₖ, which leaves the float product unchanged) gives them finer
/// steps relative to their values, at the expense of the small channels sharing their blocks.
/// sₖ = aₖ^α with aₖ channel k's root mean square on the calibration data; α is chosen on a grid
/// by the output error of all the weights that read the activation, measured through H = XᵀX.
enum ActivationAwareScales {
  /// α = 0 (no scales: round-to-nearest) to 1 in steps of 0.05.
  static let alphas: [Double] = (0...20).map { Double($0) / 20 }

  /// One reader's weight, [K, N] row-major.
  struct Weight {
    var values: [Float]
    var n: Int
  }

  /// The grid's best α for a group of weights, and what each weight rounds to with and without its scales.
  struct Choice {
    var alpha: Double
    /// Per input channel; all 1 at α 0.
    var scales: [Float]
    /// Per weight: round-to-nearest of W, and of diag(s)·W (the blocks the graph stores when the scales are applied).
    var rtn: [Int4Blocks]
    var scaled: [Int4Blocks]
    /// Per weight: ‖X(W − Ŵ)‖² for each, and ‖XW‖².
    var rtnEnergy: [Double]
    var scaledEnergy: [Double]
    var weightEnergy: [Double]
  }

  /// aₖ = √(Hₖₖ / rows): channel k's root mean square over the calibration rows.
  static func channelMagnitudes(hessian: [Double], rows: Int, k: Int) -> [Double] {
    (0..<k).map { rows > 0 ? (max(hessian[$0 * k + $0], 0) / Double(rows)).squareRoot() : 0 }
  }

  /// sₖ = aₖ^α over √(max·min) of them, so that the scales straddle 1 (int4 blocks are
  /// indifferent to a common factor). Each aₖ counts as at least 1% of their mean: a channel that
  /// calibration never saw active would otherwise get a scale near 0 and its rows would round to 0.
  static func scales(_ a: [Double], alpha: Double) -> [Float] {
    let floor = 0.01 * a.reduce(0, +) / Double(max(a.count, 1))
    let raw = a.map { pow(max($0, floor), alpha) }
    guard let lo = raw.min(), let hi = raw.max(), lo > 0, hi.isFinite else { return [Float](repeating: 1, count: a.count) }
    let middle = (lo * hi).squareRoot()
    return raw.map { Float($0 / middle) }
  }

  /// diag(s)·W, the weight the graph stores once the activation is divided by s.
  static func scaled(_ w: [Float], by s: [Float], n: Int) -> [Float] {
    w.indices.map { w[$0] * s[$0 / n] }
  }

  /// diag(1/s)·Ŵ: what the layer multiplies the unscaled activation by.
  static func unscaled(_ w: [Float], by s: [Float], n: Int) -> [Float] {
    w.indices.map { w[$0] / s[$0 / n] }
  }

  /// H of the scaled problem, D⁻¹HD⁻¹ with D = diag(s): the Hessian of x/s.
  static func scaledHessian(_ h: [Double], by s: [Float]) -> [Double] {
    let k = s.count
    var out = h
    for i in 0..<k { for j in 0..<k { out[i * k + j] = h[i * k + j] / (Double(s[i]) * Double(s[j])) } }
    return out
  }

  /// ‖X(W − Ŵ)‖² with Ŵ = diag(1/s)·blocks.
  static func errorEnergy(_ w: [Float], _ blocks: Int4Blocks, scales s: [Float], hessian: [Double], k: Int, n: Int, blockSize: Int) -> Double {
    let approx = unscaled(blocks.values(k: k, n: n, blockSize: blockSize), by: s, n: n)
    return Int4Blocks.outputEnergy(zip(w, approx).map { Double($0 - $1) }, hessian: hessian, k: k, n: n)
  }

  /// The α on the grid whose scales round the group's weights with the smallest summed output
  /// error; α 0 unless some α does strictly better. nil when the group's outputs have no energy
  /// on the calibration data (nothing to measure by).
  static func search(_ weights: [Weight], hessian: [Double], rows: Int, k: Int, blockSize: Int) -> Choice? {
    let weightEnergy = weights.map { Int4Blocks.outputEnergy($0.values.map(Double.init), hessian: hessian, k: k, n: $0.n) }
    guard weightEnergy.reduce(0, +) > 0 else { return nil }
    let a = channelMagnitudes(hessian: hessian, rows: rows, k: k)
    let ones = [Float](repeating: 1, count: k)
    let rtn = weights.map { Int4Blocks.roundToNearest($0.values, k: k, n: $0.n, blockSize: blockSize) }
    let rtnEnergy = zip(weights, rtn).map { errorEnergy($0.values, $1, scales: ones, hessian: hessian, k: k, n: $0.n, blockSize: blockSize) }
    var best = Choice(alpha: 0, scales: ones, rtn: rtn, scaled: rtn, rtnEnergy: rtnEnergy, scaledEnergy: rtnEnergy, weightEnergy: weightEnergy)
    for alpha in alphas.dropFirst() {
      let s = scales(a, alpha: alpha)
      let blocks = weights.map { Int4Blocks.roundToNearest(scaled($0.values, by: s, n: $0.n), k: k, n: $0.n, blockSize: blockSize) }
      let energy = zip(weights, blocks).map { errorEnergy($0.values, $1, scales: s, hessian: hessian, k: k, n: $0.n, blockSize: blockSize) }
      if energy.reduce(0, +) < best.scaledEnergy.reduce(0, +) {
        best.alpha = alpha; best.scales = s; best.scaled = blocks; best.scaledEnergy = energy
      }
    }
    return best
  }
}
