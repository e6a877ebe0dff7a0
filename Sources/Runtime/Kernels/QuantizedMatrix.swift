import CVectorMath
import Foundation
import IR
import Linalg
import Support

/// Integer and quantized linear algebra: DynamicQuantizeLinear, MatMulInteger, ConvInteger,
/// QLinearMatMul, QLinearConv, and ONNX Runtime's com.microsoft MatMulNBits. MatMulInteger and
/// ConvInteger run in integers where the processor has AVX-512 VNNI (`integerMatMul`,
/// `integerConv`: exact, weights held as bytes). Elsewhere, and for the shapes those do not take,
/// products of 8-bit integers run through the float kernels on zero-point-shifted values and are
/// rounded back: exact for every 8-bit shape where k·255² < 2^24 (k ≤ 258), and within an ulp of
/// the integer result beyond.
extension Kernels {
  static let quantizedMatrix: [String: Kernel] = [
    "DynamicQuantizeLinear": { c in
      let input = try c.input(0)
      let x = (input.dataType == .float ? input : try input.converted(to: .float)).elements(Float.self)
      var q = NDArray(uninitialized: .uint8, input.shape)
      let e = q.mutableElements(UInt8.self)
      let (scale, zero) = dynamicQuantize(x, into: e)
      return [q, NDArray([scale], shape: []), NDArray([UInt8(zero)], shape: []).reinterpreted(as: .uint8)]
    },
    "MatMulInteger": { c in
      if let y = try integerMatMul(c) { return [y] }
      let a = try shifted(c.input(0), zero: c.optionalInput(2), axisLength: nil)
      let b = try c.derived(fromInputs: [1, 3], "shifted") {
        try shifted(c.input(1), zero: c.optionalInput(3), axisLength: try c.input(1).shape.last)
      }
      let product = try matMul(c, a, b)
      return [try product.rounded(to: .int32)]
    },
    "ConvInteger": { c in
      if let y = try integerConv(c) { return [y] }
      let x = try shifted(c.input(0), zero: c.optionalInput(2), axisLength: nil)
      let w = try c.derived(fromInputs: [1, 3], "shifted") { try shifted(c.input(1), zero: c.optionalInput(3), perChannel: true) }
      let y = try conv(c.replacingInputs([x, w]))
      return [try y.rounded(to: .int32)]
    },
    "QLinearMatMul": { c in
      let a = try dequantize(c.input(0), scale: c.input(1), zero: c.input(2), axisFromEnd: nil)
      let b = try dequantize(c.input(3), scale: c.input(4), zero: c.input(5), axisFromEnd: 1)
      let y = try matMul(c, a, b)
      return [try quantize(y, scale: c.input(6), zero: c.input(7))]
    },
    "QLinearConv": { c in
      let x = try dequantize(c.input(0), scale: c.input(1), zero: c.input(2), axisFromEnd: nil)
      let w = try dequantize(c.input(3), scale: c.input(4), zero: c.input(5), perChannel: true)
      var inputs: [NDArray?] = [x, w]
      if let bias = c.optionalInput(8) {
        // Bias is int32 in units of x_scale · w_scale.
        let ws = try c.input(4).floats()
        let bv = try bias.integers()
        guard let xs = try c.input(1).floats().first, !ws.isEmpty, ws.count == 1 || ws.count >= bv.count else {
          throw c.fail("the bias has \(bv.count) values for \(ws.count) weight scales")
        }
        inputs.append(NDArray(bv.enumerated().map { Float($1) * xs * ws[ws.count == 1 ? 0 : $0] }, shape: [bv.count]))
      }
      let y = try conv(c.replacingInputs(inputs))
      return [try quantize(y, scale: c.input(6), zero: c.input(7))]
    },
  ]

  /// ONNX Runtime's com.microsoft quantized products: MatMulNBits (2- to 8-bit blocked weights),
  /// GatherBlockQuantized (an embedding table of blocked weights), DynamicQuantizeMatMul (A
  /// quantized on the fly, as ONNX Runtime does it), MatMulIntegerToFloat and QGemm.
  static let quantizedMatrixContrib: [String: Kernel] = [
    "MatMulNBits": { c in [try matMulNBits(c)] },
    "GatherBlockQuantized": { c in [try gatherBlockQuantized(c)] },
    "DynamicQuantizeMatMul": { c in
      let a = try c.input(0)
      let (q, scale, zero) = try dynamicQuantize(c, a)
      return [try integerProductToFloat(c, a: q, aScale: scale, aZero: NDArray([zero], shape: []).reinterpreted(as: .uint8),
                                        b: try c.input(1), bScale: try c.input(2), bZero: c.optionalInput(3), bias: c.optionalInput(4),
                                        type: .float)]
    },
    "MatMulIntegerToFloat": { c in
      let aScale = try c.input(2)
      guard aScale.count == 1, let s = try aScale.floats().first else { throw c.unsupported("a_scale must be a scalar") }
      return [try integerProductToFloat(c, a: try c.input(0), aScale: s, aZero: c.optionalInput(4), b: try c.input(1),
                                        bScale: try c.input(3), bZero: c.optionalInput(5), bias: c.optionalInput(6), type: aScale.dataType)]
    },
    "QGemm": { c in [try qgemm(c)] },
  ]
}

