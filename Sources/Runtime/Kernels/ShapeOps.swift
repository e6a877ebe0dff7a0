import IR
import Support

/// Operators that move or reinterpret elements without arithmetic: Shape, Reshape, Flatten,
/// Transpose, Squeeze/Unsqueeze, Concat, Split, Slice, Gather, Expand, Tile, Cast, CastLike, Constant,
/// ConstantOfShape, Range and Identity/Dropout. Copies work
/// on raw bytes, so every element type is handled.
extension Kernels {
  static let shapeOps: [String: Kernel] = [
    "Dropout": { c in
      // Inference: the identity. The mask (all kept) only when asked for: bool from opset 10,
      // the input's type before.
      let x = try c.input(0)
      guard c.node.outputs.count > 1, !c.node.outputs[1].isEmpty else { return [x] }
      if c.opset < 10 {
        return [x, try NDArray(doubles: Array(repeating: 1, count: x.count), as: x.dataType, shape: x.shape)]
      }
      return [x, NDArray(bools: Array(repeating: true, count: x.count), shape: x.shape)]
    },
    "Shape": { c in
      let x = try c.input(0)
      var dims = x.shape
      if c.opset >= 15 {
        func clampAxis(_ a: Int) -> Int { Swift.min(Swift.max(a < 0 ? a + x.rank : a, 0), x.rank) }
        let start = clampAxis(c.int("start", 0)), end = clampAxis(c.int("end", x.rank))
        dims = start < end ? Array(dims[start..<end]) : []
      }
      return [NDArray(dims.map { Int64($0) }, shape: [dims.count])]
    },
    "Size": { c in [NDArray([Int64(try c.input(0).count)], shape: [])] },
    "Reshape": { c in
      let x = try c.input(0)
      var shape: [Int]
      if c.opset < 5 { shape = c.ints("shape") ?? [] } else { shape = try c.input(1).integers() }
      let requested = shape
      let allowZero = c.int("allowzero", 0) != 0
      // One pass, in place: 0 copies the input's dimension, one -1 takes what is left.
      var unknown: Int?, known = 1
      for i in shape.indices {
        if shape[i] == 0 && !allowZero && i < x.rank { shape[i] = x.shape[i] }
        if shape[i] == -1 && unknown == nil { unknown = i; continue }
        let (p, overflow) = known.multipliedReportingOverflow(by: shape[i])
        guard shape[i] >= 0, !overflow else { throw c.fail("cannot reshape \(x.shape) to \(requested)") }
        known = p
      }
      if let unknown {
        guard known > 0, x.count % known == 0 else { throw c.fail("cannot reshape \(x.shape) to \(requested)") }
        shape[unknown] = x.count / known
      } else {
        guard known == x.count else { throw c.fail("cannot reshape \(x.shape) to \(requested)") }
      }
      return [x.reshaped(shape)]
    },
    "Flatten": { c in
      let x = try c.input(0)
      let axis = c.int("axis", 1)
      let a = axis < 0 ? axis + x.rank : axis
      guard a >= 0 && a <= x.rank else { throw c.fail("axis \(axis) is out of range for rank \(x.rank)") }
      return [x.reshaped([x.shape[..<a].reduce(1, *), x.shape[a...].reduce(1, *)])]
    },
    "Transpose": { c in
      let x = try c.input(0)
      let perm = c.ints("perm") ?? Array((0..<x.rank).reversed())
      guard perm.sorted() == Array(0..<x.rank) else { throw c.fail("perm \(perm) is not a permutation of 0..<\(x.rank)") }
      return [x.transposed(perm)]
    },
    "Squeeze": { c in
      let x = try c.input(0)
      let axes = c.opset >= 13 ? try c.optionalInput(1)?.integers() : c.ints("axes")
      var shape = [Int]()
      // Arrays, not sets: a handful of axes, and hashing cost more than the rest of the node.
      let drop = try (axes ?? x.shape.indices.filter { x.shape[$0] == 1 }).map { try c.axis($0, rank: x.rank) }
      for (i, d) in x.shape.enumerated() where !drop.contains(i) { shape.append(d) }
      for a in drop where x.shape[a] != 1 { throw c.fail("cannot squeeze axis \(a) of size \(x.shape[a])") }
      return [x.reshaped(shape)]
    },
    "Unsqueeze": { c in
      let x = try c.input(0)
      guard let axes = c.opset >= 13 ? try c.input(1).integers() : c.ints("axes") else { throw c.fail("axes are required") }
      let rank = x.rank + axes.count
      let inserted = try axes.map { try c.axis($0, rank: rank) }
      for (k, a) in inserted.enumerated() where inserted[..<k].contains(a) { throw c.fail("axes \(axes) repeat") }
      var shape = [Int](), rest = x.shape.makeIterator()
      for i in 0..<rank { shape.append(inserted.contains(i) ? 1 : (rest.next() ?? 1)) }
      return [x.reshaped(shape)]
    },
    "Concat": { c in
      let parts = try (0..<c.inputs.count).map { try c.input($0) }
      guard let first = parts.first else { throw c.fail("no inputs") }
      let axis = try c.axis(c.int("axis", 0), rank: first.rank)
      var shape = first.shape
      shape[axis] = 0
      for p in parts {
        guard p.rank == first.rank, p.dataType == first.dataType,
              p.shape.enumerated().allSatisfy({ $0.offset == axis || $0.element == first.shape[$0.offset] })
        else { throw c.fail("inputs \(parts.map(\.shape)) do not concatenate along axis \(axis)") }
        shape[axis] += p.shape[axis]
      }
      if first.dataType == .string {
        var out = NDArray(uninitialized: first.dataType, shape)
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        var strings = [[UInt8]]()
        for o in 0..<outer { for p in parts { let n = p.shape[axis] * inner; strings += p.strings[(o * n)..<(o * n + n)] } }
        out.strings = strings
        return [out]
      }
      return [try concatenate(parts, axis: axis, like: first)]
    },
    "Split": { c in
      let x = try c.input(0)
      let axis = try c.axis(c.int("axis", 0), rank: x.rank)
      let outputs = c.node.outputs.count
      var sizes: [Int]
      if c.opset >= 13, let s = c.optionalInput(1) { sizes = try s.integers() } else if let s = c.ints("split") { sizes = s } else {
        let n = c.opset >= 18 ? c.int("num_outputs", outputs) : outputs
        guard n >= 1 else { throw c.fail("cannot split into \(n) parts") }
        let chunk = (x.shape[axis] + n - 1) / n
        sizes = (0..<n).map { Swift.min(chunk, Swift.max(0, x.shape[axis] - $0 * chunk)) }
      }
      guard sizes.allSatisfy({ $0 >= 0 && $0 <= x.shape[axis] }), sizes.reduce(0, +) == x.shape[axis] else { throw c.fail("split sizes \(sizes) do not add up to \(x.shape[axis])") }
      var start = 0
      return try sizes.map { n in
        defer { start += n }
        return try x.slice(axes: [axis], starts: [start], ends: [start + n], steps: [1])
      }
    },
    "Slice": { c in
      let x = try c.input(0)
      var starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?
      if c.opset < 10 {
        starts = c.ints("starts") ?? []
        ends = c.ints("ends") ?? []
        axes = c.ints("axes")
      } else {
        if let y = try sliceOneAxis(c, x) { return [y] }
        starts = try c.input(1).integers()
        ends = try c.input(2).integers()
        axes = try c.optionalInput(3)?.integers()
        steps = try c.optionalInput(4)?.integers()
      }
      let ax = try (axes ?? Array(0..<starts.count)).map { try c.axis($0, rank: x.rank) }
      guard starts.count == ends.count, ax.count == starts.count else { throw c.fail("starts, ends and axes differ in length") }
      let st = steps ?? Array(repeating: 1, count: starts.count)
      guard !st.contains(0) else { throw c.fail("a step is 0") }
      return [try x.slice(axes: ax, starts: starts, ends: ends, steps: st)]
    },
    "Gather": { c in
      let x = try c.input(0), idx = try c.input(1)
      let axis = try c.axis(c.int("axis", 0), rank: x.rank)
      let indices = try idx.integers()
      let n = x.shape[axis]
      let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
      let outShape = Array(x.shape[..<axis]) + idx.shape + Array(x.shape[(axis + 1)...])
      try NDArray.checkAllocation(outShape, x.dataType, c)
      var out = NDArray(uninitialized: x.dataType, outShape)
      let width = x.elementWidth * inner
      let dst = out.mutableBytes()
      for o in 0..<outer {
        for (k, raw) in indices.enumerated() {
          let i = raw < 0 ? raw + n : raw
          guard i >= 0 && i < n else { throw c.fail("index \(raw) is out of range for a dimension of \(n)") }
          if x.dataType == .string {
            out.strings[(o * indices.count + k) * inner ..< (o * indices.count + k + 1) * inner] = x.strings[(o * n + i) * inner ..< (o * n + i + 1) * inner]
          } else if width > 0, let src = x.storage.base {
            (dst + (o * indices.count + k) * width).copyMemory(from: src + (o * n + i) * width, byteCount: width)
          }
        }
      }
      return [out]
    },
    "Expand": { c in
      let x = try c.input(0)
      let target = try c.input(1).integers()
      guard let shape = broadcastShape([x.shape, target]) else { throw c.fail("cannot expand \(x.shape) to \(target)") }
      try NDArray.checkAllocation(shape, x.dataType, c)
      return [x.broadcast(to: shape)]
    },
    "Tile": { c in
      let x = try c.input(0)
      let reps = try c.input(1).integers()
      guard reps.count == x.rank, reps.allSatisfy({ $0 >= 0 }) else { throw c.fail("repeats \(reps) do not fit rank \(x.rank)") }
      try NDArray.checkAllocation(zip(x.shape, reps).map { $0.multipliedReportingOverflow(by: $1).overflow ? -1 : $0 * $1 }, x.dataType, c)
      var y = x
      for (axis, r) in reps.enumerated() where r != 1 {
        y = try concatenate(Array(repeating: y, count: r), axis: axis, like: y)
      }
      return [y]
    },
    "Cast": { c in
      let x = try c.input(0)
      return [try cast(c, x, to: DataType(rawValue: Int32(clamping: c.int("to", 0))))]
    },
    "CastLike": { c in
      let x = try c.input(0)
      return [try cast(c, x, to: try c.input(1).dataType)]
    },
    "Constant": { c in
      guard let a = c.node.attributes.first else { throw c.fail("no value attribute") }
      switch a.value {
      case .tensor(let t): return [try NDArray(t)]
      case .float(let f): return [NDArray([f], shape: [])]
      case .floats(let f): return [NDArray(f, shape: [f.count])]
      case .int(let i): return [NDArray([i], shape: [])]
      case .ints(let i): return [NDArray(i, shape: [i.count])]
      default: throw c.unsupported("Constant with a \(a.name) attribute is not supported")
      }
    },
    "ConstantOfShape": { c in
      let shape = try c.input(0).integers()
      guard shape.allSatisfy({ $0 >= 0 }) else { throw c.fail("shape \(shape) has a negative dimension") }
      let value = try c.node.attribute("value")?.tensor.map { try NDArray($0) } ?? NDArray([Float(0)], shape: [1])
      guard value.count == 1, value.dataType != .string else { throw c.fail("value must be one number, it is \(value.dataType) \(value.shape)") }
      try NDArray.checkAllocation(shape, value.dataType, c)
      return [value.reshaped([]).broadcast(to: shape)]
    },
    "Range": { c in
      let start = try c.input(0), limit = try c.input(1), delta = try c.input(2)
      guard start.count == 1, limit.count == 1, delta.count == 1 else {
        throw c.fail("start, limit and delta must be scalars, not \(start.shape), \(limit.shape) and \(delta.shape)")
      }
      let s = try start.converted(to: .double).elements(Double.self)[0]
      let l = try limit.converted(to: .double).elements(Double.self)[0]
      let d = try delta.converted(to: .double).elements(Double.self)[0]
      guard d != 0, s.isFinite, l.isFinite, d.isFinite else { throw c.fail("start, limit and delta must be finite and delta non-zero") }
      let steps = ((l - s) / d).rounded(.up)
      guard steps < 9.0e15 else { throw c.fail("the range would have \(steps) elements") }
      let n = Swift.max(0, Int(steps))
      try NDArray.checkAllocation([n], start.dataType, c)
      return [try NDArray(doubles: (0..<n).map { s + Double($0) * d }, as: start.dataType, shape: [n])]
    },
  ]
}

