import CVectorMath
import Foundation
import IR
import Support

/// BatchNormalization (inference), LayerNormalization, InstanceNormalization, GroupNormalization,
/// RMSNormalization, MeanVarianceNormalization, LpNormalization and LRN (local response
/// normalization across channels), computed in Float.
extension Kernels {
  static let normalization: [String: Kernel] = [
    "BatchNormalization": { c in
      if c.int("training_mode", 0) != 0 { return try batchNormalizationTraining(c) }
      let x0 = try c.input(0)
      var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      let scale = try c.input(1).floats(), bias = try c.input(2).floats()
      let mean = try c.input(3).floats(), variance = try c.input(4).floats()
      let eps = c.float("epsilon", 1e-5)
      guard x.rank >= 2 else { throw c.fail("input \(x.shape) has no channel dimension") }
      let n = x.shape[0], ch = x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
      guard [scale.count, bias.count, mean.count, variance.count].allSatisfy({ $0 == ch }) else {
        throw c.fail("scale, bias, mean and var must have \(ch) values")
      }
      // One pass from input to a new output (not a copy and then a pass over it), planes split
      // among the threads.
      var y = NDArray(uninitialized: .float, x.shape)
      let src = x.elements(Float.self), dst = y.mutableElements(Float.self)
      let factors = (0..<ch).map { k in scale[k] / (variance[k] + eps).squareRoot() }
      let shifts = (0..<ch).map { k in bias[k] - mean[k] * factors[k] }
      withExtendedLifetime((src, dst)) {
        guard let sp = src.baseAddress, let dp = dst.baseAddress else { return }
        Parallel.forEach(n * ch, costPerItem: size) { planes in
          for p in planes {
            let a = factors[p % ch], s = shifts[p % ch]
            let from = sp + p * size, to = dp + p * size
            for i in 0..<size { to[i] = from[i] * a + s }
          }
        }
      }
      x = y
      return [x0.dataType == .float ? x : try x.converted(to: x0.dataType)]
    },
    "LayerNormalization": { c in
      let x0 = try c.input(0)
      let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      let axis = try c.axis(c.int("axis", -1), rank: x.rank)
      let eps = c.float("epsilon", 1e-5)
      let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[axis...].reduce(1, *)
      let scale = try c.input(1), bias = c.optionalInput(2)
      var means = NDArray(uninitialized: .float, Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis))
      var invStd = means
      /// Whether a scale or bias holds one value per position of the normalized axes, laid out as they are.
      func perPosition(_ p: NDArray?) -> Bool {
        guard let p else { return true }
        return p.dataType == .float && p.count == inner && p.rank <= x.rank - axis && broadcastShape(x.shape, p.shape) == x.shape
      }
      if perPosition(scale) && perPosition(bias) {
        // The common case (one scale and bias per feature) in one C pass per row.
        var y = NDArray(uninitialized: .float, x.shape)
        let src = x.elements(Float.self), sc = scale.elements(Float.self), bi = bias?.elements(Float.self)
        let dst = y.mutableElements(Float.self), mu = means.mutableElements(Float.self), rs = invStd.mutableElements(Float.self)
        withExtendedLifetime((src, sc, bi, dst, mu, rs)) {
          guard let xp = src.baseAddress, let sp = sc.baseAddress, let yp = dst.baseAddress, let mp = mu.baseAddress,
                let rp = rs.baseAddress else { return }
          vm_layer_norm(xp, outer, inner, sp, bi?.baseAddress, eps, yp, mp, rp)
        }
        return [x0.dataType == .float ? y : try y.converted(to: x0.dataType), means, invStd]
      }
      var normalized = NDArray(uninitialized: .float, x.shape)
      let src = x.elements(Float.self), dst = normalized.mutableElements(Float.self)
      let mu = means.mutableElements(Float.self), rs = invStd.mutableElements(Float.self)
      for o in 0..<outer {
        var sum: Float = 0
        for i in 0..<inner { sum += src[o * inner + i] }
        let mean = sum / Float(inner)
        var sq: Float = 0
        for i in 0..<inner { let d = src[o * inner + i] - mean; sq += d * d }
        let r = 1 / (sq / Float(inner) + eps).squareRoot()
        mu[o] = mean
        rs[o] = r
        for i in 0..<inner { dst[o * inner + i] = (src[o * inner + i] - mean) * r }
      }
      var y = try arithmetic(c, normalized, try scale.converted(to: .float), op: "Mul", *)
      if let bias { y = try arithmetic(c, y, try bias.converted(to: .float), op: "Add", +) }
      return [x0.dataType == .float ? y : try y.converted(to: x0.dataType), means, invStd]
    },
    "InstanceNormalization": { c in
      let x0 = try c.input(0)
      var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
      let scale = try c.input(1).floats(), bias = try c.input(2).floats(), eps = c.float("epsilon", 1e-5)
      guard x.rank >= 2 else { throw c.fail("input \(x.shape) has no channel dimension") }
      let n = x.shape[0], ch = x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
      guard scale.count == ch, bias.count == ch else { throw c.fail("scale and bias must have \(ch) values") }
      let e = x.mutableElements(Float.self)
      for b in 0..<n {
        for k in 0..<ch {
          let base = (b * ch + k) * size
          var sum: Float = 0
          for i in 0..<size { sum += e[base + i] }
          let mean = sum / Float(size)
          var sq: Float = 0
          for i in 0..<size { let d = e[base + i] - mean; sq += d * d }
          let r = 1 / (sq / Float(size) + eps).squareRoot()
          for i in 0..<size { e[base + i] = (e[base + i] - mean) * r * scale[k] + bias[k] }
        }
      }
      return [x0.dataType == .float ? x : try x.converted(to: x0.dataType)]
    },
    "GroupNormalization": { c in [try groupNormalization(c)] },
    "RMSNormalization": { c in [try rmsNormalization(c)] },
    "MeanVarianceNormalization": { c in [try meanVarianceNormalization(c)] },
    "LpNormalization": { c in [try lpNormalization(c)] },
    "LRN": { c in [try localResponseNormalization(c)] },
    // ONNX Runtime registers SimplifiedLayerNormalization in the default domain; its optimizer
    // writes it there (T5, LLaMA-style RMS norms).
    "SimplifiedLayerNormalization": { c in try simplifiedLayerNormalization(c) },
  ]

  /// ONNX Runtime's com.microsoft normalizations: SkipLayerNormalization and
  /// SkipSimplifiedLayerNormalization (residual add, bias, then LayerNorm or RMSNorm, with the
  /// sum as an extra output), SimplifiedLayerNormalization, EmbedLayerNormalization (BERT's
  /// embeddings: word + position + segment, then LayerNorm, and the mask's lengths).
  static let normalizationContrib: [String: Kernel] = [
    "SkipLayerNormalization": { c in try skipLayerNormalization(c, simplified: false) },
    "SkipSimplifiedLayerNormalization": { c in try skipLayerNormalization(c, simplified: true) },
    "SimplifiedLayerNormalization": { c in try simplifiedLayerNormalization(c) },
    "EmbedLayerNormalization": { c in try embedLayerNormalization(c) },
  ]
}

