import IR
import Support

/// Operators that select, reorder or place whole elements by a condition, a count or a position:
/// Compress, OneHot, EyeLike, ReverseSequence, Unique, TensorScatter and CenterCropPad. Elements
/// move as raw bytes, so every fixed-width type is handled.
extension Kernels {
  static let selection: [String: Kernel] = [
    "Compress": { c in [try compress(c)] },
    "OneHot": { c in [try oneHot(c)] },
    "EyeLike": { c in [try eyeLike(c)] },
    "ReverseSequence": { c in [try reverseSequence(c)] },
    "Unique": { c in try unique(c) },
    "TensorScatter": { c in [try tensorScatter(c)] },
    "CenterCropPad": { c in [try centerCropPad(c)] },
  ]
}

/// The slices along `axis` (of the flattened input without an axis) whose condition is true;
/// a condition shorter than the axis drops the slices past its end.
private func compress(_ c: KernelContext) throws -> NDArray {
  var x = try c.input(0)
  let condition = try c.input(1)
  guard condition.rank == 1 else { throw c.fail("condition must be 1-D, not \(condition.shape)") }
  let flags = try condition.integers()
  var axis = 0
  if c.node.attribute("axis") != nil {
    axis = try c.axis(c.int("axis", 0), rank: x.rank)
  } else {
    x = x.reshaped([x.count])
  }
  let n = x.shape[axis]
  guard flags.count <= n else { throw c.fail("condition has \(flags.count) values for an axis of \(n)") }
  let kept = flags.indices.filter { flags[$0] != 0 }
  return x.taking(kept, along: axis)
}

/// One-hot vectors along `axis`: on_value where the index (negative from the end of depth)
/// names the position, off_value elsewhere; out-of-range indices give all off_value.
private func oneHot(_ c: KernelContext) throws -> NDArray {
  let indices = try c.input(0).converted(to: .double).elements(Double.self)
  let indexShape = try c.input(0).shape
  guard let depthValue = try c.input(1).converted(to: .double).elements(Double.self).first else { throw c.fail("depth is empty") }
  let values = try c.input(2)
  guard values.count == 2 else { throw c.fail("values must hold [off_value, on_value], not \(values.count) values") }
  guard depthValue.isFinite, depthValue >= 1, depthValue < 1e15 else { throw c.fail("depth \(depthValue) must be positive") }
  let depth = Int(depthValue)
  let rank = indexShape.count + 1
  let axis = c.int("axis", -1)
  let a = axis < 0 ? axis + rank : axis
  guard a >= 0 && a < rank else { throw c.fail("axis \(axis) is out of range for rank \(rank)") }
  var shape = indexShape
  shape.insert(depth, at: a)
  try NDArray.checkAllocation(shape, values.dataType, c)
  let outer = indexShape[..<a].reduce(1, *), inner = indexShape[a...].reduce(1, *)
  // off_value everywhere, then on_value at each index's position.
  var out = values.taking([0], along: 0).reshaped([]).broadcast(to: shape)
  let width = values.elementWidth
  let dst = out.mutableBytes()
  values.withUnsafeBytes { v in
    let on = v.baseAddress.unsafelyUnwrapped + width
    for o in 0..<outer {
      for i in 0..<inner {
        let raw = indices[o * inner + i]
        guard raw.isFinite, Swift.abs(raw) < 1e15 else { continue }
        var k = Int(raw)
        if k < 0 { k += depth }
        guard k >= 0 && k < depth else { continue }
        (dst + ((o * depth + k) * inner + i) * width).copyMemory(from: on, byteCount: width)
      }
    }
  }
  return out
}

/// A 2-D tensor of the input's shape with ones on diagonal k, in `dtype` (else the input's type).
private func eyeLike(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  guard x.rank == 2 else { throw c.fail("input must be 2-D, not \(x.shape)") }
  let type = c.node.attribute("dtype") != nil ? DataType(rawValue: Int32(clamping: c.int("dtype", 1))) : x.dataType
  let rows = x.shape[0], cols = x.shape[1]
  // Past the matrix either way the diagonal is empty; clamped so that r + k cannot overflow.
  let k = min(max(c.int("k", 0), -rows), cols)
  var values = [Double](repeating: 0, count: rows * cols)
  for r in 0..<rows where r + k >= 0 && r + k < cols { values[r * cols + r + k] = 1 }
  do { return try NDArray(doubles: values, as: type, shape: x.shape) } catch { throw c.unsupported("dtype \(type) is not supported") }
}

