import IR

/// Attention (opset 23): Q, K, V as [B, heads, S, d] or [B, S, heads·d] (q_num_heads and
/// kv_num_heads then split them); Y has the query's layout with V's head size, the present
/// key and value add the past's length, the QK output is [B, q_heads, S, total length].
/// RotaryEmbedding keeps the input's shape; LinearAttention (opset 27) gives [B, T, q_heads·d_v]
/// and its state [B, kv_heads, d_k, d_v].
extension ShapeRules {
  static let attention: [String: ShapeRule] = [
    "Attention": { c in
      let type = c.type(0)
      guard let q = c.shape(0), let k = c.shape(1), let v = c.shape(2), q.count == k.count, q.count == v.count,
            q.count == 3 || q.count == 4 else { return [InferredTensor(type: type, shape: nil)] }
      // [batch, heads, length, head size] of each, from either layout.
      func split(_ s: [DimExpr?], heads attribute: String) throws -> [DimExpr?] {
        if s.count == 4 { return s }
        let h = c.int(attribute, 0)
        guard h > 0 else { throw c.fail("\(attribute) is required with 3-D inputs") }
        return [s[0], DimExpr(h), s[1], try s[2].map { try DimExpr.floorDiv($0, DimExpr(h)) }]
      }
      let q4 = try split(q, heads: "q_num_heads"), k4 = try split(k, heads: "kv_num_heads"), v4 = try split(v, heads: "kv_num_heads")
      var total = k4[2]
      if let past = c.shape(4), past.count == 4 { total = try zip2(past[2], total).map { try $0 + $1 } }
      let y: [DimExpr?] = q.count == 4 ? [q4[0], q4[1], q4[2], v4[3]] : [q4[0], q4[2], try zip2(q4[1], v4[3]).map { try $0 * $1 }]
      return [InferredTensor(type: type, shape: y),
              InferredTensor(type: type, shape: [k4[0], k4[1], total, k4[3]]),
              InferredTensor(type: type, shape: [v4[0], v4[1], total, v4[3]]),
              InferredTensor(type: type, shape: [q4[0], q4[1], q4[2], total])]
    },
    "RotaryEmbedding": sameAsInput,
    "LinearAttention": { c in
      let qHeads = c.int("q_num_heads", 0), kvHeads = c.int("kv_num_heads", 0)
      guard qHeads > 0, kvHeads > 0 else { throw c.fail("q_num_heads and kv_num_heads must be positive") }
      guard let q = c.shape(0), let v = c.shape(2), q.count == 3, v.count == 3 else {
        return [InferredTensor(type: c.type(0), shape: nil), InferredTensor(type: c.type(0), shape: nil)]
      }
      let dk = try q[2].map { try DimExpr.floorDiv($0, DimExpr(qHeads)) }, dv = try v[2].map { try DimExpr.floorDiv($0, DimExpr(kvHeads)) }
      return [InferredTensor(type: c.type(0), shape: [q[0], q[1], try dv.map { try $0 * DimExpr(qHeads) }]),
              InferredTensor(type: c.type(3) ?? c.type(0), shape: [q[0], DimExpr(kvHeads), dk, dv])]
    },
  ]
}

/// Both values, when both are known.
func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
  guard let a, let b else { return nil }
  return (a, b)
}