/// Normalizes each row of `width` values of `x` in place: by mean and variance (LayerNorm) or by
/// the root mean square (`simplified`), then × gamma (+ beta). Returns each row's mean and
/// 1/σ (1/rms). Sums in Double, as ONNX Runtime's CPU kernels accumulate.
private func normalizeRows(_ x: Elements<Float>, width: Int, gamma: [Float], beta: [Float]?, epsilon: Float,
                           simplified: Bool) -> (means: [Float], inverse: [Float]) {
  let rows = width == 0 ? 0 : x.count / width
  var means = [Float](repeating: 0, count: rows), inverse = means
  for r in 0..<rows {
    let base = r * width
    var sum = 0.0, squares = 0.0
    for i in 0..<width {
      let v = Double(x[base + i])
      sum += v
      squares += v * v
    }
    let mean = simplified ? 0 : sum / Double(width)
    let variance = simplified ? squares / Double(width) : Swift.max(squares / Double(width) - mean * mean, 0)
    let inv = 1 / (variance + Double(epsilon)).squareRoot()
    means[r] = Float(mean)
    inverse[r] = Float(inv)
    for i in 0..<width {
      let v = Float((Double(x[base + i]) - mean) * inv) * gamma[i]
      x[base + i] = beta.map { v + $0[i] } ?? v
    }
  }
  return (means, inverse)
}

