import Foundation
import IR
import Runtime
import Support

/// Weight-only quantization: every float weight of MatMul, Gemm, Conv, ConvTranspose, Gather
/// (embeddings) and the recurrent ops (LSTM, GRU, RNN: W and R), in the main graph and in every
/// subgraph (If branches and Loop bodies often hold a whole model), is stored as int8 with one scale per output channel (symmetric, zero point 0),
/// followed by a DequantizeLinear that gives back a float tensor under the weight's old name,
/// so compute stays float and every consumer is unchanged. Per-channel needs opset 13; older
/// models get one scale per tensor (opset 10–12) or are left alone (before 10), with the reason
/// in the report. A channel of zeros gets scale 1, so every scale is finite and positive.
public struct QuantizeWeights: Pass {
  public static let name = "quantize-weights"
  /// Smaller tensors (biases, norms) stay float: their bytes do not matter, their precision does.
  public var minimumElements: Int
  /// Symmetric int8 (zero point 0), or asymmetric uint8 with a zero point per channel.
  public var symmetric: Bool
  /// Overrides the per-channel axis of every weight (`--axis`); negative counts from the end.
  public var axis: Int?
  public var filter: NodeFilter
  /// Nodes a quality search kept entirely float (static `--target`): their weights stay float.
  public var keptFloat: KeptFloatNodes?
  /// Levels the static pass chose by GPTQ for some weights (the rest are rounded to nearest).
  public var rounded: RoundedWeights?
  /// Weight-only `--gptq`: calibration samples for GPTQ's Hessians; the pass rounds the main
  /// graph's Conv, MatMul and Gemm weights by GPTQ first (`WeightRounding`), the rest to nearest.
  public var gptq: QuantizeWeights4Bit.Calibration?
  public init(minimumElements: Int = 256, symmetric: Bool = true, axis: Int? = nil, filter: NodeFilter = .init()) {
    self.minimumElements = minimumElements
    self.symmetric = symmetric
    self.axis = axis
    self.filter = filter
  }

  /// Which inputs of which op are weights, and the axis of their output channels. ONNX Runtime's
  /// fused operators (what its transformer optimizer writes) carry their weights the same way.
  static let weightInputs = ["Conv": [1], "ConvTranspose": [1], "Gemm": [1], "MatMul": [1], "Gather": [0],
                             "LSTM": [1, 2], "GRU": [1, 2], "RNN": [1, 2]]
  static let contribWeightInputs = ["Attention": [1], "FusedConv": [1], "FusedGemm": [1], "FusedMatMul": [1],
                                    "EmbedLayerNormalization": [2, 3, 4]]

  /// The weight inputs of `n`, by its domain.
  static func weightInputs(of n: Node) -> [Int] {
    if n.isDefaultDomain { return weightInputs[n.opType] ?? [] }
    return n.domain == "com.microsoft" ? contribWeightInputs[n.opType] ?? [] : []
  }

  static func channelAxis(_ n: Node, rank: Int) -> Int? {
    switch n.opType {
    case "Conv", "FusedConv": return 0
    case "ConvTranspose": return 1
    case "Gemm", "FusedGemm": return (n.attribute("transB")?.int ?? 0) != 0 ? 0 : 1
    case "MatMul": return rank >= 2 ? rank - 1 : nil
    case "FusedMatMul": return rank >= 2 ? ((n.attribute("transB")?.int ?? 0) != 0 ? rank - 2 : rank - 1) : nil
    case "Gather": return (n.attribute("axis")?.int ?? 0) == 0 ? 0 : nil
    // W [directions, gates × hidden, input] and R [directions, gates × hidden, hidden].
    case "LSTM", "GRU", "RNN": return rank == 3 ? 1 : nil
    // Attention's packed Q/K/V weight [hidden, 3 × hidden]; embedding tables, one row per id.
    case "Attention": return rank == 2 ? 1 : nil
    case "EmbedLayerNormalization": return rank == 2 ? 0 : nil
    default: return nil
    }
  }

