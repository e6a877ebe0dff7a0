import Foundation
import IR
import Linalg
import Support

/// The transformer operators of opsets 23–25: Attention (multi-head, grouped-query and
/// multi-query; boolean or additive masks, causal and sliding-window masks, an internal KV cache
/// through past/present key and value, an external one through nonpad_kv_seqlen, soft-capping and
/// the QK debug output), RotaryEmbedding, and LinearAttention (opset 27: the linear, gated, delta
/// and gated-delta recurrences). Computed in Float; Attention is one GEMM pair per batch and head.
extension Kernels {
  static let attention: [String: Kernel] = [
    "Attention": { c in try scaledDotProductAttention(c) },
    "RotaryEmbedding": { c in [try rotaryEmbedding(c)] },
    "LinearAttention": { c in try linearAttention(c) },
  ]
}

/// A [B, H, S, D] float tensor, from a 4-D input or a 3-D [B, S, H·D] one split into `heads`.
private func heads(_ c: KernelContext, _ x: NDArray, _ heads: Int?, _ name: String) throws -> NDArray {
  let f = x.dataType == .float ? x : try x.converted(to: .float)
  if x.rank == 4 { return f }
  guard x.rank == 3 else { throw c.fail("\(name) must be 3-D or 4-D, not \(x.shape)") }
  guard let h = heads, h > 0, x.shape[2] % h == 0 else {
    throw c.fail("\(name) \(x.shape) is 3-D: q_num_heads and kv_num_heads must be given and divide its hidden size")
  }
  return f.reshaped([x.shape[0], x.shape[1], h, x.shape[2] / h]).transposed([0, 2, 1, 3])
}