/// SkipLayerNormalization / SkipSimplifiedLayerNormalization: s = input + skip (+ bias); output
/// the normalized s, the rows' mean and 1/σ ([..., 1]), and s itself.
private func skipLayerNormalization(_ c: KernelContext, simplified: Bool) throws -> [NDArray] {
  let x0 = try c.input(0), skip0 = try c.input(1), gamma = try c.input(2).floats()
  guard x0.rank >= 2, let width = x0.shape.last, x0.dataType.isFloatingPoint else {
    throw c.fail("input \(x0.shape) must be [batch, sequence, hidden] or [tokens, hidden] of a float type")
  }
  // SkipSimplifiedLayerNormalization has no beta: its input 3 is the bias.
  let beta = simplified ? nil : try c.optionalInput(3)?.floats()
  let bias = try c.optionalInput(simplified ? 3 : 4)?.floats()
  guard gamma.count == width, beta.map({ $0.count == width }) ?? true, bias.map({ $0.count == width }) ?? true else {
    throw c.fail("gamma, beta and bias must have the hidden size \(width)")
  }
  // skip is [B, S, H], [1, S, H] or [S, H]: it repeats over the batch.
  let skipCount = skip0.count
  guard skip0.shape.last == width, skipCount > 0, x0.count % skipCount == 0,
        Array(x0.shape.suffix(skip0.shape.drop { $0 == 1 }.count)) == Array(skip0.shape.drop { $0 == 1 }) else {
    throw c.fail("skip \(skip0.shape) does not fit input \(x0.shape)")
  }
  var sum = try x0.converted(to: .float)
  let skip = try skip0.floats()
  let e = sum.mutableElements(Float.self)
  for i in 0..<e.count {
    e[i] += skip[i % skipCount]
    if let bias { e[i] += bias[i % width] }
  }
  var y = sum
  let (means, inverse) = normalizeRows(y.mutableElements(Float.self), width: width, gamma: gamma, beta: beta, epsilon: c.float("epsilon", 1e-12),
                                       simplified: simplified)
  let statShape = Array(x0.shape.dropLast()) + [1]
  return [try y.converted(to: x0.dataType), NDArray(means, shape: statShape), NDArray(inverse, shape: statShape),
          try sum.converted(to: x0.dataType)]
}

/// SimplifiedLayerNormalization (RMS norm over the axes from `axis`): x / √(mean(x²) + ε) · scale.
private func simplifiedLayerNormalization(_ c: KernelContext) throws -> [NDArray] {
  let x0 = try c.input(0)
  guard x0.dataType.isFloatingPoint else { throw c.fail("input is \(x0.dataType), not a float type") }
  let axis = try c.axis(c.int("axis", -1), rank: x0.rank)
  let width = x0.shape[axis...].reduce(1, *)
  let scale = try c.input(1)
  guard scale.count == width else { throw c.fail("scale \(scale.shape) must have \(width) values (the axes from \(axis) of \(x0.shape))") }
  var y = try x0.converted(to: .float)
  let (_, inverse) = normalizeRows(y.mutableElements(Float.self), width: width, gamma: try scale.floats(), beta: nil,
                                   epsilon: c.float("epsilon", 1e-5), simplified: true)
  let statShape = Array(x0.shape[..<axis]) + Array(repeating: 1, count: x0.rank - axis)
  return [try y.converted(to: scale.dataType == x0.dataType ? x0.dataType : scale.dataType), NDArray(inverse, shape: statShape)]
}

