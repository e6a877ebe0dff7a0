import IR

/// DFT and STFT of signals whose last dimension is 1 (real) or 2 (complex); window functions and
/// the mel filter bank of a given size, of `output_datatype` (float by default).
extension ShapeRules {
  static let signal: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    // A transform of n points along `axis` (-2 from opset 20, an input then; 1 before, an
    // attribute): forward one-sided keeps n/2+1 bins; inverse one-sided gives a real signal.
    r["DFT"] = { c in
      guard var shape = c.shape(0), shape.count >= 2 else { return [InferredTensor(type: c.type(0), shape: nil)] }
      let axisValue: Int? = c.opset >= 20 ? (c.has(2) ? c.inputInts(2)?.first : -2) : c.int("axis", 1)
      guard let axisValue else { return [InferredTensor(type: c.type(0), shape: shape.map { _ in nil })] }
      let axis = try c.axis(axisValue, rank: shape.count)
      guard axis != shape.count - 1 else { throw c.fail("axis \(axisValue) is the real/imaginary dimension") }
      let inverse = c.int("inverse", 0) != 0, onesided = c.int("onesided", 0) != 0
      var n: DimExpr? = try shape[axis].map { m in inverse && onesided ? try (m - 1) * 2 : m }
      if c.has(1) { n = c.elements(1)?.first ?? nil }
      shape[axis] = try n.map { inverse ? $0 : (onesided ? try DimExpr.floorDiv($0, 2) + 1 : $0) }
      shape[shape.count - 1] = DimExpr(inverse && onesided ? 1 : 2)
      return [InferredTensor(type: c.type(0), shape: shape)]
    }
    // [batch, frames, bins, 2]: frames of frame_length every frame_step samples.
    r["STFT"] = { c in
      guard let x = c.shape(0), x.count == 3 else { return [InferredTensor(type: c.type(0), shape: nil)] }
      let step = c.elements(1)?.first ?? nil
      let length = c.has(3) ? (c.elements(3)?.first ?? nil) : (c.has(2) ? c.shape(2)?.first ?? nil : x[1])
      var frames: DimExpr?, bins: DimExpr?
      if let step, let length, let samples = x[1] { frames = try DimExpr.floorDiv(samples - length, step) + 1 }
      if let length { bins = c.int("onesided", 1) != 0 && x[2]?.constant == 1 ? try DimExpr.floorDiv(length, 2) + 1 : length }
      return [InferredTensor(type: c.type(0), shape: [x[0], frames, bins, 2])]
    }
    let type = { (c: ShapeContext) in try c.dataType("output_datatype", .float) }
    for op in ["HannWindow", "HammingWindow", "BlackmanWindow"] {
      r[op] = { c in [InferredTensor(type: try type(c), shape: [c.elements(0)?.first ?? nil])] }
    }
    // [dft_length/2 + 1, num_mel_bins].
    r["MelWeightMatrix"] = { c in
      let bins = try (c.elements(1)?.first ?? nil).map { try DimExpr.floorDiv($0, 2) + 1 }
      return [InferredTensor(type: try type(c), shape: [bins, c.elements(0)?.first ?? nil])]
    }
    return r
  }()
}
