import IR
import Linalg
import Support

/// Convolution and pooling over any number of spatial dimensions (used for 3-D and beyond; the
/// 1-D and 2-D kernels in Convolution.swift and Pooling.swift are tuned for the common case).
struct WindowND {
  var kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int], padEnd: [Int]
  var input: [Int]
  var rank: Int { kernel.count }

  init(_ c: KernelContext, kernel defaultKernel: [Int], input: [Int]) throws {
    let r = input.count
    kernel = c.ints("kernel_shape") ?? defaultKernel
    guard kernel == defaultKernel else { throw c.fail("kernel_shape \(kernel) does not match the weight's spatial dimensions \(defaultKernel)") }
    strides = c.ints("strides") ?? Array(repeating: 1, count: r)
    dilations = c.ints("dilations") ?? Array(repeating: 1, count: r)
    var pads = c.ints("pads") ?? Array(repeating: 0, count: 2 * r)
    self.input = input
    guard kernel.count == r, strides.count == r, dilations.count == r, pads.count == 2 * r,
          (kernel + strides + dilations).allSatisfy({ $0 > 0 && $0 < 1 << 20 }), pads.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
      throw c.fail("kernel_shape, strides, dilations or pads do not fit a \(r)-D input")
    }
    let autoPad = c.string("auto_pad", "NOTSET")
    if autoPad == "VALID" { pads = Array(repeating: 0, count: 2 * r) }
    if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
      for i in 0..<r {
        let out = (input[i] + strides[i] - 1) / strides[i]
        let total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - input[i])
        let small = total / 2, large = total - small
        pads[i] = autoPad == "SAME_UPPER" ? small : large
        pads[i + r] = autoPad == "SAME_UPPER" ? large : small
      }
    }
    padBegin = Array(pads[..<r])
    padEnd = Array(pads[r...])
  }

  func output(ceilMode: Bool = false) -> [Int] {
    (0..<rank).map { i in
      let span = input[i] + padBegin[i] + padEnd[i] - dilations[i] * (kernel[i] - 1) - 1
      if span < 0 { return 0 }
      if ceilMode {
        var o = (span + strides[i] - 1) / strides[i] + 1
        if (o - 1) * strides[i] >= input[i] + padBegin[i] { o -= 1 }
        return o
      }
      return span / strides[i] + 1
    }
  }
}

/// Calls body(linear index, multi-index) for every index of `shape`, in row-major order.
private func forEachIndex(_ shape: [Int], _ body: (Int, [Int]) -> Void) {
  let total = shape.reduce(1, *)
  if total == 0 { return }
  var idx = [Int](repeating: 0, count: shape.count)
  for linear in 0..<total {
    body(linear, idx)
    advance(&idx, within: shape)
  }
}

/// The input offset (within one channel plane) a window tap reads, or nil in the padding.
@inline(__always)
private func tapOffset(_ w: WindowND, out: [Int], tap: [Int], planeStrides: [Int]) -> Int? {
  var offset = 0
  for d in 0..<w.rank {
    let i = out[d] * w.strides[d] - w.padBegin[d] + tap[d] * w.dilations[d]
    if i < 0 || i >= w.input[d] { return nil }
    offset += i * planeStrides[d]
  }
  return offset
}