/// EmbedLayerNormalization: word, position and (optional) segment embeddings summed per token,
/// then LayerNorm; mask_index is each row's count of mask values equal to 1 (0 without a mask);
/// embedding_sum the sum before normalization.
private func embedLayerNormalization(_ c: KernelContext) throws -> [NDArray] {
  let ids = try c.input(0)
  guard ids.rank == 2 else { throw c.fail("input_ids \(ids.shape) must be [batch, sequence]") }
  let batch = ids.shape[0], length = ids.shape[1]
  let word = try c.input(2), position = try c.input(3)
  let segment = c.optionalInput(4), segmentIds = c.optionalInput(1)
  let gamma = try c.input(5).floats(), beta = try c.input(6).floats()
  guard word.rank == 2, position.rank == 2, let hidden = word.shape.last, position.shape[1] == hidden,
        gamma.count == hidden, beta.count == hidden else {
    throw c.fail("word_embedding \(word.shape), position_embedding \(position.shape), gamma and beta must share the hidden size")
  }
  guard (segment == nil) == (segmentIds == nil), segment.map({ $0.rank == 2 && $0.shape[1] == hidden }) ?? true else {
    throw c.fail("segment_ids and segment_embedding must be given together, the embedding [segments, \(hidden)]")
  }
  let w = try word.floats(), p = try position.floats(), s = try segment?.floats()
  let wordIds = try ids.integers(), segIds = try segmentIds?.integers()
  if let segIds, segIds.count != wordIds.count { throw c.fail("segment_ids must have the shape of input_ids \(ids.shape)") }
  var positionIds: [Int]?
  if let pid = c.optionalInput(8) {
    guard pid.rank == 2, pid.shape[1] == length, pid.shape[0] == batch || pid.shape[0] == 1 else {
      throw c.fail("position_ids \(pid.shape) must be [\(batch) or 1, \(length)]")
    }
    positionIds = try pid.integers()
  }
  let perBatchPositions = c.optionalInput(8).map { $0.shape[0] == batch } ?? false
  var sum = [Float](repeating: 0, count: batch * length * hidden)
  for b in 0..<batch {
    for t in 0..<length {
      let token = b * length + t
      let wi = wordIds[token]
      let pi = positionIds.map { $0[perBatchPositions ? token : t] } ?? t
      guard wi >= 0, wi < word.shape[0] else { throw c.fail("input id \(wi) is outside the \(word.shape[0]) word embeddings") }
      guard pi >= 0, pi < position.shape[0] else { throw c.fail("position \(pi) is outside the \(position.shape[0]) position embeddings") }
      let si = segIds?[token] ?? 0
      if let segment { guard si >= 0, si < segment.shape[0] else { throw c.fail("segment id \(si) is outside the \(segment.shape[0]) segment embeddings") } }
      for h in 0..<hidden {
        var v = w[wi * hidden + h] + p[pi * hidden + h]
        if let s { v += s[si * hidden + h] }
        sum[token * hidden + h] = v
      }
    }
  }
  let sumTensor = NDArray(sum, shape: [batch, length, hidden])
  var y = sumTensor
  _ = normalizeRows(y.mutableElements(Float.self), width: hidden, gamma: gamma, beta: beta, epsilon: c.float("epsilon", 1e-12), simplified: false)
  var maskIndex = [Int32](repeating: 0, count: batch)
  if let mask = c.optionalInput(7) {
    guard mask.count == batch * length else { throw c.fail("mask \(mask.shape) must be [\(batch), \(length)]") }
    let m = try mask.integers()
    for b in 0..<batch { maskIndex[b] = Int32(m[(b * length)..<((b + 1) * length)].filter { $0 == 1 }.count) }
  }
  return [try y.converted(to: word.dataType), NDArray(maskIndex, shape: [batch]), try sumTensor.converted(to: word.dataType)]
}

/// BatchNormalization with training_mode = 1: normalized by the batch's own per-channel mean and
/// (population) variance; outputs the running mean and variance updated by `momentum`.
private func batchNormalizationTraining(_ c: KernelContext) throws -> [NDArray] {
  let x0 = try c.input(0)
  guard x0.rank >= 2 else { throw c.fail("input \(x0.shape) has no channel dimension") }
  let x = try x0.converted(to: .double)
  let n = x.shape[0], ch = x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
  let scale = try c.input(1).floats(), bias = try c.input(2).floats(), mean = try c.input(3).floats(), variance = try c.input(4).floats()
  guard [scale.count, bias.count, mean.count, variance.count].allSatisfy({ $0 == ch }) else {
    throw c.fail("scale, B, input_mean and input_var must have \(ch) values")
  }
  let eps = Double(c.float("epsilon", 1e-5)), momentum = Double(c.float("momentum", 0.9))
  let v = x.elements(Double.self)
  var y = [Double](repeating: 0, count: v.count)
  var runningMean = [Double](repeating: 0, count: ch), runningVar = runningMean
  let count = Double(Swift.max(n * size, 1))
  for k in 0..<ch {
    var sum = 0.0
    for b in 0..<n { for i in 0..<size { sum += v[(b * ch + k) * size + i] } }
    let mu = sum / count
    var squares = 0.0
    for b in 0..<n { for i in 0..<size { let d = v[(b * ch + k) * size + i] - mu; squares += d * d } }
    let sigma2 = squares / count
    let inv = 1 / (sigma2 + eps).squareRoot()
    for b in 0..<n {
      for i in 0..<size {
        let j = (b * ch + k) * size + i
        y[j] = (v[j] - mu) * inv * Double(scale[k]) + Double(bias[k])
      }
    }
    runningMean[k] = Double(mean[k]) * momentum + mu * (1 - momentum)
    runningVar[k] = Double(variance[k]) * momentum + sigma2 * (1 - momentum)
  }
  let statType = try c.input(3).dataType
  return [try NDArray(doubles: y, as: x0.dataType, shape: x0.shape), try NDArray(doubles: runningMean, as: statType, shape: [ch]),
          try NDArray(doubles: runningVar, as: statType, shape: [ch])]
}

