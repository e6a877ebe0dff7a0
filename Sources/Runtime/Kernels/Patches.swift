import IR
import Linalg
import Support

/// Operators built on sliding-window patches: Col2Im (sums columns of patches back into an
/// image, any spatial rank) and DeformConv (2-D convolution whose taps are displaced by learned
/// offsets and weighted by an optional mask, sampled bilinearly).
extension Kernels {
  static let patches: [String: Kernel] = [
    "Col2Im": { c in [try col2Im(c)] },
    "DeformConv": { c in [try deformConv(c)] },
  ]
}

private func col2Im(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), image = try c.input(1).integers(), block = try c.input(2).integers()
  let r = image.count
  guard r > 0, block.count == r, image.allSatisfy({ $0 > 0 }), block.allSatisfy({ $0 > 0 }) else {
    throw c.fail("image_shape \(image) and block_shape \(block) must be positive sizes of one rank")
  }
  let dilations = c.ints("dilations") ?? Array(repeating: 1, count: r)
  let stridesAttr = c.ints("strides") ?? Array(repeating: 1, count: r)
  let pads = c.ints("pads") ?? Array(repeating: 0, count: 2 * r)
  guard dilations.count == r, stridesAttr.count == r, pads.count == 2 * r,
        (dilations + stridesAttr).allSatisfy({ $0 > 0 && $0 < 1 << 20 }), pads.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
    throw c.fail("dilations, strides or pads do not fit a \(r)-D image")
  }
  let kernelSize = block.reduce(1, *)
  guard x0.rank == 3, kernelSize > 0, x0.shape[1] % kernelSize == 0 else {
    throw c.fail("input \(x0.shape) must be [N, C·\(kernelSize), L]")
  }
  // The sliding grid: how many blocks fit along each dimension of the padded image.
  let grid: [Int] = (0..<r).map { d in
    let span: Int = image[d] + pads[d] + pads[d + r] - dilations[d] * (block[d] - 1) - 1
    return span < 0 ? 0 : span / stridesAttr[d] + 1
  }
  guard grid.allSatisfy({ $0 > 0 }), grid.reduce(1, *) == x0.shape[2] else {
    throw c.fail("\(x0.shape[2]) blocks do not tile the image \(image) (the grid is \(grid))")
  }
  let n = x0.shape[0], ch = x0.shape[1] / kernelSize, positions = x0.shape[2]
  try NDArray.checkAllocation([n, ch] + image, .double, c)
  let x = try x0.converted(to: .double).elements(Double.self)
  var out = NDArray(zeros: .double, [n, ch] + image)
  let dst = out.mutableElements(Double.self)
  let plane = image.reduce(1, *), imageStrides = strides(image), blockStrides = strides(block), gridStrides = strides(grid)
  for b in 0..<n {
    for channel in 0..<ch {
      for k in 0..<kernelSize {
        let row = ((b * ch + channel) * kernelSize + k) * positions
        for l in 0..<positions {
          var offset = 0, inside = true
          for d in 0..<r {
            let position: Int = (l / gridStrides[d]) % grid[d], tap: Int = (k / blockStrides[d]) % block[d]
            let i = position * stridesAttr[d] - pads[d] + tap * dilations[d]
            if i < 0 || i >= image[d] { inside = false; break }
            offset += i * imageStrides[d]
          }
          if inside { dst[(b * ch + channel) * plane + offset] += x[row + l] }
        }
      }
    }
  }
  return try out.converted(to: x0.dataType)
}

