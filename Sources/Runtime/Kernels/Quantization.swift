import IR
import Support

/// QuantizeLinear and DequantizeLinear: per tensor, per axis, and blocked (opset 21 block_size),
/// for int8/uint8/int16/uint16/int32, the packed 4- and 2-bit integers, float8 (E4M3FN, E4M3FNUZ,
/// E5M2, E5M2FNUZ) and float4 E2M1; scales may be float8e8m0 (MX formats).
extension Kernels {
  /// One float32 scale and an optional 8-bit zero point of the same type as `eightBit`: the
  /// activations static int8 writes, handled without the general path's Double arrays.
  private static func perTensorEightBit(_ c: KernelContext, eightBit type: DataType?) throws -> (scale: Float, zero: Float)? {
    guard c.int("block_size", 0) == 0, let type, type == .uint8 || type == .int8 else { return nil }
    let scale = try c.input(1)
    guard scale.dataType == .float, scale.count == 1 else { return nil }
    var zero: Float = 0
    if let z = c.optionalInput(2) {
      guard z.dataType == type, z.count == 1 else { return nil }
      zero = type == .uint8 ? Float(z.elements(UInt8.self)[0]) : Float(z.elements(Int8.self)[0])
    }
    return (scale.elements(Float.self)[0], zero)
  }

  /// DequantizeLinear's output.
  static func dequantizeLinear(_ c: KernelContext) throws -> NDArray {
    if c.int("output_dtype", 0) == 0, let x = c.optionalInput(0), let (s, z) = try perTensorEightBit(c, eightBit: x.dataType) {
      var out = NDArray(uninitialized: .float, x.shape)
      let o = out.mutableElements(Float.self)
      if x.dataType == .uint8 {
        let v = x.elements(UInt8.self)
        for i in 0..<x.count { o[i] = (Float(v[i]) - z) * s }
      } else {
        let v = x.elements(Int8.self)
        for i in 0..<x.count { o[i] = (Float(v[i]) - z) * s }
      }
      return out
    }
    let x = try c.input(0)
    let scaleTensor = try c.input(1)
    let scale = try scaleTensor.floats()
    let zero = try c.optionalInput(2).map(quantizedDoubles) ?? []
    let values = try quantizedDoubles(x)
    let index = try parameterIndex(c, shape: x.shape, parameterShape: scaleTensor.shape)
    guard !scale.isEmpty, zero.isEmpty || zero.count == scale.count else {
      throw c.fail("\(scale.count) scales and \(zero.count) zero points")
    }
    var out = [Float](repeating: 0, count: values.count)
    for i in values.indices {
      let p = index(i)
      guard p < scale.count, zero.isEmpty || p < zero.count else { throw c.fail("the scale has too few elements for the input") }
      out[i] = Float(values[i] - (zero.isEmpty ? 0 : zero[p])) * scale[p]
    }
    // The output has the scale's type unless output_dtype says otherwise.
    let declared = DataType(rawValue: Int32(clamping: c.int("output_dtype", 0)))
    let outType = declared != .undefined ? declared : (scaleTensor.dataType == .float8e8m0 ? .float : scaleTensor.dataType)
    let result = NDArray(out, shape: x.shape)
    return outType == .float ? result : try result.converted(to: outType)
  }

