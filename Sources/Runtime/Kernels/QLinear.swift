import Foundation
import IR
import Support

/// ONNX Runtime's com.microsoft operators on 8-bit quantized tensors (per-tensor scales and zero
/// points): QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearGlobalAveragePool,
/// QLinearAveragePool and QLinearConcat. Each follows the arithmetic of ONNX Runtime's CPU kernel
/// (MLAS) — which products are formed first, where the zero points enter — so that results
/// agree to the integer, and rounds half to even as MLAS does.
extension Kernels {
  static let quantizedContrib: [String: Kernel] = [
    "QLinearAdd": { c in [try qlinearBinary(c, multiply: false)] },
    "QLinearMul": { c in [try qlinearBinary(c, multiply: true)] },
    "QLinearSigmoid": { c in [try qlinearLookup(c) { 1 / (1 + Foundation.exp(-$0)) }] },
    "QLinearLeakyRelu": { c in
      let alpha = c.float("alpha", 0.01)
      return [try qlinearLookup(c) { $0 >= 0 ? $0 : alpha * $0 }]
    },
    "QLinearGlobalAveragePool": { c in [try qlinearGlobalAveragePool(c)] },
    "QLinearAveragePool": { c in [try qlinearAveragePool(c)] },
    "QLinearConcat": { c in [try qlinearConcat(c)] },
  ]
}

/// A per-tensor quantization: scale, zero point, and the integer type's range.
struct QuantizationParameters {
  let scale: Float
  let zeroPoint: Int
  let type: DataType

  /// From a scale input and an optional zero-point input (zero point 0, of `type`, when absent).
  init(_ c: KernelContext, scale: Int, zeroPoint: Int, type fallback: DataType) throws {
    let s = try c.input(scale)
    guard s.count == 1, let v = try s.floats().first else { throw c.fail("input \(scale) (a scale) must be a scalar") }
    self.scale = v
    if let z = c.optionalInput(zeroPoint) {
      guard z.count == 1, let zp = try z.integers().first else { throw c.fail("input \(zeroPoint) (a zero point) must be a scalar") }
      self.zeroPoint = zp
      self.type = z.dataType
    } else {
      self.zeroPoint = 0
      self.type = fallback
    }
    guard type == .uint8 || type == .int8 else { throw c.fail("quantized type \(type) is not uint8 or int8") }
  }

  var range: (Float, Float) { type == .int8 ? (-128, 127) : (0, 255) }

  /// round-half-even(v / scale) + zero point, saturated (MlasQuantizeLinear).
  @inline(__always)
  func quantize(_ v: Float) -> Float { saturate((v / scale).rounded(.toNearestOrEven) + Float(zeroPoint)) }

  @inline(__always)
  func saturate(_ v: Float) -> Float {
    let (lo, hi) = range
    return v.isNaN ? Float(zeroPoint) : Swift.min(hi, Swift.max(lo, v))
  }

  func tensor(_ values: [Float], shape: [Int]) throws -> NDArray {
    try NDArray(doubles: values.map(Double.init), as: type, shape: shape)
  }
}

/// The integer values of a uint8 or int8 tensor, as Float.
private func quantizedFloats(_ c: KernelContext, _ x: NDArray, _ p: QuantizationParameters) throws -> [Float] {
  guard x.dataType == p.type else { throw c.fail("\(x.dataType) input with a \(p.type) zero point") }
  return try x.integers().map(Float.init)
}

