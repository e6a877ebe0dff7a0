import IR

/// Trigonometric and hyperbolic functions keep the input's type and shape.
extension ShapeRules {
  static let trigonometric: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"] { r[op] = sameAsInput }
    return r
  }()
}
