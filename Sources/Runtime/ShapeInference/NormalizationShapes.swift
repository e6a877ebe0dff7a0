import IR

/// Normalizations keep the input's shape; their statistics outputs are per channel
/// (BatchNormalization) or per normalized row (LayerNormalization and the RMS norms).
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
    r["SimplifiedLayerNormalization"] = simplifiedLayerNormalization
    return r
  }()

  /// ONNX Runtime's normalizations. SkipLayerNormalization and SkipSimplifiedLayerNormalization:
  /// Y, the rows' mean and inverse standard deviation ([..., 1], float), and input + skip + bias.
  /// SimplifiedLayerNormalization (also in the default domain, where ONNX Runtime registers it):
  /// Y in the scale's type, and the inverse root mean square of the rows from `axis`.
  /// EmbedLayerNormalization: the [B, S, hidden] embeddings normalized, mask_index [B] (int32),
  /// and their sum before normalization.
  static let normalizationContrib: [String: ShapeRule] = [
    "SkipLayerNormalization": skipLayerNormalization,
    "SkipSimplifiedLayerNormalization": skipLayerNormalization,
    "SimplifiedLayerNormalization": simplifiedLayerNormalization,
    "EmbedLayerNormalization": { c in
      let ids = c.shape(0)
      if let r = ids?.count, r != 2 { throw c.fail("input_ids has rank \(r), not 2") }
      let word = c.shape(2)
      if let r = word?.count, r != 2 { throw c.fail("word_embedding has rank \(r), not 2") }
      let hidden = try c.same(word?[1] ?? nil, c.shape(3).flatMap { $0.count == 2 ? $0[1] : nil }, "the hidden sizes of the embeddings")
      let batch = ids?[0] ?? nil, tokens: [DimExpr?] = [batch, ids?[1] ?? nil, hidden]
      let type = c.type(2)
      return [InferredTensor(type: type, shape: tokens), InferredTensor(type: .int32, shape: [batch]), InferredTensor(type: type, shape: tokens)]
    },
  ]

  private static func skipLayerNormalization(_ c: ShapeContext) throws -> [InferredTensor] {
    let x = c.input(0)
    if let r = x.rank, r < 2 { throw c.fail("input has rank \(r), not 2 or 3") }
    let stats = x.shape.map { Array($0.dropLast()) + [DimExpr(1)] }
    let y = InferredTensor(type: x.type, shape: x.shape)
    return [y, InferredTensor(type: .float, shape: stats), InferredTensor(type: .float, shape: stats), y]
  }

  private static func simplifiedLayerNormalization(_ c: ShapeContext) throws -> [InferredTensor] {
    let x = c.input(0)
    let type = c.type(1) ?? x.type
    guard let shape = x.shape else { return [InferredTensor(type: type, shape: nil), InferredTensor(type: .float, shape: nil)] }
    let axis = try c.axis(c.int("axis", -1), rank: shape.count)
    let reduced = Array(shape[..<axis]) + Array(repeating: DimExpr(1), count: shape.count - axis)
    return [InferredTensor(type: type, shape: shape), InferredTensor(type: .float, shape: reduced)]
  }
}
