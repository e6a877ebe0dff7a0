import IR
import Runtime

/// MaxPool (the gradient goes to the first maximum of each window, as the forward pass chose),
/// AveragePool (spread over the positions each average counted) and the global pools.
extension Gradients {
  static let pooling: [String: GradientRule] = [
    "MaxPool": GradientRule([0]) { c in [try windowGradient(c, max: true)] },
    "AveragePool": GradientRule([0]) { c in [try windowGradient(c, max: false)] },
    "GlobalAveragePool": GradientRule([0]) { c in
      let x = try c.input(0), dy = c.gradient()
      let planes = x.shape.prefix(2).reduce(1, *), inner = x.count / max(planes, 1)
      return [NDArray.filled(x.shape) { out, _ in
        dy.withFloats { g in
          for p in 0..<planes { let v = g[p] / Float(inner); for i in 0..<inner { out[p * inner + i] = v } }
        }
      }]
    },
    "GlobalMaxPool": GradientRule([0]) { c in
      let x = try c.input(0).asFloat(), dy = c.gradient()
      let planes = x.shape.prefix(2).reduce(1, *), inner = x.count / max(planes, 1)
      var dx = NDArray(zeros: .float, x.shape)
      let o = dx.mutableElements(Float.self)
      x.withFloats { xs in dy.withFloats { g in
        for p in 0..<planes where inner > 0 {
          var best = 0
          for i in 1..<inner where xs[p * inner + i] > xs[p * inner + best] { best = i }
          o[p * inner + best] = g[p]
        }
      } }
      return [dx]
    },
  ]
}

private func windowGradient(_ c: GradientContext, max isMax: Bool) throws -> NDArray {
  let x = try c.input(0).asFloat(), dy = c.gradient()
  guard x.rank == 3 || x.rank == 4, let kernel = c.ints("kernel_shape") else {
    throw c.fail("gradients need a 1-D or 2-D pool with kernel_shape")
  }
  let win = try Window(node: c.node, spatialRank: x.rank - 2, kernel: kernel, input: Array(x.shape.dropFirst(2)))
  let planes = x.shape[0] * x.shape[1], h = x.rank == 4 ? x.shape[2] : 1, w = x.shape[x.rank - 1]
  let oh = dy.rank == 4 ? dy.shape[2] : 1, ow = dy.shape[dy.rank - 1]
  let includePad = c.int("count_include_pad", 0) != 0
  var dx = NDArray(zeros: .float, x.shape)
  let o = dx.mutableElements(Float.self)
  x.withFloats { xs in dy.withFloats { g in
    for plane in 0..<planes {
      let p = plane * h * w
      for oy in 0..<oh {
        for ox in 0..<ow {
          let grad = g[(plane * oh + oy) * ow + ox]
          var best = -1, bestValue = -Float.infinity, count = 0
          for ky in 0..<win.kh {
            let iy = oy * win.sh - win.padTop + ky * win.dh
            for kx in 0..<win.kw {
              let ix = ox * win.sw - win.padLeft + kx * win.dw
              if iy < 0 || iy >= h || ix < 0 || ix >= w {
                if includePad && iy < h + win.padBottom && ix < w + win.padRight { count += 1 }
                continue
              }
              count += 1
              let v = xs[p + iy * w + ix]
              if best < 0 || v > bestValue { best = p + iy * w + ix; bestValue = v }
            }
          }
          if isMax {
            if best >= 0 { o[best] += grad }
            continue
          }
          guard count > 0 else { continue }
          let share = grad / Float(count)
          for ky in 0..<win.kh {
            let iy = oy * win.sh - win.padTop + ky * win.dh
            guard iy >= 0 && iy < h else { continue }
            for kx in 0..<win.kw {
              let ix = ox * win.sw - win.padLeft + kx * win.dw
              if ix >= 0 && ix < w { o[p + iy * w + ix] += share }
            }
          }
        }
      }
    }
  } }
  return dx
}
