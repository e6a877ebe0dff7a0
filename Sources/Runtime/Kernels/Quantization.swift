import IR
import Support

/// QuantizeLinear and DequantizeLinear: per tensor, per axis, and blocked (opset 21 block_size),
/// for int8/uint8/int16/uint16/int32 and the packed int4/uint4 types.
extension Kernels {
  static let quantization: [String: Kernel] = [
    "DequantizeLinear": { c in
      let x = try c.input(0)
      let scale = try c.input(1).floats()
      let zero = try c.optionalInput(2).map { try quantizedValues($0) } ?? []
      let values = try quantizedValues(x)
      let index = try parameterIndex(c, shape: x.shape, parameterShape: try c.input(1).shape)
      guard !scale.isEmpty, zero.isEmpty || zero.count == scale.count else {
        throw c.fail("\(scale.count) scales and \(zero.count) zero points")
      }
      var out = [Float](repeating: 0, count: values.count)
      for i in values.indices {
        let p = index(i)
        out[i] = Float(values[i] - (zero.isEmpty ? 0 : zero[p])) * scale[p]
      }
      let outType = c.opset >= 21 ? DataType(rawValue: Int32(clamping: c.int("output_dtype", 0))) : .float
      let result = NDArray(out, shape: x.shape)
      return [outType == .undefined || outType == .float ? result : try result.converted(to: outType)]
    },
    "QuantizeLinear": { c in
      let x = try c.input(0).floats()
      let scaleTensor = try c.input(1)
      let scale = try scaleTensor.floats()
      let zeroTensor = c.optionalInput(2)
      let zero = try zeroTensor.map { try quantizedValues($0) } ?? []
      let type = zeroTensor?.dataType ?? .uint8
      let (lo, hi): (Int, Int)
      switch type {
      case .uint8: (lo, hi) = (0, 255)
      case .int8: (lo, hi) = (-128, 127)
      case .uint16: (lo, hi) = (0, 65535)
      case .int16: (lo, hi) = (-32768, 32767)
      case .int4: (lo, hi) = (-8, 7)
      case .uint4: (lo, hi) = (0, 15)
      default: throw c.unsupported("quantizing to \(type) is not supported")
      }
      let shape = try c.input(0).shape
      let index = try parameterIndex(c, shape: shape, parameterShape: scaleTensor.shape)
      guard !scale.isEmpty, zero.isEmpty || zero.count == scale.count else {
        throw c.fail("\(scale.count) scales and \(zero.count) zero points")
      }
      var q = [Int](repeating: 0, count: x.count)
      for i in x.indices {
        let p = index(i)
        let v = (x[i] / scale[p]).rounded(.toNearestOrEven) + Float(zero.isEmpty ? 0 : zero[p])
        q[i] = v.isNaN ? 0 : Swift.min(hi, Swift.max(lo, Int(Swift.max(Swift.min(v, 1e9), -1e9))))
      }
      return [try packQuantized(q, as: type, shape: shape)]
    },
  ]
}

/// Integer values of a quantized tensor, unpacking 4-bit types (low nibble first).
func quantizedValues(_ x: NDArray) throws -> [Int] {
  switch x.dataType {
  case .int4, .uint4:
    let bytes = x.elements(UInt8.self)
    return (0..<x.count).map { i in
      let nibble = Int(i % 2 == 0 ? bytes[i / 2] & 0x0F : bytes[i / 2] >> 4)
      return x.dataType == .int4 && nibble >= 8 ? nibble - 16 : nibble
    }
  default:
    return try x.integers()
  }
}

private func packQuantized(_ q: [Int], as type: DataType, shape: [Int]) throws -> NDArray {
  if type == .int4 || type == .uint4 {
    var out = NDArray(zeros: type, shape)
    let bytes = out.mutableElements(UInt8.self)
    for (i, v) in q.enumerated() {
      let nibble = UInt8(truncatingIfNeeded: v) & 0x0F
      bytes[i / 2] |= i % 2 == 0 ? nibble : nibble << 4
    }
    return out
  }
  return try NDArray(doubles: q.map(Double.init), as: type, shape: shape)
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
