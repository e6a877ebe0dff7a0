import CVectorMath
import IR
import Linalg
import Support

/// Conv (im2col + sgemm per group; a direct loop for depthwise) and ConvTranspose (sgemm +
/// col2im), 1-D and 2-D, with pads, strides, dilations, groups and auto_pad.
extension Kernels {
  static let convolution: [String: Kernel] = [
    "Conv": { c in [try conv(c)] },
    "ConvTranspose": { c in [try convTranspose(c)] },
  ]
}

/// Geometry of a 2-D window over an input (1-D inputs are treated as height 1).
public struct Window {
  public var kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1
  public var padTop = 0, padLeft = 0, padBottom = 0, padRight = 0

  init(_ c: KernelContext, spatialRank: Int, kernel: [Int], input: [Int], transposed: Bool = false) throws {
    typealias Kept = (spatialRank: Int, kernel: [Int], input: [Int], transposed: Bool, window: Window)
    let kept: Kept = try c.memo("window", valid: { (k: Kept) in
      k.spatialRank == spatialRank && k.kernel == kernel && k.input == input && k.transposed == transposed
    }) {
      (spatialRank, kernel, input, transposed,
       try Window(node: c.node, spatialRank: spatialRank, kernel: kernel, input: input, transposed: transposed))
    }
    self = kept.window
  }

  /// Reads the node's kernel_shape (or the given kernel dims), strides, dilations, pads and auto_pad.
  public init(node: Node, spatialRank: Int, kernel: [Int], input: [Int], transposed: Bool = false) throws {
    guard spatialRank == 1 || spatialRank == 2 else {
      throw CompressorError.unsupported("\(node.displayName): \(spatialRank)-D windows are not supported (1-D and 2-D are)")
    }
    func ints(_ name: String) -> [Int]? { node.attribute(name)?.ints.map { $0.map { Int(clamping: $0) } } }
    let k = ints("kernel_shape") ?? kernel
    // A kernel_shape that disagrees with the weight would have im2col and sgemm read past it.
    guard k == kernel else {
      throw CompressorError.invalid("\(node.displayName): kernel_shape \(k) does not match the weight's spatial dimensions \(kernel)")
    }
    let s = ints("strides") ?? Array(repeating: 1, count: spatialRank)
    let d = ints("dilations") ?? Array(repeating: 1, count: spatialRank)
    var p = ints("pads") ?? Array(repeating: 0, count: 2 * spatialRank)
    guard k.count == spatialRank, s.count == spatialRank, d.count == spatialRank, p.count == 2 * spatialRank,
          (k + s + d).allSatisfy({ $0 > 0 && $0 < 1 << 20 }), p.allSatisfy({ $0 >= 0 && $0 < 1 << 20 })
    else { throw CompressorError.invalid("\(node.displayName): kernel_shape, strides, dilations or pads do not fit a \(spatialRank)-D input") }
    let autoPad = node.attribute("auto_pad")?.string ?? "NOTSET"
    if autoPad == "VALID" {
      p = Array(repeating: 0, count: 2 * spatialRank)
    } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
      for i in 0..<spatialRank {
        let total: Int
        if transposed {
          total = max(0, s[i] * (input[i] - 1) + (k[i] - 1) * d[i] + 1 - input[i] * s[i])
        } else {
          let out = (input[i] + s[i] - 1) / s[i]
          total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - input[i])
        }
        // SAME_UPPER puts the odd unit of padding at the end, SAME_LOWER at the start.
        let small = total / 2, large = total - small
        let upper = autoPad == "SAME_UPPER"
        p[i] = upper ? small : large
        p[i + spatialRank] = upper ? large : small
      }
    }
    if spatialRank == 1 {
      kw = k[0]; sw = s[0]; dw = d[0]; padLeft = p[0]; padRight = p[1]
    } else {
      kh = k[0]; kw = k[1]; sh = s[0]; sw = s[1]; dh = d[0]; dw = d[1]
      padTop = p[0]; padLeft = p[1]; padBottom = p[2]; padRight = p[3]
    }
  }

  public func outputSize(h: Int, w: Int, ceilMode: Bool = false) -> (Int, Int) {
    func size(_ n: Int, _ k: Int, _ s: Int, _ d: Int, _ p: Int) -> Int {
      let span = n + p - d * (k - 1) - 1
      if span < 0 { return 0 }
      if ceilMode {
        var o = (span + s - 1) / s + 1
        // The last window must start inside the input or its left padding.
        if (o - 1) * s >= n + (p / 2) { o -= 1 }
        return o
      }
      return span / s + 1
    }
    return (size(h, kh, sh, dh, padTop + padBottom), size(w, kw, sw, dw, padLeft + padRight))
  }
}

/// Whether `channels` is `perGroup` × `group` (the attribute comes from the model: a product that
/// overflows does not fit).
func fitsGroups(_ channels: Int, perGroup: Int, _ group: Int) -> Bool {
  let (product, overflow) = perGroup.multipliedReportingOverflow(by: group)
  return !overflow && product == channels
}

/// [N, C, H, W] view of a 1-D or 2-D feature map.
private func spatial(_ shape: [Int]) -> (n: Int, c: Int, h: Int, w: Int) {
  shape.count == 3 ? (shape[0], shape[1], 1, shape[2]) : (shape[0], shape[1], shape[2], shape[3])
}

