import Foundation
import IR
import Runtime

/// Activation functions: each gradient is dY times the local slope, computed from the input
/// (or the output, where that is cheaper).
extension Gradients {
  static let activations: [String: GradientRule] = [
    "Relu": slope(fromOutput: true) { _, y in y > 0 ? 1 : 0 },
    "LeakyRelu": GradientRule([0]) { c in
      let alpha = c.float("alpha", 0.01)
      return [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in x > 0 ? g : g * alpha }]
    },
    "Elu": GradientRule([0]) { c in
      let alpha = c.float("alpha", 1)
      return [NDArray.zipMap(c.gradient(), try c.outputs[0].asFloat()) { g, y in y > 0 ? g : g * (y + alpha) }]
    },
    "Sigmoid": slope(fromOutput: true) { _, y in y * (1 - y) },
    "Tanh": slope(fromOutput: true) { _, y in 1 - y * y },
    "Softplus": slope(fromOutput: false) { x, _ in 1 / (1 + exp(-x)) },
    "HardSigmoid": GradientRule([0]) { c in
      let alpha = c.float("alpha", 0.2), beta = c.float("beta", 0.5)
      return [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in
        let t = alpha * x + beta
        return t > 0 && t < 1 ? g * alpha : 0
      }]
    },
    "HardSwish": slope(fromOutput: false) { x, _ in x < -3 ? 0 : (x > 3 ? 1 : (2 * x + 3) / 6) },
    "Clip": GradientRule([0]) { c in
      // Bounds come from inputs 1 and 2 (opset 11+) or attributes (before); they do not train.
      var low = -Float.infinity, high = Float.infinity
      if c.opset < 11 {
        low = c.float("min", low)
        high = c.float("max", high)
      } else {
        if let v = c.optionalInput(1) { low = try v.floats().first ?? low }
        if let v = c.optionalInput(2) { high = try v.floats().first ?? high }
      }
      return [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in x > low && x < high ? g : 0 }]
    },
    "Gelu": GradientRule([0]) { c in
      let tanhForm = (c.node.attribute("approximate")?.string ?? "none") == "tanh"
      return [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in g * geluSlope(x, tanhForm: tanhForm) }]
    },
  ]

  /// A rule whose input gradient is dY·f(x, y).
  private static func slope(fromOutput: Bool, _ f: @escaping (Float, Float) -> Float) -> GradientRule {
    GradientRule([0]) { c in
      let v = try (fromOutput ? c.outputs[0] : c.input(0)).asFloat()
      return [NDArray.zipMap(c.gradient(), v) { g, t in g * (fromOutput ? f(0, t) : f(t, 0)) }]
    }
  }
}

/// d GELU(x)/dx, exact (Φ(x) + x·φ(x)) or of the tanh approximation.
private func geluSlope(_ x: Float, tanhForm: Bool) -> Float {
  if tanhForm {
    let k: Float = 0.7978845608, a: Float = 0.044715
    let u = k * (x + a * x * x * x), t = tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * a * x * x)
  }
  let cdf = 0.5 * (1 + erf(x / Float(2).squareRoot()))
  let pdf = exp(-0.5 * x * x) / Float(2 * Double.pi).squareRoot()
  return cdf + x * pdf
}
