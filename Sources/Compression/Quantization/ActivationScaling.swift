import IR
import Runtime

/// Dividing channel k of an activation by sₖ and multiplying row k of every weight that reads it
/// by sₖ leaves the products unchanged: SmoothQuant (`SmoothActivations`) and AWQ
/// (`QuantizeWeights4Bit --awq`) both move quantization difficulty between activations and
/// weights this way, with different s. This finds the activations and places the scales: 1/s
/// goes into the LayerNormalization (or decomposed LayerNorm's Mul and Add) that produces the
/// activation when the weighted nodes are its only readers, else into a float Mul inserted
/// before them.
///
/// Edits are collected and applied at once, so the node indices of the groups stay valid until
/// `apply`.
struct ActivationScaling {
  /// One activation and the weighted nodes that read it.
  struct Group {
    var value: String
    var readers: [(node: Int, layout: WeightLayout)]
    /// Every reader of the value is one of them (and it is not a graph output): the producer may take 1/s.
    var exclusive: Bool
    /// The activation's channels: every reader's weight has this many input rows.
    var inputs: Int { readers.first?.layout.inputs ?? 0 }
  }

  /// A reader's weight with each element's input channel.
  struct Weight {
    var name: String
    var values: [Float]
    var inputChannels: [Int32]
  }

  /// Where 1/s went.
  enum Placement: Equatable {
    case folded(into: String)
    case mul
    var description: String {
      switch self {
      case .folded(let node): return "folded into \(node)"
      case .mul: return "a Mul by 1/s before them"
      }
    }
  }

  /// The activations read as input 0 by MatMul/Gemm nodes with a 2-D float weight of their own
  /// that `accepts` lets through, in graph order; the readers of one activation share its width.
  static func groups(in graph: Graph, accepts: (Node, Tensor) -> Bool = { _, _ in true }) -> [Group] {
    let uses = graph.uses()
    let initializers = graph.initializersByName
    let readers = graph.readers()
    let graphOutputs = Set(graph.outputs.map(\.name))
    var groups = [Group]()
    var seen = Set<String>()
    for n in graph.nodes {
      guard let v = n.inputs.first, !v.isEmpty, initializers[v] == nil, !seen.contains(v) else { continue }
      seen.insert(v)
      var eligible = [(node: Int, layout: WeightLayout)]()
      for r in readers[v] ?? [] {
        let m = graph.nodes[r]
        guard m.opType == "MatMul" || m.opType == "Gemm", m.inputs.count >= 2, m.inputs[0] == v, m.inputs[1] != v,
              let w = initializers[m.inputs[1]], w.dataType == .float, uses[w.name] == 1,
              let layout = WeightLayout(m, weightDims: w.dims), accepts(m, w) else { continue }
        eligible.append((r, layout))
      }
      guard let k = eligible.first?.layout.inputs, eligible.allSatisfy({ $0.layout.inputs == k }) else { continue }
      groups.append(Group(value: v, readers: eligible, exclusive: eligible.count == uses[v] && !graphOutputs.contains(v)))
    }
    return groups
  }

  /// The group's weights, in reader order.
  static func weights(of group: Group, in graph: Graph) throws -> [Weight] {
    let initializers = graph.initializersByName
    return try group.readers.compactMap { node, layout in
      let name = graph.nodes[node].inputs[1]
      guard let t = initializers[name] else { return nil }
      return Weight(name: name, values: try NDArray(t).floats(), inputChannels: layout.channelsOfElements().in)
    }
  }

  private let graph: Graph
  private let uses: [String: Int]
  private let initializers: [String: Tensor]
  private var producers = [String: Int]()
  private var replaced = [String: Tensor]()
  private var inserted = [(before: Int, node: Node)]()
  private var rewired = [Int: String]()  // reader → its new input 0

  /// Edits to the graph the groups were found in.
  init(_ graph: Graph) {
    self.graph = graph
    uses = graph.uses()
    initializers = graph.initializersByName
    for (i, n) in graph.nodes.enumerated() { for o in n.outputs { producers[o] = i } }
  }

