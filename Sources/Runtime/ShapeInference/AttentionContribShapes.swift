import IR

/// ONNX Runtime's com.microsoft attention operators, whose layouts differ from the default
/// domain's Attention and RotaryEmbedding of the same names (B batch, S sequence, N heads, H head
/// size, P past length):
/// - Attention: input [B, S, hidden] × weights [hidden, q + k + v hidden sizes] → output
///   [B, S, v hidden], present [2, B, N, P + S, H] (past [2, B, N, P, H]).
/// - MultiHeadAttention: query [B, S, N·H] with key/value [B, L, N·H], [B, N, L, H] or packed
///   KV [B, L, N, 2, H], or packed QKV [B, S, N, 3, H] → output [B, S, N·Hv], present key and
///   value [B, N, P + L, H / Hv], QK scores [B, N, S, P + L].
/// - GroupQueryAttention: query [B, S, N·H] (or packed [B, S, (N + 2·Nkv)·H]) → output
///   [B, S, N·H], present key and value [B, Nkv, max(P, total_sequence_length, S), H], QK scores
///   [B, N, S, that length] when qk_output is set.
/// - RotaryEmbedding keeps the input's shape.
extension ShapeRules {
  static let attentionContrib: [String: ShapeRule] = [
    "Attention": { c in try packedAttention(c) },
    "MultiHeadAttention": { c in try multiHeadAttention(c) },
    "GroupQueryAttention": { c in try groupQueryAttention(c) },
    "RotaryEmbedding": sameAsInput,
  ]
}

/// The positive `num_heads` attribute (or `name`).
private func heads(_ c: ShapeContext, _ name: String = "num_heads") throws -> Int {
  let n = c.int(name, 0)
  guard n > 0 else { throw c.fail("\(name) must be positive, it is \(n)") }
  return n
}

/// d / n, for a dimension n splits evenly.
private func perHead(_ d: DimExpr?, _ n: Int) throws -> DimExpr? {
  try d.map { try DimExpr.floorDiv($0, DimExpr(n)) }
}

private func packedAttention(_ c: ShapeContext) throws -> [InferredTensor] {
  let type = c.type(0), n = try heads(c)
  let x = c.shape(0), w = c.shape(1)
  if let r = x?.count, r != 3 { throw c.fail("input has rank \(r), not 3 ([batch, sequence, hidden])") }
  if let r = w?.count, r != 2 { throw c.fail("weights have rank \(r), not 2") }
  if let x, let w { _ = try c.same(x[2], w[0], "the input's hidden size and the weights' rows") }
  let width = w?[1] ?? nil
  let sizes: [DimExpr?]
  if let s = c.ints("qkv_hidden_sizes") {
    guard s.count == 3, s[0] == s[1], s.allSatisfy({ $0 > 0 && $0 % n == 0 }) else {
      throw c.fail("qkv_hidden_sizes \(s) must be three positive multiples of num_heads \(n), the first two equal")
    }
    if let k = width?.constant, k != s.reduce(0, +) { throw c.fail("qkv_hidden_sizes \(s) do not add up to the weights' \(k) columns") }
    sizes = s.map { DimExpr($0) }
  } else {
    if let k = width?.constant, k % 3 != 0 || (k / 3) % n != 0 {
      throw c.fail("the weights' \(k) columns do not split into Q, K and V of \(n) heads")
    }
    let third = try width.map { try DimExpr.floorDiv($0, DimExpr(3)) }
    sizes = [third, third, third]
  }
  let batch = x?[0] ?? nil, length = x?[1] ?? nil
  var total = length
  if c.has(4) {
    let past = c.shape(4)
    if let r = past?.count, r != 5 { throw c.fail("past has rank \(r), not 5 ([2, batch, heads, past, head size])") }
    total = try zip2(past?[3] ?? nil, length).map { try $0 + $1 }
  }
  return [InferredTensor(type: type, shape: [batch, length, sizes[2]]),
          InferredTensor(type: type, shape: [DimExpr(2), batch, DimExpr(n), total, try perHead(sizes[1], n)])]
}

