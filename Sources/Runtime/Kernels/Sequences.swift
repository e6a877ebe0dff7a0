import IR
import Support

/// Sequences and optionals: SequenceConstruct, SequenceEmpty, SequenceInsert, SequenceAt,
/// SequenceErase, SequenceLength, SplitToSequence, ConcatFromSequence, SequenceMap, Optional,
/// OptionalGetElement, OptionalHasElement — and Identity, which passes any value through.
extension Kernels {
  static let sequences: [String: ValueKernel] = [
    "Identity": { c in [try c.value(0)] },
    "SequenceConstruct": { c in
      let tensors = try (0..<c.values.count).map { try c.tensor($0) }
      guard let first = tensors.first else { throw c.fail("a sequence needs at least one tensor") }
      guard tensors.allSatisfy({ $0.dataType == first.dataType }) else {
        throw c.fail("the tensors have different element types (\(tensors.map(\.dataType)))")
      }
      return [.sequence(TensorSequence(elementType: first.dataType, tensors: tensors))]
    },
    "SequenceEmpty": { c in
      [.sequence(TensorSequence(elementType: DataType(rawValue: Int32(truncatingIfNeeded: c.int("dtype", 1))), tensors: []))]
    },
    "SequenceInsert": { c in
      var s = try c.sequence(0)
      let t = try c.tensor(1)
      guard s.tensors.isEmpty || t.dataType == s.elementType else {
        throw c.fail("a \(t.dataType) tensor cannot join a sequence of \(s.elementType)")
      }
      let at = try position(c, 2, count: s.tensors.count, inclusiveEnd: true) ?? s.tensors.count
      s.tensors.insert(t, at: at)
      s.elementType = t.dataType
      return [.sequence(s)]
    },
    "SequenceAt": { c in
      let s = try c.sequence(0)
      guard let at = try position(c, 1, count: s.tensors.count, inclusiveEnd: false) else { throw c.fail("input 1 is required") }
      return [.tensor(s.tensors[at])]
    },
    "SequenceErase": { c in
      var s = try c.sequence(0)
      guard let at = try position(c, 1, count: s.tensors.count, inclusiveEnd: false) ?? (s.tensors.isEmpty ? nil : s.tensors.count - 1)
      else { throw c.fail("cannot erase from an empty sequence") }
      s.tensors.remove(at: at)
      return [.sequence(s)]
    },
    "SequenceLength": { c in [.tensor(NDArray([Int64(try c.sequence(0).tensors.count)], shape: []))] },
    "SplitToSequence": { c in [.sequence(try splitToSequence(c))] },
    "ConcatFromSequence": { c in [.tensor(try concatFromSequence(c))] },
    "SequenceMap": { c in try sequenceMap(c) },
    "Optional": { c in [.optional(c.optionalValue(0))] },
    "OptionalGetElement": { c in
      switch try c.value(0) {
      case .optional(let v?): return [v]
      case .optional(nil): throw c.fail("the optional input has no value")
      // Opset 18 accepts a tensor or a sequence and returns it.
      case let v: return [v]
      }
    },
    "OptionalHasElement": { c in
      let has: Bool
      switch c.optionalValue(0) {
      case nil, .optional(nil)?: has = false
      default: has = true
      }
      return [.tensor(NDArray(bools: [has], shape: []))]
    },
  ]
}

/// Position input `i` of a sequence op, normalized: in [-count, count - 1], or up to `count` for
/// an insertion; nil when the input is omitted.
private func position(_ c: KernelContext, _ i: Int, count: Int, inclusiveEnd: Bool) throws -> Int? {
  guard let t = try c.optionalTensor(i) else { return nil }
  guard t.count == 1, let p = try t.integers().first else { throw c.fail("the position must be a scalar") }
  let limit = inclusiveEnd ? count : count - 1
  guard p >= -count && p <= limit else {
    throw c.fail("position \(p) is out of range for a sequence of \(count) tensors")
  }
  return p < 0 ? p + count : p
}