/// Normalizes each of `num_groups` groups of channels by its mean and variance, then applies a
/// per-channel scale and bias (per group before opset 21, which the file's opset selects).
private func groupNormalization(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let groups = c.int("num_groups", 0), eps = c.float("epsilon", 1e-5)
  guard x.rank >= 2 else { throw c.fail("input \(x.shape) has no channel dimension") }
  let n = x.shape[0], ch = x.shape[1], size = x.shape.dropFirst(2).reduce(1, *)
  guard groups > 0, ch % groups == 0 else { throw c.fail("num_groups \(groups) does not divide the \(ch) channels") }
  let scale = try c.input(1).floats(), bias = try c.input(2).floats()
  let perChannel = c.opset >= 21
  let expected = perChannel ? ch : groups
  guard scale.count == expected, bias.count == expected else {
    throw c.fail("scale and bias must have \(expected) values (they have \(scale.count) and \(bias.count))")
  }
  let perGroup = ch / groups, groupSize = perGroup * size
  let e = x.mutableElements(Float.self)
  for b in 0..<n {
    for g in 0..<groups {
      let base = (b * ch + g * perGroup) * size
      // Double sums: a group can hold many elements, and the mean's error would enter every output.
      var sum = 0.0
      for i in 0..<groupSize { sum += Double(e[base + i]) }
      let mean = sum / Double(max(groupSize, 1))
      var sq = 0.0
      for i in 0..<groupSize { let d = Double(e[base + i]) - mean; sq += d * d }
      let r = Float(1 / (sq / Double(max(groupSize, 1)) + Double(eps)).squareRoot()), m = Float(mean)
      for k in 0..<perGroup {
        let channel = g * perGroup + k
        let a = perChannel ? scale[channel] : scale[g], s = perChannel ? bias[channel] : bias[g]
        let start = base + k * size
        for i in 0..<size { e[start + i] = (e[start + i] - m) * r * a + s }
      }
    }
  }
  return x0.dataType == .float ? x : try x.converted(to: x0.dataType)
}

/// x / √(mean(x²) + ε) over the axes from `axis` on, times a scale that broadcasts to x.
private func rmsNormalization(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let axis = try c.axis(c.int("axis", -1), rank: x.rank)
  let eps = c.float("epsilon", 1e-5)
  let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[axis...].reduce(1, *)
  var normalized = NDArray(uninitialized: .float, x.shape)
  let src = x.elements(Float.self), dst = normalized.mutableElements(Float.self)
  for o in 0..<outer {
    var sq: Float = 0
    for i in 0..<inner { let v = src[o * inner + i]; sq += v * v }
    let r = 1 / (sq / Float(max(inner, 1)) + eps).squareRoot()
    for i in 0..<inner { dst[o * inner + i] = src[o * inner + i] * r }
  }
  let scale = try c.input(1)
  guard broadcastShape(x.shape, scale.shape) == x.shape else {
    throw c.fail("scale \(scale.shape) does not broadcast to the input \(x.shape)")
  }
  let y = try arithmetic(c, normalized, try scale.converted(to: .float), op: "Mul", *)
  return x0.dataType == .float ? y : try y.converted(to: x0.dataType)
}

