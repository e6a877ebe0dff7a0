import CVectorMath
import Foundation
import IR
import Linalg
import Support

/// RNN, GRU and LSTM: forward, reverse or bidirectional, with sequence_lens, initial states,
/// peepholes, clip, the activations attributes and both layouts. Gate projections of the whole
/// sequence are one sgemm per direction; the recurrence is one small sgemm per step. Also
/// CausalConvWithState, the depthwise causal convolution that carries its last inputs as state.
extension Kernels {
  static let recurrent: [String: Kernel] = [
    "RNN": { c in try recurrence(c, kind: .rnn) },
    "GRU": { c in try recurrence(c, kind: .gru) },
    "LSTM": { c in try recurrence(c, kind: .lstm) },
    "CausalConvWithState": { c in try causalConvolution(c) },
  ]

  /// ONNX Runtime's com.microsoft DynamicQuantizeLSTM: an LSTM whose W and R are 8-bit
  /// ([directions, input, 4·hidden] and [directions, hidden, 4·hidden], transposed against LSTM's),
  /// with the activations quantized on the fly before each product, as ONNX Runtime computes it.
  static let recurrentContrib: [String: Kernel] = [
    "DynamicQuantizeLSTM": { c in try recurrence(c, kind: .lstm, quantized: try QuantizedRecurrentWeights(c)) },
  ]
}

/// DynamicQuantizeLSTM's weights: the zero-point-shifted integers as Float ([directions, K, G],
/// exact; made once per executor for constant weights), and per direction the scale of each of
/// the G columns.
private struct QuantizedRecurrentWeights {
  var w: NDArray, r: NDArray
  var wScale: [[Float]], rScale: [[Float]]
  var inputSize: Int, hidden: Int, directions: Int
  /// Where the processor has AVX-512 VNNI, R as signed bytes packed for `vm_u8s8_gemv` (one block
  /// of `vm_u8s8_packed_size` per direction), with each column's zero point (shifted with the
  /// bytes for uint8 weights) and sum: the recurrent product in integers, a quarter of the bytes.
  var rBytes: NDArray?
  var rZero: [[Int]] = [], rColumnSum: [[Int]] = []

