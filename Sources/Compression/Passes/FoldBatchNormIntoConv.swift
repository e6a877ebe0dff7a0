import IR
import Runtime
import Support

/// Conv → BatchNormalization (inference mode) becomes one Conv with scaled weights and a
/// shifted bias, when the Conv's output feeds only the BatchNormalization and every parameter is
/// an initializer. Weights shared with other nodes are copied, never changed under them.
public struct FoldBatchNormIntoConv: Pass {
  public static let name = "fold-batchnorm"
  public init() {}

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    var names = NameScope(model)
    let uses = model.graph.uses()
    try model.graph.transformGraphs { g in
      var initializers = [String: Int]()
      for (i, t) in g.initializers.enumerated() { initializers[t.name] = i }
      var producer = [String: Int]()
      for (i, n) in g.nodes.enumerated() { for o in n.outputs { producer[o] = i } }
      let outputs = Set(g.outputs.map(\.name))
      var removed = Set<Int>()
      for (b, bn) in g.nodes.enumerated() where bn.opType == "BatchNormalization" && bn.isDefaultDomain {
        func skip(_ why: String) { changes.append(.init(target: label(bn), action: "skipped", detail: why)) }
        guard let ci = producer[bn.inputs.first ?? ""], g.nodes[ci].opType == "Conv", g.nodes[ci].isDefaultDomain else {
          skip("its input is not a Conv")
          continue
        }
        let conv = g.nodes[ci]
        guard (bn.attribute("training_mode")?.int ?? 0) == 0, bn.outputs.dropFirst().allSatisfy(\.isEmpty) else {
          skip("training mode")
          continue
        }
        guard uses[conv.outputs[0]] == 1, !outputs.contains(conv.outputs[0]) else {
          skip("the Conv's output is also read elsewhere")
          continue
        }
        let params = bn.inputs.dropFirst().compactMap { initializers[$0] }
        let hasBias = conv.inputs.count > 2 && !conv.inputs[2].isEmpty
        let biasIndex = hasBias ? initializers[conv.inputs[2]] : nil
        guard params.count == 4, bn.inputs.count == 5, conv.inputs.count >= 2, let wi = initializers[conv.inputs[1]],
              !hasBias || biasIndex != nil else {
          skip("its parameters or the Conv's weights are not initializers")
          continue
        }
        let p = try params.map { try NDArray(g.initializers[$0]) }
        let bias = try biasIndex.map { try NDArray(g.initializers[$0]) }
        guard let (w, bb) = try foldBatchNorm(weight: try NDArray(g.initializers[wi]), bias: bias, scale: p[0], shift: p[1],
                                              mean: p[2], variance: p[3], epsilon: bn.attribute("epsilon")?.float ?? 1e-5) else {
          skip("the weights are not float or the parameters do not match the output channels")
          continue
        }
        let out = bn.outputs[0]
        let wName = names.fresh("\(out).weight"), bName = names.fresh("\(out).bias")
        g.initializers.append(w.irTensor(name: wName))
        g.initializers.append(bb.irTensor(name: bName))
        g.nodes[ci].inputs = [conv.inputs[0], wName, bName]
        g.nodes[ci].outputs = [out]
        removed.insert(b)
        changes.append(.init(target: label(bn), action: "folded", detail: "into \(label(conv)) as '\(wName)', '\(bName)'"))
      }
      g.nodes = g.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
    return PassResult(pass: Self.name, changes: changes)
  }
}