/// Y[n, o] = Σ W[o, c, i, j] · mask · X[n, c](p + tap + offset), the sample bilinear with zeros
/// outside the image; the sampled columns of each image go through one GEMM per group.
private func deformConv(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0), w0 = try c.input(1), offset0 = try c.input(2)
  guard x0.rank == 4 else { throw c.unsupported("DeformConv on \(x0.shape): 2-D inputs are supported") }
  guard w0.rank == 4, offset0.rank == 4 else { throw c.fail("W \(w0.shape) and offset \(offset0.shape) must be 4-D") }
  let (n, ic, ih, iw) = (x0.shape[0], x0.shape[1], x0.shape[2], x0.shape[3])
  let oc = w0.shape[0], icPerGroup = w0.shape[1]
  let kernel = c.ints("kernel_shape") ?? [w0.shape[2], w0.shape[3]]
  let group = c.int("group", 1), offsetGroup = c.int("offset_group", 1)
  let st = c.ints("strides") ?? [1, 1], dil = c.ints("dilations") ?? [1, 1], pads = c.ints("pads") ?? [0, 0, 0, 0]
  guard kernel.count == 2, kernel == [w0.shape[2], w0.shape[3]], st.count == 2, dil.count == 2, pads.count == 4,
        (st + dil).allSatisfy({ $0 > 0 && $0 < 1 << 20 }), pads.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
    throw c.fail("kernel_shape, strides, dilations or pads do not fit W \(w0.shape)")
  }
  guard group > 0, offsetGroup > 0, fitsGroups(ic, perGroup: icPerGroup, group), oc % group == 0, ic % offsetGroup == 0 else {
    throw c.fail("group \(group) and offset_group \(offsetGroup) do not fit \(ic) input and \(oc) output channels")
  }
  let (kh, kw) = (kernel[0], kernel[1]), taps = kh * kw
  let oh = (ih + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) / st[0] + 1
  let ow = (iw + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) / st[1] + 1
  guard oh > 0, ow > 0, offset0.shape == [n, offsetGroup * 2 * taps, oh, ow] else {
    throw c.fail("offset \(offset0.shape) must be [\(n), \(offsetGroup * 2 * taps), \(oh), \(ow)]")
  }
  let mask = try c.optionalInput(4).map { m -> [Float] in
    guard m.shape == [n, offsetGroup * taps, oh, ow] else { throw c.fail("mask \(m.shape) must be [\(n), \(offsetGroup * taps), \(oh), \(ow)]") }
    return try m.floats()
  }
  let bias = try c.optionalInput(3)?.floats()
  if let bias, bias.count != oc { throw c.fail("B has \(bias.count) values for \(oc) output channels") }
  try NDArray.checkAllocation([n, oc, oh, ow], .float, c)
  try NDArray.checkAllocation([ic * taps, oh * ow], .float, c)
  let x = try x0.floats(), w = try w0.floats(), offsets = try offset0.floats()
  let positions = oh * ow, perOffsetGroup = ic / offsetGroup, ocPerGroup = oc / group, k = icPerGroup * taps
  var out = NDArray(zeros: .float, [n, oc, oh, ow])
  let dst = out.mutableElements(Float.self)
  var columns = [Float](repeating: 0, count: ic * taps * positions)
  for b in 0..<n {
    for channel in 0..<ic {
      let g = channel / perOffsetGroup, plane = (b * ic + channel) * ih * iw
      for t in 0..<taps {
        let (i, j) = (t / kw, t % kw)
        for p in 0..<positions {
          let (y0, x0) = (p / ow, p % ow)
          let dy = offsets[((b * offsetGroup + g) * 2 * taps + 2 * t) * positions + p]
          let dx = offsets[((b * offsetGroup + g) * 2 * taps + 2 * t + 1) * positions + p]
          let y = Float(y0 * st[0] - pads[0] + i * dil[0]) + dy, xx = Float(x0 * st[1] - pads[1] + j * dil[1]) + dx
          var v: Float = 0
          if y > -1, y < Float(ih), xx > -1, xx < Float(iw) {
            let yl = Int(y.rounded(.down)), xl = Int(xx.rounded(.down)), ly = y - Float(yl), lx = xx - Float(xl)
            func at(_ r: Int, _ q: Int) -> Float { r >= 0 && r < ih && q >= 0 && q < iw ? x[plane + r * iw + q] : 0 }
            v = (1 - ly) * (1 - lx) * at(yl, xl) + (1 - ly) * lx * at(yl, xl + 1) + ly * (1 - lx) * at(yl + 1, xl) + ly * lx * at(yl + 1, xl + 1)
          }
          if let mask { v *= mask[((b * offsetGroup + g) * taps + t) * positions + p] }
          columns[(channel * taps + t) * positions + p] = v
        }
      }
    }
    w.withUnsafeBufferPointer { wp in
      columns.withUnsafeBufferPointer { cp in
        withExtendedLifetime(dst) {
          guard let wb = wp.baseAddress, let cb = cp.baseAddress, let db = dst.baseAddress, positions > 0, k > 0 else { return }
          for g in 0..<group {
            Linalg.gemm(m: ocPerGroup, n: positions, k: k, a: wb + g * ocPerGroup * k, b: cb + g * k * positions,
                        c: db + (b * oc + g * ocPerGroup) * positions)
          }
        }
      }
    }
    if let bias { for o in 0..<oc { for p in 0..<positions { dst[(b * oc + o) * positions + p] += bias[o] } } }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}