private func scaledDotProductAttention(_ c: KernelContext) throws -> [NDArray] {
  let q0 = try c.input(0), k0 = try c.input(1), v0 = try c.input(2)
  guard q0.rank == k0.rank, k0.rank == v0.rank else { throw c.fail("Q, K and V must have one rank (3 or 4)") }
  let qHeadsAttr = c.node.attribute("q_num_heads") != nil ? c.int("q_num_heads", 0) : nil
  let kvHeadsAttr = c.node.attribute("kv_num_heads") != nil ? c.int("kv_num_heads", 0) : nil
  var q = try heads(c, q0, qHeadsAttr, "Q")
  var k = try heads(c, k0, kvHeadsAttr, "K"), v = try heads(c, v0, kvHeadsAttr, "V")
  let batch = q.shape[0], qHeads = q.shape[1], qLength = q.shape[2], headSize = q.shape[3]
  guard k.shape[0] == batch, v.shape[0] == batch, k.shape[1] == v.shape[1], k.shape[3] == headSize, k.shape[2] == v.shape[2] else {
    throw c.fail("K \(k.shape) and V \(v.shape) do not fit Q \(q.shape)")
  }
  let kvHeads = k.shape[1], valueSize = v.shape[3]
  guard kvHeads > 0, qHeads % kvHeads == 0 else { throw c.fail("\(qHeads) query heads are not a multiple of \(kvHeads) key/value heads") }
  // The internal cache: present = past ++ new along the sequence.
  let pastKey = c.optionalInput(4), pastValue = c.optionalInput(5)
  guard (pastKey == nil) == (pastValue == nil) else { throw c.fail("past_key and past_value must be given together") }
  var pastLength = 0
  if let pastKey, let pastValue {
    let pk = try pastKey.converted(to: .float), pv = try pastValue.converted(to: .float)
    guard pk.rank == 4, pv.rank == 4, pk.shape[0] == batch, pk.shape[1] == kvHeads, pk.shape[3] == headSize,
          pv.shape[0] == batch, pv.shape[1] == kvHeads, pv.shape[3] == valueSize, pk.shape[2] == pv.shape[2] else {
      throw c.fail("past_key \(pastKey.shape) and past_value \(pastValue.shape) do not fit K \(k.shape) and V \(v.shape)")
    }
    pastLength = pk.shape[2]
    k = concatenate(pk, k, axis: 2)
    v = concatenate(pv, v, axis: 2)
  }
  let kvLength = k.shape[2]
  let nonpad = try c.optionalInput(6)?.integers()
  if let nonpad {
    guard nonpad.count == batch else { throw c.fail("nonpad_kv_seqlen has \(nonpad.count) values for a batch of \(batch)") }
    guard nonpad.allSatisfy({ $0 >= 0 && $0 <= kvLength }) else { throw c.fail("nonpad_kv_seqlen \(nonpad) must lie in 0...\(kvLength)") }
    guard pastKey == nil else { throw c.fail("nonpad_kv_seqlen cannot be combined with past_key and past_value") }
  }
  let scale = c.node.attribute("scale") != nil ? c.float("scale", 1) : 1 / Float(headSize).squareRoot()
  let softcap = c.float("softcap", 0), causal = c.int("is_causal", 0) != 0
  let left = c.int("left_window_size", -1), right = c.int("right_window_size", -1)
  let mode = c.int("qk_matmul_output_mode", 0)
  guard left >= -1, right >= -1, (0...3).contains(mode) else {
    throw c.fail("left_window_size and right_window_size must be -1 or more, qk_matmul_output_mode 0 to 3")
  }
  // The mask, as additive values broadcast over [B, H, Sq, Skv]: booleans become 0 or −∞; a mask
  // shorter than the keys counts the missing keys as masked.
  var maskValues: Elements<Float>?
  var maskShape = [Int](), maskStrides = [Int]()
  if let m = c.optionalInput(3) {
    guard m.rank >= 1, m.rank <= 4, let last = m.shape.last, last <= kvLength else {
      throw c.fail("attn_mask \(m.shape) does not broadcast to [\(batch), \(qHeads), \(qLength), \(kvLength)]")
    }
    var additive = try m.converted(to: .float)
    if m.dataType == .bool {
      let e = additive.mutableElements(Float.self)
      for i in 0..<e.count { e[i] = e[i] != 0 ? 0 : -.infinity }
    }
    maskShape = Array(repeating: 1, count: 4 - m.rank) + m.shape
    let full = [batch, qHeads, qLength, maskShape[3]]
    for d in 0..<3 where maskShape[d] != 1 && maskShape[d] != full[d] {
      throw c.fail("attn_mask \(m.shape) does not broadcast to [\(batch), \(qHeads), \(qLength), \(kvLength)]")
    }
    maskStrides = strides(maskShape).enumerated().map { maskShape[$0.offset] == 1 ? 0 : $0.element }
    maskValues = additive.elements(Float.self)
  }
  try NDArray.checkAllocation([batch, qHeads, qLength, kvLength], .float, c)
  try NDArray.checkAllocation([batch, qHeads, qLength, valueSize], .float, c)
  var y = NDArray(zeros: .float, [batch, qHeads, qLength, valueSize])
  var qk = NDArray(zeros: .float, [batch, qHeads, qLength, kvLength])
  // bfloat16 inputs round every intermediate to bfloat16, as the operator's definition computes
  // in T: the scaled Q and K, the products, each step of the softmax (its sum in order).
  // Computing in Float and rounding once differs by an ulp of bfloat16 (0.4%), more than the
  // cases' tolerance. (float16 needs no such care: Float and one rounding agree within it.)
  let round: ((Float) -> Float)? = q0.dataType == .bfloat16 ? { Float(bitPattern: UInt32(bfloat16Bits($0)) << 16) } : nil
  var alpha = scale
  if let round {
    let root = round(scale.squareRoot())
    for t in [0, 1] {
      var a = t == 0 ? q : k
      let e = a.mutableElements(Float.self)
      for i in 0..<e.count { e[i] = round(e[i] * root) }
      if t == 0 { q = a } else { k = a }
    }
    alpha = 1
  }
  let qe = q.elements(Float.self), ke = k.elements(Float.self), ve = v.elements(Float.self)
  let ye = y.mutableElements(Float.self), qke = qk.mutableElements(Float.self)
  var scores = [Float](repeating: 0, count: qLength * kvLength), bias = scores
  let group = qHeads / kvHeads
  withExtendedLifetime((qe, ke, ve, ye, qke)) {
    guard let qp = qe.baseAddress, let kp = ke.baseAddress, let vp = ve.baseAddress, let yp = ye.baseAddress,
          let qkp = qke.baseAddress else { return }
    for b in 0..<batch {
      // Keys before the query block: the causal frontier and the window are offset by it.
      let offset = pastKey != nil ? pastLength : (nonpad.map { $0[b] - qLength } ?? 0)
      for h in 0..<qHeads {
        let kvh = h / group
        for i in 0..<qLength {
          for j in 0..<kvLength {
            var value: Float = 0
            if let maskValues {
              if j < maskShape[3] {
                value = maskValues[b * maskStrides[0] + h * maskStrides[1] + i * maskStrides[2] + j * maskStrides[3]]
              } else {
                value = -.infinity
              }
            }
            let position = i + offset
            if causal && j > position { value = -.infinity }
            if left >= 0 && position - j > left { value = -.infinity }
            if right >= 0 && j - position > right { value = -.infinity }
            if let nonpad, j >= nonpad[b] { value = -.infinity }
            bias[i * kvLength + j] = value
          }
        }
        scores.withUnsafeMutableBufferPointer { sp in
          guard let s = sp.baseAddress, qLength > 0, kvLength > 0 else { return }
          Linalg.gemm(m: qLength, n: kvLength, k: headSize, alpha: alpha, a: qp + (b * qHeads + h) * qLength * headSize,
                      b: kp + (b * kvHeads + kvh) * kvLength * headSize, c: s, transposeB: true, parallel: false)
        }
        let slab = qkp + (b * qHeads + h) * qLength * kvLength
        for i in 0..<qLength {
          let row = i * kvLength
          var allMasked = true
          for j in 0..<kvLength {
            if let round {
              scores[row + j] = round(scores[row + j])
              if softcap > 0 { scores[row + j] = round(softcap * round(Foundation.tanh(round(scores[row + j] / softcap)))) }
            } else if softcap > 0 {
              scores[row + j] = softcap * Foundation.tanh(scores[row + j] / softcap)
            }
            if mode <= 1 { slab[row + j] = scores[row + j] }
            scores[row + j] += bias[row + j]
            if let round { scores[row + j] = round(scores[row + j]) }
            if mode == 2 { slab[row + j] = scores[row + j] }
            if bias[row + j] != -.infinity { allMasked = false }
          }
          // A fully masked row attends nothing: zeros, never NaN.
          var top = -Float.infinity
          for j in 0..<kvLength { top = max(top, scores[row + j]) }
          if allMasked || kvLength == 0 {
            for j in 0..<kvLength { scores[row + j] = 0 }
          } else if let round {
            let shift = top == -.infinity ? 0 : top
            var sum: Float = 0
            for j in 0..<kvLength {
              let e = round(Foundation.exp(round(scores[row + j] - shift)))
              scores[row + j] = e
              sum = j == 0 ? e : round(sum + e)
            }
            let d = sum == 0 ? 1 : sum
            for j in 0..<kvLength { scores[row + j] = round(scores[row + j] / d) }
          } else {
            let shift = top == -.infinity ? 0 : top
            var sum: Float = 0
            for j in 0..<kvLength { let e = Foundation.exp(scores[row + j] - shift); scores[row + j] = e; sum += e }
            let r = sum == 0 ? 1 : 1 / sum
            for j in 0..<kvLength { scores[row + j] *= r }
          }
          if mode == 3 { for j in 0..<kvLength { slab[row + j] = scores[row + j] } }
        }
        scores.withUnsafeBufferPointer { sp in
          guard let s = sp.baseAddress, qLength > 0, kvLength > 0, valueSize > 0 else { return }
          Linalg.gemm(m: qLength, n: valueSize, k: kvLength, a: s, b: vp + (b * kvHeads + kvh) * kvLength * valueSize,
                      c: yp + (b * qHeads + h) * qLength * valueSize, parallel: false)
        }
      }
    }
  }
  let type = q0.dataType
  func back(_ a: NDArray) throws -> NDArray { type == .float ? a : try a.converted(to: type) }
  let output = q0.rank == 3 ? y.transposed([0, 2, 1, 3]).reshaped([batch, qLength, qHeads * valueSize]) : y
  return [try back(output), try back(k), try back(v), try back(qk)]
}

