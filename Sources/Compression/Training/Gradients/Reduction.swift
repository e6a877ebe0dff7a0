import IR
import Runtime

/// ReduceSum and ReduceMean (the decomposed LayerNorm, masked mean pooling): dY is broadcast
/// back over the reduced axes (and divided by their size for the mean).
extension Gradients {
  static let reduction: [String: GradientRule] = [
    "ReduceSum": GradientRule([0]) { c in [try reduceGradient(c, mean: false), nil] },
    "ReduceMean": GradientRule([0]) { c in [try reduceGradient(c, mean: true), nil] },
  ]
}

private func reduceGradient(_ c: GradientContext, mean: Bool) throws -> NDArray {
  let x = try c.input(0), dy = c.gradient()
  let axesFromInput = c.opset >= (c.node.opType == "ReduceSum" ? 13 : 18)
  var axes = axesFromInput ? try c.optionalInput(1)?.integers() ?? [] : c.ints("axes") ?? []
  if axes.isEmpty {
    if axesFromInput && c.int("noop_with_empty_axes", 0) != 0 { return dy.reshaped(x.shape) }
    axes = Array(0..<x.rank)
  }
  var kept = x.shape
  for a0 in axes {
    let a = a0 < 0 ? a0 + x.rank : a0
    guard a >= 0 && a < x.rank else { throw c.fail("axis \(a0) is out of range for rank \(x.rank)") }
    kept[a] = 1
  }
  let count = x.count / max(kept.reduce(1, *), 1)
  let shape = NDArray(x.shape.map { Int64($0) }, shape: [x.rank])
  var g = try c.apply("Expand", [dy.reshaped(kept), shape])
  if mean && count > 1 {
    let e = g.mutableElements(Float.self)
    let k = 1 / Float(count)
    e.withPointer { p in if let p { for i in 0..<e.count { p[i] *= k } } }
  }
  return g
}