extension NDArray {
  func reinterpreted(as type: DataType) -> NDArray {
    var r = self
    r.dataType = type
    return r
  }

  /// Float values rounded to the nearest integer of `type`.
  func rounded(to type: DataType) throws -> NDArray {
    if type == .int32 && dataType == .float {
      // The integer products' common case, without two intermediate arrays.
      var out = NDArray(uninitialized: .int32, shape)
      let s = elements(Float.self), d = out.mutableElements(Int32.self)
      // Below 2²² in magnitude, adding 1.5·2²³ rounds half to even and leaves the integer in the
      // low bits (no libm call, no trapping conversion). One branch-free (vectorized) pass over
      // all, noting whether any value is outside that range (or NaN); those are redone.
      let n = Swift.min(s.count, d.count)
      s.withPointer { sp in
        d.withPointer { dp in
          guard let sp, let dp else { return }
          let magic: Float = 12_582_912, magicBits = Int32(bitPattern: magic.bitPattern)
          var outside: UInt8 = 0
          for i in 0..<n {
            let v = sp[i]
            outside |= abs(v) < 4_194_304 ? 0 : 1
            dp[i] = Int32(bitPattern: (v + magic).bitPattern) &- magicBits
          }
          guard outside != 0 else { return }
          for i in 0..<n where !(abs(sp[i]) < 4_194_304) {
            dp[i] = Int32(clamping: Int64(clampingDouble: Double(sp[i].rounded(.toNearestOrEven))))
          }
        }
      }
      return out
    }
    return try NDArray(doubles: try floats().map { Double($0.rounded(.toNearestOrEven)) }, as: type, shape: shape)
  }
}

extension KernelContext {
  func replacingInputs(_ inputs: [NDArray?]) -> KernelContext {
    KernelContext(node: node, inputs: inputs, opset: opset, executor: executor, scope: scope)
  }
}

/// x - zero as Float; the zero point is a scalar, or per row of the last axis (`axisLength`),
/// or per output channel (axis 0) for weights.
/// MatMulInteger in integers where the processor has AVX-512 VNNI (`vm_u8s8_gemm`), for 8-bit A
/// (any rank) with one zero point and an 8-bit matrix B with one zero point or one per column:
/// exact, as ONNX Runtime's u8×s8 kernels are (the float path rounds sums past 2^24), and B is
/// held as packed bytes instead of shifted floats (a quarter of the memory). Both operands are
/// made the kernel's types by moving them and their zero points by 128 where needed:
/// (A − a₀)(B − b₀) = (A' − a₀')(B' − b₀'), then Σ A'B' − b₀'·ΣA' − a₀'·ΣB' + k·a₀'·b₀'.
/// nil where it does not apply (the float path runs).
private func integerMatMul(_ c: KernelContext) throws -> NDArray? {
  let a = try c.input(0), b = try c.input(1)
  let byteTypes: [DataType] = [.uint8, .int8]
  guard integerKernelRuns, byteTypes.contains(a.dataType), byteTypes.contains(b.dataType), a.rank >= 1, b.rank == 2 else { return nil }
  let k = b.shape[0], n = b.shape[1]
  guard k > 0, n > 0, a.shape[a.rank - 1] == k else { return nil }
  let aZeros = try c.optionalInput(2).map { try $0.integers() } ?? [0]
  let bZeros = try c.optionalInput(3).map { try $0.integers() } ?? [0]
  guard aZeros.count == 1, bZeros.count == 1 || (bZeros.count == n && c.optionalInput(3)?.rank == 1) else { return nil }
  let m = a.count / k
  let outShape = Array(a.shape.dropLast()) + [n]
  try NDArray.checkAllocation(outShape, .int32, c)
  let bShift: Int32 = b.dataType == .uint8 ? 128 : 0
  let packed = try c.derived(fromInputs: [1], "u8s8") {
    let signed = signedBytes(b)
    var out = NDArray(uninitialized: .int8, [vm_u8s8_packed_size(k, n)])
    out.mutableElements(Int8.self).withPointer { if let p = $0 { vm_u8s8_pack(signed, k, n, p) } }
    return out
  }
  let columnSums = try c.derived(fromInputs: [1], "u8s8-column-sums") {
    let signed = signedBytes(b)
    var sums = [Int32](repeating: 0, count: n)
    for i in 0..<k { for j in 0..<n { sums[j] &+= Int32(signed[i * n + j]) } }
    return NDArray(sums, shape: [n])
  }.elements(Int32.self)
  // A as unsigned bytes: int8 moves up by 128 (and its zero point with it).
  let aShift: Int32 = a.dataType == .int8 ? 128 : 0
  let unsigned = unsignedBytes(a)
  let a0 = Int32(truncatingIfNeeded: aZeros[0]) &+ aShift
  let b0 = bZeros.map { Int32(truncatingIfNeeded: $0) &- bShift }
  var out = NDArray(uninitialized: .int32, outShape)
  let x = unsigned.elements(UInt8.self), w = packed.elements(Int8.self), y = out.mutableElements(Int32.self)
  withExtendedLifetime((x, w, y, columnSums)) {
    guard let xp = x.baseAddress, let wp = w.baseAddress, let yp = y.baseAddress, let sums = columnSums.baseAddress else { return }
    // Pairs of 16-column groups shared among the threads; each element is the same integer
    // whichever thread computes it.
    let pairs = (n + 31) / 32
    let parts = min(Parallel.threads, pairs, max(1, m * n * k / (1 << 21)))
    WorkerPool.shared.run(parts: parts) { p in
      let first = p * pairs / parts * 2, end = (p + 1) * pairs / parts * 2
      vm_u8s8_gemm(xp, m, k, k, n, wp, first, end, yp, n)
    }
    let kTimes = Int32(truncatingIfNeeded: k)
    for i in 0..<m {
      var rowSum: Int32 = 0
      let row = xp + i * k
      for t in 0..<k { rowSum &+= Int32(row[t]) }
      let yr = yp + i * n
      if b0.count == 1 {
        let shift = kTimes &* a0 &* b0[0] &- b0[0] &* rowSum
        for j in 0..<n { yr[j] = yr[j] &- a0 &* sums[j] &+ shift }
      } else {
        for j in 0..<n { yr[j] = yr[j] &- b0[j] &* rowSum &- a0 &* sums[j] &+ kTimes &* a0 &* b0[j] }
      }
    }
  }
  return out
}

