import IR

/// Random values of a given shape: the `shape` attribute, or the input's (…Like, Bernoulli); the
/// type is `dtype`, else the input's (…Like, Bernoulli) or float. Multinomial draws
/// `sample_size` class indices per row (int32 by default).
extension ShapeRules {
  static let random: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["RandomUniformLike", "RandomNormalLike", "Bernoulli"] {
      r[op] = { c in
        let dtype = try c.dataType("dtype", .undefined)
        return [InferredTensor(type: dtype != .undefined ? dtype : c.type(0), shape: c.shape(0))]
      }
    }
    for op in ["RandomUniform", "RandomNormal"] {
      r[op] = { c in
        [InferredTensor(type: try c.dataType("dtype", .float), shape: c.ints("shape")?.map { DimExpr($0) })]
      }
    }
    r["Multinomial"] = { c in
      [InferredTensor(type: try c.dataType("dtype", .int32),
                      shape: [c.shape(0)?.first ?? nil, DimExpr(c.int("sample_size", 1))])]
    }
    return r
  }()
}
