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

private func recurrence(_ c: KernelContext, kind: Cell) throws -> [NDArray] {
  let layout = c.int("layout", 0)
  var x = try c.input(0).converted(to: .float)
  if layout == 1 { x = x.transposed([1, 0, 2]) }  // to [seq, batch, input]
  let w = try c.input(1).converted(to: .float), r = try c.input(2).converted(to: .float)
  let seq = x.shape[0], batch = x.shape[1], inputSize = x.shape[2]
  let dirs = w.shape[0], gates = kind.gates, hidden = c.int("hidden_size", r.shape[2])
  let direction = c.string("direction", "forward")
  guard dirs == (direction == "bidirectional" ? 2 : 1), w.shape[1] == gates * hidden, w.shape[2] == inputSize,
        r.shape == [dirs, gates * hidden, hidden] else {
    throw c.fail("W \(w.shape) and R \(r.shape) do not fit X \(x.shape) with hidden_size \(hidden)")
  }
  let bias = try c.optionalInput(3).map { try $0.floats() }
  let lengths = try c.optionalInput(4).map { try $0.integers() } ?? Array(repeating: seq, count: batch)
  let h0 = try c.optionalInput(5).map { try ($0.rank == 3 && layout == 1 ? $0.transposed([1, 0, 2]) : $0).floats() }
  let c0 = kind == .lstm ? try c.optionalInput(6).map { try ($0.rank == 3 && layout == 1 ? $0.transposed([1, 0, 2]) : $0).floats() } : nil
  let peep = kind == .lstm ? try c.optionalInput(7).map { try $0.floats() } : nil
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
      if let xp = xs.baseAddress, let wp = ws.baseAddress, seq * batch > 0 {
        xw.withUnsafeMutableBufferPointer { Linalg.gemm(m: seq * batch, n: G, k: inputSize, a: xp, b: wp + d * G * inputSize, c: $0.baseAddress.unsafelyUnwrapped, transposeB: true) }
      }
    }
    let wb = bias.map { Array($0[(d * 2 * G)..<(d * 2 * G + G)]) } ?? Array(repeating: 0, count: G)
    let rb = bias.map { Array($0[(d * 2 * G + G)..<(d * 2 * G + 2 * G)]) } ?? Array(repeating: 0, count: G)
    var h = h0.map { Array($0[(d * batch * hidden)..<((d + 1) * batch * hidden)]) } ?? Array(repeating: 0, count: batch * hidden)
    var cell = c0.map { Array($0[(d * batch * hidden)..<((d + 1) * batch * hidden)]) } ?? Array(repeating: 0, count: batch * hidden)
    var hr = [Float](repeating: 0, count: batch * G)
    let rOffset = d * G * hidden
    for step in 0..<seq {
      let t = reverse ? seq - 1 - step : step
      h.withUnsafeBufferPointer { hp in
        hr.withUnsafeMutableBufferPointer { out in
          withExtendedLifetime(rs) {
            Linalg.gemm(m: batch, n: G, k: hidden, a: hp.baseAddress.unsafelyUnwrapped, b: rs.baseAddress.unsafelyUnwrapped + rOffset,
                        c: out.baseAddress.unsafelyUnwrapped, transposeB: true)
          }
        }
      }
      for b in 0..<batch {
        // Reverse passes start each sequence at its own last valid step.
        let len = lengths[b]
        let valid = reverse ? t < len : t < len
        if !valid { continue }
        let xrow = (t * batch + b) * G, hrow = b * G
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
