import Foundation
import IR
import Support

/// Integer and quantized linear algebra: DynamicQuantizeLinear, MatMulInteger, ConvInteger,
/// QLinearMatMul, QLinearConv, and ONNX Runtime's com.microsoft MatMulNBits. Products of 8-bit
/// integers are exact in Float up to 2^24, so they run through the float kernels (sgemm) on
/// zero-point-shifted values and are rounded back: exact for every 8-bit shape where
/// k·255² < 2^24 (k ≤ 258), and within an ulp of the integer result beyond.
extension Kernels {
  static let quantizedMatrix: [String: Kernel] = [
    "DynamicQuantizeLinear": { c in
      let x = try c.input(0).floats()
      let lo = Swift.min(0, x.min() ?? 0), hi = Swift.max(0, x.max() ?? 0)
      let scale = (hi - lo) / 255
      let zero = scale == 0 ? 0 : Swift.min(255, Swift.max(0, (-lo / scale).rounded(.toNearestOrEven)))
      var q = NDArray(uninitialized: .uint8, try c.input(0).shape)
      let e = q.mutableElements(UInt8.self)
      for i in x.indices {
        let v = scale == 0 ? zero : (x[i] / scale).rounded(.toNearestOrEven) + zero
        e[i] = UInt8(Swift.min(255, Swift.max(0, v)))
      }
      return [q, NDArray([scale], shape: []), NDArray([UInt8(zero)], shape: []).reinterpreted(as: .uint8)]
    },
    "MatMulInteger": { c in
      let a = try shifted(c.input(0), zero: c.optionalInput(2), axisLength: nil)
      let b = try shifted(c.input(1), zero: c.optionalInput(3), axisLength: try c.input(1).shape.last)
      let product = try matMul(c, a, b)
      return [try product.rounded(to: .int32)]
    },
    "ConvInteger": { c in
      let x = try shifted(c.input(0), zero: c.optionalInput(2), axisLength: nil)
      let w = try shifted(c.input(1), zero: c.optionalInput(3), perChannel: true)
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
        let xs = try c.input(1).floats()[0]
        let ws = try c.input(4).floats()
        let bv = try bias.integers()
        inputs.append(NDArray(bv.enumerated().map { Float($1) * xs * ws[ws.count == 1 ? 0 : $0] }, shape: [bv.count]))
      }
      let y = try conv(c.replacingInputs(inputs))
      return [try quantize(y, scale: c.input(6), zero: c.input(7))]
    },
  ]

  /// ONNX Runtime's contrib operators that compressed models use.
  static let quantizedMatrixContrib: [String: Kernel] = [
    "MatMulNBits": { c in [try matMulNBits(c)] },
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
    try NDArray(doubles: try floats().map { Double($0.rounded(.toNearestOrEven)) }, as: type, shape: shape)
  }
}

extension KernelContext {
  func replacingInputs(_ inputs: [NDArray?]) -> KernelContext {
    KernelContext(node: node, inputs: inputs, opset: opset, executor: executor, scope: scope)
  }
}

/// x - zero as Float; the zero point is a scalar, or per row of the last axis (`axisLength`),
/// or per output channel (axis 0) for weights.
private func shifted(_ x: NDArray, zero: NDArray?, axisLength: Int? = nil, perChannel: Bool = false) throws -> NDArray {
  let v = try x.integers()
  let z = try zero.map { try $0.integers() } ?? [0]
  let inner = perChannel ? x.shape.dropFirst().reduce(1, *) : 1
  let shiftedValues = v.enumerated().map { i, value -> Float in
    let zp: Int
    if z.count == 1 { zp = z[0] } else if perChannel { zp = z[i / inner] } else { zp = z[i % (axisLength ?? 1)] }
    return Float(value - zp)
  }
  return NDArray(shiftedValues, shape: x.shape)
}

private func dequantize(_ x: NDArray, scale: NDArray, zero: NDArray, axisFromEnd: Int? = nil, perChannel: Bool = false) throws -> NDArray {
  let v = try x.integers(), s = try scale.floats(), z = try zero.integers()
  let inner = perChannel ? x.shape.dropFirst().reduce(1, *) : 1
  let cols = x.shape.last ?? 1
  return NDArray(v.enumerated().map { i, value -> Float in
    let k = s.count == 1 ? 0 : (perChannel ? i / inner : i % cols)
    return Float(value - (z.count == 1 ? z[0] : z[k])) * s[k]
  }, shape: x.shape)
}

private func quantize(_ y: NDArray, scale: NDArray, zero: NDArray) throws -> NDArray {
  let s = try scale.floats()[0], z = try zero.integers()[0]
  let (lo, hi) = zero.dataType == .int8 ? (-128, 127) : (0, 255)
  let q = try y.floats().map { v -> Double in
    let r = (v / s).rounded(.toNearestOrEven) + Float(z)
    return Double(Swift.min(Float(hi), Swift.max(Float(lo), r.isNaN ? Float(z) : r)))
  }
  return try NDArray(doubles: q, as: zero.dataType, shape: y.shape)
}

/// com.microsoft MatMulNBits: A [.., K] × B stored as N rows of K/block_size blocks of `bits`-bit
/// unsigned values (low nibble first), scales [N · blocks], optional zero points (packed like B,
/// default 2^(bits-1)), optional bias [N].
private func matMulNBits(_ c: KernelContext) throws -> NDArray {
  let a = try c.input(0)
  let k = c.int("K", 0), n = c.int("N", 0), bits = c.int("bits", 4), block = c.int("block_size", 0)
  guard bits == 4 || bits == 8, k > 0, n > 0, block >= 16 else { throw c.unsupported("MatMulNBits with bits \(bits), K \(k), N \(n), block_size \(block)") }
  let blocks = (k + block - 1) / block
  let packed = try c.input(1).elements(UInt8.self)
  let scales = try c.input(2).floats()
  let zeros = c.optionalInput(3)
  let zeroBytes = zeros.flatMap { $0.dataType == .uint8 ? Array($0.elements(UInt8.self)) : nil }
  let zeroFloats = try zeros.flatMap { $0.dataType == .uint8 ? nil : try $0.floats() }
  let bytesPerBlock = block * bits / 8
  func value(_ row: Int, _ col: Int) -> Int {
    let blockIndex = col / block, within = col % block
    let byte = packed[(row * blocks + blockIndex) * bytesPerBlock + within * bits / 8]
    return bits == 8 ? Int(byte) : Int(within % 2 == 0 ? byte & 0x0F : byte >> 4)
  }
  func zero(_ row: Int, _ blockIndex: Int) -> Float {
    if let zeroFloats { return zeroFloats[row * blocks + blockIndex] }
    guard let zeroBytes else { return Float(1 << (bits - 1)) }
    if bits == 8 { return Float(zeroBytes[row * blocks + blockIndex]) }
    let perRow = (blocks + 1) / 2
    let byte = zeroBytes[row * perRow + blockIndex / 2]
    return Float(blockIndex % 2 == 0 ? byte & 0x0F : byte >> 4)
  }
  // Dequantize B to [K, N] and multiply: compute stays float, as the operator specifies.
  var w = [Float](repeating: 0, count: k * n)
  for row in 0..<n {
    for col in 0..<k {
      let bi = col / block
      w[col * n + row] = (Float(value(row, col)) - zero(row, bi)) * scales[row * blocks + bi]
    }
  }
  var y = try matMul(c, a, NDArray(w, shape: [k, n]))
  if let bias = c.optionalInput(5) {
    y = try arithmetic(c, y, bias.dataType == y.dataType ? bias : try bias.converted(to: y.dataType), op: "Add", +)
  }
  return y
}
