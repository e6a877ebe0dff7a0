import IR

/// Operators that move or reinterpret elements: the shape arithmetic of exported models runs
/// through them (`Shape → Gather → Unsqueeze → Concat → Reshape`), so each also carries the
/// values of small integer tensors, symbolic where they come from a symbolic shape.
extension ShapeRules {
  static let shapeOps: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    r["Identity"] = { c in [c.input(0)] }
    r["Dropout"] = { c in
      let x = c.input(0)
      // The mask is bool from opset 10; before, it had the input's type.
      return [x, InferredTensor(type: c.opset >= 10 ? .bool : x.type, shape: x.shape)]
    }
    r["Shape"] = { c in
      guard let shape = c.shape(0) else { return [InferredTensor(type: .int64, shape: [nil])] }
      var dims = shape
      if c.opset >= 15 {
        func clamp(_ a: Int) -> Int { Swift.min(Swift.max(a < 0 ? a + shape.count : a, 0), shape.count) }
        let start = clamp(c.int("start", 0)), end = clamp(c.int("end", shape.count))
        dims = start < end ? Array(shape[start..<end]) : []
      }
      return [InferredTensor(type: .int64, shape: [DimExpr(dims.count)], elements: dims)]
    }
    r["Size"] = { c in
      let n = c.input(0).elementCount
      return [InferredTensor(type: .int64, shape: [], elements: [n])]
    }
    r["Reshape"] = { c in [try reshape(c)] }
    r["Flatten"] = { c in
      let x = c.input(0)
      guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: [nil, nil])] }
      let axis = c.int("axis", 1)
      let a = axis < 0 ? axis + shape.count : axis
      guard a >= 0 && a <= shape.count else { throw c.fail("axis \(axis) is out of range for rank \(shape.count)") }
      return [InferredTensor(type: x.type, shape: [try product(shape[..<a]), try product(shape[a...])], elements: x.elements)]
    }
    r["Transpose"] = { c in
      let x = c.input(0)
      guard let shape = x.shape else {
        return [InferredTensor(type: x.type, shape: c.ints("perm").map { Array(repeating: nil, count: $0.count) })]
      }
      let perm = c.ints("perm") ?? Array((0..<shape.count).reversed())
      guard perm.sorted() == Array(0..<shape.count) else { throw c.fail("perm \(perm) is not a permutation of 0..<\(shape.count)") }
      return [InferredTensor(type: x.type, shape: perm.map { shape[$0] }, elements: shape.count <= 1 ? x.elements : nil)]
    }
    r["Squeeze"] = { c in [try squeeze(c)] }
    r["Unsqueeze"] = { c in
      let x = c.input(0)
      let axes = c.opset >= 13 ? c.inputInts(1) : c.ints("axes")
      guard let shape = x.shape, let axes else {
        // Axes not known: only the rank is.
        let count = c.opset >= 13 ? c.length(1) : nil
        return [InferredTensor(type: x.type, shape: c.unknownDims(zip2(x.rank, count).map { $0 + $1 }), elements: x.elements)]
      }
      let rank = shape.count + axes.count
      let inserted = Set(try axes.map { try c.axis($0, rank: rank) })
      guard inserted.count == axes.count else { throw c.fail("axes \(axes) repeat") }
      var out = [DimExpr?](), rest = shape.makeIterator()
      for i in 0..<rank { out.append(inserted.contains(i) ? DimExpr(1) : (rest.next() ?? nil)) }
      return [InferredTensor(type: x.type, shape: out, elements: x.elements)]
    }
    r["Concat"] = { c in [try concat(c)] }
    r["Split"] = { c in try split(c) }
    r["Slice"] = { c in [try slice(c)] }
    r["Gather"] = { c in [try gather(c)] }
    r["Expand"] = { c in
      let x = c.input(0)
      let target: [DimExpr?]
      if let e = c.elements(1) {
        target = e
      } else if let k = c.unknownDims(c.length(1)) {
        target = k
      } else {
        return [InferredTensor(type: x.type, shape: nil)]
      }
      // A target dimension of 1 keeps the input's: broadcasting in both directions.
      return [InferredTensor(type: x.type, shape: try c.broadcast([x.shape, target]))]
    }
    r["Tile"] = { c in
      let x = c.input(0)
      guard let shape = x.shape else { return [InferredTensor(type: x.type, shape: nil)] }
      guard let reps = c.elements(1) else { return [InferredTensor(type: x.type, shape: shape.map { _ in nil })] }
      guard reps.count == shape.count else { throw c.fail("\(reps.count) repeats for rank \(shape.count)") }
      return [InferredTensor(type: x.type, shape: try zip(shape, reps).map { d, k in
        guard let d, let k else { return nil }
        return try d * k
      })]
    }
    r["Cast"] = { c in
      let to = try c.dataType("to", .undefined)
      return [InferredTensor(type: to, shape: c.shape(0), elements: cast(c.elements(0), to: to))]
    }
    r["CastLike"] = { c in [InferredTensor(type: c.type(1), shape: c.shape(0), elements: c.type(1).flatMap { cast(c.elements(0), to: $0) })] }
    r["Constant"] = { c in
      guard let a = c.node.attributes.first else { throw c.fail("no value attribute") }
      switch a.value {
      case .tensor(let t): return [InferredTensor(type: t.dataType, shape: t.dims.map { DimExpr(Int(clamping: $0)) })]
      case .sparseTensor(let s): return [InferredTensor(type: s.values.dataType, shape: s.dims.map { DimExpr(Int(clamping: $0)) })]
      case .float: return [InferredTensor(type: .float, shape: [])]
      case .floats(let f): return [InferredTensor(type: .float, shape: [DimExpr(f.count)])]
      case .int(let i): return [InferredTensor(type: .int64, shape: [], elements: [DimExpr(Int(clamping: i))])]
      case .ints(let i): return [InferredTensor(type: .int64, shape: [DimExpr(i.count)], elements: i.map { DimExpr(Int(clamping: $0)) })]
      case .string: return [InferredTensor(type: .string, shape: [])]
      case .strings(let s): return [InferredTensor(type: .string, shape: [DimExpr(s.count)])]
      default: throw c.fail("unsupported value attribute '\(a.name)'")
      }
    }
    r["ConstantOfShape"] = { c in
      let value = c.node.attribute("value")?.tensor
      let type = value?.dataType ?? .float
      guard let dims = c.elements(0) else {
        return [InferredTensor(type: type, shape: c.unknownDims(c.length(0)))]
      }
      for d in dims { if let k = d?.constant, k < 0 { throw c.fail("shape \(dims.map { $0?.description ?? "?" }) has a negative dimension") } }
      var out = InferredTensor(type: type, shape: dims)
      if let fill = (try? value.map { try NDArray($0) } ?? NDArray([Float(0)], shape: [1])).flatMap({ InferredTensor.elements(of: $0)?.first ?? nil }),
         let n = out.elementCount?.constant, n <= ShapeEngine.elementLimit {
        out.elements = Array(repeating: fill, count: n)
      }
      return [out]
    }
    r["Range"] = { c in
      let type = c.type(0)
      guard let start = c.elements(0)?.first ?? nil, let limit = c.elements(1)?.first ?? nil,
            let delta = c.elements(2)?.first ?? nil, let step = delta.constant, step != 0 else {
        return [InferredTensor(type: type, shape: [c.fresh("range")])]
      }
      let n = try DimExpr.max(DimExpr.ceilDiv(limit - start, delta), 0)
      var values: [DimExpr?]?
      if let k = n.constant, k <= ShapeEngine.elementLimit {
        values = try (0..<k).map { try start + DimExpr($0) * delta }
      }
      return [InferredTensor(type: type, shape: [n], elements: values)]
    }
    return r
  }()
}

