import IR

/// Reductions remove (or, with keepdims, shrink to 1) the reduced axes; the axes are an
/// attribute before opset 13 (ReduceSum) or 18 (the others) and an input after. Sums, products,
/// minima and maxima of small integer tensors are tracked (`ReduceProd(Shape(x))` is a size).
extension ShapeRules {
  static let reduction: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    let ops: [(String, (([DimExpr]) throws -> DimExpr)?)] = [
      ("ReduceSum", { try $0.dropFirst().reduce($0[0]) { try $0 + $1 } }),
      ("ReduceProd", { try $0.dropFirst().reduce($0[0]) { try $0 * $1 } }),
      ("ReduceMax", { try DimExpr.max($0) }), ("ReduceMin", { try DimExpr.min($0) }),
      ("ReduceMean", nil), ("ReduceSumSquare", nil), ("ReduceL1", nil), ("ReduceL2", nil), ("ReduceLogSum", nil),
      ("ReduceLogSumExp", nil),
    ]
    for (op, combine) in ops {
      r[op] = { c in try [reduce(c, axesFromInput: c.opset >= (op == "ReduceSum" ? 13 : 18), combine: combine)] }
    }
    for op in ["ArgMax", "ArgMin"] {
      r[op] = { c in
        guard let shape = c.shape(0) else { return [InferredTensor(type: .int64, shape: nil)] }
        var out = shape
        let axis = try c.axis(c.int("axis", 0), rank: shape.count)
        if c.int("keepdims", 1) != 0 { out[axis] = 1 } else { out.remove(at: axis) }
        return [InferredTensor(type: .int64, shape: out)]
      }
    }
    return r
  }()
}

private func reduce(_ c: ShapeContext, axesFromInput: Bool, combine: (([DimExpr]) throws -> DimExpr)?) throws -> InferredTensor {
  let x = c.input(0)
  let keep = c.int("keepdims", 1) != 0
  var axes: [Int]?
  if axesFromInput {
    if c.has(1) {
      guard let a = c.inputInts(1) else {
        let count = c.shape(1)?.first??.constant
        let rank = keep ? x.rank : count.flatMap { k in x.rank.map { $0 - k } }
        return InferredTensor(type: x.type, shape: c.unknownDims(rank))
      }
      axes = a
    }
    if (axes ?? []).isEmpty && c.int("noop_with_empty_axes", 0) != 0 { return x }
  } else {
    axes = c.ints("axes")
  }
  guard let shape = x.shape else { return InferredTensor(type: x.type, shape: nil) }
  let reduced = Set(try ((axes ?? []).isEmpty ? Array(shape.indices) : axes ?? []).map { try c.axis($0, rank: shape.count) })
  var out = [DimExpr?]()
  for (i, d) in shape.enumerated() {
    if reduced.contains(i) { if keep { out.append(1) } } else { out.append(d) }
  }
  var values: [DimExpr?]?
  if let combine, let e = x.elements, let dims = x.constantShape, e.count == numberOfElements(dims), !e.isEmpty {
    let kept = dims.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
    var groups = [[DimExpr?]](repeating: [], count: kept.reduce(1, *))
    let inStrides = strides(dims), outStrides = strides(kept)
    for (i, v) in e.enumerated() {
      var rest = i, o = 0
      for d in dims.indices {
        let idx = rest / inStrides[d]
        rest %= inStrides[d]
        if !reduced.contains(d) { o += idx * outStrides[d] }
      }
      groups[o].append(v)
    }
    values = try groups.map { g in
      let known = g.compactMap { $0 }
      return known.count == g.count && !known.isEmpty ? try combine(known) : nil
    }
  }
  return InferredTensor(type: x.type, shape: out, elements: values)
}
