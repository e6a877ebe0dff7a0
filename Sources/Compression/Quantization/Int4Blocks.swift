import Datasets
import Foundation
import IR
import Linalg
import Runtime
import Support

/// A MatMul weight W [K, N] as int4 in blocks along K: one symmetric scale per block of
/// `blockSize` rows and column (values −7…7), by round-to-nearest or by GPTQ.
struct Int4Blocks {
  /// Row-major [K, N].
  var q: [Int8]
  /// [blocks, N].
  var scales: [Float]

  /// Each value rounded to its block's nearest step: the baseline.
  static func roundToNearest(_ w: [Float], k: Int, n: Int, blockSize: Int) -> Int4Blocks {
    let blocks = (k + blockSize - 1) / blockSize
    var scales = [Float](repeating: 1, count: blocks * n)
    var q = [Int8](repeating: 0, count: k * n)
    for b in 0..<blocks {
      let rows = (b * blockSize)..<min(k, (b + 1) * blockSize)
      for c in 0..<n {
        var m: Float = 0
        for r in rows { m = max(m, abs(w[r * n + c])) }
        let s = m == 0 ? 1 : m / 7
        scales[b * n + c] = s
        for r in rows { q[r * n + c] = Int8(max(-7, min(7, (w[r * n + c] / s).rounded(.toNearestOrEven)))) }
      }
    }
    return Int4Blocks(q: q, scales: scales)
  }

  /// GPTQ (Frantar et al., 2022): rows — input channels — are quantized in order, and each row's
  /// rounding error is spread over the rows not yet quantized through the upper Cholesky factor
  /// of the inverse Hessian H = XᵀX of the layer's calibration inputs, so that X·W moves least.
  /// A block's scales come from its rows as updated when the block starts. nil when H (damped by
  /// 1% of its mean diagonal) is not positive definite.
  static func gptq(_ weights: [Float], hessian: [Double], k: Int, n: Int, blockSize: Int) -> Int4Blocks? {
    guard k > 0, n > 0 else { return nil }
    var h = hessian
    var w = weights
    // An input that is never active cannot matter: its row is zeroed and H made invertible there.
    for i in 0..<k where h[i * k + i] == 0 {
      h[i * k + i] = 1
      for c in 0..<n { w[i * n + c] = 0 }
    }
    var mean = 0.0
    for i in 0..<k { mean += h[i * k + i] }
    mean /= Double(k)
    for i in 0..<k { h[i * k + i] += 0.01 * mean }
    guard let u = Linalg.inverseCholeskyUpper(h, n: k) else { return nil }
    let blocks = (k + blockSize - 1) / blockSize
    var scales = [Float](repeating: 1, count: blocks * n)
    var q = [Int8](repeating: 0, count: k * n)
    var err = [Float](repeating: 0, count: n)
    var row = [Float](repeating: 0, count: k)
    for r in 0..<k {
      let b = r / blockSize
      if r % blockSize == 0 {
        for c in 0..<n {
          var m: Float = 0
          for rr in r..<min(k, r + blockSize) { m = max(m, abs(w[rr * n + c])) }
          scales[b * n + c] = m == 0 ? 1 : m / 7
        }
      }
      let d = Float(u[r * k + r])
      for c in 0..<n {
        let s = scales[b * n + c], v = w[r * n + c]
        let level = max(-7, min(7, (v / s).rounded(.toNearestOrEven)))
        q[r * n + c] = Int8(level)
        err[c] = (v - level * s) / d
      }
      let rest = k - r - 1
      guard rest > 0 else { continue }
      for j in 0..<rest { row[j] = Float(u[r * k + r + 1 + j]) }
      w.withUnsafeMutableBufferPointer { wp in
        guard let base = wp.baseAddress else { return }
        Linalg.subtractOuter(row, err, m: rest, n: n, base + (r + 1) * n)
      }
    }
    return Int4Blocks(q: q, scales: scales)
  }

