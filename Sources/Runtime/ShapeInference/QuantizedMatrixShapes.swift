import IR

/// Integer and quantized products: MatMulInteger and ConvInteger (int32), QLinearMatMul and
/// QLinearConv (the output zero point's type), DynamicQuantizeLinear, and ONNX Runtime's
/// com.microsoft quantized products.
extension ShapeRules {
  static let quantizedMatrix: [String: ShapeRule] = [
    "DynamicQuantizeLinear": { c in
      [InferredTensor(type: .uint8, shape: c.shape(0)), InferredTensor(type: .float, shape: []), InferredTensor(type: .uint8, shape: [])]
    },
    "MatMulInteger": { c in [InferredTensor(type: .int32, shape: try matMulShape(c, 0, 1))] },
    "ConvInteger": { c in [try convolutionShape(c, x: 0, w: 1, type: .int32)] },
    "QLinearMatMul": { c in [InferredTensor(type: c.type(7) ?? c.type(0), shape: try matMulShape(c, 0, 3))] },
    "QLinearConv": { c in [try convolutionShape(c, x: 0, w: 3, type: c.type(7) ?? c.type(0))] },
  ]

  /// ONNX Runtime's quantized products: MatMulNBits and DynamicQuantizeMatMul (A [..., K] ×
  /// B → [..., N]), GatherBlockQuantized (a Gather from blocked weights, dequantized to the
  /// scales' type), MatMulIntegerToFloat (a_scale's type) and QGemm ([M, N]: float, or quantized
  /// to y_zero_point's type when y_scale is given).
  static let quantizedMatrixContrib: [String: ShapeRule] = [
    "MatMulNBits": { c in
      let n = c.int("N", 0)
      guard n > 0 else { throw c.fail("attribute N is \(n)") }
      return [InferredTensor(type: c.type(0), shape: c.shape(0).map { Array($0.dropLast()) + [DimExpr(n)] })]
    },
    "DynamicQuantizeMatMul": { c in [InferredTensor(type: c.type(0), shape: try matMulShape(c, 0, 1))] },
    "MatMulIntegerToFloat": { c in [InferredTensor(type: c.type(2), shape: try matMulShape(c, 0, 1))] },
    "GatherBlockQuantized": { c in
      let type = c.type(2)
      guard var data = c.shape(0) else { return [InferredTensor(type: type, shape: nil)] }
      guard !data.isEmpty else { throw c.fail("data must have rank 1 or more") }
      let bits = c.int("bits", 4)
      if c.type(0) == .uint8 {
        guard [2, 4, 8].contains(bits) else { throw c.fail("bits must be 2, 4 or 8, not \(bits)") }
        // uint8 data packs 8/bits values in each byte of the last axis.
        if bits < 8 { data[data.count - 1] = try data[data.count - 1].map { try $0 * DimExpr(8 / bits) } }
      }
      let axis = try c.axis(c.int("gather_axis", 0), rank: data.count)
      guard let indices = c.shape(1) else { return [InferredTensor(type: type, shape: nil)] }
      return [InferredTensor(type: type, shape: Array(data[..<axis]) + indices + Array(data[(axis + 1)...]))]
    },
    "QGemm": { c in [InferredTensor(type: c.has(7) ? c.type(8) ?? .uint8 : .float, shape: try gemmShape(c, 0, 3))] },
  ]
}
