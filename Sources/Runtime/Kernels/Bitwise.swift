import IR
import Support

/// Operators on the bits of integer tensors: BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot,
/// BitShift (with broadcasting), and BitCast (the same bytes read as another type of the same width).
extension Kernels {
  static let bitwise: [String: Kernel] = [
    "BitwiseAnd": { c in [try bitwiseBinary(c, Bitwise.And())] },
    "BitwiseOr": { c in [try bitwiseBinary(c, Bitwise.Or())] },
    "BitwiseXor": { c in [try bitwiseBinary(c, Bitwise.Xor())] },
    "BitShift": { c in
      switch c.string("direction", "") {
      case "LEFT": return [try bitwiseBinary(c, Bitwise.ShiftLeft())]
      case "RIGHT": return [try bitwiseBinary(c, Bitwise.ShiftRight())]
      case let d: throw c.fail("direction must be LEFT or RIGHT, not '\(d)'")
      }
    },
    "BitwiseNot": { c in
      let x = try c.input(0)
      switch x.dataType {
      case .int8, .uint8: return [bitwiseNot(x, UInt8.self)]
      case .int16, .uint16: return [bitwiseNot(x, UInt16.self)]
      case .int32, .uint32: return [bitwiseNot(x, UInt32.self)]
      case .int64, .uint64: return [bitwiseNot(x, UInt64.self)]
      default: throw c.fail("input is \(x.dataType), not an integer type")
      }
    },
    "BitCast": { c in
      let x = try c.input(0)
      let to = DataType(rawValue: Int32(clamping: c.int("to", 0)))
      guard to.isKnown, to != .string, x.dataType != .string else {
        throw c.fail("cannot reinterpret \(x.dataType) as \(to)")
      }
      guard to.bitWidth == x.dataType.bitWidth else {
        throw c.fail("\(x.dataType) and \(to) have different widths (\(x.dataType.bitWidth ?? 0) and \(to.bitWidth ?? 0) bits)")
      }
      return [x.reinterpreted(as: to)]
    },
  ]
}

/// A bitwise operator on two integers of one type, as a type so each instantiation is inlined.
protocol BitwiseOperator { func callAsFunction<T: FixedWidthInteger>(_ a: T, _ b: T) -> T }

enum Bitwise {
  struct And: BitwiseOperator { @inline(__always) func callAsFunction<T: FixedWidthInteger>(_ a: T, _ b: T) -> T { a & b } }
  struct Or: BitwiseOperator { @inline(__always) func callAsFunction<T: FixedWidthInteger>(_ a: T, _ b: T) -> T { a | b } }
  struct Xor: BitwiseOperator { @inline(__always) func callAsFunction<T: FixedWidthInteger>(_ a: T, _ b: T) -> T { a ^ b } }
  /// A shift by a negative amount or by the width or more leaves nothing (ONNX, from opset 28;
  /// Swift's `<<` would shift the other way for a negative amount).
  struct ShiftLeft: BitwiseOperator {
    @inline(__always) func callAsFunction<T: FixedWidthInteger>(_ a: T, _ b: T) -> T {
      b < 0 || b >= T.bitWidth ? 0 : a << b
    }
  }
  /// Arithmetic for signed types: past the width (or negative), only the sign fill is left.
  struct ShiftRight: BitwiseOperator {
    @inline(__always) func callAsFunction<T: FixedWidthInteger>(_ a: T, _ b: T) -> T {
      b < 0 || b >= T.bitWidth ? (a < 0 ? ~T.zero : 0) : a >> b
    }
  }
}

private func bitwiseBinary<Op: BitwiseOperator>(_ c: KernelContext, _ op: Op) throws -> NDArray {
  let a = try c.input(0), b = try c.input(1)
  guard a.dataType == b.dataType else { throw c.fail("inputs have different types (\(a.dataType) and \(b.dataType))") }
  switch a.dataType {
  case .int8: return try bitwiseBinary(c, a, b, Int8.self, op)
  case .int16: return try bitwiseBinary(c, a, b, Int16.self, op)
  case .int32: return try bitwiseBinary(c, a, b, Int32.self, op)
  case .int64: return try bitwiseBinary(c, a, b, Int64.self, op)
  case .uint8: return try bitwiseBinary(c, a, b, UInt8.self, op)
  case .uint16: return try bitwiseBinary(c, a, b, UInt16.self, op)
  case .uint32: return try bitwiseBinary(c, a, b, UInt32.self, op)
  case .uint64: return try bitwiseBinary(c, a, b, UInt64.self, op)
  default: throw c.fail("inputs are \(a.dataType), not an integer type")
  }
}

private func bitwiseBinary<T: FixedWidthInteger & ElementType, Op: BitwiseOperator>(
  _ c: KernelContext, _ a: NDArray, _ b: NDArray, _: T.Type, _ op: Op
) throws -> NDArray {
  guard let shape = broadcastShape(a.shape, b.shape) else { throw c.fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
  try NDArray.checkAllocation(shape, a.dataType, c)
  var out = NDArray(uninitialized: a.dataType, shape)
  let x = a.elements(T.self), y = b.elements(T.self), z = out.mutableElements(T.self)
  forEachPair(shape, a.shape, b.shape) { o, i, j in z[o] = op(x[i], y[j]) }
  return out
}

/// Every bit flipped; signed and unsigned types of a width share the loop.
private func bitwiseNot<T: FixedWidthInteger & ElementType>(_ x: NDArray, _: T.Type) -> NDArray {
  var out = x
  let e = out.mutableElements(T.self)
  for i in 0..<e.count { e[i] = ~e[i] }
  return out
}