  /// The dequantized weight.
  func values(k: Int, n: Int, blockSize: Int) -> [Float] {
    var out = [Float](repeating: 0, count: k * n)
    for r in 0..<k { for c in 0..<n { out[r * n + c] = Float(q[r * n + c]) * scales[(r / blockSize) * n + c] } }
    return out
  }

  /// How far the layer's output moves on the calibration inputs, relative to its size:
  /// Σ_c eᵀHe / Σ_c wᵀHw with e = W − Ŵ per output column (‖X(W − Ŵ)‖² / ‖XW‖²).
  static func outputError(_ w: [Float], _ approx: [Float], hessian: [Double], k: Int, n: Int) -> Double {
    let den = outputEnergy(w.map(Double.init), hessian: hessian, k: k, n: n)
    return den > 0 ? outputEnergy(zip(w, approx).map { Double($0 - $1) }, hessian: hessian, k: k, n: n) / den : 0
  }

  /// Σ_c eᵀHe over the columns of E [K, N] (‖XE‖²): a weight's output energy, or its error's.
  static func outputEnergy(_ e: [Double], hessian: [Double], k: Int, n: Int) -> Double {
    let he = Linalg.gemmTransposedA(hessian, e, k: k, m: k, n: n)
    var sum = 0.0
    for i in 0..<(k * n) { sum += e[i] * he[i] }
    return sum
  }
}

/// XᵀX of the activations MatMuls multiply their weights with, over calibration samples: one
/// K×K matrix per activation tensor (Q, K and V read the same one), as GPTQ needs them.
enum LayerHessians {
  /// `widths`: activation tensor → K (its last dimension). Values of another width or type are
  /// refused (the weight then falls back to round-to-nearest).
  static func collect(model: Model, widths: [String: Int], data: Dataset, maxSamples: Int?, threads: Int) throws
    -> [String: (hessian: [Double], rows: Int)] {
    final class Sums {
      var sums: [String: [Double]] = [:]
      var scratch: [String: [Float]] = [:]
      var refused = Set<String>()
      var rows: [String: Int] = [:]
      let widths: [String: Int]
      init(widths: [String: Int]) {
        self.widths = widths
        for (name, k) in widths { sums[name] = [Double](repeating: 0, count: k * k); scratch[name] = [Float](repeating: 0, count: k * k) }
      }
      func add(_ name: String, _ value: NDArray) {
        guard let k = widths[name], !refused.contains(name) else { return }
        guard value.dataType == .float, value.rank >= 1, value.shape[value.rank - 1] == k, k > 0 else { refused.insert(name); return }
        let rows = value.count / k
        guard rows > 0, var g = scratch[name], var s = sums[name] else { return }
        self.rows[name, default: 0] += rows
        scratch[name] = nil
        sums[name] = nil
        for i in g.indices { g[i] = 0 }
        value.elements(Float.self).withPointer { x in
          g.withUnsafeMutableBufferPointer { gp in
            guard let x, let base = gp.baseAddress else { return }
            Linalg.addGram(x, rows: rows, k: k, into: base)
          }
        }
        for i in 0..<k { for j in i..<k { s[i * k + j] += Double(g[i * k + j]) } }
        scratch[name] = g
        sums[name] = s
      }
    }
    let sums = Sums(widths: widths)
    let executor = try Executor(model: model, threads: threads)
    executor.observer = { node, _, outputs in
      for (name, value) in zip(node.outputs, outputs) { sums.add(name, value) }
    }
    let used = try data.forEachChunk(rows: 8, limit: maxSamples ?? Int.max) { chunk in
      for (name, value) in chunk { sums.add(name, value) }
      _ = try executor.run(chunk)
    }
    if used == 0 { throw CompressorError.usage("the calibration data holds no samples") }
    var result = [String: (hessian: [Double], rows: Int)]()
    for (name, k) in widths where !sums.refused.contains(name) {
      guard var s = sums.sums[name] else { continue }
      for i in 0..<k { for j in 0..<i { s[i * k + j] = s[j * k + i] } }
      result[name] = (s, sums.rows[name] ?? 0)
    }
    return result
  }
}
