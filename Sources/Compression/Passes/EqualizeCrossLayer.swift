import IR
import Runtime
import Support

/// Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019). When a weighted node
/// A (Conv, Gemm, MatMul) feeds exactly one weighted node B, possibly through operators that
/// commute with a positive per-channel scale (Relu, LeakyRelu, PRelu, pools, Identity), A's
/// output channel i can be divided by sᵢ and B's input channel i multiplied by sᵢ without
/// changing the float function. sᵢ = √(rAᵢ / rBᵢ), with r the largest magnitude of that
/// channel's weights, gives both the same range: channels whose weights are small next to their
/// neighbours' stop losing their precision to them, in A's per-tensor weight scale (below opset
/// 13), in B's per-output-channel one (which spans its input channels), and in the per-tensor
/// scale of the activation between them. Chains (Conv → depthwise Conv → Conv) are equalized
/// pair by pair, in sweeps, until the scales settle.
///
/// Clip (ReLU6) and the smooth activations (HardSwish, SiLU, GELU) do not commute with a scale,
/// so they end a chain; the pass never changes what the model computes, only how its weights
/// are spread.
public struct EqualizeCrossLayer: Pass {
  public static let name = "equalize"
  /// Sweeps over every pair at most; each sweep equalizes every pair once.
  public var maxSweeps = 50
  public init() {}

  /// Operators through which a positive per-channel scale passes unchanged.
  static let homogeneous: Set<String> = ["Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
                                          "GlobalMaxPool", "Identity", "Dropout"]

  /// A weighted node and its weight's layout.
  struct Weighted {
    var node: Int
    var weight: String
    var layout: WeightLayout
    /// Conv-style activations (channels on axis 1), else channels last.
    var convolution: Bool { layout.convolution }
  }

  struct Pair {
    var a: Weighted
    var b: Weighted
    /// A's bias (input 2), and a constant added to A's output right after it (MatMul + Add).
    var biases: [String]
    var through: [String]
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let graph = model.graph
    let uses = graph.uses()
    let initializers = graph.initializersByName
    let readers = graph.readers()
    let graphOutputs = Set(graph.outputs.map(\.name))

    /// The node's float weight, read only by it, with its layout; nil when it has none.
    func weighted(_ i: Int) -> Weighted? {
      let n = graph.nodes[i]
      guard n.isDefaultDomain, n.inputs.count >= 2, n.outputs.count == 1, let t = initializers[n.inputs[1]],
            t.dataType == .float, uses[t.name] == 1, !initializers.keys.contains(n.inputs[0]) else { return nil }
      return WeightLayout(n, weightDims: t.dims).map { Weighted(node: i, weight: t.name, layout: $0) }
    }
    func outputChannels(_ w: Weighted) -> Int { w.layout.outputs }
    func inputChannels(_ w: Weighted) -> Int { w.layout.inputs }

    // 1. The pairs: A's output through single-reader homogeneous nodes to B's first input.
    var pairs = [Pair]()
    for i in graph.nodes.indices {
      guard let a = weighted(i) else { continue }
      let an = graph.nodes[i]
      var biases = [String]()
      if an.opType != "MatMul", an.inputs.count > 2, !an.inputs[2].isEmpty {
        guard let b = initializers[an.inputs[2]], b.dataType == .float, uses[b.name] == 1,
              b.elementCount == outputChannels(a) else { continue }
        biases.append(b.name)
      }
      var value = an.outputs[0]
      var through = [String]()
      var end: Int?
      var afterGlobalPool = false
      while end == nil {
        guard uses[value] == 1, !graphOutputs.contains(value), let r = readers[value]?.first else { break }
        let n = graph.nodes[r]
        guard n.isDefaultDomain else { break }
        if let b = weighted(r), n.inputs[0] == value, !n.inputs[1...].contains(value) {
          // Channels stay on the activation's axis 1 from a Conv, or last from a Gemm/MatMul
          // (a Conv's only after a global pool and Flatten).
          if a.convolution == b.convolution || (a.convolution && afterGlobalPool && !b.convolution && through.last == "Flatten") {
            end = r
          }
          break
        }
        if n.opType == "Add", through.isEmpty, biases.isEmpty, n.inputs.count == 2, !a.convolution {
          // MatMul's bias, added right after it.
          guard let c = n.inputs.first(where: { $0 != value }), let t = initializers[c], t.dataType == .float, uses[c] == 1,
                t.elementCount == outputChannels(a), t.dims.count == 1 else { break }
          biases.append(c)
        } else if Self.homogeneous.contains(n.opType) {
          if n.opType == "PRelu" && n.inputs.dropFirst().contains(value) { break }
          if n.opType == "Dropout" && n.outputs.count > 1 && !n.outputs[1].isEmpty { break }
          if n.opType.hasPrefix("Global") { afterGlobalPool = true }
        } else if n.opType == "Flatten", afterGlobalPool, (n.attribute("axis")?.int ?? 1) == 1 {
          // [N, C, 1, 1] → [N, C]: the channel index is kept.
        } else {
          break
        }
        through.append(n.opType)
        guard let next = n.outputs.first, n.outputs.dropFirst().allSatisfy(\.isEmpty) else { break }
        value = next
      }
      guard let end, let b = weighted(end), outputChannels(a) == inputChannels(b) else { continue }
      pairs.append(Pair(a: a, b: b, biases: biases, through: through))
    }
    guard !pairs.isEmpty else { return PassResult(pass: Self.name, changes: []) }

