import IR

/// Resize and Upsample: each resized axis becomes `sizes` (as given, for the default
/// keep_aspect_ratio_policy) or ⌊in × scale⌋. A float scale is an exact binary fraction p/2ᵏ,
/// so the symbolic size is ⌊in·p/2ᵏ⌋ (`2*h` for 2.0, `floor(h/2)` for 0.5).
extension ShapeRules {
  static let resize: [String: ShapeRule] = [
    "Resize": { c in [try resizeShape(c)] },
    "Upsample": { c in
      let x = c.input(0)
      let scales: [Double]?
      if c.opset >= 9 {
        scales = c.inputFloats(1)
      } else if case .floats(let f)? = c.node.attribute("scales")?.value {
        scales = f.map(Double.init)
      } else {
        throw c.fail("scales are required")
      }
      guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: nil)] }
      guard let scales else { return [InferredTensor(type: x.type, shape: shape.map { _ in nil })] }
      guard scales.count == shape.count else { throw c.fail("\(scales.count) scales for rank \(shape.count)") }
      return [InferredTensor(type: x.type, shape: try zip(shape, scales).map { try scaled($0, $1, c) })]
    },
  ]
}

/// ⌊n × scale⌋, exactly.
func scaled(_ n: DimExpr?, _ scale: Double, _ c: ShapeContext) throws -> DimExpr? {
  guard let n else { return nil }
  guard scale > 0, scale < 1e9, scale.isFinite else { throw c.fail("scale \(scale) is out of range") }
  if let k = n.constant {
    let size = (Double(k) * scale).rounded(.down)
    guard size < 9.0e15 else { throw c.fail("scaling \(k) by \(scale) gives more than 2⁵³") }
    return DimExpr(Int(size))
  }
  var p = scale, q = 1
  while p.rounded() != p && q < 1 << 40 { p *= 2; q *= 2 }
  guard p.rounded() == p, p < 9.0e15 else { return nil }
  return try DimExpr.floorDiv(n * DimExpr(Int(p)), DimExpr(q))
}

private func resizeShape(_ c: ShapeContext) throws -> InferredTensor {
  let x = c.input(0)
  guard let shape = x.shape else { return InferredTensor(type: x.type, shape: nil) }
  let axes = try (c.ints("axes") ?? Array(shape.indices)).map { try c.axis($0, rank: shape.count) }
  // An input given as an empty tensor counts as absent (exporters write `scales = []` with sizes).
  func given(_ i: Int) -> Bool { c.has(i) && c.shape(i)?.first??.constant != 0 }
  var out = shape
  if c.opset < 11 || (given(2) && !given(3)) {
    let i = c.opset < 11 ? 1 : 2
    guard let scales = c.inputFloats(i) else {
      for a in axes { out[a] = nil }
      return InferredTensor(type: x.type, shape: out)
    }
    guard scales.count == axes.count else { throw c.fail("\(scales.count) scales for \(axes.count) axes") }
    for (k, a) in axes.enumerated() { out[a] = try scaled(shape[a], scales[k], c) }
    return InferredTensor(type: x.type, shape: out)
  }
  guard given(3) else { throw c.fail("neither scales nor sizes are given") }
  guard let sizes = c.elements(3) else {
    for a in axes { out[a] = nil }
    return InferredTensor(type: x.type, shape: out)
  }
  guard sizes.count == axes.count else { throw c.fail("\(sizes.count) sizes for \(axes.count) axes") }
  let policy = c.string("keep_aspect_ratio_policy", "stretch")
  if policy == "stretch" {
    for (k, a) in axes.enumerated() { out[a] = sizes[k] }
    return InferredTensor(type: x.type, shape: out)
  }
  // One scale for every axis, the smallest or largest ratio: only numbers give it.
  let target = sizes.compactMap { $0?.constant }, dims = axes.compactMap { shape[$0]?.constant }
  guard target.count == axes.count, dims.count == axes.count, dims.allSatisfy({ $0 > 0 }) else {
    for a in axes { out[a] = nil }
    return InferredTensor(type: x.type, shape: out)
  }
  let ratios = zip(target, dims).map { Double($0) / Double($1) }
  let s = (policy == "not_larger" ? ratios.min() : ratios.max()) ?? 1
  for (k, a) in axes.enumerated() {
    let size = (s * Double(dims[k])).rounded(.toNearestOrEven)
    guard size.isFinite, size < 9.0e15 else { throw c.fail("sizes \(target) give a dimension past 2⁵³") }
    out[a] = DimExpr(Int(size))
  }
  return InferredTensor(type: x.type, shape: out)
}