  /// Weight rows × s and the activation ÷ s. An inserted Mul is named `VALUE.<node>`, its output
  /// `VALUE.<output>` and its factor `VALUE.<node>_scale`.
  mutating func scale(_ group: Group, weights: [Weight], by s: [Float], names: inout NameScope,
                      naming: (node: String, output: String)) -> Placement {
    for w in weights {
      guard let t = initializers[w.name] else { continue }
      let scaled = w.values.indices.map { w.values[$0] * s[Int(w.inputChannels[$0])] }
      replaced[w.name] = NDArray(scaled, shape: t.dims.map { Int($0) }).irTensor(name: w.name)
    }
    let inverse = s.map { 1 / $0 }
    if group.exclusive, let p = producers[group.value], let folded = fold(inverse, into: graph.nodes[p]) {
      for t in folded { replaced[t.name] = t }
      return .folded(into: label(graph.nodes[p]))
    }
    let v = group.value
    let scaleName = names.fresh("\(v).\(naming.node)_scale"), out = names.fresh("\(v).\(naming.output)")
    replaced[scaleName] = NDArray(inverse, shape: [inverse.count]).irTensor(name: scaleName)
    let first = group.readers.map(\.node).min() ?? 0
    inserted.append((first, Node(name: names.fresh("\(v).\(naming.node)"), opType: "Mul", inputs: [v, scaleName], outputs: [out])))
    for (node, _) in group.readers { rewired[node] = out }
    return .mul
  }

  /// The scaled weights and factors, the inserted Muls and their readers' new inputs.
  func apply(to model: inout Model) {
    let existing = Set(model.graph.initializers.map(\.name))
    model.graph.initializers = model.graph.initializers.map { replaced[$0.name] ?? $0 }
    model.graph.initializers += replaced.keys.filter { !existing.contains($0) }.sorted().compactMap { replaced[$0] }
    var nodes = [Node]()
    for (i, var n) in graph.nodes.enumerated() {
      for m in inserted where m.before == i { nodes.append(m.node) }
      if let input = rewired[i] { n.inputs[0] = input }
      nodes.append(n)
    }
    model.graph.nodes = nodes
  }

  /// The producer's new parameters when it can take a per-channel factor on its output: a
  /// LayerNormalization's scale and bias, or the Mul(γ) → Add(β) that ends a decomposed one.
  private func fold(_ factor: [Float], into producer: Node) -> [Tensor]? {
    func scaled(_ name: String) -> Tensor? {
      guard let t = initializers[name], t.dataType == .float, uses[name] == 1, t.elementCount == factor.count,
            t.dims.count == 1, let v = try? NDArray(t).floats() else { return nil }
      return NDArray(zip(v, factor).map { $0 * $1 }, shape: [factor.count]).irTensor(name: name)
    }
    guard producer.isDefaultDomain else { return nil }
    switch producer.opType {
    case "LayerNormalization":
      guard (producer.attribute("axis")?.int ?? -1) == -1, producer.outputs.dropFirst().allSatisfy(\.isEmpty),
            producer.inputs.count >= 2, let gamma = scaled(producer.inputs[1]) else { return nil }
      guard producer.inputs.count > 2, !producer.inputs[2].isEmpty else { return [gamma] }
      return scaled(producer.inputs[2]).map { [gamma, $0] }
    case "Add":
      // y = Mul(z, γ) + β, with the Mul's output read by this Add alone.
      guard producer.inputs.count == 2, let bi = producer.inputs.firstIndex(where: { initializers[$0] != nil }),
            let beta = scaled(producer.inputs[bi]) else { return nil }
      let y = producer.inputs[1 - bi]
      guard uses[y] == 1, let m = producers[y].map({ graph.nodes[$0] }), m.opType == "Mul", m.isDefaultDomain,
            m.inputs.count == 2, let gi = m.inputs.firstIndex(where: { initializers[$0] != nil }),
            let gamma = scaled(m.inputs[gi]) else { return nil }
      return [gamma, beta]
    default:
      return nil
    }
  }
}