/// QLinearAdd: round(A·(sA/sC) + B·(sB/sC) + zC − (sA/sC)·zA − (sB/sC)·zB), as MLAS forms it.
/// QLinearMul: round((A − zA)(B − zB)·(sA·sB/sC)) + zC.
private func qlinearBinary(_ c: KernelContext, multiply: Bool) throws -> NDArray {
  let a = try c.input(0), b = try c.input(3)
  let pa = try QuantizationParameters(c, scale: 1, zeroPoint: 2, type: a.dataType)
  let pb = try QuantizationParameters(c, scale: 4, zeroPoint: 5, type: b.dataType)
  let pc = try QuantizationParameters(c, scale: 6, zeroPoint: 7, type: a.dataType)
  let af = NDArray(try quantizedFloats(c, a, pa), shape: a.shape), bf = NDArray(try quantizedFloats(c, b, pb), shape: b.shape)
  let zc = Float(pc.zeroPoint)
  let combined: NDArray
  if multiply {
    let ratio = pa.scale * pb.scale / pc.scale
    let za = Float(pa.zeroPoint), zb = Float(pb.zeroPoint)
    combined = try arithmetic(c, af, bf, op: "QLinearMul") { x, y in
      Double(pc.saturate(((Float(x) - za) * (Float(y) - zb) * ratio).rounded(.toNearestOrEven) + zc))
    }
  } else {
    let ac = pa.scale / pc.scale, bc = pb.scale / pc.scale
    let fixed = zc - (ac * Float(pa.zeroPoint) + bc * Float(pb.zeroPoint))
    combined = try arithmetic(c, af, bf, op: "QLinearAdd") { x, y in
      Double(pc.saturate((Float(y) * bc + (Float(x) * ac + fixed)).rounded(.toNearestOrEven)))
    }
  }
  return try pc.tensor(try combined.floats(), shape: combined.shape)
}

/// y = quantize(f(dequantize(x))) through a table of the 256 inputs, as ONNX Runtime builds one.
private func qlinearLookup(_ c: KernelContext, _ f: (Float) -> Float) throws -> NDArray {
  let x = try c.input(0)
  let px = try QuantizationParameters(c, scale: 1, zeroPoint: 2, type: x.dataType)
  let py = try QuantizationParameters(c, scale: 3, zeroPoint: 4, type: x.dataType)
  guard x.dataType == px.type else { throw c.fail("\(x.dataType) input with a \(px.type) zero point") }
  let lowest = x.dataType == .int8 ? -128 : 0
  let table = (0..<256).map { i -> Float in py.quantize(f(Float(lowest + i - px.zeroPoint) * px.scale)) }
  let values = try x.integers().map { table[$0 - lowest] }
  return try py.tensor(values, shape: x.shape)
}

/// The mean of each channel's plane: round(Σ(x − zx)·sx/(sy·size)) + zy, the sum in integers.
private func qlinearGlobalAveragePool(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  let px = try QuantizationParameters(c, scale: 1, zeroPoint: 2, type: x.dataType)
  let py = try QuantizationParameters(c, scale: 3, zeroPoint: 4, type: x.dataType)
  guard x.rank >= 3, x.dataType == px.type else { throw c.fail("input \(x.shape) must be [N, C, spatial…] of the zero point's type") }
  let channelsLast = c.int("channels_last", 0) != 0
  let n = x.shape[0], ch = channelsLast ? x.shape[x.rank - 1] : x.shape[1]
  let size = channelsLast ? x.shape[1..<(x.rank - 1)].reduce(1, *) : x.shape.dropFirst(2).reduce(1, *)
  guard size > 0 else { throw c.fail("input \(x.shape) has an empty plane") }
  let v = try x.integers()
  let scale = px.scale / (py.scale * Float(size))
  var out = [Float](repeating: 0, count: n * ch)
  for b in 0..<n {
    for k in 0..<ch {
      var acc = -px.zeroPoint * size
      for i in 0..<size { acc += v[channelsLast ? (b * size + i) * ch + k : (b * ch + k) * size + i] }
      out[b * ch + k] = py.saturate((Float(acc) * scale).rounded(.toNearestOrEven) + Float(py.zeroPoint))
    }
  }
  let shape = channelsLast ? [n] + Array(repeating: 1, count: x.rank - 2) + [ch] : [n, ch] + Array(repeating: 1, count: x.rank - 2)
  return try py.tensor(out, shape: shape)
}

