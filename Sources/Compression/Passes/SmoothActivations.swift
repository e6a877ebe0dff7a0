import Datasets
import Foundation
import IR
import Runtime
import Support

/// SmoothQuant (Xiao et al., 2023): transformer activations carry a few channels far larger
/// than the rest, and one per-tensor int8 scale for all of them leaves the others a handful of
/// levels. Weights are easy to quantize per channel. So each input channel k of the MatMuls that
/// read an activation is divided by sₖ = max|xₖ|^α / max|Wₖ|^(1−α) and their weight rows
/// multiplied by it: the product is unchanged, and α moves the difficulty from activations
/// (α → 1) to weights (α → 0). max|xₖ| is measured on the calibration data.
///
/// The division is folded into the LayerNormalization (or decomposed LayerNorm's Mul and Add)
/// that produces the activation when the MatMuls are its only readers; otherwise a Mul by 1/s
/// is inserted before them, which stays float.
public struct SmoothActivations: Pass {
  public static let name = "smooth"
  public var alpha: Float
  public var calibrator: Calibrator
  public var data: String

  public init(alpha: Float, calibrator: Calibrator, data: String) {
    self.alpha = alpha; self.calibrator = calibrator; self.data = data
  }

  /// One activation and the weighted nodes that read it.
  struct Group {
    var value: String
    var readers: [(node: Int, layout: WeightLayout)]
    /// Every reader of the value is one of them (and it is not a graph output): the producer may take 1/s.
    var exclusive: Bool
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let graph = model.graph
    let uses = graph.uses()
    let initializers = graph.initializersByName
    let readers = graph.readers()
    let graphOutputs = Set(graph.outputs.map(\.name))

    // 1. The activations read by MatMul/Gemm nodes with a 2-D float weight of their own.
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
              let layout = WeightLayout(m, weightDims: w.dims) else { continue }
        eligible.append((r, layout))
      }
      guard let k = eligible.first?.layout.inputs, eligible.allSatisfy({ $0.layout.inputs == k }) else { continue }
      groups.append(Group(value: v, readers: eligible,
                          exclusive: eligible.count == uses[v] && !graphOutputs.contains(v)))
    }
    guard !groups.isEmpty else { return PassResult(pass: Self.name, changes: []) }

    // 2. Each activation's channel maxima on the calibration data.
    var calibrator = self.calibrator
    calibrator.method = .minmax
    calibrator.progress = nil
    for g in groups { calibrator.channelAxes[g.value] = -1 }
    let dataset = try Dataset(path: data, inputNames: graph.feedNames)
    let (ranges, _) = try calibrator.run(model: model, tensors: groups.map(\.value), data: dataset)

    // 3. Scales, weights and the producer's (or a new Mul's) 1/s.
    var changes = [PassResult.Change]()
    var names = NameScope(model)
    var replaced = [String: Tensor]()
    var inserted = [(before: Int, node: Node)]()
    var rewired = [Int: String]()  // reader → its new input 0
    var producers = [String: Int]()
    for (i, n) in graph.nodes.enumerated() { for o in n.outputs { producers[o] = i } }
    for g in groups {
      let readerNames = g.readers.map { label(graph.nodes[$0.node]) }.joined(separator: ", ")
      guard let xMax = ranges[g.value]?.channelMaxima, xMax.count == g.readers[0].layout.inputs else {
        changes.append(.init(target: g.value, action: "skipped", detail: "its channels were not measured (not float, or its shape varies)"))
        continue
      }
      var wMax = [Float](repeating: 0, count: xMax.count)
      var weights = [(name: String, values: [Float], inputs: [Int32])]()
      for (node, layout) in g.readers {
        let name = graph.nodes[node].inputs[1]
        guard let t = initializers[name] else { continue }
        let values = try NDArray(t).floats()
        let inputs = layout.channelsOfElements().in
        for (i, x) in values.enumerated() where x.isFinite { wMax[Int(inputs[i])] = max(wMax[Int(inputs[i])], abs(x)) }
        weights.append((name, values, inputs))
      }
      let s = zip(xMax, wMax).map { x, w -> Float in
        guard x.isNormal, w.isNormal else { return 1 }
        let v = Float(pow(Double(x), Double(alpha)) / pow(Double(w), Double(1 - alpha)))
        return v.isNormal ? min(max(v, 1e-5), 1e5) : 1
      }
      for (name, values, inputs) in weights {
        guard let t = initializers[name] else { continue }
        let scaled = values.indices.map { values[$0] * s[Int(inputs[$0])] }
        replaced[name] = NDArray(scaled, shape: t.dims.map { Int($0) }).irTensor(name: name)
      }
      let inverse = s.map { 1 / $0 }
      var how = ""
      if g.exclusive, let p = producers[g.value],
         let folded = fold(inverse, into: graph.nodes[p], graph: graph, initializers: initializers, uses: uses) {
        for t in folded { replaced[t.name] = t }
        how = "folded into \(label(graph.nodes[p]))"
      } else {
        let scaleName = names.fresh("\(g.value).smooth_scale"), out = names.fresh("\(g.value).smoothed")
        replaced[scaleName] = NDArray(inverse, shape: [inverse.count]).irTensor(name: scaleName)
        let first = g.readers.map(\.node).min() ?? 0
        inserted.append((first, Node(name: names.fresh("\(g.value).smooth"), opType: "Mul", inputs: [g.value, scaleName], outputs: [out])))
        for (node, _) in g.readers { rewired[node] = out }
        how = "a Mul by 1/s before them"
      }
      let before = WeightLayout.spread(xMax), after = WeightLayout.spread(zip(xMax, s).map { $0 / $1 })
      changes.append(.init(target: g.value, action: "smoothed",
                           detail: String(format: "α %.2f for %@ (%@): largest/smallest channel maximum %.3g → %.3g over %d channels",
                                          alpha, readerNames, how, before, after, xMax.count),
                           values: ["alpha": Double(alpha), "spreadBefore": before, "spreadAfter": after, "channels": Double(xMax.count),
                                    "folded": how.hasPrefix("folded") ? 1 : 0]))
    }
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
    changes.append(.init(target: "model", action: "smoothing",
                         detail: String(format: "α %.2f: %d activations smoothed, %d into their LayerNorm", alpha,
                                        changes.filter { $0.action == "smoothed" }.count,
                                        changes.filter { $0.values?["folded"] == 1 }.count)))
    return PassResult(pass: Self.name, changes: changes)
  }

  /// The producer's new parameters when it can take a per-channel factor on its output: a
  /// LayerNormalization's scale and bias, or the Mul(γ) → Add(β) that ends a decomposed one.
  func fold(_ factor: [Float], into producer: Node, graph: Graph, initializers: [String: Tensor], uses: [String: Int]) -> [Tensor]? {
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
      guard uses[y] == 1, let m = graph.nodes.first(where: { $0.outputs.first == y }), m.opType == "Mul", m.isDefaultDomain,
            m.inputs.count == 2, let gi = m.inputs.firstIndex(where: { initializers[$0] != nil }),
            let gamma = scaled(m.inputs[gi]) else { return nil }
      return [gamma, beta]
    default:
      return nil
    }
  }
}
