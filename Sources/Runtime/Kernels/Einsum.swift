import IR
import Support

/// Einsum: any equation (with ellipsis), by iterating over every combination of the labels'
/// values. Exact, and fast enough for the small contractions models use it for.
extension Kernels {
  static let einsum: [String: Kernel] = [
    "Einsum": { c in [try einsumOp(c)] },
  ]
}

private func einsumOp(_ c: KernelContext) throws -> NDArray {
  guard case .string(let bytes)? = c.node.attribute("equation")?.value else { throw c.fail("equation is required") }
  let equation = String(decoding: bytes, as: UTF8.self).filter { $0 != " " }
  let operands = try (0..<c.inputs.count).map { try c.input($0) }
  let sides = equation.components(separatedBy: "->")
  var terms = sides[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
  guard terms.count == operands.count else { throw c.fail("equation \(equation) names \(terms.count) operands, got \(operands.count)") }
  // Expand "..." into fresh labels (upper-case letters are ONNX-legal too, so use digits).
  var ellipsisRank = 0
  for (k, t) in terms.enumerated() where t.contains("...") {
    ellipsisRank = max(ellipsisRank, operands[k].rank - (t.count - 3))
  }
  let ellipsisLabels = (0..<ellipsisRank).map { Character(String($0)) }
  func expand(_ t: String, rank: Int) -> [Character] {
    guard let r = t.range(of: "...") else { return Array(t) }
    let explicit = t.count - 3
    return Array(t[..<r.lowerBound]) + ellipsisLabels.suffix(rank - explicit) + Array(t[r.upperBound...])
  }
  let labels = try terms.enumerated().map { k, t -> [Character] in
    let l = expand(t, rank: operands[k].rank)
    guard l.count == operands[k].rank else { throw c.fail("term \(t) does not fit operand \(k) of rank \(operands[k].rank)") }
    return l
  }
  terms = []
  var sizes = [Character: Int]()
  for (k, l) in labels.enumerated() {
    for (d, ch) in l.enumerated() {
      let n = operands[k].shape[d]
      if let s = sizes[ch], s != n, s != 1, n != 1 { throw c.fail("label \(ch) has sizes \(s) and \(n)") }
      sizes[ch] = max(sizes[ch] ?? 1, n)
    }
  }
  let output: [Character]
  if sides.count > 1 {
    output = expand(sides[1], rank: ellipsisRank + sides[1].count - (sides[1].contains("...") ? 3 : 0))
  } else {
    let counts = labels.flatMap { $0 }.reduce(into: [Character: Int]()) { $0[$1, default: 0] += 1 }
    output = ellipsisLabels + counts.keys.filter { counts[$0] == 1 && !ellipsisLabels.contains($0) }.sorted()
  }
  let all = output + sizes.keys.filter { !output.contains($0) }.sorted()
  let dims = all.map { sizes[$0] ?? 1 }
  let values = try operands.map { try $0.converted(to: .double).elements(Double.self) }
  // For every operand: its stride per label in `all` (0 where absent or broadcast).
  let opStrides: [[Int]] = labels.enumerated().map { k, l in
    let st = strides(operands[k].shape)
    return all.map { ch in
      var s = 0
      for (d, x) in l.enumerated() where x == ch && operands[k].shape[d] != 1 { s += st[d] }
      return s
    }
  }
  let outShape = output.map { sizes[$0] ?? 1 }
  let outCount = outShape.reduce(1, *), innerCount = dims[output.count...].reduce(1, *)
  var result = [Double](repeating: 0, count: outCount)
  var index = [Int](repeating: 0, count: all.count)
  for o in 0..<outCount {
    var rest = o
    for d in (0..<output.count).reversed() { index[d] = rest % dims[d]; rest /= dims[d] }
    var acc = 0.0
    for inner in 0..<innerCount {
      var r = inner
      for d in (output.count..<all.count).reversed() { index[d] = r % dims[d]; r /= dims[d] }
      var p = 1.0
      for k in operands.indices {
        var off = 0
        for d in all.indices { off += index[d] * opStrides[k][d] }
        p *= values[k][off]
      }
      acc += p
    }
    result[o] = acc
  }
  return try NDArray(doubles: result, as: operands[0].dataType, shape: outShape)
}