  static let quantization: [String: Kernel] = [
    "DequantizeLinear": { c in
      // A weight stored quantized is dequantized once per executor, not on every run.
      [try c.derived(fromInputs: [0, 1, 2], "dequantized") { try dequantizeLinear(c) }]
    },
    "QuantizeLinear": { c in
      let input = try c.input(0)
      let declared = DataType(rawValue: Int32(clamping: c.int("output_dtype", 0)))
      // The zero point's type, else output_dtype, else uint8.
      let type = c.optionalInput(2)?.dataType ?? (declared != .undefined ? declared : .uint8)
      if input.dataType == .float, let (s, z) = try perTensorEightBit(c, eightBit: type) {
        // Rounded half to even, then the zero point, saturated; NaN becomes the zero point's clamp of 0.
        let (lo, hi): (Float, Float) = type == .uint8 ? (0, 255) : (-128, 127)
        let x = input.elements(Float.self)
        var out = NDArray(uninitialized: type, input.shape)
        func level(_ v: Float) -> Float {
          let q = (v / s).rounded(.toNearestOrEven) + z
          return q.isNaN ? Swift.min(hi, Swift.max(lo, 0)) : Swift.min(hi, Swift.max(lo, q))
        }
        if type == .uint8 {
          let o = out.mutableElements(UInt8.self)
          for i in 0..<input.count { o[i] = UInt8(level(x[i])) }
        } else {
          let o = out.mutableElements(Int8.self)
          for i in 0..<input.count { o[i] = Int8(level(x[i])) }
        }
        return [out]
      }
      let x = try input.floats()
      let scaleTensor = try c.input(1)
      let scale = try scaleTensor.floats()
      let zero = try c.optionalInput(2).map(quantizedDoubles) ?? []
      let shape = try c.input(0).shape
      let index = try parameterIndex(c, shape: shape, parameterShape: scaleTensor.shape)
      guard !scale.isEmpty, zero.isEmpty || zero.count == scale.count else {
        throw c.fail("\(scale.count) scales and \(zero.count) zero points")
      }
      var v = [Double](repeating: 0, count: x.count)
      for i in x.indices {
        let p = index(i)
        guard p < scale.count, zero.isEmpty || p < zero.count else { throw c.fail("the scale has too few elements for the input") }
        v[i] = Double(x[i] / scale[p])
        if type.isFloatingPoint {
          v[i] += zero.isEmpty ? 0 : zero[p]
        } else {
          v[i] = v[i].rounded(.toNearestOrEven) + (zero.isEmpty ? 0 : zero[p])
        }
      }
      switch type {
      case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1:
        return [try NDArray(narrow: v, as: type, shape: shape, saturate: c.int("saturate", 1) != 0)]
      default: break
      }
      let (lo, hi): (Double, Double)
      switch type {
      case .uint8: (lo, hi) = (0, 255)
      case .int8: (lo, hi) = (-128, 127)
      case .uint16: (lo, hi) = (0, 65535)
      case .int16: (lo, hi) = (-32768, 32767)
      case .int4, .uint4, .int2, .uint2:
        let r = type.narrowIntegerRange ?? (0, 0)
        (lo, hi) = (Double(r.0), Double(r.1))
      default: throw c.unsupported("quantizing to \(type) is not supported")
      }
      // Saturate; NaN quantizes to 0 (clamped into the type).
      let q = v.map { $0.isNaN ? Swift.min(hi, Swift.max(lo, 0)) : Swift.min(hi, Swift.max(lo, $0)) }
      if type.isNarrow { return [try NDArray(narrow: q, as: type, shape: shape, wrap: true)] }
      return [try NDArray(doubles: q, as: type, shape: shape)]
    },
  ]
}

extension Kernels {
  /// ONNX Runtime's com.microsoft QuantizeLinear and DequantizeLinear: the standard operators'
  /// inputs, axis and meaning, with 16-bit (and 4-bit) types at any opset — what static
  /// quantization writes for 16-bit activations below opset 21.
  static let quantizationContrib: [String: Kernel] = quantization
}

/// Element values of a quantized tensor (or zero point) as Double: integers of any width,
/// float8 and float4 values decoded.
func quantizedDoubles(_ x: NDArray) throws -> [Double] {
  if x.dataType.isNarrow { return x.narrowValues() }
  if x.dataType.isFloatingPoint { return try x.floats().map(Double.init) }
  return try x.integers().map(Double.init)
}

/// Maps an element's linear index to the index of its scale/zero point: one for all, one per
/// slice along `axis`, or one per block of `block_size` along `axis`.
private func parameterIndex(_ c: KernelContext, shape: [Int], parameterShape: [Int]) throws -> (Int) -> Int {
  let count = parameterShape.reduce(1, *)
  if parameterShape.isEmpty || count == 1 { return { _ in 0 } }
  guard !shape.isEmpty else { throw c.fail("\(count) scales for a scalar input") }
  let axis = try c.axis(c.int("axis", 1), rank: shape.count)
  let blockSize = c.int("block_size", 0)
  let inner = shape[(axis + 1)...].reduce(1, *), n = shape[axis]
  if blockSize > 0 {
    let fits = parameterShape.count == shape.count && shape.indices.allSatisfy { d in
      parameterShape[d] == (d == axis ? shape[d] / blockSize + (shape[d] % blockSize == 0 ? 0 : 1) : shape[d])
    }
    guard fits else { throw c.fail("blocked scales of shape \(parameterShape) do not fit an input of shape \(shape) with block_size \(blockSize)") }
    let pStrides = strides(parameterShape), xStrides = strides(shape)
    return { i in
      var rest = i, p = 0
      for d in 0..<shape.count {
        let idx = rest / xStrides[d]
        rest %= xStrides[d]
        p += (d == axis ? idx / blockSize : idx) * pStrides[d]
      }
      return p
    }
  }
  guard count == n else { throw c.fail("\(count) scales for an axis of \(n)") }
  return { i in (i / inner) % n }
}