    // 2. Sweeps over the pairs until no scale moves by more than 1e-4.
    var values = [String: [Float]]()
    for p in pairs {
      for name in [p.a.weight, p.b.weight] + p.biases where values[name] == nil {
        guard let t = initializers[name] else { continue }
        let v = try NDArray(t).floats()
        if let bad = v.firstIndex(where: { !$0.isFinite }) {
          throw CompressorError.invalid("weight '\(name)' holds \(v[bad]) at element \(bad); compressor will not equalize it")
        }
        values[name] = v
      }
    }
    // Each weight element's output and input channel, once.
    var layouts = [String: (out: [Int32], in: [Int32])]()
    for p in pairs {
      for w in [p.a, p.b] where layouts[w.weight] == nil { layouts[w.weight] = w.layout.channelsOfElements() }
    }
    func ranges(_ w: Weighted, channels: Int, output: Bool) -> [Float] {
      var r = [Float](repeating: 0, count: channels)
      guard let v = values[w.weight], let layout = layouts[w.weight] else { return r }
      let of = output ? layout.out : layout.in
      for i in v.indices { r[Int(of[i])] = max(r[Int(of[i])], abs(v[i])) }
      return r
    }
    func rangesOut(_ p: Pair) -> [Float] { ranges(p.a, channels: outputChannels(p.a), output: true) }
    func rangesIn(_ p: Pair) -> [Float] { ranges(p.b, channels: inputChannels(p.b), output: false) }
    let before = pairs.map { (WeightLayout.spread(rangesOut($0)), WeightLayout.spread(rangesIn($0))) }
    var sweeps = 0
    var moved = Float.infinity
    while sweeps < maxSweeps && moved > 1e-4 {
      moved = 0
      for p in pairs {
        let s = zip(rangesOut(p), rangesIn(p)).map { a, b -> Float in
          guard a.isNormal, b.isNormal else { return 1 }
          return min(max((a / b).squareRoot(), 1e-6), 1e6)
        }
        moved = max(moved, s.map { abs($0 - 1) }.max() ?? 0)
        if var v = values.removeValue(forKey: p.a.weight), let out = layouts[p.a.weight]?.out {
          for i in v.indices { v[i] /= s[Int(out[i])] }
          values[p.a.weight] = v
        }
        for b in p.biases { values[b] = values[b].map { zip($0, s).map { $0 / $1 } } }
        if var v = values.removeValue(forKey: p.b.weight), let inputs = layouts[p.b.weight]?.in {
          for i in v.indices { v[i] *= s[Int(inputs[i])] }
          values[p.b.weight] = v
        }
      }
      sweeps += 1
    }

    // 3. The scaled weights in place (each is read by its node alone).
    for (k, t) in model.graph.initializers.enumerated() {
      guard let v = values[t.name] else { continue }
      model.graph.initializers[k] = NDArray(v, shape: t.dims.map { Int($0) }).irTensor(name: t.name)
    }
    for (p, (a0, b0)) in zip(pairs, before) {
      let a1 = WeightLayout.spread(rangesOut(p)), b1 = WeightLayout.spread(rangesIn(p))
      let path = ([label(graph.nodes[p.a.node])] + p.through + [label(graph.nodes[p.b.node])]).joined(separator: " → ")
      changes.append(.init(target: label(graph.nodes[p.b.node]), action: "equalized",
                           detail: String(format: "%@ over %d channels: largest/smallest channel range %@ %.3g → %.3g, %@ %.3g → %.3g",
                                          path, outputChannels(p.a), label(graph.nodes[p.a.node]), a0, a1,
                                          label(graph.nodes[p.b.node]), b0, b1),
                           values: ["channels": Double(outputChannels(p.a)), "spreadBeforeA": a0, "spreadAfterA": a1,
                                    "spreadBeforeB": b0, "spreadAfterB": b1]))
    }
    changes.append(.init(target: "model", action: "equalization",
                         detail: "\(pairs.count) pairs equalized in \(sweeps) sweeps\(moved > 1e-4 ? " (scales still moving by \(moved))" : "")",
                         values: ["pairs": Double(pairs.count), "sweeps": Double(sweeps)]))
    return PassResult(pass: Self.name, changes: changes)
  }
}
