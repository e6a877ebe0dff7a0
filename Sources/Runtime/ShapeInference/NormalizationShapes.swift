import IR

/// Normalizations keep the input's shape; their statistics outputs are per channel
/// (BatchNormalization) or per normalized row (LayerNormalization).
extension ShapeRules {
  static let normalization: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["InstanceNormalization", "LRN", "GroupNormalization", "MeanVarianceNormalization", "LpNormalization",
               "RMSNormalization"] {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    }
    r["BatchNormalization"] = { c in
      let x = c.input(0)
      // Training outputs (running and saved mean and variance) have one value per channel.
      let channels: [DimExpr?]? = x.shape.map { $0.count >= 2 ? [$0[1]] : [nil] }
      let statistics = InferredTensor(type: c.type(1) ?? x.type, shape: channels)
      return [InferredTensor(type: x.type, shape: x.shape)] + Array(repeating: statistics, count: 4)
    }
    r["LayerNormalization"] = { c in
      let x = c.input(0)
      let stash = try c.dataType("stash_type", .float)
      guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: nil), InferredTensor(type: stash, shape: nil), InferredTensor(type: stash, shape: nil)] }
      let axis = try c.axis(c.int("axis", -1), rank: shape.count)
      let reduced = Array(shape[..<axis]) + Array(repeating: DimExpr(1), count: shape.count - axis)
      return [InferredTensor(type: x.type, shape: shape), InferredTensor(type: stash, shape: reduced), InferredTensor(type: stash, shape: reduced)]
    }
    return r
  }()
}
