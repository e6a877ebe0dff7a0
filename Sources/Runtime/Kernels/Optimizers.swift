import Foundation
import IR
import Support

/// The ai.onnx.preview.training optimizer steps: Adagrad, Adam and Momentum (standard and
/// Nesterov), each updating n tensors at once from the learning rate R and the update count T.
/// Inputs are R, T, then n tensors of each kind (X, G, and the kind's state); outputs the n new
/// X, then the n of each new state. Computed in Double, returned in each tensor's type.
extension Kernels {
  static let trainingOptimizers: [String: Kernel] = [
    "Adagrad": { c in
      let (r, t, groups) = try optimizerInputs(c, states: 1)
      let decay = Double(c.float("decay_factor", 0)), norm = Double(c.float("norm_coefficient", 0)), eps = Double(c.float("epsilon", 1e-6))
      let rate = r / (1 + t * decay)
      var xs = [NDArray](), hs = [NDArray]()
      for g in groups {
        let (x, grad, h) = (g.tensors[0], g.tensors[1], g.tensors[2])
        var newX = x, newH = h
        for i in x.indices {
          let regularized = norm * x[i] + grad[i]
          newH[i] = h[i] + regularized * regularized
          newX[i] = x[i] - rate * regularized / (newH[i].squareRoot() + eps)
        }
        xs.append(try g.output(newX, 0))
        hs.append(try g.output(newH, 2))
      }
      return xs + hs
    },
    "Adam": { c in
      let (r, t, groups) = try optimizerInputs(c, states: 2)
      let alpha = Double(c.float("alpha", 0.9)), beta = Double(c.float("beta", 0.999))
      let norm = Double(c.float("norm_coefficient", 0)), post = Double(c.float("norm_coefficient_post", 0)), eps = Double(c.float("epsilon", 1e-6))
      let rate = t > 0 ? r * (1 - Foundation.pow(beta, t)).squareRoot() / (1 - Foundation.pow(alpha, t)) : r
      var xs = [NDArray](), vs = [NDArray](), hs = [NDArray]()
      for g in groups {
        let (x, grad, v, h) = (g.tensors[0], g.tensors[1], g.tensors[2], g.tensors[3])
        var newX = x, newV = v, newH = h
        for i in x.indices {
          let regularized = norm * x[i] + grad[i]
          newV[i] = alpha * v[i] + (1 - alpha) * regularized
          newH[i] = beta * h[i] + (1 - beta) * regularized * regularized
          newX[i] = (1 - post) * (x[i] - rate * newV[i] / (newH[i].squareRoot() + eps))
        }
        xs.append(try g.output(newX, 0))
        vs.append(try g.output(newV, 2))
        hs.append(try g.output(newH, 3))
      }
      return xs + vs + hs
    },
    "Momentum": { c in
      let (r, t, groups) = try optimizerInputs(c, states: 1)
      let alpha = Double(c.float("alpha", 0)), beta = Double(c.float("beta", 0)), norm = Double(c.float("norm_coefficient", 0))
      let mode = c.string("mode", "standard")
      guard mode == "standard" || mode == "nesterov" else { throw c.fail("mode '\(mode)' is neither standard nor nesterov") }
      let adjusted = t > 0 ? beta : 1
      var xs = [NDArray](), vs = [NDArray]()
      for g in groups {
        let (x, grad, v) = (g.tensors[0], g.tensors[1], g.tensors[2])
        var newX = x, newV = v
        for i in x.indices {
          let regularized = norm * x[i] + grad[i]
          newV[i] = alpha * v[i] + adjusted * regularized
          newX[i] = x[i] - r * (mode == "nesterov" ? regularized + alpha * newV[i] : newV[i])
        }
        xs.append(try g.output(newX, 0))
        vs.append(try g.output(newV, 2))
      }
      return xs + vs
    },
  ]
}

/// One optimized tensor's inputs (X, G, then the states) as Double, with their shapes and types.
private struct OptimizedTensor {
  var tensors: [[Double]]
  var sources: [NDArray]

  func output(_ values: [Double], _ k: Int) throws -> NDArray {
    try NDArray(doubles: values, as: sources[k].dataType, shape: sources[k].shape)
  }
}

/// R and T as scalars, then the n groups of (X, G, states…) from the 2 + n·(2 + states) inputs.
private func optimizerInputs(_ c: KernelContext, states: Int) throws -> (Double, Double, [OptimizedTensor]) {
  let r = try c.input(0), t = try c.input(1)
  guard r.count == 1, t.count == 1, let rate = try r.floats().first, let step = try t.integers().first else {
    throw c.fail("R and T must be scalars")
  }
  let kinds = 2 + states, rest = c.inputs.count - 2
  guard rest > 0, rest % kinds == 0 else { throw c.fail("after R and T the inputs must be \(kinds) groups of equal size") }
  let n = rest / kinds
  var groups = [OptimizedTensor]()
  for j in 0..<n {
    let sources = try (0..<kinds).map { try c.input(2 + $0 * n + j) }
    guard sources.allSatisfy({ $0.shape == sources[0].shape }), sources[0].dataType.isFloatingPoint else {
      throw c.fail("tensor \(j)'s inputs must be floats of one shape (they are \(sources.map(\.shape)))")
    }
    groups.append(OptimizedTensor(tensors: try sources.map { try $0.converted(to: .double).elements(Double.self).map { $0 } }, sources: sources))
  }
  return (Double(rate), Double(step), groups)
}