/// AveragePool of the dequantized input, quantized again (1-D and 2-D; channels_last: NHWC in
/// and out), as ONNX Runtime computes it: each window's dequantized values summed in row order,
/// divided by the count (the kernel's size with count_include_pad), then round(y/sy + zy).
private func qlinearAveragePool(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  let px = try QuantizationParameters(c, scale: 1, zeroPoint: 2, type: x.dataType)
  let py = try QuantizationParameters(c, scale: 3, zeroPoint: 4, type: x.dataType)
  guard x.rank == 3 || x.rank == 4, x.dataType == px.type else {
    throw c.fail("input \(x.shape) must be [N, C, W] or [N, C, H, W] of the zero point's type")
  }
  let channelsLast = c.int("channels_last", 0) != 0
  var planar = NDArray(try quantizedFloats(c, x, px).map { px.scale * ($0 - Float(px.zeroPoint)) }, shape: x.shape)
  if channelsLast { planar = planar.transposed([0, x.rank - 1] + Array(1..<(x.rank - 1))) }
  guard let kernel = c.ints("kernel_shape") else { throw c.fail("kernel_shape is required") }
  let win = try Window(c, spatialRank: x.rank - 2, kernel: kernel, input: Array(planar.shape.dropFirst(2)))
  guard win.dh == 1, win.dw == 1 else { throw c.unsupported("dilations are not supported") }
  let n = planar.shape[0], ch = planar.shape[1], h = x.rank == 4 ? planar.shape[2] : 1, w = planar.shape[planar.rank - 1]
  let (oh, ow) = win.outputSize(h: h, w: w, ceilMode: c.int("ceil_mode", 0) != 0)
  let includePad = c.int("count_include_pad", 0) != 0
  try NDArray.checkAllocation([n, ch, oh, ow], .float, c)
  let src = planar.elements(Float.self)
  var out = [Float](repeating: 0, count: n * ch * oh * ow)
  for plane in 0..<(n * ch) {
    let base = plane * h * w
    for i in 0..<oh {
      let h0 = i * win.sh - win.padTop, h1 = Swift.min(h0 + win.kh, h), hs = Swift.max(h0, 0)
      for j in 0..<ow {
        let w0 = j * win.sw - win.padLeft, w1 = Swift.min(w0 + win.kw, w), ws = Swift.max(w0, 0)
        var sum: Float = 0
        for y in stride(from: hs, to: h1, by: 1) { for xx in stride(from: ws, to: w1, by: 1) { sum += src[base + y * w + xx] } }
        let count = includePad ? win.kh * win.kw : Swift.max(h1 - hs, 0) * Swift.max(w1 - ws, 0)
        let mean = count > 0 ? sum / Float(count) : 0
        out[(plane * oh + i) * ow + j] = py.saturate((mean / py.scale + Float(py.zeroPoint)).rounded(.toNearestOrEven))
      }
    }
  }
  var y = try py.tensor(out, shape: x.rank == 4 ? [n, ch, oh, ow] : [n, ch, ow])
  if channelsLast { y = y.transposed([0] + Array(2..<y.rank) + [1]) }
  return y
}

/// Concat after bringing each input to the output's scale and zero point:
/// round((x − zx)·sx / sy) + zy (a plain copy when they already match).
private func qlinearConcat(_ c: KernelContext) throws -> NDArray {
  let py = try QuantizationParameters(c, scale: 0, zeroPoint: 1, type: .uint8)
  let count = c.inputs.count - 2
  guard count > 0, count % 3 == 0 else { throw c.fail("inputs after Y_scale and Y_zero_point must come in (tensor, scale, zero point) triples") }
  var parts = [NDArray]()
  for k in 0..<(count / 3) {
    let x = try c.input(2 + 3 * k)
    let px = try QuantizationParameters(c, scale: 3 + 3 * k, zeroPoint: 4 + 3 * k, type: x.dataType)
    guard x.dataType == py.type, px.type == py.type else { throw c.fail("input \(k) is \(x.dataType); the output is \(py.type)") }
    if px.scale == py.scale && px.zeroPoint == py.zeroPoint {
      parts.append(x)
    } else {
      let v = try x.integers().map { py.quantize(Float($0 - px.zeroPoint) * px.scale) }
      parts.append(try py.tensor(v, shape: x.shape))
    }
  }
  guard let concat = Kernels.standard["Concat"] else { throw c.fail("no Concat kernel") }
  return try concat(c.replacingInputs(parts))[0]
}
