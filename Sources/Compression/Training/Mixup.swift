import Foundation
import Runtime
import Support

/// Mixup (Zhang et al. 2018): each sample of a batch is blended with another of the same batch,
/// x = λ·a + (1 − λ)·b with λ ~ Beta(α, α). For distillation the teacher labels the blended
/// input itself — the "consistent teaching" of Beyer et al. 2022 — so the student sees the
/// teacher's function between the training samples, not only on them.
struct Mixup {
  var alpha: Float

  /// The blended feeds, and for every row its partner row and weight λ (for blending labels).
  func apply(_ feeds: [String: NDArray], rows: Int, rng: inout SplitMix64) throws -> (feeds: [String: NDArray], partner: [Int], lambda: [Float]) {
    var partner = Array(0..<rows)
    partner.shuffle(using: &rng)
    let lambda = (0..<rows).map { _ in beta(&rng) }
    var mixed = [String: NDArray]()
    for name in feeds.keys.sorted() {
      guard let x = feeds[name] else { continue }
      guard x.dataType == .float else {
        throw CompressorError.usage("--mixup blends float inputs only; input '\(name)' is \(x.dataType)")
      }
      let per = x.count / max(rows, 1)
      mixed[name] = NDArray.filled(x.shape) { out, _ in
        x.withFloats { p in
          for r in 0..<rows {
            let l = lambda[r], a = p + r * per, b = p + partner[r] * per, o = out + r * per
            for i in 0..<per { o[i] = l * a[i] + (1 - l) * b[i] }
          }
        }
      }
    }
    return (mixed, partner, lambda)
  }

  /// Beta(α, α) from two Gamma(α) draws.
  private func beta(_ rng: inout SplitMix64) -> Float {
    let x = gamma(alpha, &rng), y = gamma(alpha, &rng)
    return x + y > 0 ? x / (x + y) : 0.5
  }

  /// Gamma(k, 1) by Marsaglia and Tsang (k < 1 through the k + 1 boost).
  private func gamma(_ k: Float, _ rng: inout SplitMix64) -> Float {
    if k < 1 { return gamma(k + 1, &rng) * pow(max(rng.nextFloat(), 1e-12), 1 / k) }
    let d = k - 1 / 3, c = 1 / (9 * d).squareRoot()
    while true {
      var x: Float, v: Float
      repeat {
        // Box–Muller normal.
        let u1 = max(rng.nextFloat(), 1e-12), u2 = rng.nextFloat()
        x = (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
        v = 1 + c * x
      } while v <= 0
      v = v * v * v
      let u = max(rng.nextFloat(), 1e-12)
      if log(u) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
    }
  }
}
