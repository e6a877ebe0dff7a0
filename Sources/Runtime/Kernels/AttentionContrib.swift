import Foundation
import IR
import Linalg
import Support

/// ONNX Runtime's com.microsoft attention operators, as its CPU kernels compute them:
/// Attention (BERT/GPT-2: one packed QKV projection, mask_index in its four layouts, a past/present
/// cache stacked as [2, B, N, S, H]), MultiHeadAttention (separate, packed-QKV or packed-KV inputs,
/// key padding masks, attention bias, past/present key and value), GroupQueryAttention (grouped
/// heads over a KV cache indexed by seqlens_k, causal and local windows, rotary embedding, softcap,
/// smooth softmax and head sinks) and RotaryEmbedding. Masked positions get mask_filter_value
/// (−10000 by default) and causal ones the lowest Float, as in ONNX Runtime: a fully masked row
/// then attends uniformly rather than to nothing.
extension Kernels {
  static let attentionContrib: [String: Kernel] = [
    "Attention": { c in try packedAttention(c) },
    "MultiHeadAttention": { c in try multiHeadAttention(c) },
    "GroupQueryAttention": { c in try groupQueryAttention(c) },
    "RotaryEmbedding": { c in [try contribRotaryEmbedding(c)] },
  ]
}

/// Scores of one (batch, head) block before the softmax: the caller writes each row's additive
/// terms (masks, biases) into `row` and may mark positions to exclude entirely.
struct AttentionProblem {
  /// [B, Hq, S, D], [B, Hkv, T, D], [B, Hkv, T, Dv], Float.
  var q: NDArray, k: NDArray, v: NDArray
  var scale: Float
  /// Tanh soft-capping of the scaled scores (0: none), before the additive terms.
  var softcap: Float = 0
  /// Softmax with an extra logit per head in the denominator: 0 for smooth softmax, the head's
  /// value for head sinks (nil: a plain softmax).
  var sink: ((Int) -> Float)?
  /// Adds the additive terms (masks, then biases, in ONNX Runtime's order: the float rounding of
  /// −10000 + score depends on it) to row i of head h of batch b: T scaled scores.
  var bias: (_ b: Int, _ h: Int, _ i: Int, _ row: UnsafeMutablePointer<Float>) -> Void
  /// Keys of row (b, i) that take no part (GQA's cache beyond a sequence's length): they get
  /// probability 0 whatever the other scores. Nil: all keys take part.
  var keyLimit: ((_ b: Int, _ i: Int) -> Range<Int>)?

  var batch: Int { q.shape[0] }
  var heads: Int { q.shape[1] }
  var length: Int { q.shape[2] }
  var keyLength: Int { k.shape[2] }

