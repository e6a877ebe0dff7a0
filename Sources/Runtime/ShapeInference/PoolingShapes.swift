import IR

/// Pooling: the window arithmetic of ConvolutionShapes over [N, C, spatial…]; global pooling
/// keeps N and C and makes every spatial dimension 1; MaxUnpool undoes a MaxPool's size.
extension ShapeRules {
  static let pooling: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["MaxPool", "AveragePool", "LpPool"] {
      r[op] = { c in
        let x = c.input(0)
        guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: nil), InferredTensor(type: .int64, shape: nil)] }
        guard shape.count >= 3 else { throw c.fail("input of rank \(shape.count) has no spatial dimensions") }
        guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
        let window = try WindowAttributes(c, spatial: shape.count - 2, kernel: kernel)
        let out = Array(shape.prefix(2)) + (try window.outputs(c, Array(shape.dropFirst(2)), ceilMode: c.int("ceil_mode", 0) != 0))
        // MaxPool's second output holds flat indices of the maxima.
        return [InferredTensor(type: x.type, shape: out), InferredTensor(type: .int64, shape: out)]
      }
    }
    for op in ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"] {
      r[op] = { c in
        let x = c.input(0)
        guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: nil)] }
        guard shape.count >= 2 else { throw c.fail("input of rank \(shape.count) has no channel dimension") }
        return [InferredTensor(type: x.type, shape: Array(shape.prefix(2)) + Array(repeating: DimExpr(1), count: shape.count - 2))]
      }
    }
    // The inverse of MaxPool: output_shape when given, else (in − 1)·stride + kernel − pads.
    r["MaxUnpool"] = { c in
      if c.has(2) {
        return [InferredTensor(type: c.type(0), shape: c.elements(2) ?? c.unknownDims(c.length(2)))]
      }
      guard let x = c.shape(0), x.count >= 3 else { return [InferredTensor(type: c.type(0), shape: nil)] }
      guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
      let window = try WindowAttributes(c, spatial: x.count - 2, kernel: kernel)
      let spatial = try x.dropFirst(2).enumerated().map { i, d in
        try d.map { try ($0 - 1) * DimExpr(window.strides[i]) + DimExpr(kernel[i] - window.pads[i] - window.pads[i + x.count - 2]) }
      }
      return [InferredTensor(type: c.type(0), shape: Array(x.prefix(2)) + spatial)]
    }
    return r
  }()
}
