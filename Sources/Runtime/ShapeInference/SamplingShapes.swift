import IR

/// GridSample reads X [N, C, …] at the grid's [N, spatial…, rank] points; AffineGrid makes such a
/// grid, [N, (D,) H, W, 2 or 3], for the size it is given.
extension ShapeRules {
  static let sampling: [String: ShapeRule] = [
    "GridSample": { c in
      guard let x = c.shape(0), let grid = c.shape(1), x.count >= 3, grid.count == x.count else {
        return [InferredTensor(type: c.type(0), shape: nil)]
      }
      return [InferredTensor(type: c.type(0), shape: [x[0], x[1]] + Array(grid.dropFirst().dropLast()))]
    },
    "AffineGrid": { c in
      // size is (N, C, H, W) or (N, C, D, H, W); theta [N, 2, 3] or [N, 3, 4].
      guard let count = c.elements(1)?.count ?? c.shape(1)?.first??.constant, count == 4 || count == 5 else {
        return [InferredTensor(type: c.type(0), shape: nil)]
      }
      let size = c.elements(1) ?? Array(repeating: nil, count: count)
      return [InferredTensor(type: c.type(0), shape: [size[0] ?? c.shape(0)?.first ?? nil] + Array(size.dropFirst(2)) + [DimExpr(count - 2)])]
    },
  ]
}
