import IR

/// Einsum: every label takes its operands' size for it (1 broadcasts); the output lists the
/// labels after "->", or, implicitly, the broadcast ellipsis then every label used once, sorted.
extension ShapeRules {
  static let einsum: [String: ShapeRule] = [
    "Einsum": { c in
      guard case .string(let bytes)? = c.node.attribute("equation")?.value else { throw c.fail("equation is required") }
      let equation = String(decoding: bytes, as: UTF8.self).filter { $0 != " " }
      let sides = equation.components(separatedBy: "->")
      let terms = sides[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
      guard terms.count == c.inputCount else { throw c.fail("equation \(equation) names \(terms.count) operands, got \(c.inputCount)") }
      let shapes = (0..<c.inputCount).map { c.shape($0) }
      guard shapes.allSatisfy({ $0 != nil }) else { return [InferredTensor(type: c.type(0), shape: nil)] }
      var sizes = [Character: DimExpr?]()
      var ellipsis: [DimExpr?] = []
      for (k, t) in terms.enumerated() {
        let shape = shapes[k] ?? []
        var labels = Array(t)
        var dims = shape
        if let r = t.range(of: "...") {
          let before = t.distance(from: t.startIndex, to: r.lowerBound), after = t.distance(from: r.upperBound, to: t.endIndex)
          guard shape.count >= before + after else { throw c.fail("term \(t) does not fit operand \(k) of rank \(shape.count)") }
          let middle = Array(shape[before..<(shape.count - after)])
          ellipsis = try c.broadcast([ellipsis, middle]) ?? []
          labels = Array(t[..<r.lowerBound]) + Array(t[r.upperBound...])
          dims = Array(shape[..<before]) + Array(shape[(shape.count - after)...])
        }
        guard labels.count == dims.count else { throw c.fail("term \(t) does not fit operand \(k) of rank \(shape.count)") }
        for (ch, d) in zip(labels, dims) {
          if let existing = sizes[ch] {
            sizes[ch] = try c.broadcast([[existing], [d]])?.first ?? nil
          } else {
            sizes[ch] = d
          }
        }
      }
      var out = [DimExpr?]()
      if sides.count > 1 {
        for part in sides[1].components(separatedBy: "...").enumerated() {
          if part.offset > 0 { out += ellipsis }
          out += part.element.map { sizes[$0] ?? nil }
        }
      } else {
        let all = terms.joined().filter { $0 != "." }
        let once = Set(all.filter { ch in all.filter { $0 == ch }.count == 1 })
        out = ellipsis + once.sorted().map { sizes[$0] ?? nil }
      }
      return [InferredTensor(type: c.type(0), shape: out)]
    },
  ]
}