  /// y [B, Hq, S, Dv], and the scores before (`qkBefore`) or after the softmax as asked.
  func solve(keepScores: Int = 0) -> (y: NDArray, scores: NDArray?) {
    let batch = self.batch, heads = self.heads, length = self.length, keyLength = self.keyLength
    let headSize = q.shape[3], valueSize = v.shape[3], kvHeads = k.shape[1], group = heads / max(kvHeads, 1)
    var y = NDArray(zeros: .float, [batch, heads, length, valueSize])
    let kept: NDArray? = keepScores > 0 ? NDArray(zeros: .float, [batch, heads, length, keyLength]) : nil
    let qe = q.elements(Float.self), ke = k.elements(Float.self), ve = v.elements(Float.self)
    let ye = y.mutableElements(Float.self)
    // Fresh storage, written through its elements.
    let se = kept.map { $0.elements(Float.self) }
    var scores = [Float](repeating: 0, count: length * keyLength)
    withExtendedLifetime((qe, ke, ve, ye)) {
      guard let qp = qe.baseAddress, let kp = ke.baseAddress, let vp = ve.baseAddress, let yp = ye.baseAddress else { return }
      for b in 0..<batch {
        for h in 0..<heads {
          let kvh = h / group
          scores.withUnsafeMutableBufferPointer { sp in
            guard let s = sp.baseAddress, length > 0, keyLength > 0, headSize > 0 else { return }
            Linalg.gemm(m: length, n: keyLength, k: headSize, alpha: scale, a: qp + (b * heads + h) * length * headSize,
                        b: kp + (b * kvHeads + kvh) * keyLength * headSize, c: s, transposeB: true, parallel: false)
          }
          for i in 0..<length {
            let row = i * keyLength
            if softcap > 0 { for j in 0..<keyLength { scores[row + j] = softcap * Foundation.tanh(scores[row + j] / softcap) } }
            scores.withUnsafeMutableBufferPointer { if let p = $0.baseAddress { bias(b, h, i, p + row) } }
            let limit = keyLimit?(b, i) ?? 0..<keyLength
            if keepScores == 1, let se {
              for j in 0..<keyLength { se[((b * heads + h) * length + i) * keyLength + j] = scores[row + j] }
            }
            var top = -Float.infinity
            for j in limit { top = Swift.max(top, scores[row + j]) }
            let extra = sink?(h)
            if let extra { top = Swift.max(top, extra) }
            var sum: Float = 0
            for j in 0..<keyLength {
              if limit.contains(j) {
                let e = Foundation.exp(scores[row + j] - top)
                scores[row + j] = e
                sum += e
              } else {
                scores[row + j] = 0
              }
            }
            if let extra { sum += Foundation.exp(extra - top) }
            let r = sum > 0 ? 1 / sum : 0
            for j in limit { scores[row + j] *= r }
            if keepScores == 2, let se {
              for j in 0..<keyLength { se[((b * heads + h) * length + i) * keyLength + j] = scores[row + j] }
            }
          }
          scores.withUnsafeBufferPointer { sp in
            guard let s = sp.baseAddress, length > 0, keyLength > 0, valueSize > 0 else { return }
            Linalg.gemm(m: length, n: valueSize, k: keyLength, a: s, b: vp + (b * kvHeads + kvh) * keyLength * valueSize,
                        c: yp + (b * heads + h) * length * valueSize, parallel: false)
          }
        }
      }
    }
    return (y, kept)
  }
}

/// [B, S, N·H] → [B, N, S, H] (Float).
private func splitHeads(_ x: NDArray, _ heads: Int) -> NDArray {
  x.reshaped([x.shape[0], x.shape[1], heads, x.shape[2] / heads]).transposed([0, 2, 1, 3])
}

/// [B, N, S, H] → [B, S, N·H].
private func mergeHeads(_ y: NDArray) -> NDArray {
  y.transposed([0, 2, 1, 3]).reshaped([y.shape[0], y.shape[2], y.shape[1] * y.shape[3]])
}

/// a ++ b along axis 2 of two [B, N, S, H] Float tensors.
private func concatenateSequence(_ a: NDArray, _ b: NDArray) -> NDArray {
  var out = NDArray(uninitialized: .float, [a.shape[0], a.shape[1], a.shape[2] + b.shape[2], a.shape[3]])
  let x = a.elements(Float.self), y = b.elements(Float.self), z = out.mutableElements(Float.self)
  let blocks = a.shape[0] * a.shape[1], ra = a.shape[2] * a.shape[3], rb = b.shape[2] * b.shape[3]
  for blk in 0..<blocks {
    for i in 0..<ra { z[blk * (ra + rb) + i] = x[blk * ra + i] }
    for i in 0..<rb { z[blk * (ra + rb) + ra + i] = y[blk * rb + i] }
  }
  return out
}

/// The additive mask of ONNX Runtime's Attention and MultiHeadAttention (PrepareMask): from
/// mask_index [B] (valid lengths: keys from it on masked), [2B] (ends, then starts: keys before
/// the start masked too), [B, T] or [B, S, T] (0 masked, 1 kept); masked keys get
/// `filter` added, and with `causal` keys after the query's position (past + i) become the lowest
/// Float.
private struct PaddingMask {
  var values: [Int]?
  var shape: [Int]
  var batch: Int, length: Int, total: Int, past: Int
  var filter: Float
  var causal: Bool

  init(_ c: KernelContext, _ mask: NDArray?, batch: Int, length: Int, total: Int, past: Int, causal: Bool) throws {
    self.batch = batch; self.length = length; self.total = total; self.past = past; self.causal = causal
    filter = c.float("mask_filter_value", -10000)
    shape = mask?.shape ?? []
    guard let mask else { values = nil; return }
    values = try mask.integers()
    switch shape.count {
    case 1 where shape[0] == batch || shape[0] == 2 * batch: break
    case 2 where shape == [batch, total]: break
    case 3 where shape == [batch, length, total]: break
    default:
      throw c.unsupported("mask \(shape) (the supported layouts are [\(batch)], [\(2 * batch)], [\(batch), \(total)] and [\(batch), \(length), \(total)])")
    }
  }