/// (x − mean) / (σ + 1e-9) with mean and σ over `axes` (default N, H, W: per channel), as the
/// operator's function body defines it.
private func meanVarianceNormalization(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let axes = try Set((c.ints("axes") ?? [0, 2, 3]).map { try c.axis($0, rank: x.rank) })
  // Elements sharing every kept coordinate form one group; `key` maps an element to its group.
  let kept = (0..<x.rank).filter { !axes.contains($0) }
  let keptShape = kept.map { x.shape[$0] }, keptStrides = strides(keptShape), xs = strides(x.shape)
  let groups = keptShape.reduce(1, *)
  let groupSize = groups == 0 ? 0 : x.count / groups
  var key = [Int](repeating: 0, count: x.count)
  for i in 0..<x.count {
    var rest = i, k = 0
    for d in 0..<x.rank {
      let idx = rest / xs[d]
      rest %= xs[d]
      if let j = kept.firstIndex(of: d) { k += idx * keptStrides[j] }
    }
    key[i] = k
  }
  let e = x.mutableElements(Float.self)
  var sum = [Double](repeating: 0, count: groups), sq = [Double](repeating: 0, count: groups)
  for i in 0..<x.count { sum[key[i]] += Double(e[i]) }
  let mean = sum.map { $0 / Double(max(groupSize, 1)) }
  for i in 0..<x.count { let d = Double(e[i]) - mean[key[i]]; sq[key[i]] += d * d }
  let std = sq.map { ($0 / Double(max(groupSize, 1))).squareRoot() + 1e-9 }
  for i in 0..<x.count { e[i] = Float((Double(e[i]) - mean[key[i]]) / std[key[i]]) }
  return x0.dataType == .float ? x : try x.converted(to: x0.dataType)
}

/// x divided by its L1 or L2 norm along `axis`; a zero norm gives zeros (as ONNX Runtime), not NaN.
private func lpNormalization(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  var x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let axis = try c.axis(c.int("axis", -1), rank: x.rank)
  let p = c.int("p", 2)
  guard p == 1 || p == 2 else { throw c.fail("p must be 1 or 2, not \(p)") }
  let outer = x.shape[..<axis].reduce(1, *), n = x.rank == 0 ? 1 : x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
  let e = x.mutableElements(Float.self)
  for o in 0..<outer {
    for i in 0..<inner {
      let base = o * n * inner + i
      var norm: Float = 0
      for k in 0..<n { let v = e[base + k * inner]; norm += p == 1 ? Swift.abs(v) : v * v }
      if p == 2 { norm = norm.squareRoot() }
      for k in 0..<n { e[base + k * inner] = norm == 0 ? 0 : e[base + k * inner] / norm }
    }
  }
  return x0.dataType == .float ? x : try x.converted(to: x0.dataType)
}

/// y = x / (bias + α/size · Σ x²)^β, the sum over the `size` channels around each one
/// (⌊(size−1)/2⌋ before, ⌈(size−1)/2⌉ after, clipped to the tensor).
private func localResponseNormalization(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let size = c.int("size", 0)
  guard size > 0, size < 1 << 20 else { throw c.fail("size must be positive, not \(size)") }
  let alpha = c.float("alpha", 1e-4), beta = c.float("beta", 0.75), bias = c.float("bias", 1)
  guard x.rank >= 2 else { throw c.fail("input \(x.shape) has no channel dimension") }
  let n = x.shape[0], ch = x.shape[1], plane = x.shape.dropFirst(2).reduce(1, *)
  let before = (size - 1) / 2, after = size - 1 - before
  var out = NDArray(uninitialized: .float, x.shape)
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  let coefficient = alpha / Float(size)
  withExtendedLifetime((src, dst)) {
    guard let sp = src.baseAddress, let dp = dst.baseAddress else { return }
    Parallel.forEach(n * ch, costPerItem: plane * size * 4) { items in
      var buffer = [Float](repeating: 0, count: plane)
      buffer.withUnsafeMutableBufferPointer { sums in
      guard let sum = sums.baseAddress else { return }
      for item in items {
        let b = item / ch, k = item % ch
        sum.update(repeating: 0, count: plane)
        for j in Swift.max(0, k - before)...Swift.min(ch - 1, k + after) {
          let p = sp + (b * ch + j) * plane
          for i in 0..<plane { sum[i] += p[i] * p[i] }
        }
        let p = sp + item * plane, q = dp + item * plane
        if beta == 0.75 {
          // s^0.75 = √s·√√s: two square roots (vectorized) instead of a libm pow per element.
          for i in 0..<plane {
            let s = bias + coefficient * sum[i], r = s.squareRoot()
            q[i] = p[i] / (r * r.squareRoot())
          }
        } else {
          for i in 0..<plane { q[i] = p[i] / Foundation.pow(bias + coefficient * sum[i], beta) }
        }
      }
      }
    }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}
