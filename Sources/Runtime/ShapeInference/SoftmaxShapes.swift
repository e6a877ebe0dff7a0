import IR

/// Softmax, LogSoftmax and Hardmax keep the input's type and shape (the 2-D coercion before
/// opset 13 changes what is normalized, not the shape).
extension ShapeRules {
  static let softmax: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["Softmax", "LogSoftmax", "Hardmax"] {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    }
    return r
  }()
}
