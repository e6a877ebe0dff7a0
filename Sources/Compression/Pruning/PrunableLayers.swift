import IR
import Runtime
import Support

/// A weight's values for pruning; ±inf or NaN anywhere is refused (exit 65 naming the tensor), as
/// quantization and factorization refuse them: magnitudes of such a weight rank nothing.
func finiteWeights(_ t: Tensor) throws -> [Float] {
  let values = try NDArray(t).floats()
  if let bad = values.firstIndex(where: { !$0.isFinite }) {
    throw CompressorError.invalid("weight '\(t.name)' holds \(values[bad]) at element \(bad); compressor will not prune it")
  }
  return values
}

/// A weight that pruning may thin out: the float initializer a Conv, ConvTranspose, Gemm or
/// MatMul multiplies by — in the main graph or in a subgraph (If branches, Loop bodies) — and
/// the axis along which its inputs run.
struct PrunableLayer {
  var node: Node
  var weight: String
  /// The weight's input-channel axis (K of a MatMul weight, C_in of a Conv kernel).
  var inputAxis: Int
  var label: String { Compression.label(node) }
}

/// Layers in graph order (the main graph, then each subgraph), one per weight (a weight two
/// nodes share is one layer, under its first reader), with the reason for every node that has no
/// prunable weight — naming the node that computes a weight that is not an initializer.
func prunableLayers(_ model: Model) -> (layers: [PrunableLayer], skipped: [PassResult.Change]) {
  let initializers = model.graph.initializersEverywhere
  var producer = [String: Node]()
  model.graph.forEachGraph { g in for n in g.nodes { for o in n.outputs where !o.isEmpty { producer[o] = n } } }
  var layers = [PrunableLayer](), skipped = [PassResult.Change](), seen = Set<String>()
  model.graph.forEachGraph { g in
    for n in g.nodes where n.isDefaultDomain {
      let axis: Int
      switch n.opType {
      case "Conv", "ConvTranspose": axis = n.opType == "Conv" ? 1 : 0
      case "Gemm": axis = (n.attribute("transB")?.int ?? 0) != 0 ? 1 : 0
      case "MatMul": axis = 0
      default: continue
      }
      guard n.inputs.count > 1, let w = initializers[n.inputs[1]] else {
        let source = n.inputs.count > 1 ? producer[n.inputs[1]].map { " by \($0.displayName)" } ?? "" : ""
        skipped.append(.init(target: label(n), action: "skipped", detail: "its weight is computed\(source), not an initializer"))
        continue
      }
      guard w.dataType == .float else {
        skipped.append(.init(target: label(n), action: "skipped", detail: "weight '\(w.name)' is \(w.dataType), not float"))
        continue
      }
      guard w.dims.count >= 2 else {
        skipped.append(.init(target: label(n), action: "skipped", detail: "weight '\(w.name)' is not a matrix or kernel"))
        continue
      }
      if seen.insert(w.name).inserted { layers.append(PrunableLayer(node: n, weight: w.name, inputAxis: axis)) }
    }
  }
  return (layers, skipped)
}

/// Per-layer ratios given on the command line: "name-glob=ratio" or "OpType=ratio".
public struct RatioOverrides: Equatable {
  public var entries: [(pattern: String, ratio: Double)]
  public init(_ entries: [(pattern: String, ratio: Double)] = []) { self.entries = entries }
  public static func == (a: RatioOverrides, b: RatioOverrides) -> Bool {
    a.entries.map(\.pattern) == b.entries.map(\.pattern) && a.entries.map(\.ratio) == b.entries.map(\.ratio)
  }

  /// "conv1=0.3,fc*=0" → entries; a usage error naming the malformed piece or ratio.
  public static func parse(_ text: String) throws -> RatioOverrides {
    var entries = [(String, Double)]()
    for piece in text.split(separator: ",") {
      let kv = piece.split(separator: "=", maxSplits: 1).map(String.init)
      guard kv.count == 2, !kv[0].isEmpty, let r = Double(kv[1]) else {
        throw CompressorError.usage("--overrides: '\(piece)' is not PATTERN=RATIO")
      }
      guard r >= 0 && r < 1 else { throw CompressorError.usage("--overrides: ratio \(kv[1]) for '\(kv[0])' is outside [0, 1)") }
      entries.append((kv[0], r))
    }
    return RatioOverrides(entries)
  }

  func ratio(for n: Node) -> Double? {
    entries.last { NodeFilter.matches($0.pattern, n) }?.ratio
  }
}

func tensor(_ t: Tensor, replacingWith values: [Float]) -> Tensor {
  Tensor(name: t.name, dataType: .float, dims: t.dims, data: values.withUnsafeBytes { ByteBuffer(copying: $0) })
}

/// Why no layer of `model` could be pruned, naming the first nodes concerned: the reasons the
/// pass gave (`changes`), else what `prunableLayers` finds, else the layers subgraphs hold (which
/// structured pruning and factorization leave alone).
public func whyNothingPrunes(_ model: Model, changes: [PassResult.Change], mainGraphOnly: Bool) -> String {
  var nodes = [String: Node]()
  model.graph.forEachGraph { g in for n in g.nodes where nodes[label(n)] == nil { nodes[label(n)] = n } }
  func line(_ c: PassResult.Change) -> String { "\(nodes[c.target]?.displayName ?? c.target): \(c.detail)" }
  var reasons = changes.filter { $0.action == "skipped" }.map(line)
  if reasons.isEmpty {
    reasons = prunableLayers(model).skipped.map(line)
  }
  if reasons.isEmpty && mainGraphOnly {
    for n in model.graph.nodes where n.attributes.contains(where: { !$0.subgraphs.isEmpty }) {
      var inside = 0
      for a in n.attributes { for g in a.subgraphs { g.forEachGraph { inside += $0.nodes.filter { ["Conv", "ConvTranspose", "Gemm", "MatMul"].contains($0.opType) }.count } } }
      if inside > 0 { reasons.append("\(n.displayName) holds \(inside) Conv, Gemm or MatMul nodes in its subgraphs, which this mode leaves alone") }
    }
  }
  if reasons.isEmpty {
    let integerOps: Set<String> = ["ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear",
                                   "MatMulNBits", "DynamicQuantizeLSTM", "QGemm", "DynamicQuantizeMatMul"]
    var quantized: Node?
    model.graph.forEachGraph { g in for n in g.nodes where quantized == nil && integerOps.contains(n.opType) { quantized = n } }
    if let n = quantized { return "its weights are already quantized (\(n.displayName)); start from the float model" }
    return "it has no Conv, ConvTranspose, Gemm or MatMul with a weight"
  }
  return reasons.prefix(3).joined(separator: "; ") + (reasons.count > 3 ? " (and \(reasons.count - 3) more)" : "")
}