/// Cast and CastLike: `saturate` (float8) and `round_mode` (float8e8m0) apply to the narrow types.
/// Element 0 of a one-element int64 or int32 tensor, read in place.
private func onlyInteger(_ t: NDArray?) -> Int? {
  guard let t, t.shape.allSatisfy({ $0 == 1 }) else { return nil }
  switch t.dataType {
  case .int64: return t.elements(Int64.self).first.map { Int(clamping: $0) }
  case .int32: return t.elements(Int32.self).first.map { Int($0) }
  default: return nil
  }
}

/// Slice (opset 10 and later) along one axis with step 1 — what exporters write for x[:, a:b]
/// and the shape arithmetic around recurrent layers — without the per-axis arrays and the
/// odometer of the general case. Nil for anything else.
private func sliceOneAxis(_ c: KernelContext, _ x: NDArray) throws -> NDArray? {
  guard x.dataType != .string, let start = onlyInteger(c.optionalInput(1)), let end = onlyInteger(c.optionalInput(2)) else { return nil }
  let axisInput = c.optionalInput(3), stepInput = c.optionalInput(4)
  guard (stepInput == nil || onlyInteger(stepInput) == 1) else { return nil }
  var axis = 0
  if axisInput != nil {
    guard let a = onlyInteger(axisInput) else { return nil }
    axis = a
  }
  axis = try c.axis(axis, rank: x.rank)
  let n = x.shape[axis]
  let b = Swift.min(Swift.max(start < 0 ? start + n : start, 0), n)
  let e = Swift.min(Swift.max(end < 0 ? end + n : end, 0), n)
  if b == 0 && e == n { return x }
  var shape = x.shape
  shape[axis] = Swift.max(e - b, 0)
  var out = NDArray(uninitialized: x.dataType, shape)
  var outer = 1, inner = x.elementWidth
  for d in 0..<axis { outer *= x.shape[d] }
  for d in (axis + 1)..<x.rank { inner *= x.shape[d] }
  let run = shape[axis] * inner
  if run > 0, let src = x.storage.base {
    let dst = out.mutableBytes()
    for o in 0..<outer { (dst + o * run).copyMemory(from: src + (o * n + b) * inner, byteCount: run) }
  }
  return out
}

