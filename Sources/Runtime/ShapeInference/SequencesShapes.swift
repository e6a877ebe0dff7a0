import IR

/// Sequences and optionals. A sequence is tracked tensor by tensor while their number is known
/// (SequenceConstruct, SplitToSequence of a known length, insertions and erasures at known
/// positions), else as its length and what holds of every tensor; an optional as what it holds,
/// or as known to be empty. Neither has a type or shape of its own: other rules, and the report,
/// see them as unknown values. SequenceAt, ConcatFromSequence and OptionalGetElement give
/// tensors again; SequenceLength and OptionalHasElement give known scalars where they can.
extension ShapeRules {
  /// The most positions over which SequenceMap's body is inferred one by one.
  static let unrolledLimit = 16

  static let sequences: [String: ShapeRule] = [
    "SequenceConstruct": { c in
      let tensors = (0..<c.inputCount).map { c.input($0) }
      guard !tensors.isEmpty else { throw c.fail("a sequence needs at least one tensor") }
      let types = Set(tensors.compactMap(\.type))
      guard types.count <= 1 else { throw c.fail("the tensors have different element types (\(tensors.compactMap(\.type)))") }
      return [.sequence(InferredSequence(tensors, elementType: types.first))]
    },
    "SequenceEmpty": { c in [.sequence(InferredSequence([], elementType: try c.dataType("dtype", .float)))] },
    "SequenceInsert": { c in
      let t = c.input(1)
      guard let s = c.sequence(0) else {
        return [.sequence(InferredSequence(element: InferredTensor(type: t.type, shape: nil), length: nil))]
      }
      if let a = s.element.type, let b = t.type, a != b, let k = s.length?.constant, k > 0 {
        throw c.fail("a \(b) tensor cannot join a sequence of \(a)")
      }
      if var tensors = s.tensors {
        let at = c.has(2) ? try position(c, 2, count: tensors.count, inclusiveEnd: true) : tensors.count
        if let at {
          tensors.insert(t, at: at)
          return [.sequence(InferredSequence(tensors, elementType: t.type ?? s.element.type))]
        }
      }
      var element = s.length?.constant == 0 ? t.typeAndShape : InferredSequence.common(s.element, t)
      element.type = t.type ?? s.element.type
      return [.sequence(InferredSequence(element: element, length: try s.length.map { try $0 + 1 }))]
    },
    "SequenceAt": { c in
      guard let s = c.sequence(0) else { return [.unknown] }
      if s.length?.constant == 0 { throw c.fail("the sequence is empty") }
      if let tensors = s.tensors {
        if let at = try position(c, 1, count: tensors.count, inclusiveEnd: false) { return [tensors[at]] }
      }
      return [s.element]
    },
    "SequenceErase": { c in
      guard let s = c.sequence(0) else { return [.unknown] }
      if s.length?.constant == 0 { throw c.fail("cannot erase from an empty sequence") }
      if var tensors = s.tensors {
        if let at = c.has(1) ? try position(c, 1, count: tensors.count, inclusiveEnd: false) : tensors.count - 1 {
          tensors.remove(at: at)
          return [.sequence(InferredSequence(tensors, elementType: s.element.type))]
        }
      }
      return [.sequence(InferredSequence(element: s.element, length: try s.length.map { try $0 - 1 }))]
    },
    "SequenceLength": { c in
      let length: DimExpr? = c.sequence(0)?.length
      return [InferredTensor(type: .int64, shape: [], elements: length.map { [$0] })]
    },
    "SplitToSequence": { c in [.sequence(try splitToSequence(c))] },
    "ConcatFromSequence": { c in [try concatFromSequence(c)] },
    "SequenceMap": { c in try sequenceMap(c) },
    "Optional": { c in [.optional(c.has(0) ? c.input(0) : nil)] },
    "OptionalGetElement": { c in
      let x = c.input(0)
      switch x.container {
      case .optional(let content?)?: return [content]
      case .optional(nil)?: throw c.fail("the optional input has no value")
      case .maybe(let content)?: return [content]
      // Opset 18 accepts a tensor or a sequence and returns it; an unknown value stays unknown.
      default: return [x]
      }
    },
    "OptionalHasElement": { c in
      var has: Bool?
      if !c.has(0) {
        has = false
      } else {
        let x = c.input(0)
        switch x.container {
        case .optional(let content)?: has = content != nil
        case .maybe?: has = nil
        case .sequence?: has = true
        case nil: has = x.type != nil || x.shape != nil ? true : nil
        }
      }
      let value: [DimExpr?]? = has.map { [DimExpr($0 ? 1 : 0)] }
      return [InferredTensor(type: .bool, shape: [], elements: value)]
    },
  ]
}

/// Position input `i` of a sequence op as an index into `count` tensors (up to `count` for an
/// insertion); nil when its value is unknown.
private func position(_ c: ShapeContext, _ i: Int, count: Int, inclusiveEnd: Bool) throws -> Int? {
  guard let e = c.elements(i), e.count == 1, let p = e[0]?.constant else { return nil }
  let limit = inclusiveEnd ? count : count - 1
  guard p >= -count && p <= limit else { throw c.fail("position \(p) is out of range for a sequence of \(count) tensors") }
  return p < 0 ? p + count : p
}