private func multiHeadAttention(_ c: ShapeContext) throws -> [InferredTensor] {
  let type = c.type(0), n = try heads(c), heads = DimExpr(n)
  guard let q = c.shape(0) else { return Array(repeating: InferredTensor(type: type, shape: nil), count: 4) }
  let batch = q.first ?? nil
  var length: DimExpr?, headSize: DimExpr?, keyLength: DimExpr?, valueSize: DimExpr?
  switch q.count {
  case 5:
    // Packed QKV [B, S, N, 3, H].
    _ = try c.same(q[2], heads, "the packed QKV's heads and num_heads")
    _ = try c.same(q[3], DimExpr(3), "the packed QKV's Q, K and V")
    length = q[1]; headSize = q[4]; keyLength = q[1]; valueSize = q[4]
  case 3:
    length = q[1]
    headSize = try perHead(q[2], n)
    guard c.has(1) else { throw c.fail("key is required with a 3-D query") }
    let k = c.shape(1), v = c.shape(2)
    switch k?.count {
    case 5?:
      // Packed KV [B, L, N, 2, H].
      keyLength = k?[1] ?? nil; valueSize = k?[4] ?? nil
    case 4?:
      // Already [B, N, L, H].
      keyLength = k?[2] ?? nil; valueSize = v.flatMap { $0.count == 4 ? $0[3] : nil }
    case 3?:
      keyLength = k?[1] ?? nil; valueSize = try perHead(v.flatMap { $0.count == 3 ? $0[2] : nil }, n)
    case let r?: throw c.fail("key has rank \(r), not 3, 4 or 5")
    case nil: break
    }
  default:
    throw c.fail("query has rank \(q.count), not 3 ([B, S, N·H]) or 5 (packed QKV)")
  }
  var total = keyLength
  if c.has(6) && c.has(7) {
    let past = c.shape(6)
    if let r = past?.count, r != 4 { throw c.fail("past_key has rank \(r), not 4 ([batch, heads, past, head size])") }
    total = try zip2(past?[2] ?? nil, keyLength).map { try $0 + $1 }
  }
  return [InferredTensor(type: type, shape: [batch, length, try valueSize.map { try $0 * heads }]),
          InferredTensor(type: type, shape: [batch, heads, total, headSize]),
          InferredTensor(type: type, shape: [batch, heads, total, valueSize]),
          InferredTensor(type: type, shape: [batch, heads, length, total])]
}

private func groupQueryAttention(_ c: ShapeContext) throws -> [InferredTensor] {
  let type = c.type(0), n = try heads(c), kv = try heads(c, "kv_num_heads")
  guard n % kv == 0 else { throw c.fail("num_heads \(n) must be a multiple of kv_num_heads \(kv)") }
  let outputs = c.int("qk_output", 0) != 0 ? 4 : 3
  guard let q = c.shape(0) else { return Array(repeating: InferredTensor(type: type, shape: nil), count: outputs) }
  guard q.count == 3 else { throw c.fail("query has rank \(q.count), not 3 ([B, S, hidden])") }
  let batch = q[0], length = q[1]
  let headSize: DimExpr?, hidden: DimExpr?
  if c.has(1) {
    headSize = try perHead(q[2], n)
    hidden = q[2]
  } else {
    // Packed QKV [B, S, (N + 2·Nkv)·H].
    headSize = try perHead(q[2], n + 2 * kv)
    hidden = try headSize.map { try $0 * DimExpr(n) }
  }
  // The cache holds max(past capacity, total_sequence_length, S) positions.
  var lengths: [DimExpr?] = [length, c.elements(6)?.first ?? nil]
  if c.has(3) {
    let past = c.shape(3)
    if let r = past?.count, r != 4 { throw c.fail("past_key has rank \(r), not 4 ([batch, kv heads, past, head size])") }
    lengths.append(past?[2] ?? nil)
  }
  let known = lengths.compactMap { $0 }
  let capacity = known.count == lengths.count ? try DimExpr.max(known) : c.fresh("kv_cache")
  let present = InferredTensor(type: type, shape: [batch, DimExpr(kv), capacity, headSize])
  return [InferredTensor(type: type, shape: [batch, length, hidden]), present, present,
          InferredTensor(type: type, shape: [batch, DimExpr(n), length, capacity])].prefix(outputs).map { $0 }
}