/// Integer values converted to `type`: nonzero is 1 in bool; an element stays known where the type
/// holds it exactly (a symbolic size fits 32-bit integers and float, not float16 or int8).
private func cast(_ values: [DimExpr?]?, to type: DataType) -> [DimExpr?]? {
  guard let values, type != .string else { return nil }
  if type == .bool { return values.map { $0.flatMap(truth).map { DimExpr($0 ? 1 : 0) } } }
  let exact: ClosedRange<Int>
  switch type {
  case .int64, .uint64, .double: exact = Int.min...Int.max
  case .int32: exact = Int(Int32.min)...Int(Int32.max)
  case .uint32: exact = 0...Int(UInt32.max)
  case .float: exact = -(1 << 24)...(1 << 24)
  case .float16: exact = -2048...2048
  case .bfloat16: exact = -256...256
  case .int16: exact = -32768...32767
  case .uint16: exact = 0...65535
  case .int8: exact = -128...127
  case .uint8: exact = 0...255
  default: return nil
  }
  return values.map { v in
    guard let v else { return nil }
    if let k = v.constant { return exact.contains(k) ? v : nil }
    // Sizes (symbols are below 2³¹) survive 32-bit integers, and float as shape arithmetic uses it.
    return exact.upperBound >= 1 << 24 ? v : nil
  }
}

