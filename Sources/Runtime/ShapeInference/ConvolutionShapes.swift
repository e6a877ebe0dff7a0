import IR

/// Conv, ConvTranspose and ONNX Runtime's FusedConv, and the sliding-window arithmetic they
/// share with pooling and the quantized convolutions: output sizes with pads, strides,
/// dilations, auto_pad and ceil_mode.
extension ShapeRules {
  static let convolution: [String: ShapeRule] = [
    "Conv": { c in [try convolutionShape(c, x: 0, w: 1, type: c.type(0))] },
    "ConvTranspose": { c in [try convTranspose(c)] },
  ]

  /// ONNX Runtime's FusedConv: a Conv (input 3, Z, is added before the activation and must
  /// have the output's shape).
  static let convolutionContrib: [String: ShapeRule] = [
    "FusedConv": { c in
      var y = try convolutionShape(c, x: 0, w: 1, type: c.type(0))
      if let z = c.shape(3), let s = y.shape {
        guard z.count == s.count else { throw c.fail("Z has rank \(z.count); the output has rank \(s.count)") }
        y.shape = try zip(s, z).map { try c.same($0, $1, "Z and the output") }
      }
      return [y]
    },
  ]
}

/// The window attributes of a node over `spatial` axes, checked.
struct WindowAttributes {
  var kernel: [Int]?
  var strides: [Int], dilations: [Int], pads: [Int]
  var autoPad: String

  init(_ c: ShapeContext, spatial: Int, kernel defaultKernel: [Int]?) throws {
    kernel = c.ints("kernel_shape") ?? defaultKernel
    strides = c.ints("strides") ?? Array(repeating: 1, count: spatial)
    dilations = c.ints("dilations") ?? Array(repeating: 1, count: spatial)
    pads = c.ints("pads") ?? Array(repeating: 0, count: 2 * spatial)
    autoPad = c.string("auto_pad", "NOTSET")
    guard strides.count == spatial, dilations.count == spatial, pads.count == 2 * spatial, kernel.map({ $0.count == spatial }) ?? true,
          (strides + dilations + (kernel ?? [])).allSatisfy({ $0 > 0 && $0 < 1 << 30 }), pads.allSatisfy({ $0 >= 0 && $0 < 1 << 30 })
    else { throw c.fail("kernel_shape, strides, dilations or pads do not fit a \(spatial)-D input") }
    if autoPad == "VALID" { pads = Array(repeating: 0, count: 2 * spatial) }
  }

  /// Output sizes: ⌊(in + pads − dilation·(k−1) − 1)/stride⌋ + 1, or with ceil_mode the ceiling
  /// unless the last window would start in the end padding (as ONNX Runtime computes it);
  /// ⌈in/stride⌉ with SAME padding.
  func outputs(_ c: ShapeContext, _ input: [DimExpr?], ceilMode: Bool = false) throws -> [DimExpr?] {
    let spatial = strides.count
    return try (0..<spatial).map { i -> DimExpr? in
      guard i < input.count, let n = input[i] else { return nil }
      if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" { return try DimExpr.ceilDiv(n, DimExpr(strides[i])) }
      guard let kernel else { return nil }
      let begin = pads[i], span = try n + DimExpr(pads[i] + pads[i + spatial] - dilations[i] * (kernel[i] - 1) - 1)
      let s = DimExpr(strides[i])
      let out = ceilMode ? try DimExpr.min(DimExpr.ceilDiv(span, s) + 1, DimExpr.ceilDiv(n + DimExpr(begin), s))
                         : try DimExpr.floorDiv(span, s) + 1
      if let k = out.constant, k < 0 { throw c.fail("a window of \(kernel[i]) does not fit an input of \(n)") }
      return out
    }
  }
}

/// A convolution's output: [N, M, spatial…] for input `x` and weight `w` [M, C/group, k…].
func convolutionShape(_ c: ShapeContext, x: Int, w: Int, type: DataType?) throws -> InferredTensor {
  let xs = c.shape(x), ws = c.shape(w)
  guard let rank = xs?.count ?? ws?.count, rank >= 3 else {
    if let r = xs?.count ?? ws?.count { throw c.fail("input of rank \(r) has no spatial dimensions") }
    return InferredTensor(type: type, shape: nil)
  }
  if let r = ws?.count, r != rank { throw c.fail("input of rank \(rank) and weight of rank \(r) do not fit") }
  let group = c.int("group", 1)
  guard group > 0 else { throw c.fail("group \(group) is not positive") }
  if let ch = xs?[1]?.constant, let per = ws?[1]?.constant, per.multipliedReportingOverflow(by: group) != (ch, false) {
    throw c.fail("weight with \(per) input channels per group does not fit \(ch) input channels with group \(group)")
  }
  let kernel = ws.flatMap { w -> [Int]? in
    let k = w.dropFirst(2).compactMap { $0?.constant }
    return k.count == rank - 2 ? k : nil
  }
  let window = try WindowAttributes(c, spatial: rank - 2, kernel: kernel)
  let spatial = try window.outputs(c, xs.map { Array($0.dropFirst(2)) } ?? [])
  return InferredTensor(type: type, shape: [xs?[0] ?? nil, ws?[0] ?? nil] + spatial)
}

/// in·stride − stride + output_padding + (k−1)·dilation + 1 − pads, or what output_shape says;
/// SAME padding gives in·stride.
private func convTranspose(_ c: ShapeContext) throws -> InferredTensor {
  let xs = c.shape(0), ws = c.shape(1), type = c.type(0)
  guard let rank = xs?.count ?? ws?.count, rank >= 3 else { return InferredTensor(type: type, shape: nil) }
  let group = c.int("group", 1)
  guard group > 0 else { throw c.fail("group \(group) is not positive") }
  if let r = ws?.count, r != rank { throw c.fail("input of rank \(rank) and weight of rank \(r) do not fit") }
  let channels = try ws?[1].map { try $0 * DimExpr(group) }
  let kernel = ws.flatMap { w -> [Int]? in
    let k = w.dropFirst(2).compactMap { $0?.constant }
    return k.count == rank - 2 ? k : nil
  }
  let window = try WindowAttributes(c, spatial: rank - 2, kernel: kernel)
  let outPad = c.ints("output_padding") ?? Array(repeating: 0, count: rank - 2)
  guard outPad.count == rank - 2, outPad.allSatisfy({ abs($0) < 1 << 30 }) else {
    throw c.fail("output_padding does not fit a \(rank - 2)-D input")
  }
  var spatial = [DimExpr?]()
  if let shape = c.ints("output_shape"), shape.count >= rank - 2 {
    spatial = shape.suffix(rank - 2).map { DimExpr($0) }
  } else {
    for i in 0..<(rank - 2) {
      guard let n = xs?[i + 2] else { spatial.append(nil); continue }
      let s = window.strides[i]
      if window.autoPad == "SAME_UPPER" || window.autoPad == "SAME_LOWER" {
        spatial.append(try n * DimExpr(s))
        continue
      }
      guard let kernel = window.kernel else { spatial.append(nil); continue }
      let extra = outPad[i] + (kernel[i] - 1) * window.dilations[i] + 1 - window.pads[i] - window.pads[i + rank - 2] - s
      spatial.append(try n * DimExpr(s) + DimExpr(extra))
    }
  }
  return InferredTensor(type: type, shape: [xs?[0] ?? nil, channels] + spatial)
}
