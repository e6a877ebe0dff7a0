import Foundation
import IR
import Support

/// BatchNormalization (inference), LayerNormalization and InstanceNormalization.
extension Kernels {
  static let normalization: [String: Kernel] = [
    "BatchNormalization": { c in
      if c.int("training_mode", 0) != 0 { throw c.unsupported("training_mode is not supported by the executor") }
      let x0 = try c.input(0)
      var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      let scale = try c.input(1).floats(), bias = try c.input(2).floats()
      let mean = try c.input(3).floats(), variance = try c.input(4).floats()
      let eps = c.float("epsilon", 1e-5)
      guard x.rank >= 2 else { throw c.fail("input \(x.shape) has no channel dimension") }
      let n = x.shape[0], ch = x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
      guard [scale.count, bias.count, mean.count, variance.count].allSatisfy({ $0 == ch }) else {
        throw c.fail("scale, bias, mean and var must have \(ch) values")
      }
      let e = x.mutableElements(Float.self)
      for b in 0..<n {
        for k in 0..<ch {
          let a = scale[k] / (variance[k] + eps).squareRoot(), s = bias[k] - mean[k] * a
          let base = (b * ch + k) * size
          for i in 0..<size { e[base + i] = e[base + i] * a + s }
        }
      }
      return [x0.dataType == .float ? x : try x.converted(to: x0.dataType)]
    },
    "LayerNormalization": { c in
      let x0 = try c.input(0)
      let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      let axis = try c.axis(c.int("axis", -1), rank: x.rank)
      let eps = c.float("epsilon", 1e-5)
      let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[axis...].reduce(1, *)
      let scale = try c.input(1), bias = c.optionalInput(2)
      var normalized = NDArray(uninitialized: .float, x.shape)
      var means = NDArray(uninitialized: .float, Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis))
      var invStd = means
      let src = x.elements(Float.self), dst = normalized.mutableElements(Float.self)
      let mu = means.mutableElements(Float.self), rs = invStd.mutableElements(Float.self)
      for o in 0..<outer {
        var sum: Float = 0
        for i in 0..<inner { sum += src[o * inner + i] }
        let mean = sum / Float(inner)
        var sq: Float = 0
        for i in 0..<inner { let d = src[o * inner + i] - mean; sq += d * d }
        let r = 1 / (sq / Float(inner) + eps).squareRoot()
        mu[o] = mean
        rs[o] = r
        for i in 0..<inner { dst[o * inner + i] = (src[o * inner + i] - mean) * r }
      }
      var y = try arithmetic(c, normalized, try scale.converted(to: .float), op: "Mul", *)
      if let bias { y = try arithmetic(c, y, try bias.converted(to: .float), op: "Add", +) }
      return [x0.dataType == .float ? y : try y.converted(to: x0.dataType), means, invStd]
    },
    "InstanceNormalization": { c in
      let x0 = try c.input(0)
      var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      let scale = try c.input(1).floats(), bias = try c.input(2).floats(), eps = c.float("epsilon", 1e-5)
      guard x.rank >= 2 else { throw c.fail("input \(x.shape) has no channel dimension") }
      let n = x.shape[0], ch = x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
      guard scale.count == ch, bias.count == ch else { throw c.fail("scale and bias must have \(ch) values") }
      let e = x.mutableElements(Float.self)
      for b in 0..<n {
        for k in 0..<ch {
          let base = (b * ch + k) * size
          var sum: Float = 0
          for i in 0..<size { sum += e[base + i] }
          let mean = sum / Float(size)
          var sq: Float = 0
          for i in 0..<size { let d = e[base + i] - mean; sq += d * d }
          let r = 1 / (sq / Float(size) + eps).squareRoot()
          for i in 0..<size { e[base + i] = (e[base + i] - mean) * r * scale[k] + bias[k] }
        }
      }
      return [x0.dataType == .float ? x : try x.converted(to: x0.dataType)]
    },
  ]
}