/// The product of dimensions, nil when one is unknown.
func product<C: Collection>(_ dims: C) throws -> DimExpr? where C.Element == DimExpr? {
  var p: DimExpr = 1
  for d in dims {
    guard let d else { return nil }
    p = try p * d
  }
  return p
}

private func describe(_ dims: [DimExpr?]) -> String { "[" + dims.map { $0?.description ?? "?" }.joined(separator: ", ") + "]" }

/// Reshape: 0 copies the input's dimension (unless allowzero), -1 takes what is left; with no
/// -1, a single unknown target dimension is found the same way.
private func reshape(_ c: ShapeContext) throws -> InferredTensor {
  let x = c.input(0)
  let target: [DimExpr?]
  if c.opset < 5 {
    guard let s = c.ints("shape") else { throw c.fail("the shape attribute is missing") }
    target = s.map { DimExpr($0) }
  } else if let e = c.elements(1) {
    target = e
  } else {
    return InferredTensor(type: x.type, shape: c.unknownDims(c.length(1)), elements: x.elements)
  }
  let allowZero = c.int("allowzero", 0) != 0
  var out = [DimExpr?](), inferred: Int?, unknown = [Int]()
  for (i, t) in target.enumerated() {
    guard let t else { out.append(nil); unknown.append(i); continue }
    switch t.constant {
    case .some(0) where !allowZero:
      guard let shape = x.shape else { out.append(nil); unknown.append(i); continue }
      guard i < shape.count else { throw c.fail("cannot copy dimension \(i) of a rank-\(shape.count) input") }
      out.append(shape[i])
      if shape[i] == nil { unknown.append(i) }
    case .some(-1):
      guard inferred == nil else { throw c.fail("the shape \(describe(target)) has more than one -1") }
      inferred = i
      out.append(nil)
    case .some(let k) where k < -1: throw c.fail("the shape \(describe(target)) has a negative dimension")
    default: out.append(t)
    }
  }
  let missing = inferred.map { unknown.isEmpty ? $0 : nil } ?? (unknown.count == 1 ? unknown[0] : nil)
  if let m = missing, let total = x.elementCount {
    let known = try product(out.enumerated().filter { $0.offset != m }.map(\.element)) ?? 1
    if let t = total.constant, let k = known.constant {
      guard k > 0 ? t % k == 0 : t == 0 else { throw c.fail("cannot reshape \(describe(x.shape ?? [])) to \(describe(target))") }
      out[m] = k > 0 ? DimExpr(t / k) : nil
    } else if known.constant != 0 {
      out[m] = try DimExpr.floorDiv(total, known)
    }
  }
  if let t = x.elementCount?.constant, let p = try product(out)?.constant, p != t {
    throw c.fail("cannot reshape \(describe(x.shape ?? [])) to \(describe(target))")
  }
  return InferredTensor(type: x.type, shape: out, elements: x.elements)
}

