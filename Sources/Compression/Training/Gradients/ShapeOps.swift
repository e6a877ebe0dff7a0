import IR
import Runtime

/// Ops that move elements without changing them: the gradient moves them back.
extension Gradients {
  static let shapeOps: [String: GradientRule] = [
    "Reshape": sameElements, "Flatten": sameElements, "Squeeze": sameElements, "Unsqueeze": sameElements,
    "Transpose": GradientRule([0]) { c in
      let rank = try c.input(0).rank
      let perm = c.ints("perm") ?? Array((0..<rank).reversed())
      var inverse = [Int](repeating: 0, count: rank)
      for (i, p) in perm.enumerated() where p >= 0 && p < rank { inverse[p] = i }
      return [try c.apply("Transpose", [c.gradient()], [Attribute(name: "perm", value: .ints(inverse.map { Int64($0) }))])]
    },
    "Expand": GradientRule([0]) { c in [try c.sumTo(c.gradient(), c.input(0).shape), nil] },
    "Concat": GradientRule(nil) { c in
      let dy = c.gradient()
      let axis = try normalized(c.int("axis", 0), rank: dy.rank, c)
      let outer = dy.shape[..<axis].reduce(1, *), inner = dy.shape[(axis + 1)...].reduce(1, *)
      var offset = 0
      return try c.inputs.indices.map { i in
        let shape = try c.input(i).shape
        let width = shape[axis] * inner
        defer { offset += width }
        guard c.needs(i) else { return nil }
        let start = offset
        return NDArray.filled(shape) { out, _ in
          dy.withFloats { g in
            for o in 0..<outer { (out + o * width).update(from: g + o * dy.shape[axis] * inner + start, count: width) }
          }
        }
      }
    },
    "Split": GradientRule([0]) { c in
      let parts = c.outputs.indices.map { c.gradient($0) }
      let axis = c.int("axis", 0)
      return [try c.apply("Concat", parts, [Attribute(name: "axis", value: .int(Int64(axis)))])]
    },
    "Slice": GradientRule([0]) { c in [try sliceGradient(c)] },
    "Gather": GradientRule([0]) { c in [try gatherGradient(c), nil] },
  ]

  /// Reshape-like ops: the gradient is dY under the input's shape.
  private static let sameElements = GradientRule([0]) { c in [c.gradient().reshaped(try c.input(0).shape)] }
}

private func normalized(_ axis: Int, rank: Int, _ c: GradientContext) throws -> Int {
  let a = axis < 0 ? axis + rank : axis
  guard a >= 0 && a < rank else { throw c.fail("axis \(axis) is out of range for rank \(rank)") }
  return a
}

/// Adds dY into a zero tensor at the positions the slice read.
private func sliceGradient(_ c: GradientContext) throws -> NDArray {
  let x = try c.input(0), dy = c.gradient()
  let rank = x.rank
  let starts: [Int], axes: [Int], steps: [Int]
  if c.opset < 10 {
    starts = c.ints("starts") ?? []
    axes = c.ints("axes") ?? Array(0..<starts.count)
    steps = Array(repeating: 1, count: starts.count)
  } else {
    starts = try c.input(1).integers()
    axes = try c.optionalInput(3)?.integers() ?? Array(0..<starts.count)
    steps = try c.optionalInput(4)?.integers() ?? Array(repeating: 1, count: starts.count)
  }
  var first = [Int](repeating: 0, count: rank), step = [Int](repeating: 1, count: rank)
  for (i, a0) in axes.enumerated() where i < starts.count && i < steps.count {
    let a = try normalized(a0, rank: rank, c), dim = x.shape[a]
    var s = starts[i] < 0 ? starts[i] + dim : starts[i]
    s = steps[i] > 0 ? min(max(s, 0), dim) : min(max(s, 0), dim - 1)
    first[a] = s
    step[a] = steps[i]
  }
  var strides = [Int](repeating: 1, count: rank)
  for i in stride(from: rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * x.shape[i + 1] }
  var dx = NDArray(zeros: .float, x.shape)
  let o = dx.mutableElements(Float.self)
  var index = [Int](repeating: 0, count: rank)
  dy.withFloats { g in
    for k in 0..<dy.count {
      var flat = 0
      for d in 0..<rank { flat += (first[d] + index[d] * step[d]) * strides[d] }
      o[flat] += g[k]
      var d = rank - 1
      while d >= 0 {
        index[d] += 1
        if index[d] < dy.shape[d] { break }
        index[d] = 0
        d -= 1
      }
    }
  }
  return dx
}

/// Embedding lookups and friends: rows of dY are added back to the rows they were read from.
private func gatherGradient(_ c: GradientContext) throws -> NDArray {
  let data = try c.input(0), indices = try c.input(1).integers(), dy = c.gradient()
  let axis = try normalized(c.int("axis", 0), rank: data.rank, c)
  let outer = data.shape[..<axis].reduce(1, *), n = data.shape[axis], inner = data.shape[(axis + 1)...].reduce(1, *)
  var dx = NDArray(zeros: .float, data.shape)
  let o = dx.mutableElements(Float.self)
  try dy.withFloats { g in
    for b in 0..<outer {
      for (j, i0) in indices.enumerated() {
        let i = i0 < 0 ? i0 + n : i0
        guard i >= 0 && i < n else { throw c.fail("index \(i0) is out of range for \(n) rows") }
        let src = g + (b * indices.count + j) * inner
        for t in 0..<inner { o[(b * n + i) * inner + t] += src[t] }
      }
    }
  }
  return dx
}