/// An 8-bit tensor's bytes as signed ones (uint8 moved down by 128), read straight from storage.
private func signedBytes(_ t: NDArray) -> [Int8] {
  if t.dataType == .int8 { return Array(t.elements(Int8.self)) }
  return t.elements(UInt8.self).map { Int8(bitPattern: $0 ^ 0x80) }
}

/// An 8-bit tensor's bytes as unsigned ones (int8 moved up by 128).
private func unsignedBytes(_ t: NDArray) -> NDArray {
  guard t.dataType == .int8 else { return t }
  var u = NDArray(uninitialized: .uint8, t.shape)
  let src = t.elements(Int8.self), dst = u.mutableElements(UInt8.self)
  for i in 0..<t.count { dst[i] = UInt8(bitPattern: src[i]) ^ 0x80 }
  return u
}

/// ConvInteger in integers where the processor has AVX-512 VNNI, for 2-D convolutions of one
/// group with one input zero point and one weight zero point or one per output channel: each
/// image's input unfolded into bytes (`vm_u8_im2col`, padding with the zero point) and packed in
/// vpdpbusd's layout, then multiplied by the weights held as signed bytes (`vm_s8u8_conv`, blocks
/// of output channels split among the threads), the zero points taken out as it stores. Exact,
/// as integerMatMul. nil where it does not apply.
private func integerConv(_ c: KernelContext) throws -> NDArray? {
  let x = try c.input(0), w = try c.input(1)
  let byteTypes: [DataType] = [.uint8, .int8]
  guard integerKernelRuns, byteTypes.contains(x.dataType), byteTypes.contains(w.dataType), x.rank == 4, w.rank == 4,
        c.int("group", 1) == 1 else { return nil }
  let n = x.shape[0], ch = x.shape[1], h = x.shape[2], wd = x.shape[3], m = w.shape[0]
  guard w.shape[1] == ch, m > 0, ch > 0 else { return nil }
  let xZeros = try c.optionalInput(2).map { try $0.integers() } ?? [0]
  let wZeros = try c.optionalInput(3).map { try $0.integers() } ?? [0]
  guard xZeros.count == 1, wZeros.count == 1 || wZeros.count == m else { return nil }
  let win = try Window(c, spatialRank: 2, kernel: Array(w.shape.dropFirst(2)), input: [h, wd])
  let (oh, ow) = win.outputSize(h: h, w: wd)
  let outShape = [n, m, oh, ow]
  try NDArray.checkAllocation(outShape, .int32, c)
  let k = ch * win.kh * win.kw, positions = oh * ow, quads = (k + 3) / 4
  let packedBytes = (positions + 15) / 16 * quads * 64
  try NDArray.checkAllocation([k * positions + packedBytes], .uint8, c)
  var out = NDArray(uninitialized: .int32, outShape)
  guard positions > 0 else { return out }
  // The weights as signed bytes, each output channel's row padded with zeros to whole quads.
  let weights = try c.derived(fromInputs: [1], "s8-conv-rows") {
    let signed = signedBytes(w)
    var rows = [Int8](repeating: 0, count: m * quads * 4)
    for o in 0..<m { for t in 0..<k { rows[o * quads * 4 + t] = signed[o * k + t] } }
    return NDArray(rows, shape: [m * quads * 4])
  }
  let columnSums = try c.derived(fromInputs: [1], "s8-conv-sums") {
    let signed = signedBytes(w)
    return NDArray((0..<m).map { o in signed[(o * k)..<(o * k + k)].reduce(Int32(0)) { $0 &+ Int32($1) } }, shape: [m])
  }.elements(Int32.self)
  let input = unsignedBytes(x)
  let x0 = Int32(truncatingIfNeeded: xZeros[0]) &+ (x.dataType == .int8 ? 128 : 0)
  let wShift: Int32 = w.dataType == .uint8 ? 128 : 0
  let wZero = (0..<m).map { Int32(truncatingIfNeeded: wZeros[wZeros.count == 1 ? 0 : $0]) &- wShift }
  let kTimes = Int32(truncatingIfNeeded: k)
  // Σ (x − x₀)(w − w₀) = Σ x·w − w₀·Σx − x₀·Σw + k·x₀·w₀; the kernel subtracts w₀·Σx itself.
  let terms = (0..<m).map { kTimes &* x0 &* wZero[$0] &- x0 &* columnSums[$0] }
  var scratch = NDArray(uninitialized: .uint8, [k * positions + packedBytes])
  let src = input.elements(UInt8.self), wb = weights.elements(Int8.self), y = out.mutableElements(Int32.self)
  let sb = scratch.mutableElements(UInt8.self)
  withExtendedLifetime((src, wb, y, sb)) {
    guard let xp = src.baseAddress, let wp = wb.baseAddress, let yp = y.baseAddress, let cols = sb.baseAddress else { return }
    let packed = cols + k * positions
    let blocks = (m + 7) / 8
    let parts = min(Parallel.threads, blocks, max(1, positions * m * k / (1 << 21)))
    for image in 0..<n {
      vm_u8_im2col(xp + image * ch * h * wd, ch, h, wd, win.kh, win.kw, win.sh, win.sw, win.dh, win.dw, win.padTop,
                   win.padLeft, oh, ow, UInt8(truncatingIfNeeded: x0), cols, positions)
      vm_u8_pack_quads(cols, k, positions, positions, packed)
      let target = yp + image * m * positions
      WorkerPool.shared.run(parts: parts) { part in
        vm_s8u8_conv(wp, m, quads, packed, positions, wZero, terms, target, part * blocks / parts, (part + 1) * blocks / parts)
      }
    }
  }
  return out
}

