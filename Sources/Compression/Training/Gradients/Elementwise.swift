import Foundation
import IR
import Runtime

/// Arithmetic with broadcasting (each gradient summed back to its input's shape) and the
/// element-wise functions of the decomposed LayerNorm and GELU.
extension Gradients {
  static let elementwise: [String: GradientRule] = [
    "Add": GradientRule([0, 1]) { c in
      [c.needs(0) ? try c.sumTo(c.gradient(), c.input(0).shape) : nil,
       c.needs(1) ? try c.sumTo(c.gradient(), c.input(1).shape) : nil]
    },
    "Sub": GradientRule([0, 1]) { c in
      [c.needs(0) ? try c.sumTo(c.gradient(), c.input(0).shape) : nil,
       c.needs(1) ? try c.sumTo(c.apply("Neg", [c.gradient()]), c.input(1).shape) : nil]
    },
    "Mul": GradientRule([0, 1]) { c in
      let a = try c.input(0).asFloat(), b = try c.input(1).asFloat(), g = c.gradient()
      return [c.needs(0) ? try c.sumTo(c.apply("Mul", [g, b]), a.shape) : nil,
              c.needs(1) ? try c.sumTo(c.apply("Mul", [g, a]), b.shape) : nil]
    },
    "Div": GradientRule([0, 1]) { c in
      // d(a/b)/da = 1/b, d(a/b)/db = −(a/b)/b.
      let a = try c.input(0).asFloat(), b = try c.input(1).asFloat(), g = c.gradient()
      let gOverB = try c.apply("Div", [g, b])
      return [c.needs(0) ? try c.sumTo(gOverB, a.shape) : nil,
              c.needs(1) ? try c.sumTo(c.apply("Neg", [c.apply("Mul", [gOverB, c.outputs[0].asFloat()])]), b.shape) : nil]
    },
    "Sum": GradientRule(nil) { c in try c.inputs.indices.map { c.needs($0) ? try c.sumTo(c.gradient(), c.input($0).shape) : nil } },
    "Neg": GradientRule([0]) { c in [try c.apply("Neg", [c.gradient()])] },
    "Identity": GradientRule([0]) { c in [c.gradient()] },
    "Cast": GradientRule([0]) { c in
      // Only float-to-float casts carry a gradient; other casts end the differentiable path.
      guard c.outputs[0].dataType == .float || c.outputs[0].dataType == .double || c.outputs[0].dataType == .float16 else {
        throw c.fail("a Cast to \(c.outputs[0].dataType) is not differentiable")
      }
      return [c.gradient()]
    },
    "Pow": GradientRule([0]) { c in
      // Only the base trains: d(x^p)/dx = p·x^(p−1).
      let x = try c.input(0).asFloat(), p = try c.input(1).asFloat()
      let one = NDArray([Float(1)], shape: [])
      let slope = try c.apply("Mul", [p, c.apply("Pow", [x, c.apply("Sub", [p, one])])])
      return [try c.sumTo(c.apply("Mul", [c.gradient(), slope]), x.shape), nil]
    },
    "Sqrt": GradientRule([0]) { c in
      [NDArray.zipMap(c.gradient(), try c.outputs[0].asFloat()) { g, y in y > 0 ? g / (2 * y) : 0 }]
    },
    "Exp": GradientRule([0]) { c in [NDArray.zipMap(c.gradient(), try c.outputs[0].asFloat()) { g, y in g * y }] },
    "Log": GradientRule([0]) { c in [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in g / x }] },
    "Abs": GradientRule([0]) { c in [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in x > 0 ? g : (x < 0 ? -g : 0) }] },
    "Reciprocal": GradientRule([0]) { c in [NDArray.zipMap(c.gradient(), try c.outputs[0].asFloat()) { g, y in -g * y * y }] },
    "Erf": GradientRule([0]) { c in
      let k = Float(2 / Double.pi.squareRoot())
      return [NDArray.zipMap(c.gradient(), try c.input(0).asFloat()) { g, x in g * k * exp(-x * x) }]
    },
    "Where": GradientRule([1, 2]) { c in
      let condition = try c.input(0), g = c.gradient()
      let zero = NDArray([Float(0)], shape: [])
      return [nil,
              c.needs(1) ? try c.sumTo(c.apply("Where", [condition, g, zero]), c.input(1).shape) : nil,
              c.needs(2) ? try c.sumTo(c.apply("Where", [condition, zero, g]), c.input(2).shape) : nil]
    },
    "Dropout": GradientRule([0]) { c in
      // In training the engine's Dropout leaves its float keep-and-rescale mask as output 1.
      if c.outputs.count > 1, c.outputs[1].dataType == .float {
        return [NDArray.zipMap(c.gradient(), c.outputs[1]) { $0 * $1 }]
      }
      return [c.gradient()]
    },
  ]
}
