import IR
import Support

/// Operators that address elements by computed indices: GatherElements, GatherND,
/// ScatterElements, ScatterND, NonZero, TopK, Trilu, CumSum, CumProd, Pad, DepthToSpace, SpaceToDepth.
/// Element copies move raw bytes, so every fixed-width type is handled.
extension Kernels {
  static let indexing: [String: Kernel] = [
    "GatherElements": { c in
      let x = try c.input(0), idx = try c.input(1)
      let axis = try c.axis(c.int("axis", 0), rank: x.rank)
      guard idx.rank == x.rank else { throw c.fail("indices must have the data's rank") }
      let element = try ElementAlongAxis(c, data: x, indices: idx, axis: axis)
      var out = NDArray(uninitialized: x.dataType, idx.shape)
      let width = x.elementWidth
      let dst = out.mutableBytes()
      try x.withUnsafeBytes { src in
        for o in 0..<idx.count {
          (dst + o * width).copyMemory(from: src.baseAddress.unsafelyUnwrapped + (try element.offset(o)) * width, byteCount: width)
        }
      }
      return [out]
    },
    "ScatterElements": { c in [try scatterElements(c)] },
    "Scatter": { c in [try scatterElements(c)] },
    "GatherND": { c in
      let x = try c.input(0), idx = try c.input(1)
      let batch = c.int("batch_dims", 0)
      guard batch >= 0, batch < Swift.min(x.rank, idx.rank), Array(x.shape[..<batch]) == Array(idx.shape[..<batch]),
            let last = idx.shape.last, last <= x.rank - batch else { throw c.fail("indices \(idx.shape) do not fit data \(x.shape)") }
      let indices = try idx.integers()
      let sliceShape = Array(x.shape[(batch + last)...])
      let sliceCount = sliceShape.reduce(1, *)
      let outShape = Array(idx.shape.dropLast()) + sliceShape
      try NDArray.checkAllocation(outShape, x.dataType, c)
      var out = NDArray(uninitialized: x.dataType, outShape)
      let xs = strides(x.shape), width = x.elementWidth * sliceCount
      let batchCount = x.shape[..<batch].reduce(1, *), perBatch = idx.count / max(last, 1) / max(batchCount, 1)
      let batchStride = batch > 0 ? xs[batch - 1] : 0
      let dst = out.mutableBytes()
      try x.withUnsafeBytes { src in
        for q in 0..<(idx.count / max(last, 1)) {
          var offset = (q / max(perBatch, 1)) * batchStride
          for k in 0..<last {
            let d = batch + k
            var i = indices[q * last + k]
            if i < 0 { i += x.shape[d] }
            guard i >= 0 && i < x.shape[d] else { throw c.fail("index \(indices[q * last + k]) is out of range for a dimension of \(x.shape[d])") }
            offset += i * xs[d]
          }
          if width > 0 { (dst + q * width).copyMemory(from: src.baseAddress.unsafelyUnwrapped + offset * x.elementWidth, byteCount: width) }
        }
      }
      return [out]
    },
    "ScatterND": { c in
      var x = try c.input(0)
      let idx = try c.input(1), updates = try c.input(2)
      guard let last = idx.shape.last, last <= x.rank else { throw c.fail("indices \(idx.shape) do not fit data \(x.shape)") }
      let indices = try idx.integers()
      let reduction = c.string("reduction", "none")
      let sliceCount = x.shape[last...].reduce(1, *), xs = strides(x.shape)
      if reduction != "none" {
        var v = try x.converted(to: .double)
        let u = try updates.converted(to: .double).elements(Double.self)
        let e = v.mutableElements(Double.self)
        for q in 0..<(idx.count / max(last, 1)) {
          var offset = 0
          for k in 0..<last { let i = indices[q * last + k]; offset += (i < 0 ? i + x.shape[k] : i) * xs[k] }
          for j in 0..<sliceCount {
            let a = e[offset + j], b = u[q * sliceCount + j]
            switch reduction {
            case "add": e[offset + j] = a + b
            case "mul": e[offset + j] = a * b
            case "max": e[offset + j] = Swift.max(a, b)
            case "min": e[offset + j] = Swift.min(a, b)
            default: throw c.unsupported("reduction \(reduction)")
            }
          }
        }
        return [try v.converted(to: x.dataType)]
      }
      let width = x.elementWidth
      let dst = x.mutableBytes()
      try updates.withUnsafeBytes { src in
        for q in 0..<(idx.count / max(last, 1)) {
          var offset = 0
          for k in 0..<last {
            var i = indices[q * last + k]
            if i < 0 { i += x.shape[k] }
            guard i >= 0 && i < x.shape[k] else { throw c.fail("index \(indices[q * last + k]) is out of range") }
            offset += i * xs[k]
          }
          if sliceCount > 0 {
            (dst + offset * width).copyMemory(from: src.baseAddress.unsafelyUnwrapped + q * sliceCount * width, byteCount: sliceCount * width)
          }
        }
      }
      return [x]
    },
    "NonZero": { c in
      let x = try c.input(0)
      let v = try x.converted(to: .double).elements(Double.self)
      let xs = strides(x.shape)
      let hits = (0..<x.count).filter { v[$0] != 0 }
      var out = NDArray(uninitialized: .int64, [x.rank, hits.count])
      let e = out.mutableElements(Int64.self)
      for (k, linear) in hits.enumerated() {
        var rest = linear
        for d in 0..<x.rank {
          e[d * hits.count + k] = Int64(rest / xs[d])
          rest %= xs[d]
        }
      }
      return [out]
    },
    "TopK": { c in
      let x = try c.input(0)
      let k = c.opset >= 10 ? try c.input(1).integers().first ?? 0 : c.int("k", 0)
      let axis = try c.axis(c.int("axis", -1), rank: x.rank)
      let largest = c.int("largest", 1) != 0, sorted = c.int("sorted", 1) != 0
      let n = x.shape[axis]
      guard k >= 0 && k <= n else { throw c.fail("k = \(k) is out of range for a dimension of \(n)") }
      let v = try x.converted(to: .double).elements(Double.self)
      let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
      var shape = x.shape
      shape[axis] = k
      var values = [Double](repeating: 0, count: outer * k * inner)
      var idxOut = NDArray(uninitialized: .int64, shape)
      let ie = idxOut.mutableElements(Int64.self)
      for o in 0..<outer {
        for i in 0..<inner {
          var order = Array(0..<n)
          // Ties go to the lower index, as the ONNX reference sorts.
          order.sort { a, b in
            let va = v[(o * n + a) * inner + i], vb = v[(o * n + b) * inner + i]
            if va == vb { return a < b }
            return largest ? va > vb : va < vb
          }
          var chosen = Array(order.prefix(k))
          if !sorted { chosen.sort() }
          for (j, src) in chosen.enumerated() {
            values[(o * k + j) * inner + i] = v[(o * n + src) * inner + i]
            ie[(o * k + j) * inner + i] = Int64(src)
          }
        }
      }
      return [try NDArray(doubles: values, as: x.dataType, shape: shape), idxOut]
    },
    "Trilu": { c in
      var x = try c.input(0)
      let k = try c.optionalInput(1)?.integers().first ?? 0
      let upper = c.int("upper", 1) != 0
      guard x.rank >= 2 else { throw c.fail("Trilu needs rank 2 or more") }
      let rows = x.shape[x.rank - 2], cols = x.shape[x.rank - 1], width = x.elementWidth
      let dst = x.mutableBytes()
      for m in 0..<(x.count / max(rows * cols, 1)) {
        for r in 0..<rows {
          for col in 0..<cols where upper ? col - r < k : col - r > k {
            (dst + ((m * rows + r) * cols + col) * width).initializeMemory(as: UInt8.self, repeating: 0, count: width)
          }
        }
      }
      return [x]
    },
    "CumSum": { c in [try cumulative(c, product: false)] },
    "CumProd": { c in [try cumulative(c, product: true)] },
    "Pad": { c in [try pad(c)] },
    "DepthToSpace": { c in
      let x = try c.input(0)
      let b = c.int("blocksize", 0)
      guard x.rank == 4, b > 0, x.shape[1] % (b * b) == 0 else { throw c.fail("blocksize \(b) does not fit \(x.shape)") }
      let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
      let crd = c.string("mode", "DCR") == "CRD"
      let t = crd ? x.reshaped([n, ch / (b * b), b, b, h, w]).transposed([0, 1, 4, 2, 5, 3])
                  : x.reshaped([n, b, b, ch / (b * b), h, w]).transposed([0, 3, 4, 1, 5, 2])
      return [t.reshaped([n, ch / (b * b), h * b, w * b])]
    },
    "SpaceToDepth": { c in
      let x = try c.input(0)
      let b = c.int("blocksize", 0)
      guard x.rank == 4, b > 0, x.shape[2] % b == 0, x.shape[3] % b == 0 else { throw c.fail("blocksize \(b) does not fit \(x.shape)") }
      let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
      // Opset 25 added CRD mode (channel, then block row and column), beside the default DCR.
      let mode = c.string("mode", "DCR")
      guard mode == "DCR" || mode == "CRD" else { throw c.fail("mode must be DCR or CRD, not '\(mode)'") }
      let t = x.reshaped([n, ch, h / b, b, w / b, b]).transposed(mode == "CRD" ? [0, 1, 3, 5, 2, 4] : [0, 3, 5, 1, 2, 4])
      return [t.reshaped([n, ch * b * b, h / b, w / b])]
    },
  ]
}