private func shifted(_ x: NDArray, zero: NDArray?, axisLength: Int? = nil, perChannel: Bool = false) throws -> NDArray {
  let z = try zero.map { try $0.integers() } ?? [0]
  let inner = perChannel ? x.shape.dropFirst().reduce(1, *) : 1
  let needed = perChannel ? (x.shape.first ?? 1) : (axisLength ?? 1)
  guard x.count == 0 || z.count == 1 || (z.count >= needed && needed > 0) else {
    throw CompressorError.invalid("\(z.count) zero points for \(needed) rows or channels")
  }
  var result = NDArray(uninitialized: .float, x.shape)
  let out = result.mutableElements(Float.self)
  let zf = z.map(Float.init)
  // 8-bit elements, the common case, straight from storage; wider ones through `integers()`.
  func fill<T: BinaryInteger>(_ values: Elements<T>) {
    if zf.count == 1 {
      let zp = zf[0]
      for i in 0..<values.count { out[i] = Float(values[i]) - zp }
    } else if perChannel {
      for i in 0..<values.count { out[i] = Float(values[i]) - zf[i / inner] }
    } else {
      let cols = axisLength ?? 1
      for i in 0..<values.count { out[i] = Float(values[i]) - zf[i % cols] }
    }
  }
  switch x.dataType {
  case .uint8: fill(x.elements(UInt8.self))
  case .int8: fill(x.elements(Int8.self))
  default:
    let v = try x.integers()
    for i in v.indices {
      let zp = zf.count == 1 ? zf[0] : perChannel ? zf[i / inner] : zf[i % (axisLength ?? 1)]
      out[i] = Float(v[i]) - zp
    }
  }
  return result
}

private func dequantize(_ x: NDArray, scale: NDArray, zero: NDArray, axisFromEnd: Int? = nil, perChannel: Bool = false) throws -> NDArray {
  let v = try x.integers(), s = try scale.floats(), z = try zero.integers()
  let inner = perChannel ? x.shape.dropFirst().reduce(1, *) : 1
  let cols = x.shape.last ?? 1
  // One scale (and zero point) for all, or one per channel (axis 0) or per column.
  let needed = perChannel ? (x.shape.first ?? 1) : cols
  guard v.isEmpty || (!s.isEmpty && !z.isEmpty && (s.count == 1 || s.count >= needed) && (z.count == 1 || z.count >= needed)) else {
    throw CompressorError.invalid("\(s.count) scales and \(z.count) zero points for \(needed) channels")
  }
  return NDArray(v.enumerated().map { i, value -> Float in
    let k = s.count == 1 ? 0 : (perChannel ? i / inner : i % cols)
    return Float(value - (z.count == 1 ? z[0] : z[k])) * s[k]
  }, shape: x.shape)
}