  func fill(_ b: Int, _ i: Int, _ row: UnsafeMutablePointer<Float>) {
    if let values {
      switch shape.count {
      case 1:
        let end = values[b]
        let start = shape[0] == 2 * batch ? Swift.min(values[b + batch], total) : 0
        for j in 0..<total where j >= end || j < start { row[j] += filter }
      case 2:
        for j in 0..<total where values[b * total + j] <= 0 { row[j] += filter }
      default:
        for j in 0..<total where values[(b * length + i) * total + j] <= 0 { row[j] += filter }
      }
    }
    if causal {
      for j in (past + i + 1)..<Swift.max(past + i + 1, total) { row[j] = -Float.greatestFiniteMagnitude }
    }
  }
}

/// attention_bias [B or 1, N or 1, S, T], added to the scores.
private func attentionBias(_ c: KernelContext, _ x: NDArray?, batch: Int, heads: Int, length: Int, total: Int) throws
  -> ((Int, Int, Int, UnsafeMutablePointer<Float>) -> Void)? {
  guard let x else { return nil }
  guard x.rank == 4, x.shape[0] == batch || x.shape[0] == 1, x.shape[1] == heads || x.shape[1] == 1, x.shape[2] == length,
        x.shape[3] == total else {
    throw c.fail("attention_bias \(x.shape) must be [\(batch) or 1, \(heads) or 1, \(length), \(total)]")
  }
  let v = try x.floats(), bs = x.shape[0] == 1 ? 0 : 1, hs = x.shape[1] == 1 ? 0 : 1, nh = x.shape[1]
  return { b, h, i, row in
    let base = ((b * bs * nh + h * hs) * length + i) * total
    for j in 0..<total { row[j] += v[base + j] }
  }
}

/// com.microsoft Attention: Q, K, V = input · weights + bias (split by qkv_hidden_sizes), optional
/// past [2, B, N, P, H] prepended (present returned), mask_index, unidirectional, attention_bias.
private func packedAttention(_ c: KernelContext) throws -> [NDArray] {
  let x0 = try c.input(0), w = try c.input(1)
  guard x0.rank == 3, w.rank == 2, w.shape[0] == x0.shape[2] else { throw c.fail("input \(x0.shape) and weights \(w.shape) do not fit") }
  if c.int("do_rotary", 0) != 0 { throw c.unsupported("do_rotary is not supported") }
  if c.int("past_present_share_buffer", 0) != 0 { throw c.unsupported("past_present_share_buffer is not supported") }
  let heads = c.int("num_heads", 0)
  let sizes = c.ints("qkv_hidden_sizes") ?? Array(repeating: w.shape[1] / 3, count: 3)
  guard heads > 0, sizes.count == 3, sizes.reduce(0, +) == w.shape[1], sizes[0] == sizes[1], sizes.allSatisfy({ $0 > 0 && $0 % heads == 0 }) else {
    throw c.fail("num_heads \(heads) and qkv_hidden_sizes \(sizes) do not fit weights \(w.shape)")
  }
  let batch = x0.shape[0], length = x0.shape[1]
  var projected = try matMul(c, try x0.converted(to: .float), try w.converted(to: .float))
  if let bias = c.optionalInput(2) {
    guard bias.count == w.shape[1] else { throw c.fail("bias \(bias.shape) must have \(w.shape[1]) values") }
    projected = try arithmetic(c, projected, try bias.converted(to: .float), op: "Add", +)
  }
  let parts = try [0, 1, 2].map { p -> NDArray in
    let start = sizes[..<p].reduce(0, +)
    return splitHeads(try projected.slice(axes: [2], starts: [start], ends: [start + sizes[p]], steps: [1]), heads)
  }
  var k = parts[1], v = parts[2]
  var past = 0
  var present: NDArray?
  if let pastState = c.optionalInput(4) {
    let p = try pastState.converted(to: .float)
    guard p.rank == 5, p.shape[0] == 2, p.shape[1] == batch, p.shape[2] == heads, p.shape[4] == sizes[0] / heads, sizes[0] == sizes[2] else {
      throw c.fail("past \(pastState.shape) must be [2, \(batch), \(heads), past, \(sizes[0] / heads)]")
    }
    past = p.shape[3]
    let pk = try p.slice(axes: [0], starts: [0], ends: [1], steps: [1]).reshaped(Array(p.shape.dropFirst()))
    let pv = try p.slice(axes: [0], starts: [1], ends: [2], steps: [1]).reshaped(Array(p.shape.dropFirst()))
    k = concatenateSequence(pk, k)
    v = concatenateSequence(pv, v)
  }
  if c.node.outputs.count > 1 && !c.node.outputs[1].isEmpty {
    // [2, B, N, T, H]: keys, then values.
    var stacked = NDArray(uninitialized: .float, [2] + k.shape)
    let ke = k.elements(Float.self), ve = v.elements(Float.self), se = stacked.mutableElements(Float.self)
    for i in 0..<ke.count { se[i] = ke[i]; se[ke.count + i] = ve[i] }
    present = stacked
  }
  let total = past + length
  let mask = try PaddingMask(c, c.optionalInput(3), batch: batch, length: length, total: total, past: past,
                             causal: c.int("unidirectional", 0) != 0)
  let extra = try attentionBias(c, c.optionalInput(5), batch: batch, heads: heads, length: length, total: total)
  let headSize = sizes[0] / heads
  let scale = c.node.attribute("scale") != nil ? c.float("scale", 1) : 1 / Float(headSize).squareRoot()
  let problem = AttentionProblem(q: parts[0], k: k, v: v, scale: scale, bias: { b, h, i, row in
    mask.fill(b, i, row)
    extra?(b, h, i, row)
  })
  let y = mergeHeads(problem.solve().y)
  let type = x0.dataType
  return [try y.converted(to: type)] + (try present.map { [try $0.converted(to: type)] } ?? [])
}

