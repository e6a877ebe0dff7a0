import Support

/// The shape two or more tensors broadcast to (numpy rules), or nil when they do not.
func broadcastShape(_ shapes: [[Int]]) -> [Int]? {
  // Equal shapes, the common case of small element-wise nodes, without building a new one (and a
  // loop, not `map(\.count)`: a key path as a function is looked up at run time).
  if let first = shapes.first, shapes.allSatisfy({ $0 == first }) { return first }
  var rank = 0
  for s in shapes { rank = max(rank, s.count) }
  var out = [Int](repeating: 1, count: rank)
  for s in shapes {
    for (i, d) in s.enumerated() {
      let j = rank - s.count + i
      if out[j] == 1 { out[j] = d } else if d != 1 && d != out[j] { return nil }
    }
  }
  return out
}

/// The same for two shapes, without an array of them to allocate when they are equal.
func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
  a == b ? a : broadcastShape([a, b])
}

/// Walks a broadcast over `out` row by row (rows along the last dimension): `body` gets the
/// output offset of the row, each input's offset of its first element, each input's stride
/// along the row (0 when broadcast) and the row length. Inner loops stay in the kernel.
func broadcastRows(_ shape: [Int], _ shapes: [[Int]], _ body: (Int, [Int], [Int], Int) -> Void) {
  let total = shape.reduce(1, *)
  if total == 0 { return }
  // Per input: strides aligned to the output's rank, 0 where the input is broadcast.
  let full: [[Int]] = shapes.map { s in
    let st = strides(s)
    return (0..<shape.count).map { j in
      let i = j - (shape.count - s.count)
      return i < 0 || s[i] == 1 ? 0 : st[i]
    }
  }
  // Rows as long as possible: dimensions of 1 go, and a dimension merges into the one inside it
  // when every input steps through both alike (contiguously, or broadcast along both) — a
  // [1, C, H, W] × [1, C, 1, 1] product is C rows of H·W, not C·H rows of W.
  var out = [Int](), aligned: [[Int]] = shapes.map { _ in [] }
  for j in shape.indices where shape[j] != 1 {
    if !out.isEmpty && aligned.indices.allSatisfy({ aligned[$0][out.count - 1] == full[$0][j] * shape[j] }) {
      out[out.count - 1] *= shape[j]
      for k in aligned.indices { aligned[k][out.count - 1] = full[k][j] }
    } else {
      out.append(shape[j])
      for k in aligned.indices { aligned[k].append(full[k][j]) }
    }
  }
  let rank = out.count
  let inner = rank == 0 ? 1 : out[rank - 1]
  let innerStrides = aligned.map { rank == 0 ? 0 : $0[rank - 1] }
  let rows = total / max(inner, 1)
  var index = [Int](repeating: 0, count: max(rank - 1, 0))
  var offsets = [Int](repeating: 0, count: shapes.count)
  for row in 0..<rows {
    body(row * inner, offsets, innerStrides, inner)
    // Advance the multi-index over the leading dimensions.
    var d = rank - 2
    while d >= 0 {
      index[d] += 1
      for k in offsets.indices { offsets[k] += aligned[k][d] }
      if index[d] < out[d] { break }
      for k in offsets.indices { offsets[k] -= aligned[k][d] * index[d] }
      index[d] = 0
      d -= 1
    }
  }
}

/// Steps a multi-index over the first `index.count` dimensions of `shape` to the next one in
/// row-major order (all zeros again after the last).
@inline(__always)
func advance(_ index: inout [Int], within shape: [Int]) {
  var d = index.count - 1
  while d >= 0 {
    index[d] += 1
    if index[d] < shape[d] { return }
    index[d] = 0
    d -= 1
  }
}

/// Walks a shape in row-major order while tracking the offset of the current index in another
/// layout (one stride per dimension): the inner step of transposes and gathers.
struct StridedCursor {
  private let shape: [Int]
  private let strides: [Int]
  private var index: [Int]
  private(set) var offset = 0

  init(shape: [Int], strides: [Int]) {
    self.shape = shape
    self.strides = strides
    index = [Int](repeating: 0, count: shape.count)
  }

  @inline(__always)
  mutating func advance() {
    var d = shape.count - 1
    while d >= 0 {
      index[d] += 1
      offset += strides[d]
      if index[d] < shape[d] { return }
      offset -= strides[d] * index[d]
      index[d] = 0
      d -= 1
    }
  }
}
