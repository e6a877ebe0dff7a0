import IR

/// Integer and quantized products: MatMulInteger and ConvInteger (int32), QLinearMatMul and
/// QLinearConv (the output zero point's type), DynamicQuantizeLinear, and the com.microsoft
/// operators ONNX Runtime's tools write (MatMulNBits, the QLinear element-wise family).
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

  static let microsoft: [String: ShapeRule] = {
    var r: [String: ShapeRule] = [
      // A [..., K] × B (N rows of K) → [..., N].
      "MatMulNBits": { c in
        let n = c.int("N", 0)
        guard n > 0 else { throw c.fail("attribute N is \(n)") }
        return [InferredTensor(type: c.type(0), shape: c.shape(0).map { Array($0.dropLast()) + [DimExpr(n)] })]
      },
      "QLinearAdd": { c in [InferredTensor(type: c.type(0), shape: try c.broadcast([c.shape(0), c.shape(3)]))] },
      "QLinearMul": { c in [InferredTensor(type: c.type(0), shape: try c.broadcast([c.shape(0), c.shape(3)]))] },
      "QLinearGlobalAveragePool": { c in
        guard let s = c.shape(0), s.count >= 3 else { return [InferredTensor(type: c.type(0), shape: nil)] }
        let last = c.int("channels_last", 0) != 0
        let ones = Array(repeating: DimExpr?.some(1), count: s.count - 2)
        return [InferredTensor(type: c.type(0), shape: last ? [s[0]] + ones + [s[s.count - 1]] : [s[0], s[1]] + ones)]
      },
    ]
    for op in ["QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"] {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    }
    for op in ["Gelu", "FastGelu", "QuickGelu"] {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    }
    r["BiasGelu"] = { c in [InferredTensor(type: c.type(0), shape: try c.broadcast([c.shape(0), c.shape(1)]))] }
    // Y, then mean and inverse standard deviation over the last axis, then input + skip + bias.
    r["SkipLayerNormalization"] = { c in
      let x = c.input(0)
      let stats = x.shape.map { Array($0.dropLast()) + [DimExpr(1)] }
      return [x, InferredTensor(type: .float, shape: stats), InferredTensor(type: .float, shape: stats), x].map {
        InferredTensor(type: $0.type, shape: $0.shape)
      }
    }
    r["DynamicQuantizeMatMul"] = { c in [InferredTensor(type: c.type(0), shape: try matMulShape(c, 0, 1))] }
    r.merge(recurrentContrib) { a, _ in a }
    return r
  }()
}