  init(_ c: KernelContext) throws {
    let w0 = try c.input(1), r0 = try c.input(2)
    guard w0.rank == 3, r0.rank == 3, w0.shape[0] == r0.shape[0], w0.shape[2] == r0.shape[2], r0.shape[2] == 4 * r0.shape[1] else {
      throw c.fail("W \(w0.shape) and R \(r0.shape) must be [directions, input, 4·hidden] and [directions, hidden, 4·hidden]")
    }
    let directions = w0.shape[0], hidden = r0.shape[1]
    let g = 4 * hidden
    func parameters(_ q: NDArray, _ index: Int, _ scaleIndex: Int, _ zeroIndex: Int, rows: Int,
                    asFloat: Bool = true) throws -> (NDArray, [[Float]]) {
      let scale = try c.input(scaleIndex).floats(), zero = try c.input(zeroIndex).integers()
      let perColumn = scale.count == directions * g
      guard scale.count == directions || perColumn, zero.count == scale.count else {
        throw c.fail("inputs \(scaleIndex) and \(zeroIndex) must have \(directions) or \(directions * g) values")
      }
      let shifted = !asFloat ? NDArray(zeros: .float, [0]) : try c.derived(fromInputs: [index, zeroIndex], "shifted") {
        let values = try q.integers()
        var shifted = [Float](repeating: 0, count: values.count)
        for d in 0..<directions {
          for i in 0..<rows {
            for j in 0..<g {
              let z = zero[perColumn ? d * g + j : d]
              shifted[(d * rows + i) * g + j] = Float(values[(d * rows + i) * g + j] - z)
            }
          }
        }
        return NDArray(shifted, shape: q.shape)
      }
      let scales = (0..<directions).map { d in (0..<g).map { scale[perColumn ? d * g + $0 : d] } }
      return (shifted, scales)
    }
    (w, wScale) = try parameters(w0, 1, 8, 9, rows: w0.shape[1])
    // With the integer kernel, R is only read as bytes: no float copy of it.
    let integer = integerKernelRuns && (r0.dataType == .int8 || r0.dataType == .uint8)
    (r, rScale) = try parameters(r0, 2, 10, 11, rows: hidden, asFloat: !integer)
    self.directions = directions
    self.hidden = hidden
    inputSize = w0.shape[1]
    if integer {
      // uint8 weights become signed by subtracting 128 from them and from their zero points.
      let shift = r0.dataType == .uint8 ? 128 : 0
      let zero = try c.input(11).integers(), perColumn = zero.count == directions * g
      let blockSize = vm_u8s8_packed_size(hidden, g)
      rBytes = try c.derived(fromInputs: [2], "recurrent-u8s8") {
        let values = try r0.integers()
        var packed = NDArray(uninitialized: .int8, [directions * blockSize])
        var signed = [Int8](repeating: 0, count: hidden * g)
        packed.mutableElements(Int8.self).withPointer { out in
          guard let out else { return }
          for d in 0..<directions {
            for i in 0..<(hidden * g) { signed[i] = Int8(truncatingIfNeeded: values[d * hidden * g + i] - shift) }
            vm_u8s8_pack(signed, hidden, g, out + d * blockSize)
          }
        }
        return packed
      }
      let sums = try c.derived(fromInputs: [2], "recurrent-u8s8-sums") {
        let values = try r0.integers()
        var sums = [Int64](repeating: 0, count: directions * g)
        for d in 0..<directions {
          for i in 0..<hidden { for j in 0..<g { sums[d * g + j] += Int64(values[(d * hidden + i) * g + j] - shift) } }
        }
        return NDArray(sums, shape: [directions * g])
      }.elements(Int64.self)
      rZero = (0..<directions).map { d in (0..<g).map { zero[perColumn ? d * g + $0 : d] - shift } }
      rColumnSum = (0..<directions).map { d in (0..<g).map { Int(sums[d * g + $0]) } }
    }
  }

  /// out[m, G] = quantize(a[m, k]) × weights of direction d, dequantized: the integer product
  /// times a_scale·w_scale[column]. `a` is quantized to uint8 as ONNX Runtime's dynamic
  /// quantization does it — the whole input sequence at once, and the recurrent state one batch
  /// row at a time (`rowsPerQuantization` 1). ONNX Runtime quantizes the state in groups of rows
  /// set by its thread count; a row at a time is its result whenever it has a thread per row, and
  /// for a batch of one always.
  func product(_ a: UnsafePointer<Float>, m: Int, k: Int, recurrent: Bool, direction d: Int, into out: UnsafeMutablePointer<Float>) {
    let g = 4 * hidden
    if recurrent, let rBytes {
      integerRecurrentProduct(a, m: m, direction: d, bytes: rBytes, into: out)
      return
    }
    let groupRows = recurrent ? 1 : m
    let weights = recurrent ? r : w, scales = recurrent ? rScale[d] : wScale[d]
    var q = [Float](repeating: 0, count: groupRows * k)
    for first in stride(from: 0, to: m, by: Swift.max(groupRows, 1)) {
      let rows = Swift.min(groupRows, m - first), count = rows * k, src = a + first * k
      let (scale, zero) = dynamicRange(src, count)
      for i in 0..<count {
        let v = (src[i] / scale).rounded(.toNearestOrEven) + zero
        q[i] = (v.isNaN ? zero : Swift.max(0, Swift.min(255, v))) - zero
      }
      let dst = out + first * g
      q.withUnsafeBufferPointer { qp in
        weights.elements(Float.self).withPointer { wb in
          guard let qa = qp.baseAddress, let wb, k > 0 else { return }
          if rows == 1 {
            Linalg.rowTimesMatrix(n: g, k: k, x: qa, b: wb + d * k * g, y: dst)
          } else {
            Linalg.gemm(m: rows, n: g, k: k, a: qa, b: wb + d * k * g, c: dst, parallel: false)
          }
        }
      }
      if k == 0 { for i in 0..<(rows * g) { dst[i] = 0 } }
      for i in 0..<rows {
        for j in 0..<g { dst[i * g + j] = dst[i * g + j].rounded() * (scale * scales[j]) }
      }
    }
  }
}

