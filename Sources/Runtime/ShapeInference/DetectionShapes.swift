import IR

/// Region pooling gives one [C, h, w] map per region of interest; NonMaxSuppression's count of
/// kept boxes only the data decides (`nms_1`).
extension ShapeRules {
  static let detection: [String: ShapeRule] = [
    "RoiAlign": { c in
      [InferredTensor(type: c.type(0), shape: [c.shape(1)?.first ?? nil, channels(c.shape(0)),
                                              DimExpr(c.int("output_height", 1)), DimExpr(c.int("output_width", 1))])]
    },
    "MaxRoiPool": { c in
      guard let pooled = c.ints("pooled_shape"), pooled.count == 2 else { throw c.fail("pooled_shape must have 2 values") }
      return [InferredTensor(type: c.type(0), shape: [c.shape(1)?.first ?? nil, channels(c.shape(0))] + pooled.map { DimExpr($0) })]
    },
    // [selected, 3]: batch, class and box index of every box kept.
    "NonMaxSuppression": { c in [InferredTensor(type: .int64, shape: [c.fresh("nms"), 3])] },
  ]
}

/// The channel dimension of an [N, C, …] shape.
func channels(_ shape: [DimExpr?]?) -> DimExpr? {
  guard let shape, shape.count > 1 else { return nil }
  return shape[1]
}
