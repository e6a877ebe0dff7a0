import IR

/// The ai.onnx.preview.training optimizer steps (Adagrad, Adam, Momentum): after R and T come n
/// tensors of each kind (X, G, then the optimizer's states), all of one shape per tensor; the
/// outputs are the n new X, then the n of each new state, each with its input's type and shape.
extension ShapeRules {
  static let trainingOptimizers: [String: ShapeRule] = [
    "Adagrad": { c in try optimizerStep(c, states: 1) },
    "Adam": { c in try optimizerStep(c, states: 2) },
    "Momentum": { c in try optimizerStep(c, states: 1) },
  ]
}

private func optimizerStep(_ c: ShapeContext, states: Int) throws -> [InferredTensor] {
  let kinds = 2 + states, rest = c.inputCount - 2
  guard rest > 0, rest % kinds == 0 else { throw c.fail("after R and T the inputs must be \(kinds) groups of equal size") }
  let n = rest / kinds
  // Tensor j's X, G and states share one shape.
  let shapes = try (0..<n).map { j -> [DimExpr?]? in
    var shape: [DimExpr?]?
    for k in 0..<kinds {
      guard let s = c.shape(2 + k * n + j) else { continue }
      guard let known = shape else { shape = s; continue }
      guard known.count == s.count else { throw c.fail("tensor \(j)'s inputs have ranks \(known.count) and \(s.count)") }
      shape = try zip(known, s).map { try c.same($0, $1, "the shapes of tensor \(j)'s inputs") }
    }
    return shape
  }
  // X, then each state (G has no output).
  return ([0] + Array(2..<kinds)).flatMap { k in
    (0..<n).map { j in InferredTensor(type: c.type(2 + k * n + j), shape: shapes[j]) }
  }
}