extension QuantizedRecurrentWeights {
  /// The recurrent product of `product` in integers: each batch row quantized to uint8 as there,
  /// y = Σ (x − x_zero)(r − r_zero) exact in 32 bits (ONNX Runtime's result), then dequantized.
  func integerRecurrentProduct(_ a: UnsafePointer<Float>, m: Int, direction d: Int, bytes: NDArray,
                               into out: UnsafeMutablePointer<Float>) {
    let g = 4 * hidden, k = hidden, scales = rScale[d], zeros = rZero[d], sums = rColumnSum[d]
    var x = [UInt8](repeating: 0, count: k)
    var y = [Int32](repeating: 0, count: g)
    let block = vm_u8s8_packed_size(k, g)
    bytes.elements(Int8.self).withPointer { packed in
      guard let packed else { return }
      for row in 0..<m {
        let src = a + row * k
        let (scale, zero) = dynamicRange(src, k)
        var xSum = 0
        for i in 0..<k {
          let v = (src[i] / scale).rounded(.toNearestOrEven) + zero
          let q = UInt8(v.isNaN ? zero : Swift.max(0, Swift.min(255, v)))
          x[i] = q
          xSum += Int(q)
        }
        vm_u8s8_gemv(x, k, g, packed + d * block, &y)
        let xZero = Int(zero), dst = out + row * g
        for j in 0..<g {
          let exact = Int(y[j]) - zeros[j] * xSum - xZero * sums[j] + k * xZero * zeros[j]
          dst[j] = Float(exact) * (scale * scales[j])
        }
      }
    }
  }
}

/// Whether the processor has the u8 × s8 integer kernels (AVX-512 VNNI).
let integerKernelRuns = vm_u8s8_supported() != 0

/// The uint8 scale and zero point of dynamic quantization for `count` values (their range with 0
/// in it; NaN ignored), as ONNX Runtime's DynamicQuantizeLSTM takes them.
private func dynamicRange(_ src: UnsafePointer<Float>, _ count: Int) -> (scale: Float, zero: Float) {
  var lo: Float = 0, hi: Float = 0
  for i in 0..<count where !src[i].isNaN { lo = Swift.min(lo, src[i]); hi = Swift.max(hi, src[i]) }
  let scale = hi == lo ? 1 : (hi - lo) / 255
  return (scale, Swift.max(0, Swift.min(255, (0 - lo / scale).rounded(.toNearestOrEven))))
}

