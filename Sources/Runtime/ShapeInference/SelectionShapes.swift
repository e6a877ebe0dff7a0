import IR

/// Operators that pick, place or generate elements: OneHot (a depth-long axis), EyeLike,
/// ReverseSequence and TensorScatter (the input's shape), CenterCropPad (the given sizes on its
/// axes); Compress and Unique, whose output sizes only the data decides (`compress_1`, `unique_1`).
extension ShapeRules {
  static let selection: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    r["OneHot"] = { c in
      let type = c.type(2)
      guard var shape = c.shape(0) else { return [InferredTensor(type: type, shape: nil)] }
      let axis = try c.axis(c.int("axis", -1), rank: shape.count + 1)
      shape.insert(c.elements(1)?.first ?? nil, at: axis)
      return [InferredTensor(type: type, shape: shape)]
    }
    r["EyeLike"] = { c in
      let dtype = try c.dataType("dtype", .undefined)
      return [InferredTensor(type: dtype == .undefined ? c.type(0) : dtype, shape: c.shape(0))]
    }
    r["ReverseSequence"] = sameAsInput
    r["TensorScatter"] = sameAsInput
    r["CenterCropPad"] = { c in
      guard var shape = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      let axes = try (c.ints("axes") ?? Array(shape.indices)).map { try c.axis($0, rank: shape.count) }
      let sizes = c.elements(1) ?? Array(repeating: nil, count: axes.count)
      guard sizes.count == axes.count else { throw c.fail("\(sizes.count) sizes for \(axes.count) axes") }
      for (k, a) in axes.enumerated() { shape[a] = sizes[k] }
      return [InferredTensor(type: c.type(0), shape: shape)]
    }
    r["Compress"] = { c in
      guard let a = c.node.attribute("axis")?.int else { return [InferredTensor(type: c.type(0), shape: [c.fresh("compress")])] }
      guard var shape = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      shape[try c.axis(Int(clamping: a), rank: shape.count)] = c.fresh("compress")
      return [InferredTensor(type: c.type(0), shape: shape)]
    }
    // Y, its elements' first indices, each input element's index in Y, and the counts.
    r["Unique"] = { c in
      let n = c.fresh("unique")
      var y: [DimExpr?]? = [n]
      var inverse: [DimExpr?]? = [c.input(0).elementCount]
      if let a = c.node.attribute("axis")?.int {
        y = try c.shape(0).map { s in
          var s = s
          let axis = try c.axis(Int(clamping: a), rank: s.count)
          inverse = [s[axis]]
          s[axis] = n
          return s
        }
      }
      return [InferredTensor(type: c.type(0), shape: y), InferredTensor(type: .int64, shape: [n]),
              InferredTensor(type: .int64, shape: inverse), InferredTensor(type: .int64, shape: [n])]
    }
    return r
  }()
}
