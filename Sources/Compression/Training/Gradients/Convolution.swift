import IR
import Linalg
import Runtime

/// Conv and ConvTranspose (1-D and 2-D, grouped and depthwise): per sample and group, the
/// weight gradient is dY·colsᵀ and the input gradient col2im(Wᵀ·dY); ConvTranspose is the same
/// pair of products with the roles of input and output exchanged.
extension Gradients {
  static let convolution: [String: GradientRule] = [
    "Conv": GradientRule([0, 1, 2], convGradient),
    "ConvTranspose": GradientRule([0, 1, 2], convTransposeGradient),
  ]
}

/// [N, C, H, W] of a 1-D or 2-D feature map.
private func planes(_ shape: [Int]) -> (n: Int, c: Int, h: Int, w: Int) {
  shape.count == 3 ? (shape[0], shape[1], 1, shape[2]) : (shape[0], shape[1], shape[2], shape[3])
}

/// Σ over batch and positions of dY, per channel.
private func biasGradient(_ dy: NDArray) -> NDArray {
  let (n, m, h, w) = planes(dy.shape)
  return NDArray.filled([m]) { out, _ in
    dy.withFloats { g in
      for o in 0..<m {
        var s: Float = 0
        for b in 0..<n { let row = g + (b * m + o) * h * w; for i in 0..<(h * w) { s += row[i] } }
        out[o] = s
      }
    }
  }
}

private func convGradient(_ c: GradientContext) throws -> [NDArray?] {
  let x = try c.input(0).asFloat(), w = try c.input(1).asFloat(), dy = c.gradient()
  guard x.rank == 3 || x.rank == 4 else { throw c.fail("gradients of \(x.rank - 2)-D convolutions are not supported") }
  let group = c.int("group", 1)
  let (n, ch, h, wd) = planes(x.shape)
  let (_, m, oh, ow) = planes(dy.shape)
  let cg = ch / group, mg = m / group
  let win = try Window(node: c.node, spatialRank: x.rank - 2, kernel: Array(w.shape.dropFirst(2)), input: Array(x.shape.dropFirst(2)))
  let kk = cg * win.kh * win.kw, spatial = oh * ow
  var dx = NDArray(zeros: .float, x.shape), dw = NDArray(zeros: .float, w.shape)
  let px = dx.mutableElements(Float.self), pw = dw.mutableElements(Float.self)
  var cols = [Float](repeating: 0, count: kk * spatial), dcols = [Float](repeating: 0, count: kk * spatial)
  x.withFloats { xs in w.withFloats { ws in dy.withFloats { g in px.withPointer { dxp in pw.withPointer { dwp in
    guard let dxp, let dwp, spatial > 0 else { return }
    cols.withUnsafeMutableBufferPointer { colBuffer in dcols.withUnsafeMutableBufferPointer { dcolBuffer in
      let colp = colBuffer.baseAddress.unsafelyUnwrapped, dcolp = dcolBuffer.baseAddress.unsafelyUnwrapped
      for b in 0..<n {
        for gi in 0..<group {
          let input = xs + (b * ch + gi * cg) * h * wd
          let dOut = g + (b * m + gi * mg) * spatial
          if c.needs(1) {
            im2col(input, colp, c: cg, h: h, w: wd, oh: oh, ow: ow, win: win)
            Linalg.gemm(m: mg, n: kk, k: spatial, a: dOut, b: colp, beta: 1, c: dwp + gi * mg * kk, transposeB: true)
          }
          if c.needs(0) {
            Linalg.gemm(m: kk, n: spatial, k: mg, a: ws + gi * mg * kk, b: dOut, c: dcolp, transposeA: true)
            col2im(dcolp, dxp + (b * ch + gi * cg) * h * wd, c: cg, h: h, w: wd, oh: oh, ow: ow, win: win)
          }
        }
      }
    } }
  } } } } }
  return [c.needs(0) ? dx : nil, c.needs(1) ? dw : nil, c.needs(2) ? biasGradient(dy) : nil]
}

private func convTransposeGradient(_ c: GradientContext) throws -> [NDArray?] {
  let x = try c.input(0).asFloat(), w = try c.input(1).asFloat(), dy = c.gradient()
  guard x.rank == 3 || x.rank == 4 else { throw c.fail("gradients of \(x.rank - 2)-D transposed convolutions are not supported") }
  let group = c.int("group", 1)
  let (n, ch, h, wd) = planes(x.shape)
  let (_, m, oh, ow) = planes(dy.shape)
  let cg = ch / group, mg = m / group
  let win = try Window(node: c.node, spatialRank: x.rank - 2, kernel: Array(w.shape.dropFirst(2)),
                       input: Array(x.shape.dropFirst(2)), transposed: true)
  let kk = mg * win.kh * win.kw, spatial = h * wd
  var dx = NDArray(zeros: .float, x.shape), dw = NDArray(zeros: .float, w.shape)
  let px = dx.mutableElements(Float.self), pw = dw.mutableElements(Float.self)
  var dcols = [Float](repeating: 0, count: kk * spatial)
  x.withFloats { xs in w.withFloats { ws in dy.withFloats { g in px.withPointer { dxp in pw.withPointer { dwp in
    guard let dxp, let dwp, spatial > 0 else { return }
    dcols.withUnsafeMutableBufferPointer { buffer in
      let dcolp = buffer.baseAddress.unsafelyUnwrapped
      for b in 0..<n {
        for gi in 0..<group {
          // The forward pass scattered cols into Y, so gathering dY with the same window gives dcols.
          im2col(g + (b * m + gi * mg) * oh * ow, dcolp, c: mg, h: oh, w: ow, oh: h, ow: wd, win: win)
          let input = xs + (b * ch + gi * cg) * spatial
          if c.needs(0) {
            Linalg.gemm(m: cg, n: spatial, k: kk, a: ws + gi * cg * kk, b: dcolp, c: dxp + (b * ch + gi * cg) * spatial)
          }
          if c.needs(1) {
            Linalg.gemm(m: cg, n: kk, k: spatial, a: input, b: dcolp, beta: 1, c: dwp + gi * cg * kk, transposeB: true)
          }
        }
      }
    }
  } } } } }
  return [c.needs(0) ? dx : nil, c.needs(1) ? dw : nil, c.needs(2) ? biasGradient(dy) : nil]
}
