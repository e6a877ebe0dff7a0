import Foundation
import IR
import Runtime

/// Softmax and LogSoftmax over one axis (opset 13+) or the flattened trailing axes (before).
extension Gradients {
  static let softmax: [String: GradientRule] = [
    "Softmax": GradientRule([0]) { c in [try softmaxGradient(c, log: false)] },
    "LogSoftmax": GradientRule([0]) { c in [try softmaxGradient(c, log: true)] },
  ]
}

private func softmaxGradient(_ c: GradientContext, log: Bool) throws -> NDArray {
  let y = try c.outputs[0].asFloat(), dy = c.gradient()
  let rank = y.rank
  let a0 = c.int("axis", c.opset < 13 ? 1 : -1), axis = a0 < 0 ? a0 + rank : a0
  guard axis >= 0 && axis < max(rank, 1) else { throw c.fail("axis \(a0) is out of range for rank \(rank)") }
  // Rows of `n` elements `stride` apart: one axis, or everything after `axis` before opset 13.
  let n = c.opset < 13 ? y.shape[axis...].reduce(1, *) : y.shape[axis]
  let inner = c.opset < 13 ? 1 : y.shape[(axis + 1)...].reduce(1, *)
  let outer = y.count / max(n * inner, 1)
  return NDArray.filled(y.shape) { out, _ in
    y.withFloats { ys in dy.withFloats { g in
      for o in 0..<outer {
        for i in 0..<inner {
          let base = o * n * inner + i
          var s: Float = 0
          if log {
            for k in 0..<n { s += g[base + k * inner] }
            for k in 0..<n { let p = base + k * inner; out[p] = g[p] - _exp(ys[p]) * s }
          } else {
            for k in 0..<n { let p = base + k * inner; s += g[p] * ys[p] }
            for k in 0..<n { let p = base + k * inner; out[p] = ys[p] * (g[p] - s) }
          }
        }
      }
    } }
  }
}

private func _exp(_ x: Float) -> Float { Float(Foundation.exp(Double(x))) }