private func quantize(_ y: NDArray, scale: NDArray, zero: NDArray) throws -> NDArray {
  guard let s = try scale.floats().first, let z = try zero.integers().first else {
    throw CompressorError.invalid("the output scale and zero point must each hold a value")
  }
  let (lo, hi) = zero.dataType == .int8 ? (-128, 127) : (0, 255)
  let q = try y.floats().map { v -> Double in
    let r = (v / s).rounded(.toNearestOrEven) + Float(z)
    return Double(Swift.min(Float(hi), Swift.max(Float(lo), r.isNaN ? Float(z) : r)))
  }
  return try NDArray(doubles: q, as: zero.dataType, shape: y.shape)
}

/// A quantized per tensor to uint8 exactly as ONNX Runtime's dynamic quantization does it
/// (GetQuantizationParameter, MlasQuantizeLinear): the range widened to hold 0, scale
/// (max − min)/255 (1 when the range is empty), zero point round(−min/scale), values
/// round-half-even(x/scale) + zero point, saturated.
func dynamicQuantize(_ c: KernelContext, _ x: NDArray) throws -> (NDArray, Float, UInt8) {
  let v = try x.floats()
  var lo: Float = 0, hi: Float = 0
  for f in v where !f.isNaN { lo = Swift.min(lo, f); hi = Swift.max(hi, f) }
  let scale = hi == lo ? 1 : (hi - lo) / 255
  let zero = Swift.max(0, Swift.min(255, (0 - lo / scale).rounded(.toNearestOrEven)))
  var q = NDArray(uninitialized: .uint8, x.shape)
  let e = q.mutableElements(UInt8.self)
  for i in v.indices {
    let r = (v[i] / scale).rounded(.toNearestOrEven) + zero
    e[i] = r.isNaN ? UInt8(zero) : UInt8(Swift.max(0, Swift.min(255, r)))
  }
  return (q, scale, UInt8(zero))
}

/// (A − a_zero) × (B − b_zero) in integers, then × a_scale·b_scale (b's per column of B, or one),
/// plus bias (per column), in `type`.
private func integerProductToFloat(_ c: KernelContext, a: NDArray, aScale: Float, aZero: NDArray?, b: NDArray, bScale: NDArray,
                                   bZero: NDArray?, bias: NDArray?, type: DataType) throws -> NDArray {
  guard let n = b.shape.last, b.rank >= 2 else { throw c.fail("B \(b.shape) must be a matrix") }
  let bs = try bScale.floats()
  guard bs.count == 1 || bs.count == n else { throw c.fail("b_scale has \(bs.count) values for \(n) columns") }
  if let bZero { guard bZero.count == 1 || bZero.count == n else { throw c.fail("b_zero_point has \(bZero.count) values for \(n) columns") } }
  if let aZero { guard aZero.count == 1 else { throw c.unsupported("a_zero_point must be a scalar") } }
  let product = try matMul(c, try shifted(a, zero: aZero), try shifted(b, zero: bZero, axisLength: n))
  let biasValues = try bias?.floats()
  if let biasValues { guard biasValues.count == n else { throw c.fail("bias has \(biasValues.count) values for \(n) columns") } }
  var y = product
  let e = y.mutableElements(Float.self)
  for i in 0..<e.count {
    let col = i % n
    // The integer sum is exact; round it as sgemm may not have.
    e[i] = e[i].rounded() * (aScale * bs[bs.count == 1 ? 0 : col]) + (biasValues?[col] ?? 0)
  }
  return type == .float ? y : try y.converted(to: type)
}

