import Foundation
import Runtime

/// SGD with momentum, Adam and AdamW (decoupled weight decay), updating parameters in place.
struct Optimizer {
  enum Kind: String, CaseIterable { case sgd, adam, adamw }

  var kind: Kind
  var momentum: Float = 0.9
  var weightDecay: Float = 0
  var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
  private var first: [String: [Float]] = [:]
  private var second: [String: [Float]] = [:]
  private var steps = 0

  init(kind: Kind, momentum: Float = 0.9, weightDecay: Float = 0) {
    self.kind = kind
    self.momentum = momentum
    self.weightDecay = weightDecay
  }

  /// One update of every parameter in `names` with learning rate `lr`.
  mutating func step(_ parameters: inout [String: NDArray], _ gradients: [String: NDArray], names: [String], lr: Float) {
    steps += 1
    let correction1 = 1 - pow(beta1, Float(steps)), correction2 = 1 - pow(beta2, Float(steps))
    for name in names {
      guard var p = parameters[name], let g = gradients[name], g.count == p.count else { continue }
      let w = p.mutableElements(Float.self)
      var m = first[name] ?? [Float](repeating: 0, count: p.count)
      var v = kind == .sgd ? [] : second[name] ?? [Float](repeating: 0, count: p.count)
      g.withFloats { gs in
        w.withPointer { wp in
          guard let wp else { return }
          for i in 0..<w.count {
            var grad = gs[i]
            switch kind {
            case .sgd:
              grad += weightDecay * wp[i]
              m[i] = momentum * m[i] + grad
              wp[i] -= lr * m[i]
            case .adam, .adamw:
              if kind == .adam { grad += weightDecay * wp[i] } else { wp[i] -= lr * weightDecay * wp[i] }
              m[i] = beta1 * m[i] + (1 - beta1) * grad
              v[i] = beta2 * v[i] + (1 - beta2) * grad * grad
              wp[i] -= lr * (m[i] / correction1) / ((v[i] / correction2).squareRoot() + epsilon)
            }
          }
        }
      }
      first[name] = m
      if kind != .sgd { second[name] = v }
      parameters[name] = p
    }
  }
}

/// Learning rate per step: linear warm-up, then constant, cosine decay to zero, or a step decay.
struct Schedule {
  enum Kind: String, CaseIterable { case constant, cosine, step }

  var kind: Kind
  var base: Float
  var warmupSteps: Int
  var totalSteps: Int
  /// Step decay: multiply by `gamma` every `stepSize` steps.
  var stepSize: Int = 1
  var gamma: Float = 0.1

  func rate(at step: Int) -> Float {
    if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
    let t = step - warmupSteps, span = max(1, totalSteps - warmupSteps)
    switch kind {
    case .constant: return base
    case .cosine: return base * 0.5 * (1 + cos(Float.pi * Float(min(t, span)) / Float(span)))
    case .step: return base * pow(gamma, Float(t / max(stepSize, 1)))
    }
  }
}

/// Scales the gradients so their global L2 norm is at most `maxNorm`; returns the norm before.
@discardableResult
func clipGradients(_ gradients: inout [String: NDArray], maxNorm: Float?) -> Float {
  var sum: Double = 0
  for g in gradients.values { g.withFloats { p in for i in 0..<g.count { sum += Double(p[i] * p[i]) } } }
  let norm = Float(sum.squareRoot())
  guard let maxNorm, norm > maxNorm, norm > 0 else { return norm }
  let k = maxNorm / norm
  for key in gradients.keys.sorted() {
    guard var g = gradients[key] else { continue }
    let e = g.mutableElements(Float.self)
    e.withPointer { p in if let p { for i in 0..<e.count { p[i] *= k } } }
    gradients[key] = g
  }
  return norm
}
