import Foundation
import IR
import Runtime
import Support

/// Weight-only quantization: every float weight of MatMul, Gemm, Conv, ConvTranspose and Gather
/// (embeddings) is stored as int8 with one scale per output channel (symmetric, zero point 0),
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
  public init(minimumElements: Int = 256, symmetric: Bool = true, axis: Int? = nil, filter: NodeFilter = .init()) {
    self.minimumElements = minimumElements
    self.symmetric = symmetric
    self.axis = axis
    self.filter = filter
  }

  /// Which input of which op is a weight, and the axis of its output channels.
  static let weightInput = ["Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "Gather": 0]
  static func channelAxis(_ n: Node, rank: Int) -> Int? {
    switch n.opType {
    case "Conv": return 0
    case "ConvTranspose": return 1
    case "Gemm": return (n.attribute("transB")?.int ?? 0) != 0 ? 0 : 1
    case "MatMul": return rank >= 2 ? rank - 1 : nil
    case "Gather": return (n.attribute("axis")?.int ?? 0) == 0 ? 0 : nil
    default: return nil
    }
  }

  /// Whether some weight of `model` would be quantized per channel (at opset 13): a float
  /// initializer of `minimumElements` or more read as a weight along a channel axis by a node the
  /// filter lets through. Quantize converts older models to 13 only then.
  public func hasPerChannelCandidates(_ model: Model) -> Bool {
    var sizes = [String: (DataType, Int, Int)]()
    for t in model.graph.initializers { sizes[t.name] = (t.dataType, t.elementCount, t.dims.count) }
    var found = false
    model.graph.forEachGraph { g in
      for n in g.nodes where !found && n.isDefaultDomain {
        guard let wi = Self.weightInput[n.opType], wi < n.inputs.count, let (type, count, rank) = sizes[n.inputs[wi]],
              type == .float, count >= minimumElements, filter.refusal(n) == nil else { continue }
        found = axis != nil || Self.channelAxis(n, rank: rank) != nil
      }
    }
    return found
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let opset = model.defaultOpsetVersion ?? 1
    var weights = [String: (axis: Int, reader: String)]()
    var conflicting = Set<String>()
    let ranks = Dictionary(model.graph.initializers.map { ($0.name, $0.dims.count) }, uniquingKeysWith: { a, _ in a })
    var dequantized = Set<String>()
    model.graph.forEachGraph { g in for n in g.nodes where n.opType == "DequantizeLinear" { dequantized.formUnion(n.outputs) } }
    var refused = [String: String]()
    // Readers anywhere, subgraphs included: If/Loop bodies read the main graph's weights.
    try model.graph.forEachGraph { g in
      for n in g.nodes where n.isDefaultDomain {
        guard let wi = Self.weightInput[n.opType], wi < n.inputs.count else { continue }
        let name = n.inputs[wi]
        guard let rank = ranks[name] else {
          if n.opType != "Gather" {
            let why = dequantized.contains(name) ? "its weight '\(name)' was quantized by an earlier pass"
              : "its weight input '\(name)' is computed, not an initializer"
            changes.append(.init(target: label(n), action: "skipped", detail: why))
          }
          continue
        }
        if let why = filter.refusal(n) {
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
    var newNodes = [Node]()
    for (index, t) in model.graph.initializers.enumerated() {
      guard let (axis, reader) = weights[t.name] else { continue }
      func skip(_ why: String) { changes.append(.init(target: t.name, action: "skipped", detail: why)) }
      if let why = refused[t.name] { skip("also read by a node \(why)"); continue }
      if t.dataType != .float { skip("\(t.dataType), not float"); continue }
      if t.elementCount < minimumElements { skip("\(t.elementCount) elements, fewer than \(minimumElements)"); continue }
      if conflicting.contains(t.name) { skip("read as a weight along different axes"); continue }
      if opset < 10 { skip("opset \(opset) has no DequantizeLinear (needs 10)"); continue }
      let perChannel = opset >= 13
      let q = try QuantizedWeight(t, axis: perChannel ? axis : nil, symmetric: symmetric,
                                  names: ("\(t.name).int8", "\(t.name).scale", "\(t.name).zero_point"))
      model.graph.initializers[index] = q.values
      model.graph.initializers.append(q.scale)
      if let zp = q.zeroPoint { model.graph.initializers.append(zp) }
      newNodes.append(q.dequantize(output: t.name, nodeName: "\(t.name).dequantize"))
      var detail = "\(q.scheme)\(perChannel ? "" : " (opset \(opset))") for \(reader); SQNR \(q.sqnrText) dB"
      if q.zeroChannels > 0 { detail += "; \(q.zeroChannels) all-zero channel(s) given scale 1" }
      changes.append(.init(target: t.name, action: "quantized", detail: detail, values: q.metrics))
    }
    model.graph.nodes.insert(contentsOf: newNodes, at: 0)
    if newNodes.isEmpty == false && model.irVersion < 4 {
      // IR 3 lists initializers as graph inputs; the quantized names replace the float ones.
      let replaced = Set(newNodes.map { $0.outputs[0] })
      model.graph.inputs.removeAll { replaced.contains($0.name) }
    }
    return PassResult(pass: Self.name, changes: changes)
  }
}