/// QGemm: alpha·(A − a_zero)(B − b_zero)·a_scale·b_scale + C·a_scale·b_scale (C int32, in units
/// of alpha·a_scale·b_scale), quantized to y_scale / y_zero_point when they are given.
private func qgemm(_ c: KernelContext) throws -> NDArray {
  var a = try c.input(0), b = try c.input(3)
  guard a.rank == 2, b.rank == 2 else { throw c.fail("A \(a.shape) and B \(b.shape) must be matrices") }
  let aScale = try c.input(1).floats(), bScale = try c.input(4).floats()
  guard aScale.count == 1 else { throw c.fail("a_scale must be a scalar") }
  if c.int("transA", 0) != 0 { a = a.transposed([1, 0]) }
  let transB = c.int("transB", 0) != 0
  var bZero = c.optionalInput(5)
  if transB {
    b = b.transposed([1, 0])
  }
  let n = b.shape[1]
  guard bScale.count == 1 || bScale.count == n else { throw c.fail("b_scale has \(bScale.count) values for \(n) columns") }
  if let z = bZero, z.count != 1 {
    guard z.count == n else { throw c.fail("b_zero_point has \(z.count) values for \(n) columns") }
    bZero = z.reshaped([n])
  }
  let alpha = c.float("alpha", 1)
  var product = try matMul(c, try shifted(a, zero: c.optionalInput(2)), try shifted(b, zero: bZero, axisLength: n))
  let m = product.shape[0]
  var cValues: [Float]?
  var cShape = [Int]()
  if let ct = c.optionalInput(6) {
    guard broadcastShape([ct.shape, [m, n]]) == [m, n] else { throw c.fail("C \(ct.shape) does not broadcast to [\(m), \(n)]") }
    cValues = try ct.integers().map(Float.init)
    cShape = ct.shape
  }
  let e = product.mutableElements(Float.self)
  let cStrides = strides(Array(repeating: 1, count: 2 - cShape.count) + cShape)
  let cDims = Array(repeating: 1, count: 2 - cShape.count) + cShape
  for i in 0..<m {
    for j in 0..<n {
      let multiplier = aScale[0] * bScale[bScale.count == 1 ? 0 : j]
      // C is in units of alpha·a_scale·b_scale: it joins the integer sum.
      var acc = e[i * n + j].rounded()
      if let cValues { acc += cValues[(cDims[0] == 1 ? 0 : i * cStrides[0]) + (cDims[1] == 1 ? 0 : j * cStrides[1])] }
      e[i * n + j] = alpha * multiplier * acc
    }
  }
  guard c.optionalInput(7) != nil else { return product }
  let py = try QuantizationParameters(c, scale: 7, zeroPoint: 8, type: c.optionalInput(8)?.dataType ?? .uint8)
  return try py.tensor(try product.floats().map(py.quantize), shape: product.shape)
}

/// The `bits`-bit unsigned value at position `i` of a little-endian bit stream (value i occupies
/// bits i·bits ..< (i+1)·bits, low bits first): the packing of MatMulNBits' B and zero points and
/// of GatherBlockQuantized's uint8 data. Nil past the end of `bytes`.
@inline(__always)
func packedValue(_ bytes: Elements<UInt8>, base: Int, index i: Int, bits: Int) -> Int? {
  let bit = i * bits
  let first = base + bit / 8, shift = bit % 8
  guard first >= 0, first < bytes.count else { return nil }
  var word = Int(bytes[first]) >> shift
  if shift + bits > 8 {
    guard first + 1 < bytes.count else { return nil }
    word |= Int(bytes[first + 1]) << (8 - shift)
  }
  return word & ((1 << bits) - 1)
}

/// com.microsoft MatMulNBits: A [.., K] × B, B stored as N rows of ceil(K/block_size) blobs of
/// block_size·bits/8 bytes (values packed low bits first), scales [N, blocks], zero points packed
/// the same way per row (or unpacked floats [N, blocks]; default 2^(bits−1)), optional bias [N].
/// B is dequantized to Float and the product runs in Float, as the operator defines it
/// (accuracy_level only lets a runtime compute A in lower precision).
private func matMulNBits(_ c: KernelContext) throws -> NDArray {
  let a = try c.input(0)
  let k = c.int("K", 0), n = c.int("N", 0), bits = c.int("bits", 4), block = c.int("block_size", 0)
  guard (2...8).contains(bits), k > 0, n > 0, block >= 16, block & (block - 1) == 0 else {
    throw c.fail("bits \(bits), K \(k), N \(n), block_size \(block): bits must be 2 to 8, block_size a power of two ≥ 16")
  }
  guard a.shape.last == k else { throw c.fail("A \(a.shape) must end in K = \(k)") }
  if c.optionalInput(4) != nil { throw c.unsupported("the deprecated g_idx input is not supported") }
  let blocks = (k + block - 1) / block
  let blob = block * bits / 8
  let packed = try c.input(1)
  guard packed.dataType == .uint8, packed.count >= n * blocks * blob else {
    throw c.fail("B \(packed.shape) must hold N·blocks·blob = \(n)·\(blocks)·\(blob) bytes")
  }
  let bytes = packed.elements(UInt8.self)
  let scales = try c.input(2).floats()
  guard scales.count >= n * blocks else { throw c.fail("scales must hold N·blocks = \(n * blocks) values, not \(scales.count)") }
  let zeros = c.optionalInput(3)
  let zeroBytes = zeros.flatMap { $0.dataType == .uint8 ? $0.elements(UInt8.self) : nil }
  let zeroFloats = try zeros.flatMap { $0.dataType == .uint8 ? nil : try $0.floats() }
  let zeroRow = (blocks * bits + 7) / 8
  if let zeroBytes, zeroBytes.count < n * zeroRow { throw c.fail("packed zero points must be [N, \(zeroRow)]") }
  if let zeroFloats, zeroFloats.count < n * blocks { throw c.fail("zero points must be [N, \(blocks)]") }
  let defaultZero = Float(1 << (bits - 1))
  // Dequantize B to [K, N] and multiply.
  var w = [Float](repeating: 0, count: k * n)
  for row in 0..<n {
    for bi in 0..<blocks {
      let zero: Float
      if let zeroFloats {
        zero = zeroFloats[row * blocks + bi]
      } else if let zeroBytes {
        zero = Float(packedValue(zeroBytes, base: row * zeroRow, index: bi, bits: bits) ?? 0)
      } else {
        zero = defaultZero
      }
      let scale = scales[row * blocks + bi], base = (row * blocks + bi) * blob
      for within in 0..<Swift.min(block, k - bi * block) {
        let q = Float(packedValue(bytes, base: base, index: within, bits: bits) ?? 0)
        w[(bi * block + within) * n + row] = (q - zero) * scale
      }
    }
  }
  var y = try matMul(c, a, NDArray(w, shape: [k, n]))
  if let bias = c.optionalInput(5) {
    guard bias.count == n else { throw c.fail("bias has \(bias.count) values for N = \(n)") }
    y = try arithmetic(c, y, bias.dataType == y.dataType ? bias : try bias.converted(to: y.dataType), op: "Add", +)
  }
  return y
}