/// For each batch entry b, the first sequence_lens[b] steps along time_axis reversed; the rest kept.
private func reverseSequence(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0), lengths = try c.input(1).integers()
  guard x.rank >= 2 else { throw c.fail("input must have rank 2 or more, not \(x.rank)") }
  let batchAxis = c.int("batch_axis", 1), timeAxis = c.int("time_axis", 0)
  guard (batchAxis == 0 && timeAxis == 1) || (batchAxis == 1 && timeAxis == 0) else {
    throw c.fail("batch_axis and time_axis must be 0 and 1 (either way round)")
  }
  let batch = x.shape[batchAxis], time = x.shape[timeAxis]
  guard lengths.count == batch else { throw c.fail("sequence_lens has \(lengths.count) values for a batch of \(batch)") }
  guard lengths.allSatisfy({ $0 >= 0 && $0 <= time }) else { throw c.fail("sequence_lens \(lengths) must lie in 0...\(time)") }
  let xs = strides(x.shape), inner = x.shape.dropFirst(2).reduce(1, *), width = x.elementWidth
  var out = x
  let dst = out.mutableBytes()
  x.withUnsafeBytes { src in
    guard let s = src.baseAddress else { return }
    for b in 0..<batch {
      for t in 0..<lengths[b] {
        let from = b * xs[batchAxis] + (lengths[b] - 1 - t) * xs[timeAxis], to = b * xs[batchAxis] + t * xs[timeAxis]
        (dst + to * width).copyMemory(from: s + from * width, byteCount: inner * width)
      }
    }
  }
  return out
}

/// Unique elements (or slices along `axis`): Y, the index of each one's first occurrence, each
/// input element's position in Y, and the counts. Sorted ascending (slices lexicographically)
/// by default; in order of first occurrence with sorted = 0.
private func unique(_ c: KernelContext) throws -> [NDArray] {
  var x = try c.input(0)
  guard x.dataType != .string else { throw c.unsupported("string inputs are not supported") }
  var axis = 0
  if c.node.attribute("axis") != nil {
    axis = try c.axis(c.int("axis", 0), rank: x.rank)
  } else {
    x = x.reshaped([x.count])
  }
  let n = x.shape[axis]
  let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
  let v = try x.converted(to: .double).elements(Double.self)
  // Slice k: its elements in row-major order, the key that orders and compares slices.
  let slices: [[Double]] = (0..<n).map { k in
    var s = [Double]()
    s.reserveCapacity(outer * inner)
    for o in 0..<outer { for i in 0..<inner { s.append(v[(o * n + k) * inner + i]) } }
    return s
  }
  var firsts = [Int](), inverse = [Int](repeating: 0, count: n), counts = [Int]()
  var positions = [[Double]: Int]()
  for k in 0..<n {
    if let p = positions[slices[k]] {
      inverse[k] = p
      counts[p] += 1
    } else {
      positions[slices[k]] = firsts.count
      inverse[k] = firsts.count
      firsts.append(k)
      counts.append(1)
    }
  }
  var order = Array(firsts.indices)
  if c.int("sorted", 1) != 0 {
    order.sort { a, b in slices[firsts[a]].lexicographicallyPrecedes(slices[firsts[b]]) }
  }
  var rank = [Int](repeating: 0, count: order.count)
  for (r, u) in order.enumerated() { rank[u] = r }
  let y = x.taking(order.map { firsts[$0] }, along: axis)
  func int64s(_ values: [Int]) -> NDArray { NDArray(values.map { Int64($0) }, shape: [values.count]) }
  return [y, int64s(order.map { firsts[$0] }), int64s(inverse.map { rank[$0] }), int64s(order.map { counts[$0] })]
}