private func squeeze(_ c: ShapeContext) throws -> InferredTensor {
  let x = c.input(0)
  let axes: [Int]?
  if c.opset >= 13 {
    if c.has(1) {
      guard let a = c.inputInts(1) else {
        let count = c.length(1)
        return InferredTensor(type: x.type, shape: c.unknownDims(zip2(x.rank, count).map { $0 - $1 }), elements: x.elements)
      }
      axes = a
    } else {
      axes = nil
    }
  } else {
    axes = c.ints("axes")
  }
  guard let shape = x.shape else { return InferredTensor(type: x.type, shape: nil, elements: x.elements) }
  let drop: Set<Int>
  if let axes {
    drop = Set(try axes.map { try c.axis($0, rank: shape.count) })
    for a in drop { if let k = shape[a]?.constant, k != 1 { throw c.fail("cannot squeeze axis \(a) of size \(k)") } }
  } else {
    // Without axes every dimension of 1 goes; an unknown one may be 1 or not.
    if shape.contains(where: { $0 == nil }) { return InferredTensor(type: x.type, shape: nil, elements: x.elements) }
    drop = Set(shape.indices.filter { shape[$0]?.constant == 1 })
  }
  return InferredTensor(type: x.type, shape: shape.indices.filter { !drop.contains($0) }.map { shape[$0] }, elements: x.elements)
}

private func concat(_ c: ShapeContext) throws -> InferredTensor {
  let parts = (0..<c.inputCount).map { c.input($0) }
  let type = parts.lazy.compactMap(\.type).first
  guard let rank = parts.lazy.compactMap(\.rank).first else { return InferredTensor(type: type, shape: nil) }
  // Concat-1 concatenated along axis 1 by default; from opset 4 the axis is required.
  let axis = try c.axis(c.int("axis", c.opset < 4 ? 1 : 0), rank: rank)
  return try concatShape(c, parts, axis: axis)
}

/// `parts` concatenated along `axis` (normalized for their rank): the other dimensions must
/// agree; small 1-D values are concatenated too.
func concatShape(_ c: ShapeContext, _ parts: [InferredTensor], axis: Int) throws -> InferredTensor {
  let type = parts.lazy.compactMap(\.type).first
  guard let rank = parts.lazy.compactMap(\.rank).first else { return InferredTensor(type: type, shape: nil) }
  guard axis >= 0 && axis < rank else { throw c.fail(rank == 0 ? "scalars do not concatenate" : "axis \(axis) is outside rank \(rank)") }
  var shape = [DimExpr?](repeating: nil, count: rank)
  var sum: DimExpr? = 0
  var first = true
  for p in parts {
    guard let s = p.shape else { sum = nil; continue }
    guard s.count == rank else { throw c.fail("inputs of ranks \(rank) and \(s.count) do not concatenate") }
    for d in 0..<rank where d != axis {
      shape[d] = first ? s[d] : try c.same(shape[d], s[d], "dimension \(d) of the inputs")
    }
    first = false
    sum = try sum.flatMap { total in try s[axis].map { try total + $0 } }
  }
  shape[axis] = sum
  var values: [DimExpr?]?
  if rank == 1 {
    values = []
    for p in parts {
      guard let e = p.elements, values != nil else { values = nil; break }
      values? += e
    }
  }
  return InferredTensor(type: type, shape: shape, elements: values)
}