/// GatherElements and ScatterElements address, for index element o, the data element at o's own
/// coordinates except along `axis`, where the index value (negative from the end) is used.
private struct ElementAlongAxis {
  let c: KernelContext
  let indices: [Int]
  let dataShape: [Int], dataStrides: [Int], indexStrides: [Int]
  let axis: Int

  init(_ c: KernelContext, data: NDArray, indices: NDArray, axis: Int) throws {
    self.c = c
    self.indices = try indices.integers()
    dataShape = data.shape
    dataStrides = strides(data.shape)
    indexStrides = strides(indices.shape)
    self.axis = axis
  }

  func offset(_ o: Int) throws -> Int {
    var rest = o, offset = 0
    for d in 0..<dataShape.count {
      var i = rest / indexStrides[d]
      rest %= indexStrides[d]
      if d == axis {
        i = indices[o] < 0 ? indices[o] + dataShape[d] : indices[o]
        guard i >= 0 && i < dataShape[d] else { throw c.fail("index \(indices[o]) is out of range for a dimension of \(dataShape[d])") }
      }
      offset += i * dataStrides[d]
    }
    return offset
  }
}

private func scatterElements(_ c: KernelContext) throws -> NDArray {
  var x = try c.input(0)
  let idx = try c.input(1), updates = try c.input(2)
  let axis = try c.axis(c.int("axis", 0), rank: x.rank)
  let reduction = c.string("reduction", "none")
  let element = try ElementAlongAxis(c, data: x, indices: idx, axis: axis)
  func target(_ o: Int) throws -> Int { try element.offset(o) }
  if reduction != "none" {
    var v = try x.converted(to: .double)
    let u = try updates.converted(to: .double).elements(Double.self)
    let e = v.mutableElements(Double.self)
    for o in 0..<idx.count {
      let t = try target(o)
      switch reduction {
      case "add": e[t] += u[o]
      case "mul": e[t] *= u[o]
      case "max": e[t] = Swift.max(e[t], u[o])
      case "min": e[t] = Swift.min(e[t], u[o])
      default: throw c.unsupported("reduction \(reduction)")
      }
    }
    return try v.converted(to: x.dataType)
  }
  let width = x.elementWidth
  let dst = x.mutableBytes()
  try updates.withUnsafeBytes { src in
    for o in 0..<idx.count {
      (dst + (try target(o)) * width).copyMemory(from: src.baseAddress.unsafelyUnwrapped + o * width, byteCount: width)
    }
  }
  return x
}