private enum Cell { case rnn, gru, lstm
  var gates: Int { self == .rnn ? 1 : (self == .gru ? 3 : 4) }
  var defaultActivations: [String] { self == .rnn ? ["Tanh"] : (self == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"]) }
}

private func activation(_ c: KernelContext, _ name: String, alpha: Float?, beta: Float?) throws -> (Float) -> Float {
  switch name.lowercased() {
  case "sigmoid": return { 1 / (1 + Foundation.exp(-$0)) }
  case "tanh": return { Foundation.tanh($0) }
  case "relu": return { max($0, 0) }
  case "hardsigmoid": let a = alpha ?? 0.2, b = beta ?? 0.5; return { max(0, min(1, a * $0 + b)) }
  case "leakyrelu": let a = alpha ?? 0.01; return { $0 < 0 ? a * $0 : $0 }
  case "thresholdedrelu": let a = alpha ?? 1; return { $0 > a ? $0 : 0 }
  case "scaledtanh": let a = alpha ?? 1, b = beta ?? 1; return { a * Foundation.tanh(b * $0) }
  case "affine": let a = alpha ?? 1, b = beta ?? 0; return { a * $0 + b }
  case "elu": let a = alpha ?? 1; return { $0 < 0 ? a * (Foundation.exp($0) - 1) : $0 }
  case "softsign": return { $0 / (1 + abs($0)) }
  case "softplus": return { Foundation.log1p(Foundation.exp($0)) }
  default: throw c.unsupported("activation \(name)")
  }
}

private func recurrence(_ c: KernelContext, kind: Cell, quantized: QuantizedRecurrentWeights? = nil) throws -> [NDArray] {
  let layout = c.int("layout", 0)
  var x = try c.input(0).converted(to: .float)
  guard x.rank == 3 else { throw c.fail("X \(x.shape) must be [sequence, batch, input]") }
  if layout == 1 { x = x.transposed([1, 0, 2]) }  // to [seq, batch, input]
  // Quantized weights replace the float ones (kept empty).
  let w = quantized == nil ? try c.input(1).converted(to: .float) : NDArray(zeros: .float, [0, 0, 0])
  let r = quantized == nil ? try c.input(2).converted(to: .float) : NDArray(zeros: .float, [0, 0, 0])
  let seq = x.shape[0], batch = x.shape[1], inputSize = x.shape[2]
  let gates = kind.gates
  let dirs = quantized?.directions ?? w.shape[0]
  let hidden = quantized?.hidden ?? c.int("hidden_size", r.rank == 3 ? r.shape[2] : 0)
  let direction = c.string("direction", "forward")
  if let quantized {
    guard dirs == (direction == "bidirectional" ? 2 : 1), quantized.inputSize == inputSize, c.int("hidden_size", hidden) == hidden else {
      throw c.fail("W and R do not fit X \(x.shape) with hidden_size \(hidden) and direction \(direction)")
    }
  } else {
    guard w.rank == 3, dirs == (direction == "bidirectional" ? 2 : 1), w.shape[1] == gates * hidden, w.shape[2] == inputSize,
          r.shape == [dirs, gates * hidden, hidden] else {
      throw c.fail("W \(w.shape) and R \(r.shape) do not fit X \(x.shape) with hidden_size \(hidden)")
    }
  }
  let bias = try c.optionalInput(3).map { try $0.floats() }
  if let bias, bias.count != dirs * 2 * gates * hidden { throw c.fail("B must have \(dirs * 2 * gates * hidden) values, not \(bias.count)") }
  let lengths = try c.optionalInput(4).map { try $0.integers() } ?? Array(repeating: seq, count: batch)
  guard lengths.count == batch, lengths.allSatisfy({ $0 >= 0 && $0 <= seq }) else {
    throw c.fail("sequence_lens \(lengths) must hold \(batch) lengths of at most \(seq)")
  }
  let h0 = try c.optionalInput(5).map { try ($0.rank == 3 && layout == 1 ? $0.transposed([1, 0, 2]) : $0).floats() }
  let c0 = kind == .lstm ? try c.optionalInput(6).map { try ($0.rank == 3 && layout == 1 ? $0.transposed([1, 0, 2]) : $0).floats() } : nil
  let peep = kind == .lstm ? try c.optionalInput(7).map { try $0.floats() } : nil
  guard h0.map({ $0.count == dirs * batch * hidden }) ?? true, c0.map({ $0.count == dirs * batch * hidden }) ?? true,
        peep.map({ $0.count == dirs * 3 * hidden }) ?? true else {
    throw c.fail("initial_h and initial_c must be [\(dirs), \(batch), \(hidden)], P [\(dirs), \(3 * hidden)]")
  }
  let clip = c.node.attribute("clip")?.float
  let linearBeforeReset = c.int("linear_before_reset", 0) != 0
  let inputForget = c.int("input_forget", 0) != 0
  let names = c.node.attribute("activations").flatMap { a -> [String]? in
    if case .strings(let s) = a.value { return s.map { String(decoding: $0, as: UTF8.self) } } else { return nil }
  } ?? (0..<dirs).flatMap { _ in kind.defaultActivations }
  let alphas = c.node.attribute("activation_alpha").flatMap { a -> [Float]? in if case .floats(let f) = a.value { return f } else { return nil } } ?? []
  let betas = c.node.attribute("activation_beta").flatMap { a -> [Float]? in if case .floats(let f) = a.value { return f } else { return nil } } ?? []
  let perDir = kind.defaultActivations.count
  guard names.count >= perDir * dirs else { throw c.fail("\(names.count) activations for \(dirs) direction(s)") }
  var fns = [(Float) -> Float]()
  for (i, n) in names.enumerated() { fns.append(try activation(c, n, alpha: i < alphas.count ? alphas[i] : nil, beta: i < betas.count ? betas[i] : nil)) }

  var y = [Float](repeating: 0, count: seq * dirs * batch * hidden)
  var yh = [Float](repeating: 0, count: dirs * batch * hidden)
  var yc = [Float](repeating: 0, count: dirs * batch * hidden)
  let xs = x.elements(Float.self), ws = w.elements(Float.self), rs = r.elements(Float.self)
  let G = gates * hidden
  for d in 0..<dirs {
    let reverse = direction == "reverse" || d == 1
    let f = fns[d * perDir], g = perDir > 1 ? fns[d * perDir + 1] : f, hAct = perDir > 2 ? fns[d * perDir + 2] : f
    // Input projections of every step at once: [seq·batch, input] × W_dᵀ → [seq·batch, G].
    var xw = [Float](repeating: 0, count: seq * batch * G)
    withExtendedLifetime((xs, ws)) {
      guard let xp = xs.baseAddress, seq * batch > 0 else { return }
      xw.withUnsafeMutableBufferPointer { out in
        guard let o = out.baseAddress else { return }
        if let quantized {
          // The steps no sequence reaches take no part in the quantization range (ONNX Runtime
          // projects only the first max(sequence_lens) steps).
          let steps = lengths.max() ?? seq
          quantized.product(xp, m: steps * batch, k: inputSize, recurrent: false, direction: d, into: o)
        } else if let wp = ws.baseAddress {
          Linalg.gemm(m: seq * batch, n: G, k: inputSize, a: xp, b: wp + d * G * inputSize, c: o, transposeB: true)
        }
      }
    }
    let wb = bias.map { Array($0[(d * 2 * G)..<(d * 2 * G + G)]) } ?? Array(repeating: 0, count: G)
    let rb = bias.map { Array($0[(d * 2 * G + G)..<(d * 2 * G + 2 * G)]) } ?? Array(repeating: 0, count: G)
    var h = h0.map { Array($0[(d * batch * hidden)..<((d + 1) * batch * hidden)]) } ?? Array(repeating: 0, count: batch * hidden)
    var cell = c0.map { Array($0[(d * batch * hidden)..<((d + 1) * batch * hidden)]) } ?? Array(repeating: 0, count: batch * hidden)
    var hr = [Float](repeating: 0, count: batch * G)
    let rOffset = d * G * hidden
    let vectorCell = kind == .lstm && clip == nil && peep == nil && !inputForget
      && names[(d * perDir)..<(d * perDir + 3)].map { $0.lowercased() } == ["sigmoid", "tanh", "tanh"]
    var gateRow = [Float](repeating: 0, count: vectorCell ? G : 0)
    for step in 0..<seq {
      let t = reverse ? seq - 1 - step : step
      h.withUnsafeBufferPointer { hp in
        hr.withUnsafeMutableBufferPointer { out in
          withExtendedLifetime(rs) {
            guard let a = hp.baseAddress, let o = out.baseAddress, batch > 0, hidden > 0 else { return }
            if let quantized {
              quantized.product(a, m: batch, k: hidden, recurrent: true, direction: d, into: o)
            } else if let rp = rs.baseAddress {
              if batch == 1 {
                // R is read whole on every step: its rows shared among the threads, each row's
                // sum the same whichever thread computes it.
                let parts = min(Parallel.threads, max(1, G * hidden / (1 << 16)))
                WorkerPool.shared.run(parts: parts) { p in
                  vm_rows_dot(rp + rOffset, hidden, a, hidden, p * G / parts, (p + 1) * G / parts, o)
                }
              } else {
                Linalg.gemm(m: batch, n: G, k: hidden, a: a, b: rp + rOffset, c: o, transposeB: true)
              }
            }
          }
        }
      }
      for b in 0..<batch {
        // Reverse passes start each sequence at its own last valid step.
        let len = lengths[b]
        let valid = reverse ? t < len : t < len
        if !valid { continue }
        let xrow = (t * batch + b) * G, hrow = b * G
        if vectorCell {
          // The default LSTM (σ, tanh, tanh; no clip, peepholes or coupled gates): the gates of a
          // row at once, through the vectorized exponential instead of libm per element.
          for j in 0..<G { gateRow[j] = xw[xrow + j] + wb[j] + hr[hrow + j] + rb[j] }
          gateRow.withUnsafeMutableBufferPointer { gp in
            guard let g = gp.baseAddress else { return }
            FastMath.sigmoid(g, g, 3 * hidden)  // input, output, forget
            FastMath.tanh(g + 3 * hidden, g + 3 * hidden, hidden)
            for k in 0..<hidden {
              let hi = b * hidden + k
              cell[hi] = g[2 * hidden + k] * cell[hi] + g[k] * g[3 * hidden + k]
              g[3 * hidden + k] = cell[hi]
            }
            FastMath.tanh(g + 3 * hidden, g + 3 * hidden, hidden)
            for k in 0..<hidden { h[b * hidden + k] = g[hidden + k] * g[3 * hidden + k] }
          }
          continue
        }
        func clipped(_ v: Float) -> Float { clip.map { min(max(v, -$0), $0) } ?? v }
        for k in 0..<hidden {
          let hi = b * hidden + k
          switch kind {
          case .rnn:
            h[hi] = f(clipped(xw[xrow + k] + wb[k] + hr[hrow + k] + rb[k]))
          case .gru:
            let z = f(clipped(xw[xrow + k] + wb[k] + hr[hrow + k] + rb[k]))
            let rg = f(clipped(xw[xrow + hidden + k] + wb[hidden + k] + hr[hrow + hidden + k] + rb[hidden + k]))
            let hTilde: Float
            if linearBeforeReset {
              hTilde = g(clipped(xw[xrow + 2 * hidden + k] + wb[2 * hidden + k] + rg * (hr[hrow + 2 * hidden + k] + rb[2 * hidden + k])))
            } else {
              // (r ⊙ h)·Rhᵀ needs the reset-gated state of the whole row, computed below.
              hTilde = .nan
            }
            if linearBeforeReset { h[hi] = (1 - z) * hTilde + z * h[hi] } else { hr[hrow + k] = z; hr[hrow + hidden + k] = rg }
          case .lstm:
            var i = xw[xrow + k] + wb[k] + hr[hrow + k] + rb[k]
            var o = xw[xrow + hidden + k] + wb[hidden + k] + hr[hrow + hidden + k] + rb[hidden + k]
            var fg = xw[xrow + 2 * hidden + k] + wb[2 * hidden + k] + hr[hrow + 2 * hidden + k] + rb[2 * hidden + k]
            let cc = xw[xrow + 3 * hidden + k] + wb[3 * hidden + k] + hr[hrow + 3 * hidden + k] + rb[3 * hidden + k]
            if let p = peep {
              i += p[d * 3 * hidden + k] * cell[hi]
              fg += p[d * 3 * hidden + 2 * hidden + k] * cell[hi]
            }
            let ig = f(clipped(i))
            let forget = inputForget ? 1 - ig : f(clipped(fg))
            let cNew = forget * cell[hi] + ig * g(clipped(cc))
            if let p = peep { o += p[d * 3 * hidden + hidden + k] * cNew }
            cell[hi] = cNew
            h[hi] = f(clipped(o)) * hAct(cNew)
          }
        }
        if kind == .gru && !linearBeforeReset {
          // h̃ = g(x·Whᵀ + Wbh + (r ⊙ h)·Rhᵀ + Rbh), one row at a time.
          let rh = (0..<hidden).map { hr[hrow + hidden + $0] * h[b * hidden + $0] }
          for k in 0..<hidden {
            var acc = xw[xrow + 2 * hidden + k] + wb[2 * hidden + k] + rb[2 * hidden + k]
            let row = rOffset + (2 * hidden + k) * hidden
            for j in 0..<hidden { acc += rh[j] * rs[row + j] }
            let z = hr[hrow + k]
            let hTilde = g(clip.map { min(max(acc, -$0), $0) } ?? acc)
            h[b * hidden + k] = (1 - z) * hTilde + z * h[b * hidden + k]
          }
        }
      }
      for b in 0..<batch where t < lengths[b] {
        for k in 0..<hidden { y[((t * dirs + d) * batch + b) * hidden + k] = h[b * hidden + k] }
      }
    }
    for i in 0..<(batch * hidden) {
      yh[d * batch * hidden + i] = h[i]
      yc[d * batch * hidden + i] = cell[i]
    }
  }
  var yOut = NDArray(y, shape: [seq, dirs, batch, hidden])
  var yhOut = NDArray(yh, shape: [dirs, batch, hidden])
  var ycOut = NDArray(yc, shape: [dirs, batch, hidden])
  if layout == 1 {
    yOut = yOut.transposed([2, 0, 1, 3])
    yhOut = yhOut.transposed([1, 0, 2])
    ycOut = ycOut.transposed([1, 0, 2])
  }
  let type = try c.input(0).dataType
  let outs = [yOut, yhOut] + (kind == .lstm ? [ycOut] : [])
  return try outs.map { type == .float ? $0 : try $0.converted(to: type) }
}

/// y[b, ch, t] = Σ_k w[ch, 0, k] · padded[b, ch, t + k] (+ bias, then SiLU when asked), where
/// padded is the carried state (zeros without one) followed by the input; the new state is the
/// last k − 1 columns of padded.
private func causalConvolution(_ c: KernelContext) throws -> [NDArray] {
  let x0 = try c.input(0), w0 = try c.input(1)
  guard x0.rank == 3, w0.rank == 3, w0.shape[0] == x0.shape[1], w0.shape[1] == 1, w0.shape[2] > 0 else {
    throw c.fail("input \(x0.shape) must be [batch, channels, length] and weight \(w0.shape) [channels, 1, k]")
  }
  let batch = x0.shape[0], channels = x0.shape[1], length = x0.shape[2], k = w0.shape[2]
  let silu: Bool
  switch c.string("activation", "none") {
  case "none": silu = false
  case "silu", "swish": silu = true
  case let a: throw c.fail("activation must be none, silu or swish, not '\(a)'")
  }
  let bias = try c.optionalInput(2)?.floats()
  if let bias, bias.count != channels { throw c.fail("bias has \(bias.count) values for \(channels) channels") }
  let state = try c.optionalInput(3)?.floats()
  if let past = c.optionalInput(3), past.shape != [batch, channels, k - 1] {
    throw c.fail("past_state \(past.shape) must be [\(batch), \(channels), \(k - 1)]")
  }
  let x = try x0.floats(), w = try w0.floats()
  let span = length + k - 1
  var y = [Float](repeating: 0, count: batch * channels * length)
  var present = [Float](repeating: 0, count: batch * channels * (k - 1))
  var padded = [Float](repeating: 0, count: span)
  for plane in 0..<(batch * channels) {
    let ch = plane % channels
    for i in 0..<(k - 1) { padded[i] = state?[plane * (k - 1) + i] ?? 0 }
    for t in 0..<length { padded[k - 1 + t] = x[plane * length + t] }
    for t in 0..<length {
      var acc = bias?[ch] ?? 0
      for j in 0..<k { acc += w[ch * k + j] * padded[t + j] }
      y[plane * length + t] = silu ? acc / (1 + Foundation.exp(-acc)) : acc
    }
    for i in 0..<(k - 1) { present[plane * (k - 1) + i] = padded[span - (k - 1) + i] }
  }
  let type = x0.dataType
  return [try NDArray(doubles: y.map(Double.init), as: type, shape: x0.shape),
          try NDArray(doubles: present.map(Double.init), as: c.optionalInput(3)?.dataType ?? type, shape: [batch, channels, k - 1])]
}
