import IR

/// ai.onnx.preview.training's Gradient: output i, the gradient of y with respect to the i-th
/// tensor xs names (fed as input i), has that tensor's type and shape.
extension ShapeRules {
  static let gradient: [String: ShapeRule] = [
    "Gradient": { c in (0..<c.node.outputs.count).map { InferredTensor(type: c.type($0), shape: c.shape($0)) } },
  ]
}