private func cast(_ c: KernelContext, _ x: NDArray, to: DataType) throws -> NDArray {
  if to == x.dataType { return x }
  if to == .string || x.dataType == .string { throw c.unsupported("casts to or from string are not supported") }
  guard to.isKnown, to != .undefined, to != .complex64, to != .complex128 else { throw c.unsupported("casts to \(to) are not supported") }
  if to.isNarrow || x.dataType.isNarrow {
    return try x.narrowConverted(to: to, saturate: c.int("saturate", 1) != 0, roundMode: c.string("round_mode", "up"))
  }
  return try x.converted(to: to)
}

private func concatenate(_ parts: [NDArray], axis: Int, like x: NDArray) throws -> NDArray {
  var shape = x.shape
  shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
  var out = NDArray(uninitialized: x.dataType, shape)
  let width = x.elementWidth, outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
  let dst = out.mutableBytes()
  var offset = 0
  for o in 0..<outer {
    for p in parts {
      let n = p.shape[axis] * inner * width
      if n > 0, let src = p.storage.base { (dst + offset).copyMemory(from: src + o * n, byteCount: n) }
      offset += n
    }
  }
  return out
}

extension NDArray {
  init(bools: [Bool], shape: [Int]) {
    self = NDArray(bools.map { UInt8($0 ? 1 : 0) }, shape: shape).reinterpreted(as: .bool)
  }

