import IR
import Runtime

/// BatchNormalization (training statistics or frozen) and LayerNormalization. The training
/// forward pass of BatchNormalization lives here too: inference kernels only know running
/// statistics.
extension Gradients {
  static let normalization: [String: GradientRule] = [
    "BatchNormalization": GradientRule([0, 1, 2], batchNormGradient),
    "LayerNormalization": GradientRule([0, 1, 2], layerNormGradient),
  ]
}

/// [N, C, rest] geometry of a BatchNormalization input.
private func channels(_ shape: [Int]) -> (n: Int, c: Int, inner: Int) {
  (shape.first ?? 1, shape.count > 1 ? shape[1] : 1, shape.count > 2 ? shape.dropFirst(2).reduce(1, *) : 1)
}

/// Batch statistics: normalizes with the batch's mean and variance and moves the running ones
/// towards them (running = momentum·running + (1 − momentum)·batch, unbiased variance as in
/// PyTorch). Returns the output and the per-channel mean and 1/σ the gradient needs.
func batchNormTraining(x: NDArray, scale: NDArray, bias: NDArray, runningMean: inout NDArray, runningVar: inout NDArray,
                       epsilon: Float, momentum: Float) throws -> (y: NDArray, mean: NDArray, inverseStd: NDArray) {
  let (n, ch, inner) = channels(x.shape)
  let count = n * inner
  let gamma = try scale.floats(), beta = try bias.floats()
  var mean = [Float](repeating: 0, count: ch), inv = [Float](repeating: 0, count: ch)
  let rm = runningMean.mutableElements(Float.self), rv = runningVar.mutableElements(Float.self)
  let y = NDArray.filled(x.shape) { out, _ in
    x.withFloats { xs in
      for c in 0..<ch {
        var s: Double = 0, s2: Double = 0
        for b in 0..<n {
          let row = xs + (b * ch + c) * inner
          for i in 0..<inner { let v = Double(row[i]); s += v; s2 += v * v }
        }
        let mu = s / Double(max(count, 1))
        let variance = max(0, s2 / Double(max(count, 1)) - mu * mu)
        mean[c] = Float(mu)
        inv[c] = Float(1 / (variance + Double(epsilon)).squareRoot())
        let unbiased = count > 1 ? variance * Double(count) / Double(count - 1) : variance
        rm[c] = momentum * rm[c] + (1 - momentum) * Float(mu)
        rv[c] = momentum * rv[c] + (1 - momentum) * Float(unbiased)
        let a = gamma[c] * inv[c], shift = beta[c] - mean[c] * a
        for b in 0..<n {
          let src = xs + (b * ch + c) * inner, dst = out + (b * ch + c) * inner
          for i in 0..<inner { dst[i] = src[i] * a + shift }
        }
      }
    }
  }
  return (y, NDArray(mean, shape: [ch]), NDArray(inv, shape: [ch]))
}

private func batchNormGradient(_ c: GradientContext) throws -> [NDArray?] {
  let x = try c.input(0).asFloat(), dy = c.gradient()
  let gamma = try c.input(1).floats()
  let (n, ch, inner) = channels(x.shape)
  let training = c.int("training_mode", 0) != 0 && c.outputs.count >= 3
  let mean: [Float], inv: [Float]
  if training {
    mean = try c.outputs[1].floats()
    inv = try c.outputs[2].floats()
  } else {
    mean = try c.input(3).floats()
    let eps = c.float("epsilon", 1e-5)
    inv = try c.input(4).floats().map { 1 / ($0 + eps).squareRoot() }
  }
  guard gamma.count == ch, mean.count == ch, inv.count == ch else { throw c.fail("parameters do not have \(ch) channels") }
  var dGamma = [Float](repeating: 0, count: ch), dBeta = [Float](repeating: 0, count: ch)
  let m = Float(max(n * inner, 1))
  let dx = NDArray.filled(x.shape) { out, _ in
    x.withFloats { xs in dy.withFloats { g in
      for k in 0..<ch {
        var sg: Float = 0, sgx: Float = 0
        for b in 0..<n {
          let xr = xs + (b * ch + k) * inner, gr = g + (b * ch + k) * inner
          for i in 0..<inner { sg += gr[i]; sgx += gr[i] * (xr[i] - mean[k]) * inv[k] }
        }
        dBeta[k] = sg
        dGamma[k] = sgx
        let a = gamma[k] * inv[k]
        for b in 0..<n {
          let xr = xs + (b * ch + k) * inner, gr = g + (b * ch + k) * inner, o = out + (b * ch + k) * inner
          if training {
            // dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂))
            for i in 0..<inner { o[i] = a * (gr[i] - sg / m - (xr[i] - mean[k]) * inv[k] * sgx / m) }
          } else {
            for i in 0..<inner { o[i] = a * gr[i] }
          }
        }
      }
    } }
  }
  return [c.needs(0) ? dx : nil, NDArray(dGamma, shape: [ch]), NDArray(dBeta, shape: [ch])]
}

/// Normalized over the axes from `axis` on; scale and bias have the normalized shape.
private func layerNormGradient(_ c: GradientContext) throws -> [NDArray?] {
  let x = try c.input(0).asFloat(), dy = c.gradient()
  let axis = c.int("axis", -1) < 0 ? c.int("axis", -1) + x.rank : c.int("axis", -1)
  guard axis >= 0 && axis < x.rank else { throw c.fail("axis is out of range for rank \(x.rank)") }
  let d = x.shape[axis...].reduce(1, *), rows = x.count / max(d, 1)
  let eps = c.float("epsilon", 1e-5)
  let scale = try c.input(1).asFloat()
  guard scale.count == d else { throw c.fail("gradients need a scale with one value per normalized element") }
  var dScale = [Float](repeating: 0, count: d), dBias = [Float](repeating: 0, count: d)
  var xhat = [Float](repeating: 0, count: d), dxhat = [Float](repeating: 0, count: d)
  let dx = NDArray.filled(x.shape) { out, _ in
    x.withFloats { xs in dy.withFloats { g in scale.withFloats { gamma in
      for r in 0..<rows {
        let xr = xs + r * d, gr = g + r * d, o = out + r * d
        var s: Float = 0, s2: Float = 0
        for i in 0..<d { s += xr[i] }
        let mu = s / Float(d)
        for i in 0..<d { let t = xr[i] - mu; s2 += t * t }
        let inv = 1 / (s2 / Float(d) + eps).squareRoot()
        var sum: Float = 0, dot: Float = 0
        for i in 0..<d {
          xhat[i] = (xr[i] - mu) * inv
          dxhat[i] = gr[i] * gamma[i]
          sum += dxhat[i]
          dot += dxhat[i] * xhat[i]
          dScale[i] += gr[i] * xhat[i]
          dBias[i] += gr[i]
        }
        for i in 0..<d { o[i] = inv * (dxhat[i] - sum / Float(d) - xhat[i] * dot / Float(d)) }
      }
    } } }
  }
  let shape = Array(x.shape[axis...])
  return [c.needs(0) ? dx : nil, NDArray(dScale, shape: shape).reshaped(scale.shape),
          c.optionalInput(2).map { NDArray(dBias, shape: shape).reshaped($0.shape) }]
}