  /// Whether some weight of `model` would be quantized per channel (at opset 13): a float
  /// initializer of `minimumElements` or more read as a weight along a channel axis by a node the
  /// filter lets through. Quantize converts older models to 13 only then.
  public func hasPerChannelCandidates(_ model: Model) -> Bool {
    var sizes = [String: (DataType, Int, Int)]()
    model.graph.forEachGraph { g in for t in g.initializers { sizes[t.name] = (t.dataType, t.elementCount, t.dims.count) } }
    var found = false
    model.graph.forEachGraph { g in
      for n in g.nodes where !found {
        for wi in Self.weightInputs(of: n) where !found && wi < n.inputs.count {
          guard let (type, count, rank) = sizes[n.inputs[wi]], type == .float, count >= minimumElements,
                filter.refusal(n) == nil else { continue }
          found = axis != nil || Self.channelAxis(n, rank: rank) != nil
        }
      }
    }
    return found
  }

  /// Which weights the pass stores int8, with their channel axes (nil: per tensor below opset
  /// 13), as float tensors holding exactly the values their DequantizeLinear will give back: what
  /// a quality search scores candidates with, without running the pass and its dequantizers for
  /// each candidate.
  func dequantizedWeights(_ model: Model) throws -> [String: Tensor] {
    let (weights, conflicting, refused, _) = try selection(model)
    let opset = model.defaultOpsetVersion ?? 1
    var result = [String: Tensor]()
    try model.graph.forEachGraph { g in
      for t in g.initializers {
        guard let (axis, _) = weights[t.name],
              refusal(t, opset: opset, refused: refused, conflicting: conflicting) == nil else { continue }
        let q = try QuantizedWeight(t, axis: opset >= 13 ? axis : nil, symmetric: symmetric, names: (t.name, "", ""), rounded: rounded)
        result[t.name] = q.dequantized(name: t.name)
      }
    }
    return result
  }

  /// Why weight `t`, which some node reads as a weight, stays float (nil: it is quantized).
  private func refusal(_ t: Tensor, opset: Int64, refused: [String: String], conflicting: Set<String>) -> String? {
    if let why = refused[t.name] { return "also read by a node \(why)" }
    if t.dataType != .float { return "\(t.dataType), not float" }
    if t.elementCount < minimumElements { return "\(t.elementCount) elements, fewer than \(minimumElements)" }
    if conflicting.contains(t.name) { return "read as a weight along different axes" }
    if opset < 10 { return "opset \(opset) has no DequantizeLinear (needs 10)" }
    return nil
  }