/// SplitToSequence: pieces of the split lengths (a list, or a scalar chunk length with a
/// shorter last piece), or of length 1 without `split` (the axis removed when keepdims = 0).
private func splitToSequence(_ c: ShapeContext) throws -> InferredSequence {
  let x = c.input(0)
  guard let shape = x.shape else { return InferredSequence(element: InferredTensor(type: x.type, shape: nil), length: nil) }
  guard !shape.isEmpty else { throw c.fail("a scalar cannot be split") }
  let axis = try c.axis(c.int("axis", 0), rank: shape.count)
  let n = shape[axis]
  func piece(_ size: DimExpr?) -> InferredTensor {
    var s = shape
    s[axis] = size
    return InferredTensor(type: x.type, shape: s)
  }
  /// Pieces of these sizes, one by one while they are few enough to list.
  func pieces(_ sizes: [DimExpr?]) -> InferredSequence {
    sizes.count <= ShapeEngine.elementLimit ? InferredSequence(sizes.map(piece), elementType: x.type)
                                            : InferredSequence(element: piece(nil), length: DimExpr(sizes.count))
  }
  guard c.has(1) else {
    var one = shape
    if c.int("keepdims", 1) == 0 { one.remove(at: axis) } else { one[axis] = 1 }
    let element = InferredTensor(type: x.type, shape: one)
    if let k = n?.constant, k <= ShapeEngine.elementLimit {
      return InferredSequence(Array(repeating: element, count: k), elementType: x.type)
    }
    return InferredSequence(element: element, length: n)
  }
  if c.rank(1) == 0 {
    guard let e = c.elements(1), e.count == 1, let chunk = e[0]?.constant else {
      return InferredSequence(element: piece(nil), length: nil)
    }
    guard chunk > 0 else { throw c.fail("the split length must be positive, it is \(chunk)") }
    guard let n else { return InferredSequence(element: piece(nil), length: nil) }
    let count = try DimExpr.ceilDiv(n, DimExpr(chunk))
    if let total = n.constant, let k = count.constant, k <= ShapeEngine.elementLimit {
      return pieces((0..<k).map { DimExpr(Swift.min(chunk, total - $0 * chunk)) })
    }
    // The last piece may be shorter.
    let even = chunk == 1 || n.constant.map { $0 % chunk == 0 } == true
    return InferredSequence(element: piece(even ? DimExpr(chunk) : nil), length: count)
  }
  if let sizes = c.elements(1) {
    if let total = n?.constant, sizes.allSatisfy({ $0?.constant != nil }) {
      let values = sizes.compactMap { $0?.constant }
      guard values.allSatisfy({ $0 >= 0 }), values.reduce(0, +) == total else {
        throw c.fail("split lengths \(values) do not add up to \(total)")
      }
    }
    return pieces(sizes)
  }
  return InferredSequence(element: piece(nil), length: c.length(1).map { DimExpr($0) })
}

/// ConcatFromSequence: Concat of the tensors along `axis`, or with new_axis = 1 their stack
/// (axis then ranges over the result's rank).
private func concatFromSequence(_ c: ShapeContext) throws -> InferredTensor {
  guard let s = c.sequence(0) else { return .unknown }
  let type = s.element.type
  let stack = c.int("new_axis", 0) == 1
  if let tensors = s.tensors {
    guard !tensors.isEmpty else { throw c.fail("the sequence is empty") }
    if tensors.allSatisfy({ $0.shape != nil }), let rank = tensors[0].shape?.count {
      let axis = try c.axis(c.int("axis", 0), rank: stack ? rank + 1 : rank)
      let parts = tensors.map { t -> InferredTensor in
        guard stack, var shape = t.shape else { return t.typeAndShape }
        shape.insert(DimExpr(1), at: Swift.min(axis, shape.count))
        return InferredTensor(type: t.type, shape: shape)
      }
      return try concatShape(c, parts, axis: axis)
    }
  }
  guard var shape = s.element.shape else { return InferredTensor(type: type, shape: nil) }
  let axis = try c.axis(c.int("axis", 0), rank: stack ? shape.count + 1 : shape.count)
  if stack {
    shape.insert(s.length, at: axis)
  } else {
    // Only a dimension every tensor shares is known, so the sum is length × it.
    shape[axis] = try zip2(s.length, shape[axis]).map { try $0 * $1 }
  }
  return InferredTensor(type: type, shape: shape)
}

/// SequenceMap: the body once per position (one by one when the sequences' tensors are known and
/// few, else once for what holds of every tensor); each body output collects into a sequence of
/// the inputs' length.
private func sequenceMap(_ c: ShapeContext) throws -> [InferredTensor] {
  let body = try c.graph("body")
  let sequences = (0..<c.inputCount).map { c.sequence($0) }
  var length: DimExpr?
  for s in sequences.compactMap({ $0 }) {
    length = try c.same(length, s.length, "the sequences' lengths")
  }
  let listed = sequences.compactMap { $0?.tensors }
  if sequences.first.flatMap({ $0 }) != nil, listed.count == sequences.compactMap({ $0 }).count,
     let count = length?.constant, count <= ShapeRules.unrolledLimit, listed.allSatisfy({ $0.count == count }) {
    var collected = [[InferredTensor]](repeating: [], count: body.outputs.count)
    for p in 0..<count {
      let feeds = (0..<c.inputCount).map { i in sequences[i]?.tensors?[p] ?? c.input(i) }
      let outs = try c.inferSubgraph(body, inputs: feeds)
      for (k, o) in outs.enumerated() where k < collected.count { collected[k].append(o) }
    }
    return zip(body.outputs, collected).map { info, tensors in
      .sequence(InferredSequence(tensors, elementType: tensors.first?.type ?? ShapeEngine.declared(info).type))
    }
  }
  let feeds = (0..<c.inputCount).map { i in sequences[i]?.element ?? c.input(i) }
  let outs = try c.inferSubgraph(body, inputs: feeds)
  return outs.map { .sequence(InferredSequence(element: $0, length: length)) }
}
