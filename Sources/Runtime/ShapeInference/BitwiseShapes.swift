import IR

/// Bitwise operators broadcast like arithmetic; BitCast reads the same bytes as a type of the
/// same width, so the shape stays.
extension ShapeRules {
  static let bitwise: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift"] {
      r[op] = { c in [InferredTensor(type: c.type(0) ?? c.type(1), shape: try c.broadcast([c.shape(0), c.shape(1)]))] }
    }
    r["BitwiseNot"] = sameAsInput
    r["BitCast"] = { c in [InferredTensor(type: try c.dataType("to", .undefined), shape: c.shape(0))] }
    return r
  }()
}