  private func selection(_ model: Model) throws
    -> (weights: [String: (axis: Int, reader: String)], conflicting: Set<String>, refused: [String: String], changes: [PassResult.Change]) {
    var changes = [PassResult.Change]()
    var weights = [String: (axis: Int, reader: String)]()
    var conflicting = Set<String>()
    var ranks = [String: Int]()
    model.graph.forEachGraph { g in for t in g.initializers where ranks[t.name] == nil { ranks[t.name] = t.dims.count } }
    var dequantized = Set<String>()
    model.graph.forEachGraph { g in for n in g.nodes where n.opType == "DequantizeLinear" { dequantized.formUnion(n.outputs) } }
    var refused = [String: String]()
    // Readers anywhere, subgraphs included: If/Loop bodies read the main graph's weights.
    try model.graph.forEachGraph { g in
      for n in g.nodes {
        let inputs = Self.weightInputs(of: n)
        if inputs.isEmpty && !n.isDefaultDomain {
          // Another runtime's operator: its large float weights stay float, and the report says so.
          for name in n.inputs where (ranks[name] ?? 0) >= 2 {
            changes.append(.init(target: label(n), action: "skipped",
                                 detail: "\(n.domain).\(n.opType) reads weight '\(name)' in a layout this pass does not quantize"))
          }
          continue
        }
        for wi in inputs where wi < n.inputs.count && !n.inputs[wi].isEmpty {
          let name = n.inputs[wi]
          guard let rank = ranks[name] else {
            if n.opType != "Gather" {
              let why = dequantized.contains(name) ? "its weight '\(name)' was quantized by an earlier pass"
                : "its weight input '\(name)' is computed, not an initializer"
              changes.append(.init(target: label(n), action: "skipped", detail: why))
            }
            continue
          }
          if let why = filter.refusal(n) ?? (keptFloat?.nodes.contains(label(n)) == true ? "kept float by the static pass (its quality target or --overrides)" : nil) {
            refused[name] = why
            changes.append(.init(target: label(n), action: "skipped", detail: why))
            continue
          }
          var axis = Self.channelAxis(n, rank: rank)
          if let forced = self.axis {
            guard forced >= -rank && forced < rank else {
              throw CompressorError.usage("--axis \(forced) is out of range for weight '\(name)' of rank \(rank) (\(label(n)))")
            }
            axis = forced < 0 ? forced + rank : forced
          }
          if let axis {
            if let seen = weights[name], seen.axis != axis { conflicting.insert(name) }
            weights[name] = (axis, label(n))
          } else {
            changes.append(.init(target: label(n), action: "skipped", detail: "\(n.opType) along this axis has no per-channel layout"))
          }
        }
      }
    }
    return (weights, conflicting, refused, changes)
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let opset = model.defaultOpsetVersion ?? 1
    var (weights, conflicting, refused, changes) = try selection(model)
    var rounded = self.rounded
    if let gptq {
      let levels = RoundedWeights()
      var chosen = [(name: String, node: Node, axis: Int?)]()
      let initializers = model.graph.initializersByName
      for n in model.graph.nodes where n.isDefaultDomain && ["Conv", "MatMul", "Gemm"].contains(n.opType) && n.inputs.count >= 2 {
        let name = n.inputs[1]
        guard let (axis, _) = weights[name], let t = initializers[name],
              refusal(t, opset: opset, refused: refused, conflicting: conflicting) == nil else { continue }
        chosen.append((name, n, opset >= 13 ? axis : nil))
      }
      changes += try WeightRounding.round(model: model, weights: chosen, symmetric: symmetric, data: gptq.data,
                                          maxSamples: gptq.maxSamples, threads: gptq.threads, into: levels)
      rounded = levels
    }
    var names = NameScope(model)
    var replaced = Set<String>()
    // Each graph's own initializers, with their DequantizeLinear nodes in that graph (names are
    // unique across scopes, so one table of weights serves every graph).
    try model.graph.transformGraphs { g in
      var newNodes = [Node]()
      for (index, t) in g.initializers.enumerated() {
        guard let (axis, reader) = weights[t.name] else { continue }
        func skip(_ why: String) { changes.append(.init(target: t.name, action: "skipped", detail: why)) }
        if let why = refusal(t, opset: opset, refused: refused, conflicting: conflicting) { skip(why); continue }
        let perChannel = opset >= 13
        let q = try QuantizedWeight(t, axis: perChannel ? axis : nil, symmetric: symmetric,
                                    names: (names.fresh("\(t.name).int8"), names.fresh("\(t.name).scale"),
                                            names.fresh("\(t.name).zero_point")), rounded: rounded)
        g.initializers[index] = q.values
        g.initializers.append(q.scale)
        if let zp = q.zeroPoint { g.initializers.append(zp) }
        newNodes.append(q.dequantize(output: t.name, nodeName: names.fresh("\(t.name).dequantize")))
        var detail = "\(q.scheme)\(perChannel ? "" : " (opset \(opset))") for \(reader); SQNR \(q.sqnrText) dB"
        if q.zeroChannels > 0 { detail += "; \(q.zeroChannels) all-zero channel(s) given scale 1" }
        changes.append(.init(target: t.name, action: "quantized", detail: detail, values: q.metrics))
      }
      g.nodes.insert(contentsOf: newNodes, at: 0)
      replaced.formUnion(newNodes.map { $0.outputs[0] })
    }
    // A weight listed among the main graph's inputs (IR 3 lists them all) is now computed:
    // unlisted, it cannot become an input a caller must feed. (Subgraph inputs are positional.)
    model.graph.inputs.removeAll { replaced.contains($0.name) }
    return PassResult(pass: Self.name, changes: changes)
  }
}