/// com.microsoft GatherBlockQuantized: Gather along gather_axis from `data` quantized in blocks
/// of block_size along quantize_axis, dequantized: (q − zero)·scale, or q·scale for float8 and
/// float4 data. int4/uint4 data is packed two to a byte (ONNX's layout); uint8 data packs
/// `bits`-bit values along the last axis. Out-of-range indices give zeros, as ONNX Runtime does.
private func gatherBlockQuantized(_ c: KernelContext) throws -> NDArray {
  let data = try c.input(0), indices = try c.input(1).integers(), scales0 = try c.input(2)
  let indexShape = try c.input(1).shape
  let bits = c.int("bits", 4)
  let isFloat = data.dataType.isFloatingPoint
  let packedBits = data.dataType == .uint8 && bits < 8 ? bits : nil
  if data.dataType == .uint8 { guard [2, 4, 8].contains(bits) else { throw c.fail("bits must be 2, 4 or 8, not \(bits)") } }
  // The logical shape: uint8 packs 8/bits values per byte of the last axis.
  var shape = data.shape
  guard shape.count >= 1 else { throw c.fail("data must have rank 1 or more") }
  if let b = packedBits { shape[shape.count - 1] *= 8 / b }
  let rank = shape.count
  let gatherAxis = try c.axis(c.int("gather_axis", 0), rank: rank), quantizeAxis = try c.axis(c.int("quantize_axis", 1), rank: rank)
  let blockSize = c.int("block_size", 128)
  let block = blockSize == 0 && isFloat ? shape[quantizeAxis] : blockSize
  guard block > 0 else { throw c.fail("block_size must be positive (0 only for float8 and float4 data)") }
  if packedBits != nil { guard gatherAxis != quantizeAxis || rank == 1 else { throw c.fail("packed uint8 data needs gather_axis ≠ quantize_axis") } }
  let values: [Float]
  switch data.dataType {
  case .int4, .uint4: values = data.narrowIntegers().map(Float.init)
  case .uint8 where packedBits != nil:
    let bytes = data.elements(UInt8.self)
    let total = shape.reduce(1, *)
    values = (0..<total).map { Float(packedValue(bytes, base: 0, index: $0, bits: bits) ?? 0) }
  case .uint8: values = try data.floats()
  default:
    guard data.dataType.isNarrow && isFloat else { throw c.unsupported("data of type \(data.dataType)") }
    values = data.narrowValues().map(Float.init)
  }
  let scales = try scales0.floats()
  guard scales0.rank == rank else { throw c.fail("scales \(scales0.shape) must have data's rank \(rank)") }
  var scaleShape = scales0.shape
  for d in 0..<rank where d != quantizeAxis {
    guard scaleShape[d] == shape[d] || (scaleShape[d] == 1 && isFloat) else { throw c.fail("scales \(scales0.shape) do not fit data \(shape)") }
  }
  guard scaleShape[quantizeAxis] == (shape[quantizeAxis] + block - 1) / block else {
    throw c.fail("scales \(scales0.shape) need \((shape[quantizeAxis] + block - 1) / block) blocks along axis \(quantizeAxis)")
  }
  var zeros: [Float]?
  if let z = c.optionalInput(3) {
    guard !isFloat else { throw c.fail("float8 and float4 data take no zero points") }
    switch z.dataType {
    case .int4, .uint4: zeros = z.narrowIntegers().map(Float.init)
    case .uint8 where packedBits != nil:
      let bytes = z.elements(UInt8.self)
      zeros = (0..<scales.count).map { Float(packedValue(bytes, base: 0, index: $0, bits: bits) ?? 0) }
    default: zeros = try z.floats()
    }
    guard let zc = zeros?.count, zc >= scales.count else { throw c.fail("zero_points must have one value per scale") }
  }
  let defaultZero: Float = data.dataType == .uint8 ? Float(1 << (bits - 1)) : 0
  scaleShape = scaleShape.map { $0 }
  let scaleStrides = strides(scaleShape).enumerated().map { scaleShape[$0.offset] == 1 ? 0 : $0.element }
  let dataStrides = strides(shape)
  let axisLength = shape[gatherAxis]
  let outer = shape[..<gatherAxis].reduce(1, *), inner = shape[(gatherAxis + 1)...].reduce(1, *)
  let outShape = Array(shape[..<gatherAxis]) + indexShape + Array(shape[(gatherAxis + 1)...])
  try NDArray.checkAllocation(outShape, .float, c)
  var out = [Float](repeating: 0, count: outShape.reduce(1, *))
  for o in 0..<outer {
    for (t, index) in indices.enumerated() {
      let i = index < 0 ? index + axisLength : index
      guard i >= 0 && i < axisLength else { continue }
      for r in 0..<inner {
        let flat = (o * axisLength + i) * inner + r
        // The element's coordinates give its scale's position.
        var rest = flat, sp = 0
        for d in 0..<rank {
          let coord = rest / dataStrides[d]
          rest %= dataStrides[d]
          sp += (d == quantizeAxis ? coord / block : coord) * scaleStrides[d]
        }
        let zero = zeros?[sp] ?? defaultZero
        out[(o * indices.count + t) * inner + r] = (values[flat] - (isFloat ? 0 : zero)) * scales[sp]
      }
    }
  }
  let result = NDArray(out, shape: outShape)
  return scales0.dataType == .float ? result : try result.converted(to: scales0.dataType)
}