private func split(_ c: ShapeContext) throws -> [InferredTensor] {
  let x = c.input(0)
  let outputs = c.node.outputs.count
  guard let shape = x.shape else { return Array(repeating: InferredTensor(type: x.type, shape: nil), count: outputs) }
  let axis = try c.axis(c.int("axis", 0), rank: shape.count)
  let dim = shape[axis]
  var sizes: [DimExpr?]
  if c.opset >= 13 || c.opset < 2, c.has(1) {
    sizes = c.elements(1) ?? Array(repeating: nil, count: outputs)
  } else if let s = c.ints("split") {
    sizes = s.map { DimExpr($0) }
  } else {
    let n = c.opset >= 18 ? c.int("num_outputs", outputs) : outputs
    guard n > 0 && n <= Swift.max(outputs, 1) else { throw c.fail("cannot split into \(n) parts for \(outputs) outputs") }
    if let dim {
      // Equal parts, the last one smaller when the size does not divide (opset 18).
      let chunk = try DimExpr.ceilDiv(dim, DimExpr(n))
      let last = try dim - chunk * DimExpr(n - 1)
      sizes = (0..<n).map { $0 < n - 1 ? chunk : last }
    } else {
      sizes = Array(repeating: nil, count: n)
    }
  }
  if let d = dim?.constant {
    let known = sizes.compactMap { $0?.constant }
    var total = 0, overflow = false
    for k in known {
      let (sum, o) = total.addingReportingOverflow(k)
      total = sum
      overflow = overflow || o
    }
    if known.count == sizes.count && (overflow || total != d) { throw c.fail("split sizes \(known) do not add up to \(d)") }
  }
  var start = 0
  return sizes.map { size in
    var s = shape
    s[axis] = size
    var values: [DimExpr?]?
    if shape.count == 1, let e = x.elements, let n = size?.constant, start >= 0, n >= 0, n <= e.count - start {
      values = Array(e[start..<(start + n)])
      start += n
    } else {
      start = -1
    }
    return InferredTensor(type: x.type, shape: s, elements: values)
  }
}

private func slice(_ c: ShapeContext) throws -> InferredTensor {
  let x = c.input(0)
  guard let shape = x.shape else { return InferredTensor(type: x.type, shape: nil) }
  var starts: [DimExpr?], ends: [DimExpr?], axes: [Int]?, steps: [Int]?
  if c.opset < 10 {
    starts = (c.ints("starts") ?? []).map { DimExpr($0) }
    ends = (c.ints("ends") ?? []).map { DimExpr($0) }
    axes = c.ints("axes")
  } else {
    guard let s = c.elements(1), let e = c.elements(2) else {
      // The sliced axes are unknown: any dimension may change.
      return InferredTensor(type: x.type, shape: shape.map { _ in nil })
    }
    starts = s
    ends = e
    if c.has(3) {
      guard let a = c.inputInts(3) else { return InferredTensor(type: x.type, shape: shape.map { _ in nil }) }
      axes = a
    }
    if c.has(4) {
      guard let st = c.inputInts(4) else {
        var out = shape
        for a in try (axes ?? Array(0..<starts.count)).map({ try c.axis($0, rank: shape.count) }) { out[a] = nil }
        return InferredTensor(type: x.type, shape: out)
      }
      steps = st
    }
  }
  let ax = try (axes ?? Array(0..<starts.count)).map { try c.axis($0, rank: shape.count) }
  guard starts.count == ends.count, ax.count == starts.count else { throw c.fail("starts, ends and axes differ in length") }
  // Steps past any size act alike; clamped, they leave room for arithmetic.
  let st = (steps ?? Array(repeating: 1, count: starts.count)).map { Swift.min(Swift.max($0, -(1 << 40)), 1 << 40) }
  guard st.count == starts.count else { throw c.fail("steps and starts differ in length") }
  guard !st.contains(0) else { throw c.fail("a step is 0") }
  var out = shape
  var ranges = [(axis: Int, start: Int, step: Int, count: Int)]()
  for (k, a) in ax.enumerated() {
    guard let n = shape[a], let s = starts[k], let e = ends[k] else { out[a] = nil; continue }
    let (length, first) = try sliceLength(n: n, start: s, end: e, step: st[k])
    out[a] = length
    if let f = first?.constant, let l = length?.constant { ranges.append((a, f, st[k], l)) }
  }
  // Values of a sliced 1-D tensor (`Shape → Slice`).
  var values: [DimExpr?]?
  if shape.count == 1, let e = x.elements, ranges.count == ax.count {
    if let r = ranges.first {
      values = (0..<Swift.min(r.count, e.count + 1)).compactMap { i in
        let at = r.start + i * r.step
        return at >= 0 && at < e.count ? e[at] : nil
      }
      if values?.count != r.count { values = nil }
    } else {
      values = e
    }
  }
  return InferredTensor(type: x.type, shape: out, elements: values)
}

