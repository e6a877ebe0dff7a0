import IR

/// ONNX Runtime's com.microsoft operators on 8-bit quantized tensors: the element-wise ones keep
/// the (broadcast) input shape; QLinearGlobalAveragePool and QLinearAveragePool follow the
/// pooling arithmetic over [N, C, spatial…] or, with channels_last, [N, spatial…, C];
/// QLinearConcat concatenates its (tensor, scale, zero point) triples. The output type is the
/// output zero point's, else the input's.
extension ShapeRules {
  static let quantizedContrib: [String: ShapeRule] = {
    var r: [String: ShapeRule] = [
      "QLinearAdd": { c in [InferredTensor(type: c.type(0), shape: try c.broadcast([c.shape(0), c.shape(3)]))] },
      "QLinearMul": { c in [InferredTensor(type: c.type(0), shape: try c.broadcast([c.shape(0), c.shape(3)]))] },
      "QLinearGlobalAveragePool": { c in
        guard let s = c.shape(0), s.count >= 3 else { return [InferredTensor(type: c.type(0), shape: nil)] }
        let last = c.int("channels_last", 0) != 0
        let ones = Array(repeating: DimExpr?.some(1), count: s.count - 2)
        return [InferredTensor(type: c.type(0), shape: last ? [s[0]] + ones + [s[s.count - 1]] : [s[0], s[1]] + ones)]
      },
      "QLinearAveragePool": { c in
        let type = c.type(4) ?? c.type(0)
        guard let s = c.shape(0) else { return [InferredTensor(type: type, shape: nil)] }
        guard s.count == 3 || s.count == 4 else { throw c.fail("input of rank \(s.count) is not [N, C, W] or [N, C, H, W]") }
        guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
        let last = c.int("channels_last", 0) != 0
        let window = try WindowAttributes(c, spatial: s.count - 2, kernel: kernel)
        let spatial = try window.outputs(c, last ? Array(s[1..<(s.count - 1)]) : Array(s.dropFirst(2)),
                                         ceilMode: c.int("ceil_mode", 0) != 0)
        return [InferredTensor(type: type, shape: last ? [s[0]] + spatial + [s[s.count - 1]] : [s[0], s[1]] + spatial)]
      },
      // Y_scale, Y_zero_point, then (tensor, scale, zero point) per input.
      "QLinearConcat": { c in
        let count = c.inputCount - 2
        guard count > 0, count % 3 == 0 else {
          throw c.fail("inputs after Y_scale and Y_zero_point must come in (tensor, scale, zero point) triples")
        }
        let parts = stride(from: 2, to: c.inputCount, by: 3).map { c.input($0).typeAndShape }
        let type = c.type(1) ?? parts.lazy.compactMap(\.type).first
        guard let rank = parts.lazy.compactMap(\.rank).first else { return [InferredTensor(type: type, shape: nil)] }
        var y = try concatShape(c, parts, axis: try c.axis(c.int("axis", 0), rank: rank))
        y.type = type
        return [y]
      },
    ]
    for op in ["QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"] {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    }
    return r
  }()
}
