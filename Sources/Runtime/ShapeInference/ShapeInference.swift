import IR
import Support

/// Output types and shapes, MACs and peak activation memory of every main-graph node, inferred
/// statically — per operator, with the ONNX rules (`ShapeEngine`), never by running the model.
///
/// Input dimensions stay symbols ("batch", "height") unless `bindings` fixes the input's shape,
/// which also fixes its symbols wherever else they appear. An input dimension with neither a
/// size nor a name becomes the symbol `<input>_dim<axis>`. Sizes follow as expressions
/// (`2*height`, `ceil(width/32)`); sizes only the data decides are fresh symbols
/// (`nonzero_1`); a dimension nothing is known about is nil (printed "?").
public struct ShapeInference {
  public struct Value: Sendable {
    public var name: String
    /// `.undefined` when unknown.
    public var type: DataType
    /// nil when even the rank is unknown; a nil dimension is unknown.
    public var dims: [DimExpr?]?
    /// Each dimension printed: a number, an expression, or "?"; nil when the rank is unknown.
    public var shape: [String]?
  }
  public struct NodeInfo: Sendable {
    public var name: String
    public var opType: String
    public var outputs: [Value]
    /// Multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, their integer, quantized and
    /// fused forms and the recurrent ops; 0 for other ops; nil when a shape they need is unknown.
    public var macs: DimExpr?
  }

  public var nodes: [NodeInfo] = []
  /// Symbolic input dimensions the bindings left free, in input order.
  public var unboundSymbols: [String] = []
  /// Symbols for sizes only the data decides (or on which the branches of an If disagree), in
  /// order of appearance.
  public var dataDependentSymbols: [String] = []
  /// The sum of the nodes' MACs (of those that are known).
  public var macs: DimExpr = 0
  /// Whether some node's MACs are unknown, so that `macs` is a lower bound.
  public var macsIncomplete = false
  /// Bytes of intermediate values alive at once, at most, over the executor's schedule (values
  /// freed after their last reader, graph outputs kept, subgraphs' own values included).
  public var peakActivation: DimExpr = 0
  /// Whether some value's size is unknown, so that `peakActivation` is a lower bound.
  public var peakActivationIncomplete = false

  /// `peakActivation` when it is a number.
  public var peakActivationBytes: Int? { peakActivation.constant }

  /// The MAC total as a number: every input dimension must be bound; sizes only the data
  /// decides count as 0.
  public var totalMACs: Int {
    get throws {
      if !unboundSymbols.isEmpty {
        throw CompressorError.usage("the MAC count depends on the unbound dimensions \(unboundSymbols.joined(separator: ", ")); give --input-shape")
      }
      guard let n = macs.evaluate(Dictionary(uniqueKeysWithValues: dataDependentSymbols.map { ($0, 0) })) else {
        throw CompressorError.invalid("the MAC count \(macs) cannot be evaluated")
      }
      return n
    }
  }