/// The length of a slice of a dimension n and where it starts, with ONNX's clamping of starts
/// and ends (negative ones count from the end).
func sliceLength(n: DimExpr, start: DimExpr, end: DimExpr, step: Int) throws -> (DimExpr?, DimExpr?) {
  func position(_ q: DimExpr) throws -> DimExpr? {
    // Sentinels such as INT64_MAX mean "to the end": past any size, and clamped so that they
    // leave room for arithmetic.
    let p = q.constant.map { DimExpr(Swift.min(Swift.max($0, -(1 << 62)), 1 << 62)) } ?? q
    let b = p.bounds
    if b.lowerBound >= 0 { return p }
    if b.upperBound < 0 { return try p + n }
    return nil
  }
  guard let s0 = try position(start), let e0 = try position(end) else { return (nil, nil) }
  // n is a size, never negative: clamping to it first often settles the clamp to 0.
  func clamp(_ p: DimExpr, _ low: DimExpr, _ high: DimExpr) throws -> DimExpr {
    let m = try DimExpr.min(p, high)
    return m == high ? high : try DimExpr.max(low, m)
  }
  if step > 0 {
    let s = try clamp(s0, 0, n), e = try clamp(e0, 0, n)
    let span = try DimExpr.ceilDiv(e - s, DimExpr(step))
    return (s == 0 && e == n ? span : try DimExpr.max(0, span), s)
  }
  let last = try n - 1
  let s = try clamp(s0, -1, last), e = try clamp(e0, -1, last)
  let span = try DimExpr.ceilDiv(s - e, DimExpr(-step))
  return (s == last && e == -1 ? span : try DimExpr.max(0, span), s)
}

private func gather(_ c: ShapeContext) throws -> InferredTensor {
  let x = c.input(0), idx = c.input(1)
  guard let shape = x.shape else { return InferredTensor(type: x.type, shape: nil) }
  guard !shape.isEmpty else { throw c.fail("a scalar has no axis to gather along") }
  let axis = try c.axis(c.int("axis", 0), rank: shape.count)
  guard let ishape = idx.shape else { return InferredTensor(type: x.type, shape: nil) }
  let out = Array(shape[..<axis]) + ishape + Array(shape[(axis + 1)...])
  var values: [DimExpr?]?
  if let indices = c.inputInts(1), let n = shape[axis]?.constant {
    for i in indices where i < -n || i >= n { throw c.fail("index \(i) is out of range for a dimension of \(n)") }
    if let e = x.elements, let dims = x.constantShape, e.count == numberOfElements(dims) {
      let outer = dims[..<axis].reduce(1, *), inner = dims[(axis + 1)...].reduce(1, *)
      var v = [DimExpr?]()
      for o in 0..<outer {
        for raw in indices {
          let i = raw < 0 ? raw + n : raw
          v += e[((o * n + i) * inner)..<((o * n + i + 1) * inner)]
        }
      }
      values = v
    }
  }
  return InferredTensor(type: x.type, shape: out, elements: values)
}