func conv(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let w0 = try c.input(1)
  let w = w0.dataType == .float ? w0 : try w0.converted(to: .float)
  guard x.rank >= 3, w.rank == x.rank else { throw c.fail("Conv input \(x.shape) and weight \(w.shape) do not fit") }
  let group = c.int("group", 1)
  if x.rank > 4 {
    guard group > 0, fitsGroups(x.shape[1], perGroup: w.shape[1], group), w.shape[0] % group == 0 else {
      throw c.fail("weight \(w.shape) does not fit input \(x.shape) with group \(group)")
    }
    let out = try convND(c, x: x, w: w, group: group)
    return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
  }
  let (n, ch, h, wd) = spatial(x.shape)
  let m = w.shape[0], cg = w.shape[1]
  guard group > 0, fitsGroups(ch, perGroup: cg, group), m % group == 0 else {
    throw c.fail("weight \(w.shape) does not fit input \(x.shape) with group \(group)")
  }
  let win = try Window(c, spatialRank: x.rank - 2, kernel: Array(w.shape.dropFirst(2)), input: Array(x.shape.dropFirst(2)))
  let (oh, ow) = win.outputSize(h: h, w: wd)
  let outShape = x.rank == 3 ? [n, m, ow] : [n, m, oh, ow]
  try NDArray.checkAllocation(outShape, .float, c)
  try NDArray.checkAllocation([cg * win.kh * win.kw, oh * ow], .float, c)
  // Every path below writes every output element (sgemm with β = 0): zeroing first was a wasted
  // pass over the output. An empty product (no input channels) must still give zeros.
  var out = cg == 0 ? NDArray(zeros: .float, outShape) : NDArray(uninitialized: .float, outShape)
  let src = x.elements(Float.self), wt = w.elements(Float.self), dst = out.mutableElements(Float.self)
  let mg = m / group, spatialOut = oh * ow
  let declared = try FusedActivation(c.node)
  // A residual the executor fused in (`Executor.fuseResidualAddIntoConv`): added with the bias, before
  // the activation. One of another shape (broadcast) is added after the convolution instead.
  let residual0 = c.optionalInput(3)
  let residual = try residual0.map { $0.dataType == .float ? $0 : try $0.converted(to: .float) }
  let inline = residual.map { $0.shape == outShape } ?? false
  let deferred = residual != nil && !inline ? declared : nil
  let activation = deferred == nil ? declared : FusedActivation()
  let residualElements = inline ? residual?.elements(Float.self) : nil
  let rp = residualElements?.baseAddress
  guard let sp = src.baseAddress, let wp = wt.baseAddress, let dp = dst.baseAddress, spatialOut > 0 else { return out }
  try withExtendedLifetime((src, wt, dst)) {
  if let b = c.optionalInput(2), b.rank != 1 { throw c.fail("bias has shape \(b.shape), not [\(m)]") }
  let bias = try c.optionalInput(2).map { try $0.floats() } ?? []
  if c.optionalInput(2) != nil && bias.count != m { throw c.fail("bias has \(bias.count) values for \(m) output channels") }
  /// Bias, the residual and the fused activation on output channels `channels` of sample `b`,
  /// positions [p0, p1), while those values are still in cache.
  func finish(_ b: Int, _ channels: Range<Int>, _ p0: Int, _ p1: Int) {
    guard !channels.isEmpty else { return }
    let offset = (b * m + channels.lowerBound) * spatialOut + p0
    bias.withUnsafeBufferPointer { biases in
      activation.apply(planes: channels.count, dp + offset, count: p1 - p0, stride: spatialOut,
                       biases: biases.isEmpty ? nil : biases.baseAddress.map { $0 + channels.lowerBound }, residual: rp.map { UnsafePointer($0 + offset) })
    }
  }
  let pointwise = win.kh == 1 && win.kw == 1 && win.sh == 1 && win.sw == 1
    && win.padTop == 0 && win.padLeft == 0 && win.padBottom == 0 && win.padRight == 0
  // Side by side only for 16 channels or more: 8 channels filled half of each vector, and a
  // 3-channel depthwise convolution over 224 × 224 ran 4× as long as plane by plane.
  if cg == 1 && mg == 1 && ownProductsRun && rp == nil && ch >= 16 {
    bias.withUnsafeBufferPointer { biases in
      depthwiseChannels(sp, wp, dp, n: n, c: ch, h: h, w: wd, oh: oh, ow: ow, win: win,
                        biases: biases.isEmpty ? nil : biases.baseAddress, activation: activation)
    }
  } else if cg == 1 && mg == 1 {
    depthwise(sp, wp, dp, n: n, c: ch, h: h, w: wd, oh: oh, ow: ow, win: win) { plane in
      finish(plane / m, plane % m ..< plane % m + 1, 0, spatialOut)
    }
  } else if pointwise && spatialOut == 1 && group == 1 {
    // 1 × 1 maps (squeeze-excitation, classifier heads): the input is an n × ch matrix and the
    // output n × m. One image is a matrix–vector product over the weights as they are (through
    // the 8 × 32 kernel, one row of sums waited four cycles a step: MobileNetV3's 576 → 144 took
    // 8 µs); several images one product against the transposed weights, read once for all of
    // them (each image alone read a 1280 × 512 head's 2.6 MB again).
    let packed = n > 1 ? try transposedWeights(c, { UnsafePointer(wp) }, m: m, group: 1, k: cg, positions: n, window: false,
                                               purpose: "conv-transposed") : nil
    if let packed {
      packedRightProduct(m: n, n: m, k: cg, a: sp, packed: packed.group(0), c: dp, ldc: m)
    } else {
      for b in 0..<n {
        Parallel.forEach(m, costPerItem: cg) { rows in vm_rows_dot(wp, cg, sp + b * ch, cg, rows.lowerBound, rows.upperBound, dp + b * m) }
      }
    }
    for b in 0..<n { finish(b, 0..<m, 0, 1) }
    withExtendedLifetime(packed) {}
  } else if pointwise {
    // A 1×1 convolution is a matrix product with the input as it is: no im2col.
    let packed = try transposedWeights(c, { UnsafePointer(wp) }, m: m, group: group, k: cg, positions: spatialOut, window: false,
                                       purpose: "conv-transposed")
    // Positions in blocks of about 512 KB of output, each finished (bias, activation) right after
    // its product, while it is in the core's cache. The product reads its input in place, rows
    // spatialOut apart, so a block is any run of positions.
    // Blocks as equal as whole 32-column panels allow, and with several threads a multiple of
    // their number (12,544 positions went as three blocks of 4,096 and one of 256, two to each
    // thread: one thread did twice the other's work).
    var blockWidth = ownProductsRun && packed == nil ? max(128, (1 << 17) / max(m, 1) / 32 * 32) : spatialOut
    var blocks = (spatialOut + blockWidth - 1) / blockWidth
    if blocks > 1 {
      if n % Parallel.threads != 0 { blocks = (blocks + Parallel.threads - 1) / Parallel.threads * Parallel.threads }
      blockWidth = ((spatialOut + blocks - 1) / blocks + 31) / 32 * 32
      blocks = (spatialOut + blockWidth - 1) / blockWidth
    }
    func block(_ b: Int, _ p0: Int, _ p1: Int, parallel: Bool) {
      for g in 0..<group {
        let columns = sp + (b * ch + g * cg) * h * wd + p0, output = dp + (b * m + g * mg) * spatialOut + p0
        if ownProductsRun && packed == nil {
          directProduct(m: mg, n: p1 - p0, k: cg, a: wp + g * mg * cg, b: columns, ldb: spatialOut, bInMemory: false,
                        c: output, ldc: spatialOut, parallel: parallel)
        } else {
          convolutionProduct(m: mg, n: spatialOut, k: cg, weights: wp + g * mg * cg, packed: packed?.group(g), columns: columns,
                             output: output, ldc: spatialOut, parallel: parallel)
        }
      }
    }
    // Blocks whose products are too small to split (MobileNet's 16-channel layers: one thread did
    // them all, and two threads ran 1×1 convolutions 1.1× as fast as one), or that share evenly
    // among the threads (a 256-channel layer's 196 positions split 4 : 3 panels, with two waits an
    // image: 1.6× as fast on two threads, now 1.9×), go to the threads whole, each block's product
    // and epilogue on one thread.
    let jobs = n * blocks, workers = min(Parallel.threads, jobs)
    if workers > 1 && (mg * min(blockWidth, spatialOut) * cg < (1 << 21) || jobs % workers == 0 || jobs >= 4 * workers) {
      WorkerPool.shared.run(parts: workers) { worker in
        for job in stride(from: worker, to: jobs, by: workers) {
          let b = job / blocks, p0 = job % blocks * blockWidth, p1 = min(spatialOut, p0 + blockWidth)
          block(b, p0, p1, parallel: false)
          finish(b, 0..<m, p0, p1)
        }
      }
    } else {
      for job in 0..<jobs {
        let b = job / blocks, p0 = job % blocks * blockWidth, p1 = min(spatialOut, p0 + blockWidth)
        block(b, p0, p1, parallel: true)
        // Bias and activation over all channels, split among the threads like the product.
        Parallel.forEach(m, costPerItem: p1 - p0) { channels in finish(b, channels, p0, p1) }
      }
    }
    withExtendedLifetime(packed) {}
  } else {
    if try regionConvolution(x: sp, ch: ch, h: h, w: wd, n: n, weights: wp, group: group, m: m, win: win, oh: oh, ow: ow,
                             output: dp, c, finish: finish) {
      return
    }
    // Taps that read only padding for every output — dilated convolutions on maps smaller than
    // their dilation (DeepLab's ASPP: rates 24 and 36 on a 16×16 map) — add nothing: convolve
    // with the window of the taps that can reach the input, and those taps' weights.
    let live = liveWindow(win, h: h, w: wd, oh: oh, ow: ow)
    let full = live.ky.count == win.kh && live.kx.count == win.kw
    var win = win
    let kk = cg * live.ky.count * live.kx.count
    /// The live taps' weights (m × kk): gathered once per executor from a constant weight (a
    /// packed weight is gathered once, when it is packed) — DeepLab's ASPP gathered 256 × 960 of
    /// its 8.8 MB of weights on every call.
    let (kh, kw) = (win.kh, win.kw)
    func gatherLive() -> NDArray {
      var reduced = NDArray(uninitialized: .float, [m * kk])
      reduced.mutableElements(Float.self).withPointer { r in
        guard let r else { return }
        var i = 0
        for o in 0..<m {
          for ci in 0..<cg {
            for ky in live.ky {
              for kx in live.kx { r[i] = wp[((o * cg + ci) * kh + ky) * kw + kx]; i += 1 }
            }
          }
        }
      }
      return reduced
    }
    // For the packed copy, gathered into a temporary while it is packed.
    var gathered: NDArray?
    func gatheredForPacking() -> UnsafePointer<Float> {
      if full { return UnsafePointer(wp) }
      gathered = gatherLive()
      return gathered?.elements(Float.self).baseAddress.map { UnsafePointer($0) } ?? UnsafePointer(wp)
    }
    if !full {
      win.padTop -= live.ky.lowerBound * win.dh
      win.padLeft -= live.kx.lowerBound * win.dw
      win.kh = live.ky.count
      win.kw = live.kx.count
    }
    // im2col a band of output rows at a time, small enough to stay in cache while sgemm reads
    // it. Bands are independent: with several threads each takes every T-th band with its own
    // buffer (single-threaded sgemm), and one narrow band falls back to a parallel sgemm.
    // Bands as equal as they can be, and with several threads a multiple of their number when
    // there are rows enough (28 rows went as 19 + 9: one thread idle a third of the time).
    let widest = min(oh, max((512 + ow - 1) / ow, (1 << 18) / max(kk * ow, 1)))
    var bands = (oh + widest - 1) / widest
    // One band whose product the threads split had each of them pack all of its columns, after a
    // separate parallel unfolding: small maps with weights that fit a core's cache (YOLOv8's 10 × 10
    // and 20 × 20 heads ran no faster on two threads) take one band per thread instead. Large
    // weights (ResNet's 512-channel stage) keep the split, where each thread reads half of them.
    let ownBands = m * kk <= (1 << 18) && oh >= Parallel.threads
    if Parallel.threads > 1 && n == 1 && (bands > 1 || ownBands) {
      bands = min(oh, (bands + Parallel.threads - 1) / Parallel.threads * Parallel.threads)
    }
    let bandRows = (oh + bands - 1) / bands
    bands = (oh + bandRows - 1) / bandRows
    let packed = try transposedWeights(c, gatheredForPacking, m: m, group: group, k: kk, positions: bandRows * ow,
                                       window: win.kh * win.kw > 1,
                                       purpose: full ? "conv-transposed" : liveTapsPurpose(live))
    gathered = nil
    let liveArray = packed != nil || full ? nil : try c.derived(fromInputs: [1], "live-" + liveTapsPurpose(live)) { gatherLive() }
    let liveElements = liveArray?.elements(Float.self)
    let wp = liveElements?.baseAddress.map { UnsafePointer($0) } ?? UnsafePointer(wp)
    // Small maps of several images (ResNet's 14 × 14 and 7 × 7 stages at batch 8): one product
    // over the positions of several images, whose weights are then read once for all of them,
    // and whose columns fill the kernel's 32-wide panels (49 positions are two panels, the second
    // half empty). Each element is summed in the same order either way.
    let imagesPerJob = bands == 1 && n > 1 && group == 1 && packed == nil && spatialOut < 512
      ? min(n, max(1, (1 << 21) / max(kk * spatialOut, 1))) : 1
    let jobs = imagesPerJob > 1 ? (n + imagesPerJob - 1) / imagesPerJob : n * bands
    // The product unfolds each panel of the input as it uses it: no band matrix written and
    // packed again (im2col and the packing were 16% of ResNet-18).
    let unfoldsInKernel = ownProductsRun && imagesPerJob == 1 && win.sw == 1
    // Positions as rows, each read in place from a zero-padded copy of its image's input
    // (`gatheredConvolution`): faster than unfolding panels of positions into the kernel at every
    // map size (ResNet's 3 × 3 layers 6–20%, strided windows and several images' small maps most).
    // For windows of several taps (a strided 1 × 1 one reads a quarter of its input: the copy
    // would cost more) over 64 values or more (a 3-channel 3 × 3 stem spent more on the copy and
    // the transposition than on its product), whose channels fill the kernel's 32-wide panels (16
    // would leave half of each empty) or whose product ran as positions × channels already; and
    // 64 positions or more in all (silero-vad's layers over 1–4 frames have their own short paths,
    // and the copy and the tables cost more than those products: the model ran 18% slower).
    let fillsPanels = (mg + 31) / 32 * 32 * 9 <= (mg + 7) / 8 * 8 * 10
    if ownProductsRun && kk >= 64 && win.kh * win.kw > 1 && n * spatialOut >= 64 && (packed != nil || fillsPanels) {
      try gatheredConvolution(x: sp, ch: ch, h: h, w: wd, n: n, weights: wp, packed: packed, group: group, m: m, k: kk,
                              win: win, oh: oh, ow: ow, output: dp, c, finish: finish)
      withExtendedLifetime((packed, liveArray)) {}
      return
    }
    let workers = min(Parallel.threads, jobs)
    func run(_ worker: Int, _ colp: UnsafeMutablePointer<Float>, _ folded: UnsafeMutablePointer<Float>?) {
      for job in stride(from: worker, to: jobs, by: workers) {
        if let folded {
          let images = job * imagesPerJob..<min(n, (job + 1) * imagesPerJob), width = images.count * spatialOut
          for (i, b) in images.enumerated() {
            im2col(sp + b * ch * h * wd, colp + i * spatialOut, c: cg, h: h, w: wd, oh: oh, ow: ow, win: win,
                   leading: width, parallel: workers == 1)
          }
          convolutionProduct(m: m, n: width, k: kk, weights: wp, packed: nil, columns: colp, output: folded, ldc: width,
                             parallel: workers == 1)
          for (i, b) in images.enumerated() {
            for o in 0..<m {
              (dp + (b * m + o) * spatialOut).update(from: folded + o * width + i * spatialOut, count: spatialOut)
            }
            finish(b, 0..<m, 0, spatialOut)
          }
          continue
        }
        let b = job / bands, oy0 = (job % bands) * bandRows
        let rows = oy0..<min(oh, oy0 + bandRows), p0 = oy0 * ow, width = rows.count * ow
        for g in 0..<group {
          if unfoldsInKernel {
            let image = vm_window(x: sp + (b * ch + g * cg) * h * wd, h: h, w: wd, kh: win.kh, kw: win.kw, sh: win.sh, sw: win.sw,
                                  dh: win.dh, dw: win.dw, pad_top: win.padTop, pad_left: win.padLeft, ow: ow)
            let out = dp + (b * m + g * mg) * spatialOut + p0
            if let packed {
              transposedWindowProduct(m: mg, p0: p0, n: width, k: kk, packed: packed.group(g), window: image, output: out,
                                      ldc: spatialOut, parallel: workers == 1)
            } else {
              windowProduct(m: mg, p0: p0, n: width, k: kk, a: wp + g * mg * kk, window: image, c: out, ldc: spatialOut,
                            parallel: workers == 1)
            }
            continue
          }
          im2col(sp + (b * ch + g * cg) * h * wd, colp, c: cg, h: h, w: wd, oh: oh, ow: ow, win: win, rows: rows, parallel: workers == 1)
          convolutionProduct(m: mg, n: width, k: kk, weights: wp + g * mg * kk, packed: packed?.group(g), columns: colp,
                             output: dp + (b * m + g * mg) * spatialOut + p0, ldc: spatialOut, parallel: workers == 1)
        }
        finish(b, 0..<m, p0, p0 + width)
      }
    }
    // Band buffers come from the buffer pool: fresh large allocations would page-fault on every call.
    let bandFloats = unfoldsInKernel ? 1 : kk * bandRows * ow * imagesPerJob
    let productFloats = imagesPerJob > 1 ? m * spatialOut * imagesPerJob : 0
    func withBand(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?) -> Void) {
      var scratch = NDArray(uninitialized: .float, [bandFloats])
      var products = NDArray(uninitialized: .float, [productFloats])
      scratch.mutableElements(Float.self).withPointer { p in
        products.mutableElements(Float.self).withPointer { q in if let p { body(p, productFloats > 0 ? q : nil) } }
      }
    }
    if workers > 1 {
      WorkerPool.shared.run(parts: workers) { worker in withBand { run(worker, $0, $1) } }
    } else {
      withBand { run(0, $0, $1) }
    }
    withExtendedLifetime((packed, liveArray)) {}
  }
  withExtendedLifetime(residualElements) {}
  }
  if let deferred, let residual {
    guard let shape = broadcastShape([outShape, residual.shape]), shape == outShape else {
      throw c.fail("the residual \(residual.shape) does not broadcast to the output \(outShape)")
    }
    var sum = NDArray(uninitialized: .float, outShape)
    floatBinary(outShape, outShape, residual.shape, out.elements(Float.self), residual.elements(Float.self),
                sum.mutableElements(Float.self), FloatBinaryMaps.Add())
    sum.mutableElements(Float.self).withPointer { p in if let p { deferred.apply(p, count: sum.count, bias: 0) } }
    out = sum
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// A convolution through `gatheredProduct`: jobs of whole images (as many as make about 2,048
/// positions) or of bands of one image's rows, each padded into a buffer of its own and computed
/// as positions × channels, then transposed into the output and finished (`finish(image,
/// channels, p0, p1)`). Jobs go to the threads whole, or one job's channels are shared.
private func gatheredConvolution(x: UnsafePointer<Float>, ch: Int, h: Int, w: Int, n: Int, weights: UnsafePointer<Float>,
                                 packed: TransposedWeights?, group: Int, m: Int, k: Int, win: Window, oh: Int, ow: Int,
                                 output: UnsafeMutablePointer<Float>, _ c: KernelContext,
                                 finish: (Int, Range<Int>, Int, Int) -> Void) throws {
  let cg = ch / group, mg = m / group, spatialOut = oh * ow
  // About 2,048 positions a job; with several threads, at least one job a thread when the weights
  // fit a core's cache or there are images enough (one job shared by its channels left the copy,
  // the transposition and the epilogue to one thread). Large weights over one image's positions
  // (ResNet's 512-channel stage at batch 1) stay one job whose channels the threads share, each
  // reading half of them.
  var target = 2048
  if Parallel.threads > 1 && (m * k <= 1 << 18 || n >= Parallel.threads) {
    target = min(target, max(256, (n * spatialOut + Parallel.threads - 1) / Parallel.threads))
  }
  let images = spatialOut >= target ? 1 : min(n, target / spatialOut)
  // Bands as equal as they can be (36 + 20 rows kept one of two threads idle a third of the time).
  let bandsPerImage = spatialOut >= target ? (spatialOut + target - 1) / target : 1
  let rows = (oh + bandsPerImage - 1) / bandsPerImage
  let bands = (oh + rows - 1) / rows, jobs = (n + images - 1) / images * bands
  let paddedRows = (rows - 1) * win.sh + (win.kh - 1) * win.dh + 1, paddedWidth = (ow - 1) * win.sw + (win.kw - 1) * win.dw + 1
  let plane = paddedRows * paddedWidth, padded = images * cg * plane, positions = images * rows * ow
  guard cg * plane < Int(Int32.max) else { throw c.fail("the convolution's padded input is too large") }
  try NDArray.checkAllocation([padded + positions * mg], .float, c)
  let taps = win.kh * win.kw
  let shifts: [Int32] = (0..<k).map { t in
    let (ci, tap) = t.quotientAndRemainder(dividingBy: taps)
    return Int32((ci * paddedRows + tap / win.kw * win.dh) * paddedWidth + tap % win.kw * win.dw)
  }
  let workers = min(Parallel.threads, jobs)
  func run(_ worker: Int, _ buffer: UnsafeMutablePointer<Float>, _ product: UnsafeMutablePointer<Float>,
           _ bases: UnsafeMutablePointer<Int>) {
    for job in stride(from: worker, to: jobs, by: workers) {
      let b0 = job / bands * images, b1 = min(n, b0 + images), oy0 = job % bands * rows, oy1 = min(oh, oy0 + rows)
      var count = 0
      for i in 0..<(b1 - b0) {
        for oy in oy0..<oy1 {
          for ox in 0..<ow { bases[count] = i * cg * plane + (oy - oy0) * win.sh * paddedWidth + ox * win.sw; count += 1 }
        }
      }
      for g in 0..<group {
        for b in b0..<b1 {
          vm_pad_planes(x + (b * ch + g * cg) * h * w, 0, cg, h, w, oy0 * win.sh - win.padTop, paddedRows, -win.padLeft,
                        paddedWidth, buffer + (b - b0) * cg * plane)
        }
        shifts.withUnsafeBufferPointer { table in
          guard let table = table.baseAddress else { return }
          gatheredProduct(m: count, n: mg, k: k, x: buffer, bases: bases, shifts: table, packed: packed?.group(g),
                          weights: weights + g * mg * k, c: product, ldc: mg, parallel: workers == 1)
        }
        let perImage = (oy1 - oy0) * ow
        for b in b0..<b1 {
          transposeInto(output + (b * m + g * mg) * spatialOut + oy0 * ow, ldc: spatialOut,
                        from: product + (b - b0) * perImage * mg, rows: perImage, columns: mg)
        }
      }
      for b in b0..<b1 { finish(b, 0..<m, oy0 * ow, oy1 * ow) }
    }
  }
  WorkerPool.shared.run(parts: workers) { worker in
    var buffer = NDArray(uninitialized: .float, [padded]), product = NDArray(uninitialized: .float, [positions * mg])
    var bases = [Int](repeating: 0, count: positions)
    buffer.mutableElements(Float.self).withPointer { p in
      product.mutableElements(Float.self).withPointer { q in
        bases.withUnsafeMutableBufferPointer { r in
          if let p, let q, let r = r.baseAddress { run(worker, p, q, r) }
        }
      }
    }
  }
}

/// Dilated windows over small maps whose taps read padding for most outputs (DeepLab's ASPP: rate
/// 12 over 16 × 16, where a quarter of the window's work reads the input): the output cut into
/// rectangles whose positions share the taps that read the input — the output rows before,
/// within and past each tap row's reach, and the same for columns — each rectangle one product
/// over its own taps only, read in place from the input (none of them reads padding, so there is
/// no padded copy), with the weights of those taps gathered panel by panel from a copy of the
/// weights with each tap's channels side by side (made once). Taken where it skips a quarter of
/// the window's work or more, for dilated windows only (an undilated 3 × 3 one skips a quarter
/// only on maps of 4 × 4 or less, where the transposed product with its weights packed once is
/// the faster); false otherwise. Each output's sum runs over its live taps in the same order
/// whichever threads compute it.
private func regionConvolution(x: UnsafePointer<Float>, ch: Int, h: Int, w: Int, n: Int, weights: UnsafePointer<Float>,
                               group: Int, m: Int, win: Window, oh: Int, ow: Int, output: UnsafeMutablePointer<Float>,
                               _ c: KernelContext, finish: (Int, Range<Int>, Int, Int) -> Void) throws -> Bool {
  let taps = win.kh * win.kw, k = ch * taps, spatialOut = oh * ow
  guard ownProductsRun, group == 1, taps > 1, win.dh > 1 || win.dw > 1, ch * h * w < Int(Int32.max), k < Int(Int32.max) else {
    return false
  }
  /// Runs of consecutive outputs along one axis whose live taps (those reading the input) are the same.
  func runs(_ count: Int, _ size: Int, _ kernel: Int, _ s: Int, _ d: Int, _ pad: Int) -> [(outputs: Range<Int>, taps: Range<Int>)] {
    var result = [(outputs: Range<Int>, taps: Range<Int>)]()
    for o in 0..<count {
      let start = o * s - pad
      var lo = 0, hi = kernel
      while lo < kernel && start + lo * d < 0 { lo += 1 }
      while hi > lo && start + (hi - 1) * d >= size { hi -= 1 }
      if let last = result.last, last.taps == lo..<hi {
        result[result.count - 1].outputs = last.outputs.lowerBound..<(o + 1)
      } else {
        result.append((o..<(o + 1), lo..<hi))
      }
    }
    return result
  }
  let rowRuns = runs(oh, h, win.kh, win.sh, win.dh, win.padTop), colRuns = runs(ow, w, win.kw, win.sw, win.dw, win.padLeft)
  var work = 0, largest = 0
  for r in rowRuns {
    for q in colRuns {
      work += r.outputs.count * q.outputs.count * r.taps.count * q.taps.count
      largest = max(largest, r.outputs.count * q.outputs.count)
    }
  }
  // Several kinds of rectangle: with one kind, the live-window reduction does the same with a
  // smaller copy of the weights.
  guard rowRuns.count > 1 || colRuns.count > 1, work * 4 <= spatialOut * taps * 3 else { return false }
  // Weights [m][tap][channel]: a tap's weights for all channels side by side.
  let tapMajor = try c.derived(fromInputs: [1], "conv-tap-major") {
    var t = NDArray(uninitialized: .float, [m * k])
    t.mutableElements(Float.self).withPointer { p in
      guard let p else { return }
      for o in 0..<m {
        for tap in 0..<taps {
          for ci in 0..<ch { p[(o * taps + tap) * ch + ci] = weights[(o * ch + ci) * taps + tap] }
        }
      }
    }
    return t
  }
  try NDArray.checkAllocation([largest * m], .float, c)
  var product = NDArray(uninitialized: .float, [largest * m])
  var bases = [Int](repeating: 0, count: largest)
  tapMajor.elements(Float.self).withPointer { wt in
    product.mutableElements(Float.self).withPointer { pp in
      bases.withUnsafeMutableBufferPointer { bp in
        guard let wt, let pp, let bp = bp.baseAddress else { return }
        for r in rowRuns {
          for q in colRuns {
            let live = r.taps.count * q.taps.count * ch, count = r.outputs.count * q.outputs.count
            // Tap (ky, kx) of channel ci, taps in order and channels within each.
            var shifts = [Int32](), kidx = [Int32]()
            shifts.reserveCapacity(live)
            kidx.reserveCapacity(live)
            for ky in r.taps {
              for kx in q.taps {
                for ci in 0..<ch {
                  shifts.append(Int32(ci * h * w + (ky - r.taps.lowerBound) * win.dh * w + (kx - q.taps.lowerBound) * win.dw))
                  kidx.append(Int32((ky * win.kw + kx) * ch + ci))
                }
              }
            }
            var i = 0
            for oy in r.outputs {
              for ox in q.outputs {
                bp[i] = (oy * win.sh - win.padTop + r.taps.lowerBound * win.dh) * w + ox * win.sw - win.padLeft + q.taps.lowerBound * win.dw
                i += 1
              }
            }
            for b in 0..<n {
              if live == 0 {
                pp.update(repeating: 0, count: count * m)
              } else {
                shifts.withUnsafeBufferPointer { st in
                  kidx.withUnsafeBufferPointer { kt in
                    guard let st = st.baseAddress, let kt = kt.baseAddress else { return }
                    gatheredProduct(m: count, n: m, k: live, x: x + b * ch * h * w, bases: bp, shifts: st, packed: nil,
                                    weights: UnsafePointer(wt), ldw: k, kidx: kt, c: pp, ldc: m, parallel: true)
                  }
                }
              }
              for oy in r.outputs {
                transposeInto(output + b * m * spatialOut + oy * ow + q.outputs.lowerBound, ldc: spatialOut,
                              from: pp + (oy - r.outputs.lowerBound) * q.outputs.count * m, rows: q.outputs.count, columns: m)
              }
            }
          }
        }
      }
    }
  }
  for b in 0..<n { Parallel.forEach(m, costPerItem: spatialOut) { channels in finish(b, channels, 0, spatialOut) } }
  return true
}

/// The cache key of weights packed for some taps only: integers interpolated, since a Range's
/// description goes through reflection (a tenth of a small 1-D convolution's time).
private func liveTapsPurpose(_ live: (ky: Range<Int>, kx: Range<Int>)) -> String {
  "conv-transposed \(live.ky.lowerBound) \(live.ky.upperBound) \(live.kx.lowerBound) \(live.kx.upperBound)"
}

/// The rows and columns of the window whose taps read the input for some output (intervals);
/// the whole window when none does (the result is then the bias alone, computed as usual).
private func liveWindow(_ win: Window, h: Int, w: Int, oh: Int, ow: Int) -> (ky: Range<Int>, kx: Range<Int>) {
  func live(_ k: Int, _ n: Int, _ o: Int, _ s: Int, _ d: Int, _ p: Int) -> Range<Int> {
    var lo = k, hi = 0
    for t in 0..<k {
      // Tap t reads positions t·d − p … (o − 1)·s − p + t·d: dead when all fall outside [0, n).
      let first = t * d - p, last = (o - 1) * s - p + t * d
      if last >= 0 && first < n { lo = min(lo, t); hi = max(hi, t + 1) }
    }
    return lo < hi ? lo..<hi : 0..<k
  }
  let ky = live(win.kh, h, oh, win.sh, win.dh, win.padTop), kx = live(win.kw, w, ow, win.sw, win.dw, win.padLeft)
  return ky.isEmpty || kx.isEmpty ? (0..<win.kh, 0..<win.kw) : (ky, kx)
}

/// output (m×n, rows `ldc` apart) = weights (m×k) · columns (k×n, rows n apart): through the
/// AVX-512 kernels where they run — as positions × channels into scratch, transposed back, when
/// the weights were packed for that — else OpenBLAS. There, few output positions and many
/// channels (7×7 maps of 512) run faster as the transposed product too: sgemm's kernels are
/// blocked along the first dimension, and 49 rows leave most of a block empty (8% faster on
/// ResNet's last stage).
private func convolutionProduct(m: Int, n: Int, k: Int, weights: UnsafePointer<Float>, packed: UnsafePointer<Float>?,
                                columns: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, ldc: Int,
                                parallel: Bool) {
  if ownProductsRun && packed == nil {
    directProduct(m: m, n: n, k: k, a: weights, b: columns, bInMemory: false, c: output, ldc: ldc, parallel: parallel)
    return
  }
  guard packed != nil || (n < 128 && m >= 64) else {
    Linalg.gemm(m: m, n: n, k: k, a: weights, b: columns, c: output, ldc: ldc, parallel: parallel)
    return
  }
  var scratch = NDArray(uninitialized: .float, [n * m])
  scratch.mutableElements(Float.self).withPointer { pointer in
    guard let t = pointer else { return }
    if let packed {
      packedRightProduct(m: n, n: m, k: k, a: columns, transposedA: true, packed: packed, c: t, ldc: m, parallel: parallel)
    } else {
      Linalg.gemm(m: n, n: m, k: k, a: columns, b: weights, c: t, transposeA: true, transposeB: true, parallel: parallel)
    }
    transposeInto(output, ldc: ldc, from: t, rows: n, columns: m)
  }
}

/// output (m channels × n positions, rows ldc apart) = weights · the window's unfolded input at
/// positions p0 …, computed as positions × channels against the packed weights and transposed.
private func transposedWindowProduct(m: Int, p0: Int, n: Int, k: Int, packed: UnsafePointer<Float>, window: vm_window,
                                     output: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool) {
  var scratch = NDArray(uninitialized: .float, [n * m])
  scratch.mutableElements(Float.self).withPointer { pointer in
    guard let t = pointer else { return }
    packedRightWindowProduct(m: n, n: m, k: k, p0: p0, window: window, packed: packed, c: t, ldc: m, parallel: parallel)
    transposeInto(output, ldc: ldc, from: t, rows: n, columns: m)
  }
}

/// output[o·ldc + q] = t[q·columns + o]: a positions × channels product back to channels × positions.
private func transposeInto(_ output: UnsafeMutablePointer<Float>, ldc: Int, from t: UnsafePointer<Float>, rows: Int, columns: Int) {
  if ownProductsRun {
    vm_transpose(t, rows, columns, output, ldc)
    return
  }
  for o in 0..<columns {
    let row = output + o * ldc
    for q in 0..<rows { row[q] = t[q * columns + o] }
  }
}

/// Unfolds windows into columns: rows are (channel, ky, kx), columns are output positions — of
/// output rows `rows` only (all by default), so a band of the matrix can be built at a time. Rows
/// are `leading` floats apart (by default the band's width; wider when several images' columns
/// sit side by side).
public func im2col(_ x: UnsafePointer<Float>, _ cols: UnsafeMutablePointer<Float>, c: Int, h: Int, w: Int,
                   oh: Int, ow: Int, win: Window, rows: Range<Int>? = nil, leading: Int? = nil, parallel: Bool = true) {
  let band = rows ?? 0..<oh
  let width = leading ?? band.count * ow
  Parallel.forEach(parallel ? c : 1, costPerItem: win.kh * win.kw * band.count * ow) { chunk in
    let channels = parallel ? chunk : 0..<c
    vm_im2col(x, channels.lowerBound, channels.upperBound, h, w, win.kh, win.kw, band.lowerBound, band.upperBound, ow,
              win.sh, win.sw, win.dh, win.dw, win.padTop, win.padLeft, cols, width)
  }
}

/// One filter per channel: a direct loop beats im2col, whose matrix would be a single row. Each
/// plane is first copied into a zero-padded buffer split into `stride` column phases, so every
/// tap of every output row reads contiguous, in-bounds memory; the taps are then summed by
/// `vm_depthwise_plane` (C, vectorized for the machine's instruction set).
private func depthwise(_ x: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                       n: Int, c: Int, h: Int, w: Int, oh: Int, ow: Int, win: Window, finished: (Int) -> Void) {
  let sw = win.sw, taps = win.kh * win.kw
  let paddedH = max(h + win.padTop + win.padBottom, (oh - 1) * win.sh + (win.kh - 1) * win.dh + 1)
  let paddedW = max(w + win.padLeft + win.padRight, (ow - 1) * sw + (win.kw - 1) * win.dw + 1)
  let phaseW = (paddedW + sw - 1) / sw, phaseSize = paddedH * phaseW
  // Where tap (ky, kx) of output (0, 0) reads, in the phase buffers.
  var tapOffset = [Int](repeating: 0, count: taps)
  for ky in 0..<win.kh {
    for kx in 0..<win.kw {
      let px = kx * win.dw
      tapOffset[ky * win.kw + kx] = (px % sw) * phaseSize + ky * win.dh * phaseW + px / sw
    }
  }
  Parallel.forEach(n * c, costPerItem: oh * ow * taps) { planes in
    // The phases, 16 floats of slack the kernel's last vector may read, and its sums (one span
    // over all rows, or each row's vectors).
    let input = sw * phaseSize + 16, sums = max(((oh - 1) * win.sh * phaseW + ow + 15) / 16 * 16, oh * ((ow + 15) / 16 * 16))
    var scratch = NDArray(uninitialized: .float, [input + sums])
    scratch.mutableElements(Float.self).withPointer { pointer in
    guard let buffer = pointer else { return }
    // Every plane writes the same interior positions, so the padding stays zero from here on.
    buffer.update(repeating: 0, count: input)
    tapOffset.withUnsafeBufferPointer { offsets in
    for p in planes {
      let ch = p % c
      let plane = x + p * h * w, filter = wt + ch * taps, out = y + p * oh * ow
      for iy in 0..<h {
        splitPhases(plane + iy * w, w: w, into: buffer + (iy + win.padTop) * phaseW, phaseSize: phaseSize,
                    stride: sw, padLeft: win.padLeft)
      }
      vm_depthwise_plane(buffer, win.sh * phaseW, phaseW, offsets.baseAddress, filter, taps, oh, ow, out,
                         buffer + input)
      // Bias and activation while the plane is in cache, on the thread that computed it.
      finished(p)
    }
    }
    }
  }
}

/// One filter per channel, 16 channels side by side (`vm_depthwise_channels`, AVX-512): jobs of
/// 16 channels of one image over a band of output rows (about 512 positions: the band's padded
/// input and its sums stay in a core's cache), the bias and activation applied as the sums are
/// stored.
private func depthwiseChannels(_ x: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               n: Int, c: Int, h: Int, w: Int, oh: Int, ow: Int, win: Window, biases: UnsafePointer<Float>?,
                               activation: FusedActivation) {
  let taps = win.kh * win.kw, groups = (c + 15) / 16
  let bandRows = max(1, min(oh, 512 / max(ow, 1))), bands = (oh + bandRows - 1) / bandRows
  let workspace = vm_depthwise_channels_workspace(win.kh, win.kw, win.sh, win.sw, win.dh, win.dw, ow, bandRows)
  Parallel.forEach(n * groups * bands, costPerItem: bandRows * ow * 16 * taps) { jobs in
    var scratch = NDArray(uninitialized: .float, [workspace])
    scratch.mutableElements(Float.self).withPointer { work in
      guard let work else { return }
      for job in jobs {
        let band = job % bands, group = job / bands % groups, b = job / bands / groups
        let c0 = group * 16, oy0 = band * bandRows
        vm_depthwise_channels(x + (b * c + c0) * h * w, min(16, c - c0), h, w, wt + c0 * taps, win.kh, win.kw, win.sh, win.sw,
                              win.dh, win.dw, win.padTop, win.padLeft, oh, ow, oy0, min(oh, oy0 + bandRows),
                              biases.map { $0 + c0 }, activation.code, activation.alpha, activation.beta,
                              y + (b * c + c0) * oh * ow, work)
      }
    }
  }
}

/// Copies one input row into the phase buffers: phase f holds padded columns f, f + stride, …
/// Stride 1 is a plain copy and stride 2 a vector deinterleave.
private func splitPhases(_ src: UnsafePointer<Float>, w: Int, into row: UnsafeMutablePointer<Float>, phaseSize: Int,
                         stride sw: Int, padLeft: Int) {
  if sw == 1 {
    (row + padLeft).update(from: src, count: w)
    return
  }
  // Input column ix lands in phase (ix + padLeft) % sw at (ix + padLeft) / sw.
  if sw == 2 {
    // Even columns ix land in one phase at ix / 2 + padLeft / 2, odd ones in the other at
    // (ix − 1) / 2 + (padLeft + 1) / 2.
    let even = row + (padLeft % 2) * phaseSize + padLeft / 2, odd = row + (1 - padLeft % 2) * phaseSize + (padLeft + 1) / 2
    var ix = 0
    while ix + 16 <= w {
      let v = UnsafeRawPointer(src + ix).loadUnaligned(as: SIMD16<Float>.self)
      UnsafeMutableRawPointer(even + ix / 2).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
      UnsafeMutableRawPointer(odd + ix / 2).storeBytes(of: v.oddHalf, as: SIMD8<Float>.self)
      ix += 16
    }
    while ix + 1 < w {
      even[ix / 2] = src[ix]
      odd[ix / 2] = src[ix + 1]
      ix += 2
    }
    if ix < w { even[ix / 2] = src[ix] }
    return
  }
  for f in 0..<sw {
    var i = ((f - padLeft % sw) % sw + sw) % sw
    guard i < w else { continue }
    var dst = row + f * phaseSize + (i + padLeft) / sw
    while i < w {
      dst.pointee = src[i]
      dst += 1
      i += sw
    }
  }
}

func convTranspose(_ c: KernelContext) throws -> NDArray {
  let x0 = try c.input(0)
  let x = x0.dataType == .float ? x0 : try x0.converted(to: .float)
  let w0 = try c.input(1)
  let w = w0.dataType == .float ? w0 : try w0.converted(to: .float)
  guard x.rank == 3 || x.rank == 4, w.rank == x.rank else {
    throw c.unsupported("ConvTranspose on input \(x.shape) (1-D and 2-D are supported)")
  }
  let group = c.int("group", 1)
  let (n, ch, h, wd) = spatial(x.shape)
  guard group > 0, w.shape[0] == ch, ch % group == 0, !w.shape[1].multipliedReportingOverflow(by: group).overflow else {
    throw c.fail("weight \(w.shape) does not fit input \(x.shape) with group \(group)")
  }
  let mg = w.shape[1], m = mg * group, cg = ch / group
  let rank = x.rank - 2
  let win = try Window(c, spatialRank: rank, kernel: Array(w.shape.dropFirst(2)), input: Array(x.shape.dropFirst(2)), transposed: true)
  let outPad = c.ints("output_padding") ?? Array(repeating: 0, count: rank)
  var oh = (h - 1) * win.sh + (win.kh - 1) * win.dh + 1 - win.padTop - win.padBottom + (rank == 2 ? outPad[0] : 0)
  var ow = (wd - 1) * win.sw + (win.kw - 1) * win.dw + 1 - win.padLeft - win.padRight + outPad[rank - 1]
  if let shape = c.ints("output_shape"), shape.count >= rank {
    let s = Array(shape.suffix(rank))
    oh = rank == 2 ? s[0] : 1
    ow = s[rank - 1]
  }
  guard oh > 0, ow > 0 else { throw c.fail("the output would be empty") }
  try NDArray.checkAllocation([n, m, oh, ow], .float, c)
  var out = NDArray(zeros: .float, rank == 1 ? [n, m, ow] : [n, m, oh, ow])
  let src = x.elements(Float.self), wt = w.elements(Float.self), dst = out.mutableElements(Float.self)
  let kk = mg * win.kh * win.kw, spatialIn = h * wd
  guard let sp = src.baseAddress, let wp = wt.baseAddress, let dp = dst.baseAddress, spatialIn > 0 else { return out }
  try withExtendedLifetime((src, wt, dst)) {
  var cols = [Float](repeating: 0, count: kk * spatialIn)
  for b in 0..<n {
    for g in 0..<group {
      cols.withUnsafeMutableBufferPointer { colp in
        // cols[(o, ky, kx), pixel] = Σ_c W[c, (o, ky, kx)] · X[c, pixel]
        Linalg.gemm(m: kk, n: spatialIn, k: cg, a: wp + g * cg * kk, b: sp + (b * ch + g * cg) * spatialIn,
                    c: colp.baseAddress.unsafelyUnwrapped, transposeA: true)
        // Scatter-add every column back to where its window lands in the output.
        col2im(colp.baseAddress.unsafelyUnwrapped, dp + (b * m + g * mg) * oh * ow, c: mg, h: oh, w: ow, oh: h, ow: wd, win: win)
      }
    }
  }
  if let bias = c.optionalInput(2) {
    guard bias.rank == 1 else { throw c.fail("bias has shape \(bias.shape), not [\(m)]") }
    let bv = try bias.floats()
    guard bv.count == m else { throw c.fail("bias has \(bv.count) values for \(m) output channels") }
    for b in 0..<n { for o in 0..<m { for i in 0..<(oh * ow) { dp[(b * m + o) * oh * ow + i] += bv[o] } } }
  }
  }
  return x0.dataType == .float ? out : try out.converted(to: x0.dataType)
}

/// The adjoint of `im2col`: adds every column entry back to the input position its window read
/// (`x` has c planes of h×w, `cols` c·kh·kw rows of oh·ow). ConvTranspose and the gradient of
/// Conv with respect to its input.
public func col2im(_ cols: UnsafePointer<Float>, _ x: UnsafeMutablePointer<Float>, c: Int, h: Int, w: Int,
                   oh: Int, ow: Int, win: Window) {
  for ch in 0..<c {
    let plane = x + ch * h * w
    for ky in 0..<win.kh {
      for kx in 0..<win.kw {
        let row = cols + ((ch * win.kh + ky) * win.kw + kx) * oh * ow
        for oy in 0..<oh {
          let iy = oy * win.sh - win.padTop + ky * win.dh
          if iy < 0 || iy >= h { continue }
          for ox in 0..<ow {
            let ix = ox * win.sw - win.padLeft + kx * win.dw
            if ix >= 0 && ix < w { plane[iy * w + ix] += row[oy * ow + ox] }
          }
        }
      }
    }
  }
}

/// An activation the executor fused into a Conv at load time (`Executor.fuseActivations`), applied
/// with the bias to each block of output right after it is computed: one pass over the feature
/// map instead of three. Never written to a model: the attributes live in the executor's copy.
struct FusedActivation {
  static let attribute = "__compressor_activation"
  enum Kind: String { case none, relu, clip, hardSwish, hardSigmoid, leakyRelu, silu }
  var kind = Kind.none
  var alpha: Float = 0, beta: Float = 0

  init(_ node: Node) throws {
    guard let a = node.attribute(Self.attribute), case .floats(let p) = a.value, let name = a.docString.isEmpty ? nil : a.docString,
          let k = Kind(rawValue: name) else { return }
    kind = k
    alpha = p.first ?? 0
    beta = p.count > 1 ? p[1] : 0
  }

  /// The attribute recording `kind` with its two parameters.
  static func attribute(_ kind: Kind, _ alpha: Float = 0, _ beta: Float = 0) -> Attribute {
    Attribute(name: attribute, value: .floats([alpha, beta]), docString: kind.rawValue)
  }

  init() {}

  /// With a residual: (p + bias) + residual, then the activation — the order of the unfused
  /// Conv, Add and activation nodes, so results are the same bits (vm_bias_activation, C).
  @inline(__always)
  func apply(_ p: UnsafeMutablePointer<Float>, count: Int, bias: Float, residual: UnsafePointer<Float>? = nil) {
    if kind == .none && bias == 0 && residual == nil { return }
    vm_bias_activation(p, count, bias, residual, code, alpha, beta)
  }

  /// The same on `planes` runs of `count` values `stride` apart, run c with biases[c] (nil: no
  /// bias) and the residual's run at the same offset: one call for all the channels of a map.
  func apply(planes: Int, _ p: UnsafeMutablePointer<Float>, count: Int, stride: Int, biases: UnsafePointer<Float>?,
             residual: UnsafePointer<Float>?) {
    if kind == .none && biases == nil && residual == nil { return }
    vm_bias_activation_planes(p, planes, count, stride, biases, residual, code, alpha, beta)
  }

  var code: Int32 {
    switch kind {
    case .none: Int32(VM_ACTIVATION_NONE)
    case .relu: Int32(VM_ACTIVATION_RELU)
    case .clip: Int32(VM_ACTIVATION_CLIP)
    case .hardSwish: Int32(VM_ACTIVATION_HARD_SWISH)
    case .hardSigmoid: Int32(VM_ACTIVATION_HARD_SIGMOID)
    case .leakyRelu: Int32(VM_ACTIVATION_LEAKY_RELU)
    case .silu: Int32(VM_ACTIVATION_SILU)
    }
  }
}

/// ONNX Runtime's com.microsoft FusedConv: Conv, plus Z (a residual added before the activation),
/// then the activation `activation` names with `activation_params`.
extension Kernels {
  static let convolutionContrib: [String: Kernel] = [
    "FusedConv": { c in
      let act = try NamedActivation(c, name: c.string("activation", ""), parameters: c.floats("activation_params") ?? [])
      let plain = c.replacingInputs(Array(c.inputs.prefix(3)))
      let y0 = try conv(plain)
      var y = try y0.converted(to: .float)
      if let z = c.optionalInput(3) {
        guard z.shape == y.shape else { throw c.fail("Z \(z.shape) must have the output's shape \(y.shape)") }
        y = try arithmetic(c, y, try z.converted(to: .float), op: "Add", +)
      }
      act(&y)
      return [try y.converted(to: y0.dataType)]
    },
  ]
}