/// Pad with constant, edge, reflect or wrap modes; pads from the attribute before opset 11.
private func pad(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  var pads: [Int]
  var constant = NDArray([Float(0)], shape: [1])
  if c.opset < 11 {
    pads = c.ints("pads") ?? []
    constant = NDArray([c.float("value", 0)], shape: [1])
  } else {
    pads = try c.input(1).integers()
    if let v = c.optionalInput(2), v.count > 0 { constant = v }
  }
  if let axesInput = c.optionalInput(3) {
    let axes = try axesInput.integers().map { try c.axis($0, rank: x.rank) }
    guard pads.count == 2 * axes.count else { throw c.fail("pads has \(pads.count) values for \(axes.count) axes") }
    var full = [Int](repeating: 0, count: 2 * x.rank)
    for (k, a) in axes.enumerated() {
      full[a] = pads[k]
      full[x.rank + a] = pads[axes.count + k]
    }
    pads = full
  }
  guard pads.count == 2 * x.rank else { throw c.fail("pads has \(pads.count) values for rank \(x.rank)") }
  guard pads.allSatisfy({ abs($0) < 1 << 40 }) else { throw c.fail("pads \(pads) are out of range") }
  let outShape = (0..<x.rank).map { x.shape[$0] + pads[$0] + pads[x.rank + $0] }
  guard outShape.allSatisfy({ $0 >= 0 }) else { throw c.fail("pads \(pads) remove more than the input has") }
  try NDArray.checkAllocation(outShape, x.dataType, c)
  guard x.dataType != .string, (x.dataType.bitWidth ?? 8) >= 8 else { throw c.unsupported("Pad on \(x.dataType) tensors is not supported") }
  let mode = PadMode(c.string("mode", "constant"))
  if x.rank == 0 { return x }
  var out = NDArray(uninitialized: x.dataType, outShape)
  guard out.count > 0 else { return out }
  guard x.count > 0 || mode == .constant else { throw c.fail("cannot pad an empty input in \(mode) mode") }
  // Whole rows (the last axis) at a time, in bytes: the middle of a row is one copy, only the
  // padded ends are mapped element by element, and the value is copied in the tensor's own type.
  let width = x.elementWidth, rank = x.rank, last = rank - 1
  let fill = try constant.converted(to: x.dataType)
  let xs = strides(x.shape)
  let n = x.shape[last], before = pads[last], rowOut = outShape[last]
  let inner = (Swift.max(0, before), Swift.min(rowOut, before + n))
  let dst = out.mutableBytes()
  guard let fillBytes = fill.storage.base else { return out }
  let src = x.storage.base
  var index = [Int](repeating: 0, count: last)
  for row in 0..<(out.count / rowOut) {
    let to = dst + row * rowOut * width
    var offset: Int? = 0
    for d in 0..<last {
      guard let i = mode.source(index[d] - pads[d], x.shape[d]) else { offset = nil; break }
      offset = offset.map { $0 + i * xs[d] }
    }
    if let offset, let src {
      let from = src + offset * width
      if inner.1 > inner.0 {
        (to + inner.0 * width).copyMemory(from: from + (inner.0 - before) * width, byteCount: (inner.1 - inner.0) * width)
      }
      for j in 0..<rowOut where j < inner.0 || j >= inner.1 {
        if let i = mode.source(j - before, n) {
          (to + j * width).copyMemory(from: from + i * width, byteCount: width)
        } else {
          (to + j * width).copyMemory(from: fillBytes, byteCount: width)
        }
      }
    } else {
      for j in 0..<rowOut { (to + j * width).copyMemory(from: fillBytes, byteCount: width) }
    }
    advance(&index, within: outShape)
  }
  return out
}