  /// Where an empty tensor's bytes "are": never read or written, only offset by 0.
  static let emptyBytes = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)

  /// Bytes per element (1 for sub-byte types, which these kernels do not move).
  var elementWidth: Int { Swift.max(1, (dataType.bitWidth ?? 8) / 8) }

  /// Writable raw bytes (the storage is made unique first).
  mutating func mutableBytes() -> UnsafeMutableRawPointer {
    let p = mutableElements(UInt8.self).baseAddress
    return p.map { UnsafeMutableRawPointer($0) } ?? NDArray.emptyBytes
  }

  /// (batch, rows, columns) when the permutation, once size-1 axes are dropped and input axes that
  /// stay neighbours are merged, is a batch of row-major matrices transposed: [1, 96, 56, 56] by
  /// [0, 2, 3, 1] is one 96 × 3136 matrix.
  private func batchedMatrixTranspose(_ shape: [Int], _ perm: [Int]) -> (Int, Int, Int)? {
    var groups = [[Int]]()
    for a in perm where shape[a] != 1 {
      if let last = groups.last?.last, a == last + 1 { groups[groups.count - 1].append(a) } else { groups.append([a]) }
    }
    let size = groups.map { $0.reduce(1) { $0 * shape[$1] } }
    // groups are in output order; [1, 0] swaps two groups, [0, 2, 1] keeps the first in front.
    if groups.count == 2 && groups[0][0] > groups[1][0] { return (1, size[1], size[0]) }
    if groups.count == 3 && groups[0][0] < groups[2][0] && groups[2][0] < groups[1][0] { return (size[0], size[2], size[1]) }
    return nil
  }

  func transposed(_ perm: [Int]) -> NDArray {
    let outShape = perm.map { shape[$0] }
    var out = NDArray(uninitialized: dataType, outShape)
    let width = elementWidth, inStrides = strides(shape), outStrides = strides(outShape)
    if dataType == .string {
      for o in 0..<count {
        var rest = o, i = 0
        for d in 0..<rank { let idx = rest / outStrides[d]; rest %= outStrides[d]; i += idx * inStrides[perm[d]] }
        out.strings[o] = strings[i]
      }
      return out
    }
    guard let src = storage.base else { return out }
    let dst = out.mutableBytes()
    if let last = perm.last, last == rank - 1, rank >= 2 {
      // The last axis stays last: copy whole rows.
      let row = shape[rank - 1] * width, rows = count / max(shape[rank - 1], 1)
      var cursor = StridedCursor(shape: Array(outShape.dropLast()), strides: perm.dropLast().map { inStrides[$0] * width })
      for r in 0..<rows {
        (dst + r * row).copyMemory(from: src + cursor.offset, byteCount: row)
        cursor.advance()
      }
      return out
    }
    if width == 4, let (batch, rows, columns) = batchedMatrixTranspose(shape, perm) {
      // A batch of matrices transposed (NCHW ⇄ NHWC): 16×16 tiles, so that both the reads and the
      // writes of a tile stay within a few cache lines.
      let s4 = src.assumingMemoryBound(to: UInt32.self), d4 = dst.assumingMemoryBound(to: UInt32.self)
      let tileRows = (rows + 15) / 16
      Parallel.forEach(batch * tileRows, costPerItem: 16 * columns) { part in
        for job in part {
          let b = job / tileRows, i0 = (job % tileRows) * 16, i1 = Swift.min(rows, i0 + 16)
          let from = s4 + b * rows * columns, to = d4 + b * rows * columns
          var j0 = 0
          while j0 < columns {
            let j1 = Swift.min(columns, j0 + 16)
            for i in i0..<i1 {
              for j in j0..<j1 { to[j * rows + i] = from[i * columns + j] }
            }
            j0 = j1
          }
        }
      }
      return out
    }
    var cursor = StridedCursor(shape: outShape, strides: perm.map { inStrides[$0] })
    if width == 4 {
      // 4-byte elements (float, int32): a typed loop instead of a byte copy per element.
      let s4 = src.assumingMemoryBound(to: UInt32.self), d4 = dst.assumingMemoryBound(to: UInt32.self)
      for o in 0..<count {
        d4[o] = s4[cursor.offset]
        cursor.advance()
      }
      return out
    }
    for o in 0..<count {
      (dst + o * width).copyMemory(from: src + cursor.offset * width, byteCount: width)
      cursor.advance()
    }
    return out
  }

  func broadcast(to target: [Int]) -> NDArray {
    var out = NDArray(uninitialized: dataType, target)
    let width = elementWidth
    if dataType == .string {
      broadcastRows(target, [shape]) { o, offs, st, n in
        var i = offs[0]
        for k in 0..<n { out.strings[o + k] = strings[i]; i += st[0] }
      }
      return out
    }
    guard let src = storage.base else { return out }
    let dst = out.mutableBytes()
    broadcastRows(target, [shape]) { o, offs, st, n in
      var i = offs[0]
      for k in 0..<n {
        (dst + (o + k) * width).copyMemory(from: src + i * width, byteCount: width)
        i += st[0]
      }
    }
    return out
  }

  /// numpy-style slicing with clamped starts/ends and any non-zero steps.
  func slice(axes: [Int], starts: [Int], ends: [Int], steps: [Int]) throws -> NDArray {
    var begin = [Int](repeating: 0, count: rank), step = [Int](repeating: 1, count: rank), outShape = shape
    for (k, a) in axes.enumerated() {
      let n = shape[a], s = steps[k]
      var b = starts[k] < 0 ? starts[k] + n : starts[k]
      var e = ends[k] < 0 ? ends[k] + n : ends[k]
      if s > 0 {
        b = Swift.min(Swift.max(b, 0), n)
        e = Swift.min(Swift.max(e, 0), n)
        outShape[a] = e > b ? 1 + (e - b - 1) / s : 0
      } else {
        b = Swift.min(Swift.max(b, -1), n - 1)
        e = Swift.min(Swift.max(e, -1), n - 1)
        // Int.min has no negation: its magnitude clamped is as good a stride past the end.
        outShape[a] = b > e ? 1 + (b - e - 1) / Int(clamping: s.magnitude) : 0
      }
      begin[a] = b
      // One element (or none) taken: the step never moves, and a huge one must not overflow the
      // offsets computed with it.
      step[a] = outShape[a] > 1 ? s : 1
    }
    var out = NDArray(uninitialized: dataType, outShape)
    let inStrides = strides(shape), outStrides = strides(outShape), width = elementWidth
    let dst = out.mutableBytes()
    if dataType != .string, let src = storage.base, out.count > 0 {
      // Trailing axes taken whole, and the innermost sliced axis when its step is 1, are one
      // contiguous run; the axes before them are walked with an odometer, one copy per run.
      var run = 1, d = rank - 1
      while d >= 0 && begin[d] == 0 && step[d] == 1 && outShape[d] == shape[d] { run *= shape[d]; d -= 1 }
      if d >= 0 && step[d] == 1 { run *= outShape[d]; d -= 1 }
      // A step along the last axis (YOLOX's space-to-depth slices, x[..., ::2, ::2]): each run is
      // that axis's elements gathered with the step, not one copy call per element.
      var gather = 0
      if run == 1 && d == rank - 1 && outShape[d] > 1 { run = outShape[d]; gather = step[d]; d -= 1 }
      let runBytes = run * width
      var index = [Int](repeating: 0, count: Swift.max(d + 1, 0))
      var offset = 0
      for a in 0..<rank { offset += begin[a] * inStrides[a] }
      var o = 0
      while o < out.count {
        if gather == 0 {
          (dst + o * width).copyMemory(from: src + offset * width, byteCount: runBytes)
        } else if width == 4 {
          let from = UnsafeRawPointer(src + offset * 4), to = UnsafeMutableRawPointer(dst + o * 4)
          for i in 0..<run { to.storeBytes(of: from.loadUnaligned(fromByteOffset: i * gather * 4, as: UInt32.self), toByteOffset: i * 4, as: UInt32.self) }
        } else {
          for i in 0..<run { (dst + (o + i) * width).copyMemory(from: src + (offset + i * gather) * width, byteCount: width) }
        }
        o += run
        var a = d
        while a >= 0 {
          index[a] += 1
          offset += step[a] * inStrides[a]
          if index[a] < outShape[a] { break }
          offset -= index[a] * step[a] * inStrides[a]
          index[a] = 0
          a -= 1
        }
      }
      return out
    }
    for o in 0..<out.count {
      var rest = o, i = 0
      for d in 0..<rank {
        let idx = rest / outStrides[d]
        rest %= outStrides[d]
        i += (begin[d] + idx * step[d]) * inStrides[d]
      }
      if dataType == .string { out.strings[o] = strings[i] } else if let src = storage.base {
        (dst + o * width).copyMemory(from: src + i * width, byteCount: width)
      }
    }
    return out
  }
}