/// com.microsoft MultiHeadAttention: query [B, S, D] with key/value [B, L, D] (or [B, N, L, H],
/// already split), packed QKV [B, S, N, 3, H] or packed KV [B, L, N, 2, H]; bias added to the
/// projections; key_padding_mask; attention_bias; past/present key and value; unidirectional.
private func multiHeadAttention(_ c: KernelContext) throws -> [NDArray] {
  let q0 = try c.input(0)
  let heads = c.int("num_heads", 0)
  guard heads > 0 else { throw c.fail("num_heads must be positive") }
  if c.optionalInput(8) != nil || c.optionalInput(9) != nil { throw c.unsupported("past_sequence_length and cache_indirection are not supported") }
  let batch = q0.shape.first ?? 0
  var q: NDArray, k: NDArray, v: NDArray
  let qf = try q0.converted(to: .float)
  let bias = try c.optionalInput(3)?.converted(to: .float)
  func biased(_ x: NDArray, part: Int, width: Int) throws -> NDArray {
    guard let bias else { return x }
    let offsets = [0, width, 2 * width]
    let slice = try bias.slice(axes: [0], starts: [offsets[part]], ends: [offsets[part] + x.shape[x.rank - 1]], steps: [1])
    return try arithmetic(c, x, slice, op: "Add", +)
  }
  if q0.rank == 5 {
    // Packed QKV: [B, S, N, 3, H].
    guard q0.shape[2] == heads, q0.shape[3] == 3, c.optionalInput(1) == nil else { throw c.fail("packed QKV \(q0.shape) must be [B, S, \(heads), 3, H]") }
    let hs = q0.shape[4]
    let parts = try (0..<3).map { p -> NDArray in
      let part = try qf.slice(axes: [3], starts: [p], ends: [p + 1], steps: [1]).reshaped([batch, q0.shape[1], heads * hs])
      return splitHeads(try biased(part, part: p, width: heads * hs), heads)
    }
    (q, k, v) = (parts[0], parts[1], parts[2])
  } else {
    guard q0.rank == 3, q0.shape[2] % heads == 0 else { throw c.fail("query \(q0.shape) must be [B, S, \(heads)·H]") }
    let width = q0.shape[2]
    q = splitHeads(try biased(qf, part: 0, width: width), heads)
    let key = try c.input(1)
    if key.rank == 5 {
      guard key.shape[2] == heads, key.shape[3] == 2, c.optionalInput(2) == nil else { throw c.fail("packed KV \(key.shape) must be [B, L, \(heads), 2, H]") }
      let kf = try key.converted(to: .float), hs = key.shape[4]
      k = splitHeads(try biased(try kf.slice(axes: [3], starts: [0], ends: [1], steps: [1]).reshaped([batch, key.shape[1], heads * hs]), part: 1, width: width), heads)
      v = splitHeads(try biased(try kf.slice(axes: [3], starts: [1], ends: [2], steps: [1]).reshaped([batch, key.shape[1], heads * hs]), part: 2, width: width), heads)
    } else if key.rank == 4 {
      // Already [B, N, L, H] (cross attention reusing projected keys): no bias, no past.
      let value = try c.input(2)
      guard key.shape[1] == heads, value.rank == 4, value.shape[1] == heads else { throw c.fail("key \(key.shape) and value \(value.shape) must be [B, \(heads), L, H]") }
      k = try key.converted(to: .float)
      v = try value.converted(to: .float)
    } else {
      let value = try c.input(2)
      guard key.rank == 3, value.rank == 3, key.shape[2] % heads == 0, value.shape[2] % heads == 0 else {
        throw c.fail("key \(key.shape) and value \(value.shape) must be [B, L, \(heads)·H]")
      }
      k = splitHeads(try biased(try key.converted(to: .float), part: 1, width: width), heads)
      v = splitHeads(try biased(try value.converted(to: .float), part: 2, width: width), heads)
    }
  }
  guard q.shape[3] == k.shape[3], k.shape[2] == v.shape[2], k.shape[0] == batch else {
    throw c.fail("query \(q.shape), key \(k.shape) and value \(v.shape) (as [B, N, S, H]) do not fit")
  }
  var past = 0
  if let pk = c.optionalInput(6), let pv = c.optionalInput(7) {
    guard pk.rank == 4, pv.rank == 4, pk.shape[0] == batch, pk.shape[1] == heads, pk.shape[3] == k.shape[3], pv.shape[3] == v.shape[3],
          pk.shape[2] == pv.shape[2] else {
      throw c.fail("past_key \(pk.shape) and past_value \(pv.shape) must be [\(batch), \(heads), past, H]")
    }
    past = pk.shape[2]
    k = concatenateSequence(try pk.converted(to: .float), k)
    v = concatenateSequence(try pv.converted(to: .float), v)
  }
  let length = q.shape[2], total = k.shape[2]
  let mask = try PaddingMask(c, c.optionalInput(4), batch: batch, length: length, total: total, past: past,
                             causal: c.int("unidirectional", 0) != 0)
  let extra = try attentionBias(c, c.optionalInput(5), batch: batch, heads: heads, length: length, total: total)
  let scale = c.node.attribute("scale") != nil ? c.float("scale", 1) : 1 / Float(q.shape[3]).squareRoot()
  let problem = AttentionProblem(q: q, k: k, v: v, scale: scale, bias: { b, h, i, row in
    mask.fill(b, i, row)
    extra?(b, h, i, row)
  })
  let wantScores = c.node.outputs.count > 3 && !c.node.outputs[3].isEmpty
  let (y, scores) = problem.solve(keepScores: wantScores ? 1 : 0)
  let type = q0.dataType
  return [try mergeHeads(y).converted(to: type), try k.converted(to: type), try v.converted(to: type),
          try (scores ?? NDArray(zeros: .float, [0])).converted(to: type)]
}

