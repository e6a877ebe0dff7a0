import Foundation
import IR
import Support

/// The trigonometric and hyperbolic functions and their inverses, element-wise. Float tensors
/// run the Float libm function in a specialized loop (as `unaryFloat` does for the activations);
/// double and half-precision tensors go through Double.
extension Kernels {
  static let trigonometric: [String: Kernel] = [
    "Sin": { c in [try unaryFloat(c, TrigonometricMaps.Sin(), Foundation.sin)] },
    "Cos": { c in [try unaryFloat(c, TrigonometricMaps.Cos(), Foundation.cos)] },
    "Tan": { c in [try unaryFloat(c, TrigonometricMaps.Tan(), Foundation.tan)] },
    "Asin": { c in [try unaryFloat(c, TrigonometricMaps.Asin(), Foundation.asin)] },
    "Acos": { c in [try unaryFloat(c, TrigonometricMaps.Acos(), Foundation.acos)] },
    "Atan": { c in [try unaryFloat(c, TrigonometricMaps.Atan(), Foundation.atan)] },
    "Sinh": { c in [try unaryFloat(c, TrigonometricMaps.Sinh(), Foundation.sinh)] },
    "Cosh": { c in [try unaryFloat(c, TrigonometricMaps.Cosh(), Foundation.cosh)] },
    "Asinh": { c in [try unaryFloat(c, TrigonometricMaps.Asinh(), Foundation.asinh)] },
    "Acosh": { c in [try unaryFloat(c, TrigonometricMaps.Acosh(), Foundation.acosh)] },
    "Atanh": { c in [try unaryFloat(c, TrigonometricMaps.Atanh(), Foundation.atanh)] },
  ]
}

enum TrigonometricMaps {
  struct Sin: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.sin(x) } }
  struct Cos: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.cos(x) } }
  struct Tan: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.tan(x) } }
  struct Asin: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.asin(x) } }
  struct Acos: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.acos(x) } }
  struct Atan: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.atan(x) } }
  struct Sinh: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.sinh(x) } }
  struct Cosh: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.cosh(x) } }
  struct Asinh: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.asinh(x) } }
  struct Acosh: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.acosh(x) } }
  struct Atanh: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.atanh(x) } }
}