/// a ++ b along `axis` (same type, same other dimensions).
private func concatenate(_ a: NDArray, _ b: NDArray, axis: Int) -> NDArray {
  var shape = a.shape
  shape[axis] += b.shape[axis]
  var out = NDArray(uninitialized: a.dataType, shape)
  let outer = a.shape[..<axis].reduce(1, *), width = a.elementWidth
  let rowA = a.shape[axis...].reduce(1, *) * width, rowB = b.shape[axis...].reduce(1, *) * width
  let dst = out.mutableBytes()
  a.withUnsafeBytes { pa in
    b.withUnsafeBytes { pb in
      for o in 0..<outer {
        if rowA > 0, let s = pa.baseAddress { (dst + o * (rowA + rowB)).copyMemory(from: s + o * rowA, byteCount: rowA) }
        if rowB > 0, let s = pb.baseAddress { (dst + o * (rowA + rowB) + rowA).copyMemory(from: s + o * rowB, byteCount: rowB) }
      }
    }
  }
  return out
}

/// Rotates pairs of each head's first rotary_embedding_dim values (the two halves, or even and
/// odd elements when interleaved) by the cached angle of the token's position.
private func rotaryEmbedding(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), cos0 = try c.input(1), sin0 = try c.input(2)
  var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  // Work on [B, S, H, D].
  let fourD = x.rank == 4
  if fourD {
    x = x.transposed([0, 2, 1, 3])
  } else {
    guard x.rank == 3 else { throw c.fail("input must be 3-D or 4-D, not \(x.shape)") }
    let h = c.int("num_heads", 0)
    guard h > 0, x.shape[2] % h == 0 else { throw c.fail("num_heads \(h) must divide the hidden size \(x.shape[2]) of a 3-D input") }
    x = x.reshaped([x.shape[0], x.shape[1], h, x.shape[2] / h])
  }
  let batch = x.shape[0], length = x.shape[1], headCount = x.shape[2], headSize = x.shape[3]
  var dim = c.int("rotary_embedding_dim", 0)
  if dim == 0 { dim = headSize }
  guard dim > 0, dim <= headSize, dim % 2 == 0 else { throw c.fail("rotary_embedding_dim \(dim) must be even and at most \(headSize)") }
  let half = dim / 2, interleaved = c.int("interleaved", 0) != 0
  let cosines = try cos0.floats(), sines = try sin0.floats()
  guard cos0.shape == sin0.shape, cos0.shape.last == half else {
    throw c.fail("cos_cache \(cos0.shape) and sin_cache \(sin0.shape) must end in rotary_embedding_dim/2 = \(half)")
  }
  // Row of the caches for (batch b, position s).
  let row: (Int, Int) throws -> Int
  if let ids = try c.optionalInput(3)?.integers() {
    guard ids.count == batch * length, cos0.rank == 2 else {
      throw c.fail("position_ids must be [\(batch), \(length)] and the caches [positions, \(half)]")
    }
    let positions = cos0.shape[0]
    row = { b, s in
      let p = ids[b * length + s]
      guard p >= 0 && p < positions else { throw c.fail("position \(p) is outside the caches' \(positions) rows") }
      return p
    }
  } else {
    guard cos0.rank == 3, cos0.shape[0] == batch, cos0.shape[1] == length else {
      throw c.fail("without position_ids the caches must be [\(batch), \(length), \(half)], not \(cos0.shape)")
    }
    row = { b, s in b * length + s }
  }
  let e = x.mutableElements(Float.self)
  for b in 0..<batch {
    for s in 0..<length {
      let r = try row(b, s) * half
      for h in 0..<headCount {
        let base = ((b * length + s) * headCount + h) * headSize
        for i in 0..<half {
          let first = interleaved ? base + 2 * i : base + i, second = interleaved ? first + 1 : first + half
          let a = e[first], z = e[second], co = cosines[r + i], si = sines[r + i]
          e[first] = co * a - si * z
          e[second] = si * a + co * z
        }
      }
    }
  }
  let out = fourD ? x.transposed([0, 2, 1, 3]) : x.reshaped(x0.shape)
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// The recurrence over tokens of a [d_k, d_v] state per batch and key/value head:
///   gated rules decay it by exp(g), delta rules write β·(v − Sᵀk) instead of v, then S += k ⊗ v;
///   each query head reads o = scale · qᵀS from its group's state.
private func linearAttention(_ c: KernelContext) throws -> [NDArray] {
  let q0 = try c.input(0), k0 = try c.input(1), v0 = try c.input(2)
  let qHeads = c.int("q_num_heads", 0), kvHeads = c.int("kv_num_heads", 0)
  guard qHeads > 0, kvHeads > 0, qHeads % kvHeads == 0 else {
    throw c.fail("q_num_heads (\(qHeads)) must be a positive multiple of kv_num_heads (\(kvHeads))")
  }
  guard q0.rank == 3, k0.rank == 3, v0.rank == 3, k0.shape[0] == q0.shape[0], v0.shape[0] == q0.shape[0],
        k0.shape[1] == q0.shape[1], v0.shape[1] == q0.shape[1], q0.shape[2] % qHeads == 0, v0.shape[2] % kvHeads == 0,
        k0.shape[2] == kvHeads * (q0.shape[2] / qHeads) else {
    throw c.fail("query \(q0.shape), key \(k0.shape) and value \(v0.shape) must be [B, T, heads·d] of one B and T")
  }
  let rule = c.string("update_rule", "gated_delta")
  guard ["linear", "gated", "delta", "gated_delta"].contains(rule) else { throw c.fail("update_rule '\(rule)' is unknown") }
  let gated = rule.hasPrefix("gated"), delta = rule.hasSuffix("delta")
  let batch = q0.shape[0], steps = q0.shape[1], dk = q0.shape[2] / qHeads, dv = v0.shape[2] / kvHeads
  let group = qHeads / kvHeads
  let decay = c.optionalInput(4), beta = c.optionalInput(5)
  guard gated == (decay != nil), delta == (beta != nil) else {
    throw c.fail("update_rule '\(rule)' \(gated ? "needs" : "takes no") decay and \(delta ? "needs" : "takes no") beta")
  }
  if let decay, decay.rank != 3 || decay.shape[0] != batch || decay.shape[1] != steps || (decay.shape[2] != kvHeads && decay.shape[2] != kvHeads * dk) {
    throw c.fail("decay \(decay.shape) must be [\(batch), \(steps), \(kvHeads) or \(kvHeads * dk)]")
  }
  if let beta, beta.rank != 3 || beta.shape[0] != batch || beta.shape[1] != steps || (beta.shape[2] != kvHeads && beta.shape[2] != 1) {
    throw c.fail("beta \(beta.shape) must be [\(batch), \(steps), \(kvHeads) or 1]")
  }
  let past = c.optionalInput(3)
  if let past, past.shape != [batch, kvHeads, dk, dv] { throw c.fail("past_state \(past.shape) must be [\(batch), \(kvHeads), \(dk), \(dv)]") }
  let scaleAttr = c.float("scale", 0)
  let scale = scaleAttr == 0 ? 1 / Float(dk).squareRoot() : scaleAttr
  let q = try q0.floats(), k = try k0.floats(), v = try v0.floats()
  let g = try decay?.floats(), bt = try beta?.floats()
  let decayWidth = decay?.shape[2] ?? 0, betaWidth = beta?.shape[2] ?? 0
  var state = try past?.floats() ?? [Float](repeating: 0, count: batch * kvHeads * dk * dv)
  var out = [Float](repeating: 0, count: batch * steps * qHeads * dv)
  var written = [Float](repeating: 0, count: dv)
  for b in 0..<batch {
    for t in 0..<steps {
      for h in 0..<kvHeads {
        let s = (b * kvHeads + h) * dk * dv
        let key = (b * steps + t) * kvHeads * dk + h * dk, value = (b * steps + t) * kvHeads * dv + h * dv
        if let g {
          for i in 0..<dk {
            let factor = Foundation.exp(decayWidth == kvHeads ? g[(b * steps + t) * kvHeads + h] : g[key + i])
            for j in 0..<dv { state[s + i * dv + j] *= factor }
          }
        }
        for j in 0..<dv { written[j] = v[value + j] }
        if let bt {
          let rate = bt[(b * steps + t) * betaWidth + (betaWidth == 1 ? 0 : h)]
          for j in 0..<dv {
            var retrieved: Float = 0
            for i in 0..<dk { retrieved += state[s + i * dv + j] * k[key + i] }
            written[j] = rate * (written[j] - retrieved)
          }
        }
        for i in 0..<dk { for j in 0..<dv { state[s + i * dv + j] += k[key + i] * written[j] } }
        for qh in (h * group)..<((h + 1) * group) {
          let query = (b * steps + t) * qHeads * dk + qh * dk, o = (b * steps + t) * qHeads * dv + qh * dv
          for j in 0..<dv {
            var acc: Float = 0
            for i in 0..<dk { acc += q[query + i] * state[s + i * dv + j] }
            out[o + j] = scale * acc
          }
        }
      }
    }
  }
  return [try NDArray(doubles: out.map(Double.init), as: q0.dataType, shape: [batch, steps, qHeads * dv]),
          try NDArray(doubles: state.map(Double.init), as: past?.dataType ?? q0.dataType, shape: [batch, kvHeads, dk, dv])]
}
