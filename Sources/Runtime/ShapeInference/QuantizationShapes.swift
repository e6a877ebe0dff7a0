import IR

/// QuantizeLinear and DequantizeLinear keep the shape; the type is the zero point's (or
/// output_dtype's, from opset 21), uint8 by default, when quantizing, and the scale's (float
/// before opset 19) when dequantizing.
extension ShapeRules {
  static let quantization: [String: ShapeRule] = [
    "QuantizeLinear": { c in
      let dtype = c.opset >= 21 ? try c.dataType("output_dtype", .undefined) : .undefined
      let type = c.has(2) ? c.type(2) : (dtype != .undefined ? dtype : .uint8)
      return [InferredTensor(type: type, shape: c.shape(0))]
    },
    "DequantizeLinear": { c in
      let dtype = c.opset >= 21 ? try c.dataType("output_dtype", .undefined) : .undefined
      let type = dtype != .undefined ? dtype : (c.opset >= 19 ? c.type(1) ?? .float : .float)
      return [InferredTensor(type: type, shape: c.shape(0))]
    },
  ]
}

extension ShapeRules {
  /// ONNX Runtime's com.microsoft QuantizeLinear and DequantizeLinear (16-bit types at any opset).
  static let quantizationContrib: [String: ShapeRule] = quantization
}
