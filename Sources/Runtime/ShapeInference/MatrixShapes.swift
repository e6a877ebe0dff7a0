import IR

/// MatMul (numpy semantics: batch dimensions broadcast, 1-D operands gain and lose a unit
/// dimension), Gemm ([M, K] × [K, N] with optional transposes) and Det.
extension ShapeRules {
  static let matrix: [String: ShapeRule] = [
    "MatMul": { c in [InferredTensor(type: c.type(0), shape: try matMulShape(c, 0, 1))] },
    "Gemm": { c in
      let a = c.shape(0), b = c.shape(1)
      if let r = a?.count, r != 2 { throw c.fail("A has rank \(r), not 2") }
      if let r = b?.count, r != 2 { throw c.fail("B has rank \(r), not 2") }
      let transA = c.int("transA", 0) != 0, transB = c.int("transB", 0) != 0
      let m = a.flatMap { transA ? $0[1] : $0[0] }, k1 = a.flatMap { transA ? $0[0] : $0[1] }
      let k2 = b.flatMap { transB ? $0[1] : $0[0] }, n = b.flatMap { transB ? $0[0] : $0[1] }
      _ = try c.same(k1, k2, "the inner dimensions of A and B")
      return [InferredTensor(type: c.type(0), shape: [m, n])]
    },
    // The determinants of [..., M, M] matrices.
    "Det": { c in
      guard let x = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard x.count >= 2 else { throw c.fail("input of rank \(x.count) holds no matrices") }
      _ = try c.same(x[x.count - 1], x[x.count - 2], "the matrices' rows and columns")
      return [InferredTensor(type: c.type(0), shape: Array(x.dropLast(2)))]
    },
  ]
}

/// The shape of `a` × `b` with MatMul's rules; nil when a rank is unknown.
func matMulShape(_ c: ShapeContext, _ a: Int, _ b: Int) throws -> [DimExpr?]? {
  guard let x = c.shape(a), let y = c.shape(b) else { return nil }
  guard !x.isEmpty, !y.isEmpty else { throw c.fail("MatMul needs tensors of rank 1 or more") }
  let xs = x.count == 1 ? [DimExpr(1)] + x : x
  let ys = y.count == 1 ? y + [DimExpr(1)] : y
  _ = try c.same(xs[xs.count - 1], ys[ys.count - 2], "the inner dimensions of the operands")
  guard var out = try c.broadcast([Array(xs.dropLast(2)), Array(ys.dropLast(2))]) else { return nil }
  if x.count > 1 { out.append(xs[xs.count - 2]) }
  if y.count > 1 { out.append(ys[ys.count - 1]) }
  return out
}