/// The cache with `update` written along `axis` at each batch entry's write index (0 when not
/// given), wrapping around the axis in circular mode.
private func tensorScatter(_ c: KernelContext) throws -> NDArray {
  let past = try c.input(0), update = try c.input(1)
  guard past.dataType == update.dataType, past.rank == update.rank, past.rank >= 2 else {
    throw c.fail("past_cache \(past.shape) and update \(update.shape) must have one type and one rank (2 or more)")
  }
  let axis = try c.axis(c.int("axis", -2), rank: past.rank)
  guard axis != 0 else { throw c.fail("axis must not be the batch axis") }
  for d in 0..<past.rank where d != axis && past.shape[d] != update.shape[d] {
    throw c.fail("update \(update.shape) differs from past_cache \(past.shape) outside the sequence axis")
  }
  let batch = past.shape[0], maxLength = past.shape[axis], length = update.shape[axis]
  guard length <= maxLength else { throw c.fail("update is longer (\(length)) than the cache (\(maxLength))") }
  let writes = try c.optionalInput(2)?.integers() ?? [Int](repeating: 0, count: batch)
  guard writes.count == batch else { throw c.fail("write_indices has \(writes.count) values for a batch of \(batch)") }
  guard writes.allSatisfy({ Swift.abs($0) < 1 << 40 }) else { throw c.fail("write_indices \(writes) are out of range") }
  let circular: Bool
  switch c.string("mode", "linear") {
  case "linear": circular = false
  case "circular": circular = true
  case let m: throw c.fail("mode must be linear or circular, not '\(m)'")
  }
  let outer = past.shape[..<axis].reduce(1, *), inner = past.shape[(axis + 1)...].reduce(1, *)
  let perBatch = outer / max(batch, 1), width = past.elementWidth
  var out = past
  let dst = out.mutableBytes()
  try update.withUnsafeBytes { src in
    guard let s = src.baseAddress else { return }
    for o in 0..<outer {
      let start = writes[o / max(perBatch, 1)]
      for t in 0..<length {
        var p = start + t
        if circular { p = ((p % maxLength) + maxLength) % maxLength }
        guard p >= 0 && p < maxLength else { throw c.fail("write index \(start) + \(length) steps passes the cache's \(maxLength)") }
        (dst + ((o * maxLength + p) * inner) * width).copyMemory(from: s + ((o * length + t) * inner) * width, byteCount: inner * width)
      }
    }
  }
  return out
}

/// Crops or zero-pads each listed axis to the requested size, centred (the odd unit goes to the end).
private func centerCropPad(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0), sizes = try c.input(1).integers()
  let axes = try (c.ints("axes") ?? Array(0..<x.rank)).map { try c.axis($0, rank: x.rank) }
  guard sizes.count == axes.count else { throw c.fail("shape has \(sizes.count) values for \(axes.count) axes") }
  var shape = x.shape, shift = [Int](repeating: 0, count: x.rank)
  for (a, size) in zip(axes, sizes) {
    guard size >= 0 else { throw c.fail("shape \(sizes) has a negative size") }
    let dim = x.shape[a]
    // Output index i reads input index i + shift: a crop starts inside, a pad before the input.
    shift[a] = size < dim ? (dim - size) / 2 : -((size - dim) / 2)
    shape[a] = size
  }
  try NDArray.checkAllocation(shape, x.dataType, c)
  var out = NDArray(zeros: x.dataType, shape)
  let xs = strides(x.shape), os = strides(shape), width = x.elementWidth
  let dst = out.mutableBytes()
  x.withUnsafeBytes { src in
    guard let s = src.baseAddress else { return }
    for o in 0..<out.count {
      var rest = o, offset = 0, inside = true
      for d in 0..<x.rank {
        let i = rest / os[d] + shift[d]
        rest %= os[d]
        if i < 0 || i >= x.shape[d] { inside = false; break }
        offset += i * xs[d]
      }
      if inside { (dst + o * width).copyMemory(from: s + offset * width, byteCount: width) }
    }
  }
  return out
}

extension NDArray {
  /// The slices at `indices` along `axis`, in that order (indices must be in range).
  func taking(_ indices: [Int], along axis: Int) -> NDArray {
    var shape = self.shape
    shape[axis] = indices.count
    var out = NDArray(uninitialized: dataType, shape)
    let outer = self.shape[..<axis].reduce(1, *), inner = self.shape[(axis + 1)...].reduce(1, *), n = self.shape[axis]
    if dataType == .string {
      for o in 0..<outer {
        for (j, k) in indices.enumerated() {
          for i in 0..<inner { out.strings[(o * indices.count + j) * inner + i] = strings[(o * n + k) * inner + i] }
        }
      }
      return out
    }
    let width = elementWidth * inner
    let dst = out.mutableBytes()
    withUnsafeBytes { src in
      guard let s = src.baseAddress, width > 0 else { return }
      for o in 0..<outer {
        for (j, k) in indices.enumerated() {
          (dst + (o * indices.count + j) * width).copyMemory(from: s + (o * n + k) * width, byteCount: width)
        }
      }
    }
    return out
  }
}