/// DynamicQuantizeLinear's arithmetic: the range of `x` widened to hold 0 (NaN ignored), scale =
/// range / 255, the zero point rounded half to even, each element x / scale rounded half to even
/// plus the zero point, saturated to [0, 255] (NaN to 0). It runs before every integer
/// convolution of a dynamically quantized model, over whole feature maps, so both loops are
/// written for speed: the range in eight independent chains, and the rounding by adding 1.5·2²³ (exact
/// half-to-even in the default rounding mode for |v| < 2²², and here |x / scale| ≤ 255), which
/// also leaves the integer in the low bits, without a trapping conversion.
func dynamicQuantize(_ x: Elements<Float>, into e: Elements<UInt8>) -> (scale: Float, zero: Float) {
  let n = Swift.min(x.count, e.count)
  return x.withPointer { xp in
    e.withPointer { ep in
      guard let xp, let ep, n > 0 else { return (0, 0) }
      return dynamicQuantize(xp, ep, n)
    }
  }
}

private func dynamicQuantize(_ xp: UnsafeMutablePointer<Float>, _ ep: UnsafeMutablePointer<UInt8>, _ n: Int) -> (scale: Float, zero: Float) {
  // Eight independent running minima and maxima: one chain of compares would wait on itself.
  var l0: Float = 0, l1: Float = 0, l2: Float = 0, l3: Float = 0, l4: Float = 0, l5: Float = 0, l6: Float = 0, l7: Float = 0
  var h0: Float = 0, h1: Float = 0, h2: Float = 0, h3: Float = 0, h4: Float = 0, h5: Float = 0, h6: Float = 0, h7: Float = 0
  var i = 0
  while i + 8 <= n {
    let a = xp[i], b = xp[i + 1], c = xp[i + 2], d = xp[i + 3], e = xp[i + 4], f = xp[i + 5], g = xp[i + 6], h = xp[i + 7]
    l0 = a < l0 ? a : l0; h0 = a > h0 ? a : h0
    l1 = b < l1 ? b : l1; h1 = b > h1 ? b : h1
    l2 = c < l2 ? c : l2; h2 = c > h2 ? c : h2
    l3 = d < l3 ? d : l3; h3 = d > h3 ? d : h3
    l4 = e < l4 ? e : l4; h4 = e > h4 ? e : h4
    l5 = f < l5 ? f : l5; h5 = f > h5 ? f : h5
    l6 = g < l6 ? g : l6; h6 = g > h6 ? g : h6
    l7 = h < l7 ? h : l7; h7 = h > h7 ? h : h7
    i += 8
  }
  var low = Swift.min(Swift.min(Swift.min(l0, l1), Swift.min(l2, l3)), Swift.min(Swift.min(l4, l5), Swift.min(l6, l7)))
  var high = Swift.max(Swift.max(Swift.max(h0, h1), Swift.max(h2, h3)), Swift.max(Swift.max(h4, h5), Swift.max(h6, h7)))
  while i < n { low = Swift.min(low, xp[i]); high = Swift.max(high, xp[i]); i += 1 }
  let scale = (high - low) / 255
  let zero = scale == 0 ? 0 : Swift.min(255, Swift.max(0, (-low / scale).rounded(.toNearestOrEven)))
  if scale == 0 || !scale.isFinite {
    for i in 0..<n { ep[i] = UInt8(Swift.min(255, Swift.max(0, scale == 0 ? zero : (xp[i] / scale).rounded(.toNearestOrEven) + zero))) }
    return (scale, zero)
  }
  let magic: Float = 12_582_912
  for i in 0..<n {
    let q = Swift.min(255, Swift.max(0, ((xp[i] / scale) + magic) - magic + zero))
    ep[i] = UInt8(truncatingIfNeeded: (q + magic).bitPattern)
  }
  return (scale, zero)
}