/// SplitToSequence: `split` a scalar chunk length (the last chunk may be shorter), a list of
/// lengths, or absent (pieces of length 1, squeezed unless keepdims = 1).
private func splitToSequence(_ c: KernelContext) throws -> TensorSequence {
  let x = try c.tensor(0)
  let axis = try c.axis(c.int("axis", 0), rank: x.rank)
  guard x.rank > 0 else { throw c.fail("a scalar cannot be split") }
  let n = x.shape[axis]
  var sizes: [Int]
  var squeeze = false
  if let split = try c.optionalTensor(1) {
    let v = try split.integers()
    if split.rank == 0 {
      guard let chunk = v.first, chunk > 0 else { throw c.fail("the split length must be positive, it is \(v.first ?? 0)") }
      sizes = stride(from: 0, to: n, by: chunk).map { Swift.min(chunk, n - $0) }
    } else {
      guard v.allSatisfy({ $0 >= 0 }), v.reduce(0, +) == n else { throw c.fail("split lengths \(v) do not add up to \(n)") }
      sizes = v
    }
  } else {
    sizes = Array(repeating: 1, count: n)
    squeeze = c.int("keepdims", 1) == 0
  }
  var start = 0
  var pieces = [NDArray]()
  pieces.reserveCapacity(sizes.count)
  for size in sizes {
    var piece = try x.slice(axes: [axis], starts: [start], ends: [start + size], steps: [1])
    if squeeze {
      var shape = piece.shape
      shape.remove(at: axis)
      piece = piece.reshaped(shape)
    }
    pieces.append(piece)
    start += size
  }
  return TensorSequence(elementType: x.dataType, tensors: pieces)
}

/// ConcatFromSequence: Concat along `axis`, or with new_axis = 1 a stack (axis then ranges over
/// the result's rank, so -1 appends a last axis).
private func concatFromSequence(_ c: KernelContext) throws -> NDArray {
  let s = try c.sequence(0)
  guard let first = s.tensors.first else { throw c.fail("the sequence is empty") }
  var parts = s.tensors
  if c.int("new_axis", 0) == 1 {
    let axis = try c.axis(c.int("axis", 0), rank: first.rank + 1)
    parts = parts.map { t in
      var shape = t.shape
      shape.insert(1, at: Swift.min(axis, shape.count))
      return t.reshaped(shape)
    }
  }
  guard let concat = Kernels.standard["Concat"] else { throw c.fail("no Concat kernel") }
  return try concat(KernelContext(node: c.nodeReference, inputs: parts, opset: c.opset, executor: c.executor, scope: c.scope))[0]
}

/// SequenceMap: the body runs once per position of the sequence inputs (all of one length); its
/// tensor inputs are passed whole each time. Each body output collects into one sequence.
private func sequenceMap(_ c: KernelContext) throws -> [Value] {
  let body = try c.graph("body")
  let first = try c.sequence(0)
  let length = first.tensors.count
  for i in 1..<max(1, c.values.count) {
    if case .sequence(let s)? = c.optionalValue(i), s.tensors.count != length {
      throw c.fail("the sequences have different lengths (\(length) and \(s.tensors.count))")
    }
  }
  var collected = [[NDArray]](repeating: [], count: body.outputs.count)
  for position in 0..<length {
    let feeds = (0..<c.values.count).map { i -> Value? in
      if case .sequence(let s)? = c.values[i] { return .tensor(s.tensors[position]) }
      return c.values[i]
    }
    let outs = try c.runSubgraph("body", feeds: feeds)
    for (k, v) in outs.enumerated() {
      guard case .tensor(let t) = v else { throw c.fail("body output \(k) must be a tensor, not a \(v.typeDescription)") }
      collected[k].append(t)
    }
  }
  return zip(body.outputs, collected).map { info, tensors in
    var type = tensors.first?.dataType ?? .float
    // An empty map still has the element type the body declares.
    if tensors.isEmpty, case .tensor(let t, _)? = info.type?.kind { type = t }
    return .sequence(TensorSequence(elementType: type, tensors: tensors))
  }
}
