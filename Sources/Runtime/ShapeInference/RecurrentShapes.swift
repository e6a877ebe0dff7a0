import IR

/// RNN, GRU and LSTM: Y is [seq, directions, batch, hidden] ([batch, seq, directions, hidden]
/// with layout 1), Y_h and Y_c are [directions, batch, hidden] ([batch, directions, hidden]).
extension ShapeRules {
  static let recurrent: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["RNN", "GRU", "LSTM"] {
      r[op] = { c in
        // R is [directions, gates·hidden, hidden].
        try recurrence(c, hidden: c.shape(2).flatMap { $0.count == 3 ? $0[2] : nil }, outputs: op == "LSTM" ? 3 : 2)
      }
    }
    // A depthwise causal convolution over [batch, channels, length] with a [channels, 1, k]
    // weight: Y keeps X's shape, the carried state is the last k − 1 inputs.
    r["CausalConvWithState"] = { c in
      let x = c.shape(0), k = c.shape(1).flatMap { $0.count == 3 ? $0[2] : nil }
      let state: [DimExpr?]? = x.map { [$0.first ?? nil, channels($0), try? k.map { try $0 - 1 }] }
      return [InferredTensor(type: c.type(0), shape: x), InferredTensor(type: c.type(3) ?? c.type(0), shape: state)]
    }
    return r
  }()

  /// com.microsoft DynamicQuantizeLSTM: an LSTM whose W and R are int8, R as
  /// [directions, hidden, 4·hidden].
  static let recurrentContrib: [String: ShapeRule] = [
    "DynamicQuantizeLSTM": { c in try recurrence(c, hidden: c.shape(2).flatMap { $0.count == 3 ? $0[1] : nil }, outputs: 3) },
  ]
}

private func recurrence(_ c: ShapeContext, hidden fromR: DimExpr?, outputs: Int) throws -> [InferredTensor] {
  let x = c.input(0)
  let layout = c.int("layout", 0)
  let directions = DimExpr(c.string("direction", "forward") == "bidirectional" ? 2 : 1)
  let hidden = c.node.attribute("hidden_size")?.int.map { DimExpr(Int(clamping: $0)) } ?? fromR
  var seq: DimExpr?, batch: DimExpr?
  if let s = x.shape {
    guard s.count == 3 else { throw c.fail("X has rank \(s.count), not 3") }
    (seq, batch) = layout == 0 ? (s[0], s[1]) : (s[1], s[0])
  }
  if let w = c.shape(1), w.count == 3 { _ = try c.same(w[0], directions, "the directions of W and the direction attribute") }
  let y: [DimExpr?] = layout == 0 ? [seq, directions, batch, hidden] : [batch, seq, directions, hidden]
  let state: [DimExpr?] = layout == 0 ? [directions, batch, hidden] : [batch, directions, hidden]
  return [InferredTensor(type: x.type, shape: y)] + Array(repeating: InferredTensor(type: x.type, shape: state), count: outputs - 1)
}