/// How Pad fills past an input's ends. An unknown mode pads with the constant, as before.
private enum PadMode {
  case constant, edge, reflect, wrap
  init(_ name: String) {
    switch name {
    case "edge": self = .edge
    case "reflect": self = .reflect
    case "wrap": self = .wrap
    default: self = .constant
    }
  }

  /// The input index that output index `i` (relative to the input's start) reads along an axis
  /// of `n` elements; nil where the constant goes.
  func source(_ i: Int, _ n: Int) -> Int? {
    if i >= 0 && i < n { return i }
    switch self {
    case .constant: return nil
    case .edge: return Swift.min(Swift.max(i, 0), n - 1)
    case .reflect:
      guard n > 1 else { return 0 }
      let period = 2 * (n - 1)
      let r = ((i % period) + period) % period
      return r >= n ? period - r : r
    case .wrap: return ((i % n) + n) % n
    }
  }
}

/// CumSum and CumProd along the axis given by input 1, optionally exclusive (the first output is
/// 0 or 1) and reversed. Computed in Double, exactly for integers below 2^53.
private func cumulative(_ c: KernelContext, product: Bool) throws -> NDArray {
  let x = try c.input(0)
  guard let axisValue = try c.input(1).integers().first else { throw c.fail("axis is empty") }
  let axis = try c.axis(axisValue, rank: x.rank)
  let exclusive = c.int("exclusive", 0) != 0, reverse = c.int("reverse", 0) != 0
  var v = try x.converted(to: .double)
  let e = v.mutableElements(Double.self)
  let src = Array(e)
  let outer = x.shape[..<axis].reduce(1, *), n = x.rank == 0 ? 1 : x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
  let identity: Double = product ? 1 : 0
  for o in 0..<outer {
    for i in 0..<inner {
      var acc = identity
      for step in 0..<n {
        let j = reverse ? n - 1 - step : step
        let at = (o * n + j) * inner + i
        if exclusive {
          e[at] = acc
          acc = product ? acc * src[at] : acc + src[at]
        } else {
          acc = product ? acc * src[at] : acc + src[at]
          e[at] = acc
        }
      }
    }
  }
  return try v.converted(to: x.dataType)
}