func convND(_ c: KernelContext, x: NDArray, w: NDArray, group: Int) throws -> NDArray {
  let n = x.shape[0], ch = x.shape[1], m = w.shape[0], cg = w.shape[1]
  let spatial = Array(x.shape.dropFirst(2))
  let win = try WindowND(c, kernel: Array(w.shape.dropFirst(2)), input: spatial)
  let outSpatial = win.output()
  try NDArray.checkAllocation([n, m] + outSpatial, .float, c)
  var out = NDArray(zeros: .float, [n, m] + outSpatial)
  let planeIn = spatial.reduce(1, *), planeOut = outSpatial.reduce(1, *), taps = win.kernel.reduce(1, *)
  let planeStrides = strides(spatial)
  let mg = m / group, kk = cg * taps
  let src = x.elements(Float.self), wt = w.elements(Float.self), dst = out.mutableElements(Float.self)
  // Offsets of every (tap, output position) pair, -1 in the padding: shared by all channels.
  var offsets = [Int](repeating: -1, count: taps * planeOut)
  forEachIndex(win.kernel) { t, tap in
    forEachIndex(outSpatial) { o, pos in
      offsets[t * planeOut + o] = tapOffset(win, out: pos, tap: tap, planeStrides: planeStrides) ?? -1
    }
  }
  var cols = [Float](repeating: 0, count: kk * planeOut)
  try withExtendedLifetime((src, wt, dst)) {
    guard let sp = src.baseAddress, let wp = wt.baseAddress, let dp = dst.baseAddress, planeOut > 0 else { return }
    for b in 0..<n {
      for g in 0..<group {
        for ci in 0..<cg {
          let plane = sp + (b * ch + g * cg + ci) * planeIn
          for t in 0..<taps {
            let row = (ci * taps + t) * planeOut
            for o in 0..<planeOut {
              let off = offsets[t * planeOut + o]
              cols[row + o] = off >= 0 ? plane[off] : 0
            }
          }
        }
        cols.withUnsafeBufferPointer { colp in
          Linalg.gemm(m: mg, n: planeOut, k: kk, a: wp + g * mg * kk, b: colp.baseAddress.unsafelyUnwrapped,
                      c: dp + (b * m + g * mg) * planeOut)
        }
      }
    }
    if let bias = c.optionalInput(2) {
      let bv = try bias.floats()
      guard bv.count == m else { throw c.fail("bias has \(bv.count) values for \(m) output channels") }
      for b in 0..<n { for o in 0..<m { for i in 0..<planeOut { dp[(b * m + o) * planeOut + i] += bv[o] } } }
    }
  }
  return out
}

func poolND(_ c: KernelContext, x: NDArray, max isMax: Bool) throws -> NDArray {
  guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
  let spatial = Array(x.shape.dropFirst(2))
  let win = try WindowND(c, kernel: kernel, input: spatial)
  let outSpatial = win.output(ceilMode: c.int("ceil_mode", 0) != 0)
  let includePad = c.int("count_include_pad", 0) != 0
  let planes = x.shape[0] * x.shape[1], planeIn = spatial.reduce(1, *), planeOut = outSpatial.reduce(1, *)
  let planeStrides = strides(spatial)
  var out = NDArray(zeros: .float, Array(x.shape.prefix(2)) + outSpatial)
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  for p in 0..<planes {
    forEachIndex(outSpatial) { o, pos in
      var acc: Float = isMax ? -.infinity : 0
      var count = 0
      forEachIndex(win.kernel) { _, tap in
        if let off = tapOffset(win, out: pos, tap: tap, planeStrides: planeStrides) {
          let v = src[p * planeIn + off]
          if isMax { if v > acc || v.isNaN { acc = v } } else { acc += v }
          count += 1
        } else if includePad {
          // Taps in the explicit padding count; taps past it (ceil mode) do not.
          var inPadded = true
          for d in 0..<win.rank {
            let i = pos[d] * win.strides[d] - win.padBegin[d] + tap[d] * win.dilations[d]
            if i >= win.input[d] + win.padEnd[d] { inPadded = false }
          }
          if inPadded { count += 1 }
        }
      }
      dst[p * planeOut + o] = isMax ? acc : (count > 0 ? acc / Float(count) : 0)
    }
  }
  return out
}

/// LpPool over any number of spatial dimensions: (Σ |x|^p)^(1/p) over each window's taps inside
/// the input (padding contributes zeros).
func lpPoolND(_ c: KernelContext, x: NDArray, p: Float) throws -> NDArray {
  guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
  let spatial = Array(x.shape.dropFirst(2))
  let win = try WindowND(c, kernel: kernel, input: spatial)
  let outSpatial = win.output(ceilMode: c.int("ceil_mode", 0) != 0)
  try NDArray.checkAllocation(Array(x.shape.prefix(2)) + outSpatial, .float, c)
  let planes = x.shape[0] * x.shape[1], planeIn = spatial.reduce(1, *), planeOut = outSpatial.reduce(1, *)
  let planeStrides = strides(spatial), power = Int(p)
  var out = NDArray(zeros: .float, Array(x.shape.prefix(2)) + outSpatial)
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  for q in 0..<planes {
    forEachIndex(outSpatial) { o, pos in
      var acc: Float = 0
      forEachIndex(win.kernel) { _, tap in
        if let off = tapOffset(win, out: pos, tap: tap, planeStrides: planeStrides) { acc += lpTerm(src[q * planeIn + off], power) }
      }
      dst[q * planeOut + o] = lpRoot(acc, power)
    }
  }
  return out
}
