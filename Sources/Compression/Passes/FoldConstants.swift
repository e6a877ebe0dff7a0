import IR
import Runtime
import Support

/// Evaluates, once, every main-graph node whose inputs are all initializers (Shape of a weight,
/// a Transpose or Reshape of one, arithmetic on constants) and stores its outputs as initializers,
/// in graph order so chains fold completely. Left alone, with the reason: random ops, quantize /
/// dequantize nodes (folding would store the float tensor again), nodes with subgraphs, nodes
/// feeding graph outputs directly, ops the executor lacks, and folds that would grow the model
/// (outputs larger than their inputs and over 64 bytes: Expand, ConstantOfShape, Tile, up-casts —
/// a compressing command must never write a model larger than it read).
public struct FoldConstants: Pass {
  public static let name = "fold-constants"
  public init() {}

  static let kept: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                                  "Bernoulli", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Constant"]

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    var constants = [String: Tensor]()
    for t in model.graph.initializers { constants[t.name] = t }
    let graphOutputs = Set(model.graph.outputs.map(\.name))
    var kept = [Node]()
    var added = [Tensor]()
    for n in model.graph.nodes {
      let inputs = n.inputs.filter { !$0.isEmpty }
      guard n.isDefaultDomain, !Self.kept.contains(n.opType), !inputs.isEmpty,
            inputs.allSatisfy({ constants[$0] != nil }) else { kept.append(n); continue }
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)); kept.append(n) }
      if n.attributes.contains(where: { if case .graph = $0.value { return true }; if case .graphs = $0.value { return true }; return false }) {
        skip("has a subgraph"); continue
      }
      if n.outputs.contains(where: { graphOutputs.contains($0) }) { skip("its output is a graph output"); continue }
      guard Kernels.kernel(domain: n.domain, opType: n.opType) != nil else { skip("the executor has no \(n.opType) kernel"); continue }
      let feeds = inputs.compactMap { constants[$0] }
      let unique = Dictionary(feeds.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }).values.sorted { $0.name < $1.name }
      let graph = Graph(name: "fold", nodes: [n], initializers: unique,
                        outputs: n.outputs.filter { !$0.isEmpty }.map { ValueInfo(name: $0, type: nil) })
      let single = Model(irVersion: model.irVersion, opsetImports: model.opsetImports, graph: graph)
      let values: [(name: String, value: NDArray)]
      do {
        values = try Executor(model: single).run([:])
      } catch let e as CompressorError {
        skip("evaluating it failed: \(e.message)"); continue
      }
      let inBytes = unique.reduce(0) { $0 + $1.byteCount }
      let outBytes = values.reduce(0) { $0 + ($1.value.dataType.byteCount(elements: $1.value.count) ?? 0) }
      if outBytes > max(inBytes, 64) { skip("folding would store \(outBytes) bytes for \(inBytes) of inputs"); continue }
      for (name, value) in values {
        let t = value.irTensor(name: name)
        constants[name] = t
        added.append(t)
      }
      changes.append(.init(target: label(n), action: "folded", detail: "outputs stored as initializers (\(outBytes) bytes)"))
    }
    model.graph.nodes = kept
    model.graph.initializers += added
    return PassResult(pass: Self.name, changes: changes)
  }
}