/// Rotates pairs of the first `dim` values of each head of x [B, S, N, H] (Float, in place): the
/// two halves, or even and odd elements when interleaved, by the cached angle of `position(b, s)`.
private func rotate(_ c: KernelContext, _ x: inout NDArray, cos: [Float], sin: [Float], cacheRows: Int, dim: Int,
                    interleaved: Bool, position: (Int, Int) -> Int) throws {
  let batch = x.shape[0], length = x.shape[1], heads = x.shape[2], headSize = x.shape[3], half = dim / 2
  guard dim > 0, dim <= headSize, dim % 2 == 0 else { throw c.fail("rotary dimension \(dim) must be even and at most \(headSize)") }
  guard cos.count >= cacheRows * half, sin.count >= cacheRows * half else { throw c.fail("the cos/sin caches are smaller than [\(cacheRows), \(half)]") }
  let e = x.mutableElements(Float.self)
  for b in 0..<batch {
    for s in 0..<length {
      let p = position(b, s)
      guard p >= 0 && p < cacheRows else { throw c.fail("position \(p) is outside the caches' \(cacheRows) rows") }
      let r = p * half
      for h in 0..<heads {
        let base = ((b * length + s) * heads + h) * headSize
        for i in 0..<half {
          let first = interleaved ? base + 2 * i : base + i, second = interleaved ? first + 1 : first + half
          let a = e[first], z = e[second], co = cos[r + i], si = sin[r + i]
          e[first] = a * co - z * si
          e[second] = a * si + z * co
        }
      }
    }
  }
}

