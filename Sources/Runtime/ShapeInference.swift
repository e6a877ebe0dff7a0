import IR
import Support

/// Output shapes, MACs and activation memory of every main-graph node, found by executing the
/// model on zero-valued inputs. Symbolic input dimensions are bound twice, to two different
/// primes per symbol: an output dimension that follows a symbol's value in both runs is that
/// symbol, one that stays the same is a number, and any other (an expression of symbols, or a
/// data-dependent size) is shown as "?". Symbols bound by the caller are numbers throughout.
public struct ShapeInference {
  public struct Value: Sendable {
    public var name: String
    public var type: DataType
    public var shape: [String]
  }
  public struct NodeInfo: Sendable {
    public var name: String
    public var opType: String
    public var outputs: [Value]
    /// Multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul and the recurrent ops; 0 else.
    /// Counted with the first binding when shapes are symbolic.
    public var macs: Int
  }

  public var nodes: [NodeInfo] = []
  public var peakActivationBytes = 0
  /// Symbols that were not bound by the caller (their MACs use a binding of 2, 3, 5, …).
  public var unboundSymbols: [String] = []

  public init(model: Model, bindings: [String: [Int]]) throws {
    let initializers = Set(model.graph.initializers.map(\.name))
    let inputs = model.graph.inputs.filter { !initializers.contains($0.name) }
    var symbols = [String]()
    for input in inputs where bindings[input.name] == nil {
      guard case .tensor(_, let shape)? = input.type?.kind, let shape else {
        throw CompressorError.usage("input '\(input.name)' has no known shape; give --input-shape \(input.name)=…")
      }
      for d in shape.dims {
        if case .symbolic(let s) = d.value, !symbols.contains(s) { symbols.append(s) }
        if d.size == nil, case .known = d.value { throw CompressorError.usage("input '\(input.name)' has an unnamed dimension; give --input-shape \(input.name)=…") }
        if case .unknown = d.value { throw CompressorError.usage("input '\(input.name)' has an unnamed dimension; give --input-shape \(input.name)=…") }
      }
    }
    unboundSymbols = symbols
    let primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]
    guard symbols.count * 2 <= primes.count else { throw CompressorError.unsupported("more than \(primes.count / 2) symbolic dimensions; bind some with --input-shape") }
    let runs = symbols.isEmpty ? 1 : 2
    var seen: [[(Node, [NDArray?], [NDArray])]] = []
    var values: [[String: Int]] = []
    for run in 0..<runs {
      var assignment = [String: Int]()
      for (i, s) in symbols.enumerated() { assignment[s] = primes[2 * i + run] }
      values.append(assignment)
      var feeds = [String: NDArray]()
      for input in inputs {
        guard case .tensor(let type, let shape)? = input.type?.kind else { throw CompressorError.unsupported("input '\(input.name)' is not a tensor") }
        let dims = bindings[input.name] ?? (shape?.dims ?? []).map { d -> Int in
          switch d.value {
          case .known(let v): return v > 0 ? Int(clamping: v) : 1
          case .symbolic(let s): return assignment[s] ?? 1
          case .unknown: return 1
          }
        }
        try NDArray.checkAllocation(dims, type, what: "input '\(input.name)'")
        feeds[input.name] = NDArray(zeros: type, dims)
      }
      let executor = try Executor(model: model)
      var record = [(Node, [NDArray?], [NDArray])]()
      executor.observer = { node, ins, outs in record.append((node, ins, outs)) }
      _ = try executor.run(feeds)
      if run == 0 { peakActivationBytes = executor.peakLiveBytes }
      seen.append(record)
    }
    for (k, (node, ins, outs)) in seen[0].enumerated() {
      let other = runs > 1 && k < seen[1].count ? seen[1][k].2 : outs
      let named = zip(node.outputs, zip(outs, other)).map { name, pair -> Value in
        let (a, b) = pair
        let shape = a.shape.enumerated().map { d, n -> String in
          guard d < b.shape.count else { return "?" }
          if n == b.shape[d] { return String(n) }
          if let s = symbols.first(where: { values[0][$0] == n && values[1][$0] == b.shape[d] }) { return s }
          return "?"
        }
        return Value(name: name, type: a.dataType, shape: b.rank == a.rank ? shape : a.shape.map { _ in "?" })
      }
      nodes.append(NodeInfo(name: node.name, opType: node.opType, outputs: named, macs: Self.macs(node, ins, outs)))
    }
  }

  static func macs(_ node: Node, _ ins: [NDArray?], _ outs: [NDArray]) -> Int {
    guard let y = outs.first else { return 0 }
    let x = ins.first ?? nil, w = ins.count > 1 ? ins[1] : nil
    switch node.opType {
    case "Conv", "ConvInteger", "QLinearConv":
      guard let w = node.opType == "QLinearConv" ? ins[3] : w else { return 0 }
      return y.count * w.shape.dropFirst().reduce(1, *)
    case "ConvTranspose":
      guard let x, let w else { return 0 }
      return x.count * w.shape.dropFirst().reduce(1, *)
    case "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits":
      guard let x, x.rank >= 1 else { return 0 }
      return y.count * (node.opType == "Gemm" && (node.attribute("transA")?.int ?? 0) != 0 ? x.shape[0] : x.shape[x.rank - 1])
    case "LSTM", "GRU", "RNN":
      guard let x, let w, ins.count > 2, let r = ins[2] else { return 0 }
      let steps = x.shape[0] * x.shape[1]
      return steps * (w.count + r.count) / max(w.shape[0], 1) * w.shape[0]
    default:
      return 0
    }
  }

  public var totalMACs: Int { nodes.reduce(0) { $0 + $1.macs } }
}
