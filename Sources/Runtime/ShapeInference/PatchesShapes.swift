import IR

/// Col2Im folds [N, C·∏block, L] columns back into an image of `image_shape`; DeformConv has a
/// convolution's output size.
extension ShapeRules {
  static let patches: [String: ShapeRule] = [
    "Col2Im": { c in
      guard let image = c.elements(1) ?? c.unknownDims(c.length(1)) else {
        return [InferredTensor(type: c.type(0), shape: nil)]
      }
      let x = c.shape(0)
      var ch: DimExpr?
      if let x, x.count == 3, let columns = x[1], let blocks = c.inputInts(2) {
        guard let per = numberOfElements(blocks), per > 0 else { throw c.fail("block_shape \(blocks) is out of range") }
        if let k = columns.constant, k % per != 0 { throw c.fail("\(k) columns are not a multiple of the block's \(per)") }
        ch = try DimExpr.floorDiv(columns, DimExpr(per))
      }
      return [InferredTensor(type: c.type(0), shape: [x?.first ?? nil, ch] + image)]
    },
    "DeformConv": { c in [try convolutionShape(c, x: 0, w: 1, type: c.type(0))] },
  ]
}
