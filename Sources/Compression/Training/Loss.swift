import Foundation
import Runtime
import Support

/// Distillation and supervised losses on logits whose last axis holds the classes; every row
/// (all leading axes) is one prediction and the loss is their mean. Each returns the loss and
/// its gradient with respect to the student's tensor.
enum Loss {
  /// T²·KL(softmax(t/T) ‖ softmax(s/T)) (Hinton et al.): the T² keeps gradient sizes comparable
  /// across temperatures. d/ds = T·(softmax(s/T) − softmax(t/T)) / rows.
  static func distillation(student: NDArray, teacher: NDArray, temperature: Float) -> (Double, NDArray) {
    let classes = student.shape.last ?? 1, rows = student.count / max(classes, 1)
    var total = 0.0
    var ps = [Float](repeating: 0, count: classes), pt = [Float](repeating: 0, count: classes)
    let grad = NDArray.filled(student.shape) { g, _ in
      student.withFloats { s in teacher.withFloats { t in
        for r in 0..<rows {
          let ls = softmax(s + r * classes, classes, temperature, into: &ps)
          let lt = softmax(t + r * classes, classes, temperature, into: &pt)
          var kl = 0.0
          for k in 0..<classes {
            if pt[k] > 0 { kl += Double(pt[k]) * (Double(lt[k]) - Double(ls[k])) }
            g[r * classes + k] = temperature * (ps[k] - pt[k]) / Float(rows)
          }
          total += kl
        }
      } }
    }
    return (Double(temperature * temperature) * total / Double(max(rows, 1)), grad)
  }

  /// Mean cross-entropy of softmax(s) against target distributions (one-hot labels, or blended
  /// ones under mixup). d/ds = (softmax(s) − q) / rows.
  static func crossEntropy(logits: NDArray, targets: NDArray) -> (Double, NDArray) {
    let classes = logits.shape.last ?? 1, rows = logits.count / max(classes, 1)
    var total = 0.0
    var p = [Float](repeating: 0, count: classes)
    let grad = NDArray.filled(logits.shape) { g, _ in
      logits.withFloats { s in targets.withFloats { q in
        for r in 0..<rows {
          let logp = softmax(s + r * classes, classes, 1, into: &p)
          for k in 0..<classes {
            let target = q[r * classes + k]
            if target > 0 { total -= Double(target) * Double(logp[k]) }
            g[r * classes + k] = (p[k] - target) / Float(rows)
          }
        }
      } }
    }
    return (total / Double(max(rows, 1)), grad)
  }

  /// One-hot rows for `labels` over `classes`, blended with their mixup partners' when given.
  static func labelTargets(_ labels: [Int], classes: Int, mix: (partner: [Int], lambda: [Float])? = nil) throws -> NDArray {
    for l in labels where l < 0 || l >= classes {
      throw CompressorError.invalid("label \(l) is not one of the model's \(classes) classes")
    }
    var q = [Float](repeating: 0, count: labels.count * classes)
    for (r, l) in labels.enumerated() {
      let lambda = mix?.lambda[r] ?? 1
      q[r * classes + l] += lambda
      if let mix { q[r * classes + labels[mix.partner[r]]] += 1 - lambda }
    }
    return NDArray(q, shape: [labels.count, classes])
  }

  /// Mean squared error; d/ds = 2(s − t)/count.
  static func meanSquared(student: NDArray, teacher: NDArray) -> (Double, NDArray) {
    var total = 0.0
    let n = max(student.count, 1)
    let grad = NDArray.filled(student.shape) { g, count in
      student.withFloats { s in teacher.withFloats { t in
        for i in 0..<count {
          let d = s[i] - t[i]
          total += Double(d * d)
          g[i] = 2 * d / Float(n)
        }
      } }
    }
    return (total / Double(n), grad)
  }

  /// Softmax of x/T into `p`; returns the log-probabilities.
  private static func softmax(_ x: UnsafePointer<Float>, _ n: Int, _ temperature: Float, into p: inout [Float]) -> [Float] {
    var m = -Float.infinity
    for k in 0..<n { m = max(m, x[k] / temperature) }
    var sum: Float = 0
    for k in 0..<n { p[k] = exp(x[k] / temperature - m); sum += p[k] }
    let logSum = log(sum)
    var logp = [Float](repeating: 0, count: n)
    for k in 0..<n {
      p[k] /= sum
      logp[k] = x[k] / temperature - m - logSum
    }
    return logp
  }
}
