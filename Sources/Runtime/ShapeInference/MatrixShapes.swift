import IR

/// MatMul (numpy semantics: batch dimensions broadcast, 1-D operands gain and lose a unit
/// dimension), Gemm ([M, K] × [K, N] with optional transposes) and Det; ONNX Runtime's
/// FusedGemm and FusedMatMul.
extension ShapeRules {
  static let matrix: [String: ShapeRule] = [
    "MatMul": { c in [InferredTensor(type: c.type(0), shape: try matMulShape(c, 0, 1))] },
    "Gemm": { c in [InferredTensor(type: c.type(0), shape: try gemmShape(c, 0, 1))] },
    // The determinants of [..., M, M] matrices.
    "Det": { c in
      guard let x = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard x.count >= 2 else { throw c.fail("input of rank \(x.count) holds no matrices") }
      _ = try c.same(x[x.count - 1], x[x.count - 2], "the matrices' rows and columns")
      return [InferredTensor(type: c.type(0), shape: Array(x.dropLast(2)))]
    },
  ]

  /// ONNX Runtime's FusedGemm (Gemm, then an activation) and FusedMatMul (MatMul of operands
  /// whose last two axes (transA, transB) or first axis (transBatchA, transBatchB, moved behind
  /// the other batch axes) are transposed).
  static let matrixContrib: [String: ShapeRule] = [
    "FusedGemm": { c in [InferredTensor(type: c.type(0), shape: try gemmShape(c, 0, 1))] },
    "FusedMatMul": { c in
      for (i, name) in [(0, "transA"), (1, "transB")] where c.int(name, 0) != 0 {
        if let r = c.rank(i), r < 2 { throw c.fail("\(name) needs a tensor of rank 2 or more, not \(r)") }
      }
      let a = fusedMatMulOperand(c.node, c.shape(0), "A"), b = fusedMatMulOperand(c.node, c.shape(1), "B")
      return [InferredTensor(type: c.type(0), shape: try matMulShape(c, a, b))]
    },
  ]
}

/// [M, N] of Gemm's A (input `a`) × B (input `b`), with transA and transB.
func gemmShape(_ c: ShapeContext, _ a: Int, _ b: Int) throws -> [DimExpr?] {
  let x = c.shape(a), y = c.shape(b)
  if let r = x?.count, r != 2 { throw c.fail("A has rank \(r), not 2") }
  if let r = y?.count, r != 2 { throw c.fail("B has rank \(r), not 2") }
  let transA = c.int("transA", 0) != 0, transB = c.int("transB", 0) != 0
  let m = x.flatMap { transA ? $0[1] : $0[0] }, k1 = x.flatMap { transA ? $0[0] : $0[1] }
  let k2 = y.flatMap { transB ? $0[1] : $0[0] }, n = y.flatMap { transB ? $0[0] : $0[1] }
  _ = try c.same(k1, k2, "the inner dimensions of A and B")
  return [m, n]
}

/// FusedMatMul's operand `name` ("A" or "B") as it is multiplied: its first axis moved behind
/// the other batch axes (transBatchA/B, rank 3 or more), then its last two axes swapped
/// (transA/B); nil when the rank is unknown or too small to transpose.
func fusedMatMulOperand(_ node: Node, _ shape: [DimExpr?]?, _ name: String) -> [DimExpr?]? {
  let transpose = (node.attribute("trans" + name)?.int ?? 0) != 0
  let transposeBatch = (node.attribute("transBatch" + name)?.int ?? 0) != 0
  guard var s = shape, !transpose || s.count >= 2 else { return nil }
  if transposeBatch && s.count >= 3 { s = Array(s[1..<(s.count - 1)]) + [s[0], s[s.count - 1]] }
  if transpose { s.swapAt(s.count - 1, s.count - 2) }
  return s
}

/// The shape of `a` × `b` with MatMul's rules; nil when a rank is unknown.
func matMulShape(_ c: ShapeContext, _ a: Int, _ b: Int) throws -> [DimExpr?]? {
  try matMulShape(c, c.shape(a), c.shape(b))
}

/// The shape of a product of operands of these shapes with MatMul's rules.
func matMulShape(_ c: ShapeContext, _ x: [DimExpr?]?, _ y: [DimExpr?]?) throws -> [DimExpr?]? {
  guard let x, let y else { return nil }
  guard !x.isEmpty, !y.isEmpty else { throw c.fail("MatMul needs tensors of rank 1 or more") }
  let xs = x.count == 1 ? [DimExpr(1)] + x : x
  let ys = y.count == 1 ? y + [DimExpr(1)] : y
  _ = try c.same(xs[xs.count - 1], ys[ys.count - 2], "the inner dimensions of the operands")
  guard var out = try c.broadcast([Array(xs.dropLast(2)), Array(ys.dropLast(2))]) else { return nil }
  if x.count > 1 { out.append(xs[xs.count - 2]) }
  if y.count > 1 { out.append(ys[ys.count - 1]) }
  return out
}