/// com.microsoft RotaryEmbedding: input [B, S, N·H] or [B, N, S, H], position_ids [B, S] (or [1]:
/// an offset added to 0..S−1), cos_cache and sin_cache [max positions, rotary_dim/2].
private func contribRotaryEmbedding(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), ids = try c.input(1), cos0 = try c.input(2), sin0 = try c.input(3)
  if c.int("is_packed_batching", 0) != 0 { throw c.unsupported("is_packed_batching is not supported") }
  guard cos0.rank == 2, sin0.shape == cos0.shape else { throw c.fail("cos_cache \(cos0.shape) and sin_cache \(sin0.shape) must be [positions, dim/2]") }
  var dim = c.int("rotary_embedding_dim", 0)
  var x = try x0.converted(to: .float)
  let fourD = x.rank == 4
  if fourD {
    x = x.transposed([0, 2, 1, 3])
  } else {
    guard x.rank == 3 else { throw c.fail("input must be 3-D or 4-D, not \(x.shape)") }
    let headSize: Int
    if dim > 0 {
      let heads = c.int("num_heads", 0)
      guard heads > 0, x.shape[2] % heads == 0 else { throw c.fail("num_heads must divide the hidden size when rotary_embedding_dim is set") }
      headSize = x.shape[2] / heads
    } else {
      headSize = cos0.shape[1] * 2
    }
    guard headSize > 0, x.shape[2] % headSize == 0 else { throw c.fail("head size \(headSize) does not divide the hidden size \(x.shape[2])") }
    x = x.reshaped([x.shape[0], x.shape[1], x.shape[2] / headSize, headSize])
  }
  if dim == 0 { dim = x.shape[3] }
  guard cos0.shape[1] * 2 >= dim else { throw c.fail("the caches cover \(cos0.shape[1] * 2) dimensions, fewer than \(dim)") }
  let batch = x.shape[0], length = x.shape[1], width = cos0.shape[1]
  let positions = try ids.integers()
  let position: (Int, Int) -> Int
  if positions.count == 1 {
    let offset = positions[0]
    position = { _, s in offset + s }
  } else {
    guard positions.count == batch * length else { throw c.fail("position_ids \(ids.shape) must be [\(batch), \(length)] or [1]") }
    position = { b, s in positions[b * length + s] }
  }
  // The caches' rows may be wider than dim/2: take each row's first dim/2 values.
  let cosRows = try cos0.floats(), sinRows = try sin0.floats(), half = dim / 2
  var cosines = [Float](), sines = [Float]()
  for r in 0..<cos0.shape[0] {
    cosines += cosRows[(r * width)..<(r * width + half)]
    sines += sinRows[(r * width)..<(r * width + half)]
  }
  try rotate(c, &x, cos: cosines, sin: sines, cacheRows: cos0.shape[0], dim: dim, interleaved: c.int("interleaved", 0) != 0, position: position)
  let out = fourD ? x.transposed([0, 2, 1, 3]) : x.reshaped(x0.shape)
  return try out.converted(to: x0.dataType)
}