  /// `bindings` maps input names to their full shapes (`--input-shape NAME=1x3x224x224`).
  public init(model: Model, bindings: [String: [Int]]) throws {
    let graph = model.graph
    let feeds = Set(graph.feedNames)
    for name in bindings.keys.sorted() where !feeds.contains(name) {
      throw CompressorError.usage("the model has no input named '\(name)'\(graph.feedNames.isEmpty ? "" : " (its inputs: \(graph.feedNames.map { "'\($0)'" }.joined(separator: ", ")))")")
    }
    // Bound inputs fix their symbols first, so that other inputs sharing them see the numbers.
    var symbolValues = [String: Int]()
    for input in graph.inputs where feeds.contains(input.name) {
      guard let dims = bindings[input.name] else { continue }
      guard case .tensor(_, let shape)? = input.type?.kind, let shape else { continue }
      guard shape.dims.count == dims.count else {
        throw CompressorError.usage("--input-shape \(input.name) gives \(dims.count) dimensions; the input has \(shape.dims.count): \(shape)")
      }
      for (axis, (d, n)) in zip(shape.dims, dims).enumerated() {
        if let k = d.size, k != n {
          throw CompressorError.usage("--input-shape \(input.name): dimension \(axis) is \(k) in the model, not \(n)")
        }
        if case .symbolic(let s) = d.value, Self.isName(s) {
          if let previous = symbolValues[s], previous != n {
            throw CompressorError.usage("--input-shape binds '\(s)' to both \(previous) and \(n)")
          }
          symbolValues[s] = n
        }
      }
    }
    var inputs = [InferredTensor]()
    var unbound = [String]()
    var taken = Set<String>()
    for input in graph.inputs {
      guard feeds.contains(input.name), case .tensor(let type, let shape)? = input.type?.kind else {
        inputs.append(feeds.contains(input.name) ? ShapeEngine.declared(input) : .unknown)
        continue
      }
      let elementType = type == .undefined ? nil : type
      if let dims = bindings[input.name] {
        inputs.append(InferredTensor(type: elementType, shape: dims.map { DimExpr($0) }))
        continue
      }
      guard let shape else { inputs.append(InferredTensor(type: elementType, shape: nil)); continue }
      var dims = [DimExpr?]()
      for (axis, d) in shape.dims.enumerated() {
        if let k = d.size { dims.append(DimExpr(Int(clamping: k))); continue }
        var name = ""
        if case .symbolic(let s) = d.value, Self.isName(s) { name = s } else { name = Self.unnamedSymbol(input.name, axis) }
        if let k = symbolValues[name] { dims.append(DimExpr(k)); continue }
        if !unbound.contains(name) { unbound.append(name) }
        taken.insert(name)
        dims.append(.symbol(name))
      }
      inputs.append(InferredTensor(type: elementType, shape: dims))
    }
    unboundSymbols = unbound
    graph.forEachGraph { g in
      for v in g.valueInfo + g.inputs + g.outputs {
        if case .tensor(_, let s)? = v.type?.kind { for d in s?.dims ?? [] { if case .symbolic(let n) = d.value { taken.insert(n) } } }
      }
    }

    let engine = try ShapeEngine(model: model, takenSymbols: taken)
    var nodes = [NodeInfo]()
    var total: DimExpr = 0, incomplete = false
    var firstError: Error?
    let result = try engine.infer(graph, outer: nil, inputs: inputs) { node, ins, outs in
      let values = zip(node.outputs, outs).map { name, v in
        Value(name: name, type: v.type ?? .undefined, dims: v.shape, shape: v.shape?.map { $0?.description ?? "?" })
      }
      var macs: DimExpr?
      do {
        macs = try Self.macs(node, ins, outs)
        if let m = macs { total = try total + m } else { incomplete = true }
      } catch {
        if firstError == nil { firstError = error }
      }
      nodes.append(NodeInfo(name: node.name, opType: node.opType, outputs: values, macs: macs))
    }
    if let overflow = firstError as? DimExpr.Overflow { throw CompressorError.invalid("the MAC count: \(overflow.description)") }
    if let firstError { throw firstError }
    self.nodes = nodes
    macs = total
    macsIncomplete = incomplete
    let peak = ShapeEngine.peak(result.peakCandidates)
    peakActivation = peak ?? 0
    peakActivationIncomplete = result.incomplete || peak == nil
    var seen = Set(unbound), dataDependent = [String]()
    for n in nodes {
      for v in n.outputs {
        for d in v.dims ?? [] {
          for s in d?.symbols ?? [] where seen.insert(s).inserted { dataDependent.append(s) }
        }
      }
    }
    dataDependentSymbols = dataDependent
  }

  /// Whether a dim_param names a dimension (not "", "?" or a placeholder of that kind).
  static func isName(_ s: String) -> Bool { !s.isEmpty && s != "?" && !s.allSatisfy { $0 == "?" || $0 == " " } }

  /// The symbol for an input dimension that has neither size nor name: `<input>_dim<axis>`, the
  /// input's name kept to letters, digits and underscores.
  static func unnamedSymbol(_ input: String, _ axis: Int) -> String {
    let base = String(input.unicodeScalars.map { $0.properties.isAlphabetic || ("0"..."9").contains($0) ? Character($0) : "_" })
    let start = base.first.map { $0.isLetter || $0 == "_" } ?? false ? base : "input_" + base
    return "\(start)_dim\(axis)"
  }

  /// A node's multiply-accumulates from its inputs' and outputs' shapes.
  static func macs(_ node: Node, _ ins: [InferredTensor?], _ outs: [InferredTensor]) throws -> DimExpr? {
    func input(_ i: Int) -> InferredTensor { (i < ins.count ? ins[i] : nil) ?? .unknown }
    let y = outs.first ?? .unknown
    /// The product of a weight's dimensions after the first (inputs per output channel).
    func perOutput(_ w: InferredTensor) throws -> DimExpr? { try w.shape.flatMap { try product($0.dropFirst()) } }
    switch node.opType {
    case "Conv", "ConvInteger", "QLinearConv", "FusedConv":
      guard let n = y.elementCount, let k = try perOutput(input(node.opType == "QLinearConv" ? 3 : 1)) else { return nil }
      return try n * k
    case "ConvTranspose":
      guard let n = input(0).elementCount, let k = try perOutput(input(1)) else { return nil }
      return try n * k
    case "Gemm", "FusedGemm", "QGemm", "MatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits", "DynamicQuantizeMatMul",
         "MatMulIntegerToFloat":
      guard let n = y.elementCount, let x = input(0).shape, let last = x.last else { return nil }
      let k = node.opType.hasSuffix("Gemm") && (node.attribute("transA")?.int ?? 0) != 0 ? x.first ?? nil : last
      return try k.map { try n * $0 }
    case "FusedMatMul":
      guard let n = y.elementCount, let a = fusedMatMulOperand(node, input(0).shape, "A"), let k = a.last ?? nil else { return nil }
      return try n * k
    case "LSTM", "GRU", "RNN", "DynamicQuantizeLSTM":
      guard let x = input(0).shape, x.count == 3, let seq = x[0], let batch = x[1],
            let w = input(1).elementCount, let r = input(2).elementCount else { return nil }
      return try seq * batch * (w + r)
    default:
      return 0
    }
  }
}
