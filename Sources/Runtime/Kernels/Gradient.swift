import Foundation
import IR
import Support

/// ai.onnx.preview.training's Gradient: the gradients of the tensor `y` names with respect to the
/// tensors `xs` names (fed as this node's inputs), through the nodes of the main graph that lead
/// from them to y — reverse mode over element-wise arithmetic (with broadcasting), MatMul, Identity
/// and the common activations; an operator outside those is an error naming it (69). Values
/// computed in Double; each gradient in its x's type.
extension Kernels {
  static let gradient: [String: Kernel] = [
    "Gradient": { c in try gradientOf(c) },
  ]
}

private func gradientOf(_ c: KernelContext) throws -> [NDArray] {
  guard let xs = c.strings("xs"), !xs.isEmpty else { throw c.fail("attribute xs (the names to differentiate by) is missing") }
  let y = c.string("y", "")
  guard !y.isEmpty else { throw c.fail("attribute y is missing") }
  let zs = c.strings("zs") ?? []
  let graph = c.executor.model.graph
  // The nodes between xs and y, in graph order (the model lists nodes topologically).
  var producer = [String: Int]()
  for (i, n) in graph.nodes.enumerated() { for o in n.outputs where !o.isEmpty { producer[o] = i } }
  var needed = Set<Int>(), stack = [y]
  let sources = Set(xs + zs)
  while let name = stack.popLast() {
    guard !sources.contains(name), let p = producer[name], needed.insert(p).inserted else { continue }
    stack += graph.nodes[p].inputs.filter { !$0.isEmpty }
  }
  let order = needed.sorted()
  // Forward values: the fed xs and zs, then everything else from the scope.
  var values = [String: NDArray]()
  for (i, name) in (xs + zs).enumerated() { values[name] = try c.input(i).converted(to: .double) }
  func value(_ name: String) throws -> NDArray {
    if let v = values[name] { return v }
    guard case .tensor(let t)? = c.scope.lookup(name) else { throw c.fail("'\(name)' has no value to differentiate through") }
    let d = try t.converted(to: .double)
    values[name] = d
    return d
  }
  for i in order {
    let node = graph.nodes[i]
    let inputs = try node.inputs.map { $0.isEmpty ? nil : try value($0) }
    let outs = try c.executor.evaluate(node, inputs.map { $0 })
    for (name, v) in zip(node.outputs, outs) where !name.isEmpty { values[name] = try v.converted(to: .double) }
  }
  let yValue = try value(y)
  var grads = [String: [Double]]()
  grads[y] = Array(repeating: 1, count: yValue.count)
  func accumulate(_ name: String, _ g: [Double]) {
    if let old = grads[name] { grads[name] = zip(old, g).map(+) } else { grads[name] = g }
  }
  for i in order.reversed() {
    let node = graph.nodes[i]
    guard let out = node.outputs.first, let dy = grads[out] else { continue }
    let outShape = try value(out).shape
    let ins = try node.inputs.map { try value($0) }
    let binaryOps: Set<String> = ["Add", "Sum", "Sub", "Mul", "Div", "MatMul"]
    guard ins.count == (binaryOps.contains(node.opType) ? 2 : 1) else {
      throw c.unsupported("Gradient cannot differentiate \(node.opType) with \(ins.count) inputs (\(node.displayName))")
    }
    let v = try ins.map { $0.elements(Double.self).map { $0 } }
    let yv = try value(out).elements(Double.self).map { $0 }
    /// The gradient of a broadcast operand: dy summed over the axes it was broadcast along.
    func unbroadcast(_ g: [Double], to shape: [Int]) -> [Double] {
      if shape == outShape { return g }
      var r = [Double](repeating: 0, count: shape.reduce(1, *))
      forEachPair(outShape, outShape, shape) { o, _, j in r[j] += g[o] }
      return r
    }
    /// g(a_i, b_j) at every output position, for both operands.
    func binary(_ da: (Double, Double, Double) -> Double, _ db: (Double, Double, Double) -> Double) {
      var ga = [Double](repeating: 0, count: outShape.reduce(1, *)), gb = ga
      forEachPair(outShape, ins[0].shape, ins[1].shape) { o, p, q in
        ga[o] = da(v[0][p], v[1][q], dy[o])
        gb[o] = db(v[0][p], v[1][q], dy[o])
      }
      accumulate(node.inputs[0], unbroadcast(ga, to: ins[0].shape))
      accumulate(node.inputs[1], unbroadcast(gb, to: ins[1].shape))
    }
    switch node.opType {
    case "Add", "Sum" where ins.count == 2: binary({ _, _, g in g }, { _, _, g in g })
    case "Sub": binary({ _, _, g in g }, { _, _, g in -g })
    case "Mul": binary({ _, b, g in g * b }, { a, _, g in g * a })
    case "Div": binary({ _, b, g in g / b }, { a, b, g in -g * a / (b * b) })
    case "Neg": accumulate(node.inputs[0], dy.map { -$0 })
    case "Identity": accumulate(node.inputs[0], dy)
    case "Relu": accumulate(node.inputs[0], zip(v[0], dy).map { $0 > 0 ? $1 : 0 })
    case "Sigmoid": accumulate(node.inputs[0], zip(yv, dy).map { $1 * $0 * (1 - $0) })
    case "Tanh": accumulate(node.inputs[0], zip(yv, dy).map { $1 * (1 - $0 * $0) })
    case "Exp": accumulate(node.inputs[0], zip(yv, dy).map { $1 * $0 })
    case "MatMul" where ins[0].rank == 2 && ins[1].rank == 2:
      let m = ins[0].shape[0], k = ins[0].shape[1], n = ins[1].shape[1]
      var ga = [Double](repeating: 0, count: m * k), gb = [Double](repeating: 0, count: k * n)
      for r in 0..<m { for j in 0..<n { for t in 0..<k {
        ga[r * k + t] += dy[r * n + j] * v[1][t * n + j]
        gb[t * n + j] += v[0][r * k + t] * dy[r * n + j]
      } } }
      accumulate(node.inputs[0], ga)
      accumulate(node.inputs[1], gb)
    default:
      throw c.unsupported("Gradient cannot differentiate through \(node.opType) (\(node.displayName))")
    }
  }
  return try xs.enumerated().map { i, name in
    let x = try c.input(i)
    let g = grads[name] ?? Array(repeating: 0, count: x.count)
    return try NDArray(doubles: g, as: x.dataType, shape: x.shape)
  }
}
