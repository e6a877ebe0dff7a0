import IR

/// Gathers, scatters, padding, rearrangements, NonZero and TopK. A size only the data decides
/// (NonZero's count, TopK's computed k) is a fresh symbol named after the operator.
extension ShapeRules {
  static let indexing: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    r["GatherElements"] = { c in [InferredTensor(type: c.type(0), shape: c.shape(1))] }
    for op in ["ScatterElements", "Scatter", "ScatterND", "Trilu", "CumSum", "CumProd"] {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    }
    r["GatherND"] = { c in
      let batch = c.int("batch_dims", 0)
      guard let data = c.shape(0), let idx = c.shape(1), let lastDim = idx.last else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard let last = lastDim?.constant else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard batch >= 0, last >= 1, batch + last <= data.count else { throw c.fail("indices \(idx.count)-D ending in \(last) do not fit data of rank \(data.count)") }
      return [InferredTensor(type: c.type(0), shape: Array(idx.dropLast()) + Array(data[(batch + last)...]))]
    }
    r["NonZero"] = { c in [InferredTensor(type: .int64, shape: [c.rank(0).map { DimExpr($0) }, c.fresh("nonzero")])] }
    r["TopK"] = { c in
      let x = c.input(0)
      guard var shape = x.shape else { return [InferredTensor(type: x.type, shape: nil), InferredTensor(type: .int64, shape: nil)] }
      let axis = try c.axis(c.int("axis", -1), rank: shape.count)
      let k: DimExpr? = c.opset >= 10 ? (c.elements(1)?.first ?? nil) : DimExpr(c.int("k", 0))
      if let k = k?.constant, let n = shape[axis]?.constant, k < 0 || k > n { throw c.fail("k = \(k) is out of range for a dimension of \(n)") }
      shape[axis] = k ?? c.fresh("topk")
      return [InferredTensor(type: x.type, shape: shape), InferredTensor(type: .int64, shape: shape)]
    }
    r["Pad"] = { c in
      let x = c.input(0)
      guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: nil)] }
      let rank = shape.count
      var pads: [DimExpr?]?
      if c.opset < 11 {
        pads = (c.ints("pads") ?? c.ints("paddings"))?.map { DimExpr($0) }
      } else {
        pads = c.elements(1)
      }
      guard var p = pads else { return [InferredTensor(type: x.type, shape: shape.map { _ in nil })] }
      if c.opset >= 18, c.has(3) {
        guard let axes = c.inputInts(3) else { return [InferredTensor(type: x.type, shape: shape.map { _ in nil })] }
        guard p.count == 2 * axes.count else { throw c.fail("\(p.count) pads for \(axes.count) axes") }
        var full = [DimExpr?](repeating: 0, count: 2 * rank)
        for (k, a) in try axes.map({ try c.axis($0, rank: rank) }).enumerated() {
          full[a] = p[k]
          full[rank + a] = p[axes.count + k]
        }
        p = full
      }
      guard p.count == 2 * rank else { throw c.fail("\(p.count) pads for rank \(rank)") }
      let out = try (0..<rank).map { i -> DimExpr? in
        guard let d = shape[i], let a = p[i], let b = p[rank + i] else { return nil }
        let n = try d + a + b
        if let k = n.constant, k < 0 { throw c.fail("pads remove more than dimension \(i) has") }
        return n
      }
      return [InferredTensor(type: x.type, shape: out)]
    }
    r["DepthToSpace"] = { c in
      let b = c.int("blocksize", 0)
      guard b > 0 && b < 1 << 20 else { throw c.fail("blocksize \(b) is out of range") }
      guard let s = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard s.count == 4 else { throw c.fail("input of rank \(s.count) is not 4-D") }
      if let ch = s[1]?.constant, ch % (b * b) != 0 { throw c.fail("blocksize \(b) does not divide \(ch) channels") }
      let bb = DimExpr(b)
      return [InferredTensor(type: c.type(0), shape: [s[0], try s[1].map { try DimExpr.floorDiv($0, DimExpr(b * b)) },
                                                      try s[2].map { try $0 * bb }, try s[3].map { try $0 * bb }])]
    }
    r["SpaceToDepth"] = { c in
      let b = c.int("blocksize", 0)
      guard b > 0 && b < 1 << 20 else { throw c.fail("blocksize \(b) is out of range") }
      guard let s = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard s.count == 4 else { throw c.fail("input of rank \(s.count) is not 4-D") }
      for d in [s[2], s[3]] { if let k = d?.constant, k % b != 0 { throw c.fail("blocksize \(b) does not divide \(k)") } }
      let bb = DimExpr(b)
      return [InferredTensor(type: c.type(0), shape: [s[0], try s[1].map { try $0 * DimExpr(b * b) },
                                                      try s[2].map { try DimExpr.floorDiv($0, bb) }, try s[3].map { try DimExpr.floorDiv($0, bb) }])]
    }
    return r
  }()
}