/// com.microsoft GroupQueryAttention over a KV cache: query [B, S, N·H] (or packed QKV), key and
/// value [B, S, Nkv·H], past_key/past_value [B, Nkv, P, H]; batch entry b holds seqlens_k[b] + 1
/// tokens in all, the new ones last (the first prompt: tokens 0..S−1, shorter entries padded on the
/// right). New keys and values are written after the past ones into present [B, Nkv, max(P,
/// total), H]. Causal (local_window_size keys at most), rotary embedding of Q and K (do_rotary),
/// softcap, attention_bias, smooth softmax or head sinks.
private func groupQueryAttention(_ c: KernelContext) throws -> [NDArray] {
  let q0 = try c.input(0)
  let heads = c.int("num_heads", 0), kvHeads = c.int("kv_num_heads", 0)
  guard heads > 0, kvHeads > 0, heads % kvHeads == 0 else { throw c.fail("num_heads \(heads) must be a positive multiple of kv_num_heads \(kvHeads)") }
  if c.int("sliding_window_cache", 0) != 0 { throw c.unsupported("sliding_window_cache is not supported") }
  if c.string("k_quant_type", "NONE") != "NONE" || c.string("v_quant_type", "NONE") != "NONE" { throw c.unsupported("quantized KV caches are not supported") }
  if c.optionalInput(13) != nil || c.optionalInput(14) != nil { throw c.unsupported("q_norm_weight and k_norm_weight are not supported") }
  guard q0.rank == 3 else { throw c.fail("query \(q0.shape) must be [B, S, hidden]") }
  let batch = q0.shape[0], length = q0.shape[1]
  var q: NDArray, k: NDArray, v: NDArray
  let qf = try q0.converted(to: .float)
  if c.optionalInput(1) == nil {
    // Packed QKV: [B, S, (N + 2·Nkv)·H].
    let headSize = q0.shape[2] / (heads + 2 * kvHeads)
    guard headSize > 0, headSize * (heads + 2 * kvHeads) == q0.shape[2] else { throw c.fail("packed QKV \(q0.shape) does not split into \(heads)+2·\(kvHeads) heads") }
    q = try qf.slice(axes: [2], starts: [0], ends: [heads * headSize], steps: [1])
    k = try qf.slice(axes: [2], starts: [heads * headSize], ends: [(heads + kvHeads) * headSize], steps: [1])
    v = try qf.slice(axes: [2], starts: [(heads + kvHeads) * headSize], ends: [(heads + 2 * kvHeads) * headSize], steps: [1])
  } else {
    q = qf
    k = try c.input(1).converted(to: .float)
    v = try c.input(2).converted(to: .float)
  }
  guard q.shape[2] % heads == 0, k.rank == 3, v.rank == 3, k.shape[0] == batch, k.shape[1] == length, v.shape == k.shape,
        k.shape[2] % kvHeads == 0, k.shape[2] / kvHeads == q.shape[2] / heads else {
    throw c.fail("query \(q.shape), key \(k.shape) and value \(v.shape) do not fit \(heads) and \(kvHeads) heads")
  }
  let headSize = q.shape[2] / heads
  // [B, S, N, H] for the rotary embedding, then [B, N, S, H].
  var q4 = q.reshaped([batch, length, heads, headSize]), k4 = k.reshaped([batch, length, kvHeads, headSize])
  let seqlens = try c.input(5).integers()
  guard seqlens.count == batch else { throw c.fail("seqlens_k has \(seqlens.count) values for a batch of \(batch)") }
  let totalInput = try c.input(6)
  guard totalInput.count == 1, let totalLength = try totalInput.integers().first else { throw c.fail("total_sequence_length must be a scalar") }
  let pastKey = c.optionalInput(3), pastValue = c.optionalInput(4)
  let pastCapacity = pastKey?.shape[2] ?? 0
  if let pastKey, let pastValue {
    guard pastKey.rank == 4, pastKey.shape == pastValue.shape, pastKey.shape[0] == batch, pastKey.shape[1] == kvHeads, pastKey.shape[3] == headSize else {
      throw c.fail("past_key \(pastKey.shape) and past_value \(pastValue.shape) must be [\(batch), \(kvHeads), P, \(headSize)]")
    }
  }
  // The first prompt: no past (or an empty one) and every token new.
  let prompt = pastCapacity == 0 || totalLength == length
  // Tokens before this step's in entry b.
  func pastLength(_ b: Int) -> Int { prompt ? 0 : seqlens[b] + 1 - length }
  for b in 0..<batch {
    let total = seqlens[b] + 1
    guard total >= 1, total <= Swift.max(totalLength, length), pastLength(b) >= 0 else {
      throw c.fail("seqlens_k \(seqlens[b]) does not fit \(length) new tokens and total_sequence_length \(totalLength)")
    }
  }
  if c.int("do_rotary", 0) != 0 {
    let cos0 = try c.input(7), sin0 = try c.input(8)
    guard cos0.rank == 2, sin0.shape == cos0.shape else { throw c.fail("cos_cache and sin_cache must be [positions, dim/2]") }
    let dim = cos0.shape[1] * 2
    let ids = try c.optionalInput(9)?.integers()
    let position: (Int, Int) -> Int = { b, s in
      if let ids, ids.count == batch * length { return ids[b * length + s] }
      return pastLength(b) + s
    }
    let interleaved = c.int("rotary_interleaved", 0) != 0
    let cosines = try cos0.floats(), sines = try sin0.floats()
    try rotate(c, &q4, cos: cosines, sin: sines, cacheRows: cos0.shape[0], dim: dim, interleaved: interleaved, position: position)
    try rotate(c, &k4, cos: cosines, sin: sines, cacheRows: cos0.shape[0], dim: dim, interleaved: interleaved, position: position)
  }
  q = q4.transposed([0, 2, 1, 3])
  let newK = k4.transposed([0, 2, 1, 3]), newV = v.reshaped([batch, length, kvHeads, headSize]).transposed([0, 2, 1, 3])
  // present: the past rows, then the new ones at each entry's own offset.
  let capacity = Swift.max(pastCapacity, totalLength, length)
  try NDArray.checkAllocation([batch, kvHeads, capacity, headSize], .float, c)
  var presentK = NDArray(zeros: .float, [batch, kvHeads, capacity, headSize]), presentV = presentK
  do {
    let pk = try pastKey.map { try $0.floats() }, pv = try pastValue.map { try $0.floats() }
    let nk = newK.elements(Float.self), nv = newV.elements(Float.self)
    let dk = presentK.mutableElements(Float.self), dv = presentV.mutableElements(Float.self)
    for b in 0..<batch {
      let before = pastLength(b)
      for h in 0..<kvHeads {
        let dst = (b * kvHeads + h) * capacity * headSize
        if let pk, let pv {
          let src = (b * kvHeads + h) * pastCapacity * headSize
          for i in 0..<(Swift.min(before, pastCapacity) * headSize) { dk[dst + i] = pk[src + i]; dv[dst + i] = pv[src + i] }
        }
        for s in 0..<length where before + s < capacity {
          let from = ((b * kvHeads + h) * length + s) * headSize, to = dst + (before + s) * headSize
          for i in 0..<headSize { dk[to + i] = nk[from + i]; dv[to + i] = nv[from + i] }
        }
      }
    }
  }
  let window = c.int("local_window_size", -1), causal = c.int("causal", 1) != 0
  let extra = try attentionBias(c, c.optionalInput(10), batch: batch, heads: heads, length: length, total: capacity)
  let smooth = c.int("smooth_softmax", -1) == 1
  let sinks = try c.optionalInput(11)?.floats()
  if let sinks { guard sinks.count == heads else { throw c.fail("head_sink must have \(heads) values") } }
  let scale = c.node.attribute("scale") != nil && c.float("scale", 0) != 0 ? c.float("scale", 1) : 1 / Float(headSize).squareRoot()
  var problem = AttentionProblem(q: q, k: presentK, v: presentV, scale: scale, softcap: c.float("softcap", 0), bias: { b, h, i, row in
    extra?(b, h, i, row)
  })
  if let sinks { problem.sink = { sinks[$0] } } else if smooth { problem.sink = { _ in 0 } }
  problem.keyLimit = { b, i in
    let total = seqlens[b] + 1
    // Prompt rows beyond an entry's length attend its keys like its last token.
    let position = prompt ? Swift.min(i, total - 1) : pastLength(b) + i
    let end = causal ? Swift.min(position + 1, total) : total
    let start = window > 0 ? Swift.max(0, position - window + 1) : 0
    return start..<Swift.max(start, end)
  }
  let mode = c.int("qk_output", 0)
  let (y, scores) = problem.solve(keepScores: mode)
  let type = q0.dataType
  var outputs = [try mergeHeads(y).converted(to: type), try presentK.converted(to: type), try presentV.converted(to: type)]
  if let scores { outputs.append(try scores.converted(to: type)) }
  return outputs
}
