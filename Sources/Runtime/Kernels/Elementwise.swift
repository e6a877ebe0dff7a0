import Foundation
import IR
import Support

/// Element-wise operators: arithmetic with broadcasting, comparisons, logic, Where, Clip and
/// activations. Float16 and bfloat16 are computed in Float, as other runtimes do.
extension Kernels {
  static let elementwise: [String: Kernel] = {
    var k = [String: Kernel]()
    for (op, f) in [("Add", { (a: Double, b: Double) in a + b }), ("Sub", { $0 - $1 }), ("Mul", { $0 * $1 }),
                    ("Div", { $0 / $1 }), ("Pow", { Foundation.pow($0, $1) })] as [(String, (Double, Double) -> Double)] {
      k[op] = { c in [try arithmetic(c, c.input(0), c.input(1), op: op, f)] }
    }
    k["Pow"] = { c in
      let x = try c.input(0), e = try c.input(1)
      // Constant exponents decomposed LayerNorm and GELU use: exact and fast.
      if x.dataType == .float, e.count == 1, let p = try e.floats().first {
        switch p {
        case 2: return [try unaryFloat(c, FloatMaps.Square(), { $0 * $0 })]
        case 3: return [try unaryFloat(c, FloatMaps.Cube(), { $0 * $0 * $0 })]
        case 1: return [x]
        case 0.5: return [try unaryFloat(c, FloatMaps.Sqrt(), { $0.squareRoot() })]
        default: break
        }
      }
      return [try arithmetic(c, x, e, op: "Pow") { Foundation.pow($0, $1) }]
    }
    for (op, f) in [("Max", { (a: Double, b: Double) in a.isNaN || b.isNaN ? .nan : Swift.max(a, b) }),
                    ("Min", { a, b in a.isNaN || b.isNaN ? .nan : Swift.min(a, b) }), ("Sum", { $0 + $1 })]
      as [(String, (Double, Double) -> Double)] {
      k[op] = { c in
        var acc = try c.input(0)
        for i in 1..<c.inputs.count { acc = try arithmetic(c, acc, c.input(i), op: op, f) }
        return [acc]
      }
    }
    k["Mean"] = { c in
      var acc = try c.input(0)
      for i in 1..<c.inputs.count { acc = try arithmetic(c, acc, c.input(i), op: "Add", +) }
      return [try arithmetic(c, acc, NDArray([Float(c.inputs.count)], shape: []).converted(to: acc.dataType), op: "Div", /)]
    }
    k["Mod"] = { c in
      let fmod = c.int("fmod", 0) == 1
      return [try arithmetic(c, c.input(0), c.input(1), op: "Mod") { a, b in
        if fmod { return Foundation.fmod(a, b) }
        let r = a.truncatingRemainder(dividingBy: b)
        return r != 0 && (r < 0) != (b < 0) ? r + b : r
      }]
    }
    k["PRelu"] = { c in
      let x = try c.input(0)
      var slope = try c.input(1)
      // Before opset 7 a 1-D slope of C values applied along the channel axis.
      if broadcastShape(x.shape, slope.shape) == nil, slope.rank == 1, x.rank >= 2, slope.count == x.shape[1] {
        slope = slope.reshaped([x.shape[1]] + Array(repeating: 1, count: x.rank - 2))
      }
      return [try arithmetic(c, x, slope, op: "PRelu") { x, s in x < 0 ? x * s : x }]
    }

    for (op, comparison) in [("Equal", Comparison.equal), ("Greater", .greater), ("Less", .less),
                             ("GreaterOrEqual", .greaterOrEqual), ("LessOrEqual", .lessOrEqual)] {
      k[op] = { c in
        let a = try c.input(0), b = try c.input(1)
        if a.dataType == .string && op == "Equal" { return [try equalStrings(c, a, b)] }
        return [try compare(c, a, b, comparison)]
      }
    }
    for (op, f) in [("And", { (a: Bool, b: Bool) in a && b }), ("Or", { $0 || $1 }), ("Xor", { $0 != $1 })]
      as [(String, (Bool, Bool) -> Bool)] {
      k[op] = { c in [try logical(c, c.input(0), c.input(1), f)] }
    }
    k["Not"] = { c in
      var x = try c.input(0)
      let e = x.mutableElements(UInt8.self)
      for i in e.indices { e[i] = e[i] == 0 ? 1 : 0 }
      return [x]
    }
    k["Where"] = { c in [try whereOp(c)] }

    let unary: [(String, (Double) -> Double)] = [
      ("Relu", { Swift.max($0, 0) }), ("Neg", { -$0 }), ("Abs", { Swift.abs($0) }), ("Exp", { Foundation.exp($0) }),
      ("Log", { Foundation.log($0) }), ("Sqrt", { $0.squareRoot() }), ("Reciprocal", { 1 / $0 }),
      ("Sigmoid", { 1 / (1 + Foundation.exp(-$0)) }), ("Tanh", { Foundation.tanh($0) }), ("Erf", { Foundation.erf($0) }),
      ("Floor", { Foundation.floor($0) }), ("Ceil", { Foundation.ceil($0) }), ("Round", { $0.rounded(.toNearestOrEven) }),
      ("Sign", { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }),
      ("Softplus", { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) }),
      ("HardSwish", { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }),
    ]
    for (op, f) in unary { k[op] = { c in [try map(c, c.input(0), f)] } }
    // The hot activations again, as Float loops the compiler specializes and vectorizes.
    k["Relu"] = { c in [try unaryFloat(c, FloatMaps.Relu(), { Swift.max($0, 0) })] }
    k["Neg"] = { c in [try unaryFloat(c, FloatMaps.Neg(), { -$0 })] }
    k["Abs"] = { c in [try unaryFloat(c, FloatMaps.Abs(), { Swift.abs($0) })] }
    k["Sqrt"] = { c in [try unaryFloat(c, FloatMaps.Sqrt(), { $0.squareRoot() })] }
    k["Reciprocal"] = { c in [try unaryFloat(c, FloatMaps.Reciprocal(), { 1 / $0 })] }
    k["Exp"] = { c in [try unaryFloat(c, FloatMaps.Exp(), { Foundation.exp($0) })] }
    k["Tanh"] = { c in [try unaryFloat(c, FloatMaps.Tanh(), { Foundation.tanh($0) })] }
    k["Erf"] = { c in [try unaryFloat(c, FloatMaps.Erf(), { Foundation.erf($0) })] }
    k["Sigmoid"] = { c in [try unaryFloat(c, FloatMaps.Sigmoid(), { 1 / (1 + Foundation.exp(-$0)) })] }
    k["HardSwish"] = { c in [try unaryFloat(c, FloatMaps.HardSwish(), { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) })] }
    k["LeakyRelu"] = { c in
      let alpha = Double(c.float("alpha", 0.01))
      return [try map(c, c.input(0)) { $0 < 0 ? alpha * $0 : $0 }]
    }
    k["Elu"] = { c in
      let alpha = Double(c.float("alpha", 1))
      return [try map(c, c.input(0)) { $0 < 0 ? alpha * (Foundation.exp($0) - 1) : $0 }]
    }
    k["Selu"] = { c in
      let alpha = Double(c.float("alpha", 1.67326319217681884765625)), gamma = Double(c.float("gamma", 1.05070102214813232421875))
      return [try map(c, c.input(0)) { $0 <= 0 ? gamma * (alpha * Foundation.exp($0) - alpha) : gamma * $0 }]
    }
    k["HardSigmoid"] = { c in
      let alpha = c.float("alpha", 0.2), beta = c.float("beta", 0.5)
      let a = Double(alpha), b = Double(beta)
      return [try unaryFloat(c, FloatMaps.HardSigmoid(alpha: alpha, beta: beta), { Swift.max(0, Swift.min(1, a * $0 + b)) })]
    }
    k["Gelu"] = { c in
      if c.string("approximate", "none") == "tanh" {
        return [try map(c, c.input(0)) { x in 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) }]
      }
      // Float through FastMath (the same bits as the decomposed form `fuseDecomposedGelu` replaces).
      return [try unaryFloat(c, FloatMaps.Gelu(), { x in 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot())) })]
    }
    k["Softsign"] = { c in [try unaryFloat(c, FloatMaps.Softsign(), { $0 / (1 + Swift.abs($0)) })] }
    k["Mish"] = { c in
      [try unaryFloat(c, FloatMaps.Mish(), { $0 * Foundation.tanh($0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0))) })]
    }
    k["Swish"] = { c in
      let alpha = c.float("alpha", 1), a = Double(alpha)
      return [try unaryFloat(c, FloatMaps.Swish(alpha: alpha), { $0 / (1 + Foundation.exp(-a * $0)) })]
    }
    k["SwiGLU"] = { c in
      // Swish(A) · B on identical shapes (no broadcasting), as Swish computes it.
      let a = try c.input(0), b = try c.input(1)
      guard a.shape == b.shape, a.dataType == b.dataType else { throw c.fail("A \(a.shape) and B \(b.shape) must have one shape and type") }
      let alpha = Double(c.float("alpha", 1))
      let gate = try map(c, a) { $0 / (1 + Foundation.exp(-alpha * $0)) }
      return [try arithmetic(c, gate, b, op: "Mul", *)]
    }
    k["Celu"] = { c in
      let alpha = c.float("alpha", 1), a = Double(alpha)
      guard alpha != 0 else { throw c.fail("alpha must not be 0") }
      return [try unaryFloat(c, FloatMaps.Celu(alpha: alpha), { Swift.max(0, $0) + Swift.min(0, a * Foundation.expm1($0 / a)) })]
    }
    k["ThresholdedRelu"] = { c in
      let alpha = c.float("alpha", 1), a = Double(alpha)
      return [try unaryFloat(c, FloatMaps.ThresholdedRelu(alpha: alpha), { $0 > a ? $0 : 0 })]
    }
    k["Shrink"] = { c in
      // Defined for every numeric type: integer tensors go through Double and back, exactly.
      let lambd = c.float("lambd", 0.5), bias = c.float("bias", 0)
      let l = Double(lambd), b = Double(bias)
      return [try unaryFloat(c, FloatMaps.Shrink(lambd: lambd, bias: bias), { $0 < -l ? $0 + b : ($0 > l ? $0 - b : 0) })]
    }
    k["IsNaN"] = { c in [try classify(c, c.input(0)) { $0.isNaN }] }
    k["IsInf"] = { c in
      let negative = c.int("detect_negative", 1) != 0, positive = c.int("detect_positive", 1) != 0
      return [try classify(c, c.input(0)) { $0.isInfinite && ($0 > 0 ? positive : negative) }]
    }
    k["Clip"] = { c in
      var lo = -Double.infinity, hi = Double.infinity
      if c.opset < 11 {
        lo = Double(c.float("min", -.infinity))
        hi = Double(c.float("max", .infinity))
      } else {
        if let m = c.optionalInput(1) { lo = Double(try m.floats().first ?? -.infinity) }
        if let m = c.optionalInput(2) { hi = Double(try m.floats().first ?? .infinity) }
      }
      let x = try c.input(0)
      if x.dataType == .float {
        return [try unaryFloat(c, FloatMaps.Clip(low: Float(lo), high: Float(hi)), { $0 })]
      }
      if x.dataType == .int64 || x.dataType == .int32 {
        let l = lo, h = hi
        return [try map(c, x) { Swift.min(Swift.max($0, l), h) }]
      }
      return [try map(c, x) { $0.isNaN ? $0 : Swift.min(Swift.max($0, lo), hi) }]
    }
    return k
  }()
}

/// Element types element-wise kernels compute natively; the rest go through Float.
private func numericKind(_ t: DataType) -> DataType? {
  switch t {
  case .float, .double, .int64, .int32, .int8, .uint8, .int16, .uint16, .uint32, .uint64: return t
  case .float16, .bfloat16: return .float
  default: return nil
  }
}

extension NDArray {
  /// The same values as another numeric type (Float16 and bfloat16 included).
  public func converted(to type: DataType) throws -> NDArray {
    if type == dataType { return self }
    if type.isNarrow || dataType.isNarrow { return try narrowConverted(to: type) }
    // Integer to float without the Double array: the Casts around integer kernels are hot, and
    // one rounding either way gives the same Float.
    if type == .float {
      func direct<T: BinaryInteger & ElementType>(_: T.Type) -> NDArray {
        var out = NDArray(uninitialized: .float, shape)
        let s = elements(T.self), d = out.mutableElements(Float.self)
        for i in 0..<Swift.min(s.count, d.count) { d[i] = Float(s[i]) }
        return out
      }
      switch dataType {
      case .int32: return direct(Int32.self)
      case .uint8: return direct(UInt8.self)
      case .int8: return direct(Int8.self)
      default: break
      }
    }
    let values: [Double]
    switch dataType {
    case .float: values = elements(Float.self).map(Double.init)
    case .double: values = Array(elements(Double.self))
    case .float16: values = elements(Float16.self).map { Double(Float($0)) }
    case .bfloat16: values = elements(UInt16.self).map { Double(Float(bitPattern: UInt32($0) << 16)) }
    case .bool: values = elements(UInt8.self).map { $0 != 0 ? 1 : 0 }
    default: values = try integers().map(Double.init)
    }
    return try NDArray(doubles: values, as: type, shape: shape)
  }

  /// Builds a tensor of `type` from Double values (rounding toward zero for integers).
  public init(doubles values: [Double], as type: DataType, shape: [Int]) throws {
    switch type {
    case .float, .double, .float16, .bfloat16, .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32, .uint64, .bool: break
    default: throw CompressorError.unsupported("cannot convert to \(type)")
    }
    self.init(uninitialized: type, shape)
    guard let base = storage.base, !values.isEmpty else { return }
    let n = Swift.min(values.count, count)  // never past the buffer, whatever the caller passed
    func fill<T>(_: T.Type, _ f: (Double) -> T) {
      let p = base.bindMemory(to: T.self, capacity: n)
      for i in 0..<n { p[i] = f(values[i]) }
    }
    switch type {
    case .float: fill(Float.self) { Float($0) }
    case .double: fill(Double.self) { $0 }
    case .float16: fill(Float16.self) { Float16(Float($0)) }
    case .bfloat16: fill(UInt16.self) { bfloat16Bits(Float($0)) }
    case .int64: fill(Int64.self) { Int64(clampingDouble: $0) }
    case .int32: fill(Int32.self) { Int32(clamping: Int64(clampingDouble: $0)) }
    case .int16: fill(Int16.self) { Int16(truncatingIfNeeded: Int64(clampingDouble: $0)) }
    case .int8: fill(Int8.self) { Int8(truncatingIfNeeded: Int64(clampingDouble: $0)) }
    case .uint8: fill(UInt8.self) { UInt8(truncatingIfNeeded: Int64(clampingDouble: $0)) }
    case .uint16: fill(UInt16.self) { UInt16(truncatingIfNeeded: Int64(clampingDouble: $0)) }
    case .uint32: fill(UInt32.self) { UInt32(truncatingIfNeeded: Int64(clampingDouble: $0)) }
    case .uint64: fill(UInt64.self) { UInt64(truncatingIfNeeded: Int64(clampingDouble: $0)) }
    case .bool: fill(UInt8.self) { $0 != 0 ? 1 : 0 }
    default: throw CompressorError.unsupported("cannot convert to \(type)")
    }
  }
}

/// Round-to-nearest-even bfloat16 bits of a Float.
func bfloat16Bits(_ f: Float) -> UInt16 {
  if f.isNaN { return 0x7FC0 }
  let bits = f.bitPattern
  let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
  return UInt16(truncatingIfNeeded: rounded >> 16)
}

extension Int64 {
  init(clampingDouble d: Double) {
    if d.isNaN { self = 0 } else if d >= 9.2233720368547758e18 { self = .max } else if d <= -9.2233720368547758e18 { self = .min }
    else { self = Int64(d) }
  }
}

/// A Float function as a type: `unaryFloat` is specialized for each, so the function is inlined
/// into the loop on every thread. (A closure argument was inlined only on the calling thread;
/// the worker's part called it once per element, and two threads ran slower than one.)
protocol FloatMap {
  func callAsFunction(_ x: Float) -> Float
  /// The map over `n` contiguous elements; each element's result depends on it alone, so it never
  /// depends on where a thread's part begins. A map with a vectorized array function of its own
  /// (FastMath) gives it here.
  func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int)
}

extension FloatMap {
  @inline(__always) func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { d[i] = self(s[i]) }
  }
}

enum FloatMaps {
  struct Square: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x } }
  struct Cube: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x * x } }
  struct Sqrt: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x.squareRoot() } }
  struct Relu: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.max(x, 0) } }
  struct Neg: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { -x } }
  struct Abs: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.abs(x) } }
  struct Reciprocal: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / x } }
  struct Exp: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { Foundation.exp(x) } }
  struct Tanh: FloatMap {
    func callAsFunction(_ x: Float) -> Float { FastMath.scalar(x, FastMath.tanh) }
    func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int) { FastMath.tanh(s, d, n) }
  }
  struct Erf: FloatMap {
    func callAsFunction(_ x: Float) -> Float { FastMath.scalar(x, FastMath.erf) }
    func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int) { FastMath.erf(s, d, n) }
  }
  struct Gelu: FloatMap {
    func callAsFunction(_ x: Float) -> Float { FastMath.scalar(x, FastMath.gelu) }
    func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int) { FastMath.gelu(s, d, n) }
  }
  /// 1/(1 + e^−x) from e^−|x| (FastMath, within 2 ulp): libm's exp per element was most of
  /// EfficientNet's time.
  struct Sigmoid: FloatMap {
    func callAsFunction(_ x: Float) -> Float { FastMath.scalar(x, FastMath.sigmoid) }
    func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int) { FastMath.sigmoid(s, d, n) }
  }
  struct Clip: FloatMap {
    var low: Float, high: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x.isNaN ? x : Swift.min(Swift.max(x, low), high) }
  }
  struct HardSwish: FloatMap {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * Swift.max(0, Swift.min(1, x / 6 + 0.5)) }
  }
  struct Softsign: FloatMap { @inline(__always) func callAsFunction(_ x: Float) -> Float { x / (1 + Swift.abs(x)) } }
  struct Mish: FloatMap {
    // softplus(x) is x itself above 20 in Float, and exp(x) would overflow above 88.
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * Foundation.tanh(x > 20 ? x : Foundation.log1p(Foundation.exp(x))) }
  }
  struct Swish: FloatMap {
    var alpha: Float
    func callAsFunction(_ x: Float) -> Float { FastMath.scalar(x) { FastMath.swish($0, $1, $2, alpha: alpha) } }
    func apply(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int) { FastMath.swish(s, d, n, alpha: alpha) }
  }
  struct Celu: FloatMap {
    var alpha: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.max(0, x) + Swift.min(0, alpha * Foundation.expm1(x / alpha)) }
  }
  struct ThresholdedRelu: FloatMap {
    var alpha: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x > alpha ? x : 0 }
  }
  struct Shrink: FloatMap {
    var lambd: Float, bias: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x < -lambd ? x + bias : (x > lambd ? x - bias : 0) }
  }
  struct HardSigmoid: FloatMap {
    var alpha: Float, beta: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { Swift.max(0, Swift.min(1, alpha * x + beta)) }
  }
}

/// f over every element of input 0: Float math for Float tensors (`fast`), Double otherwise.
@inline(__always)
func unaryFloat<F: FloatMap>(_ c: KernelContext, _ fast: F, _ slow: (Double) -> Double) throws -> NDArray {
  let x = try c.input(0)
  guard x.dataType == .float else { return try map(c, x, slow) }
  var out = NDArray(uninitialized: .float, x.shape)
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  withExtendedLifetime((src, dst)) {
    guard let s = src.baseAddress, let d = dst.baseAddress else { return }
    Parallel.forEach(src.count, costPerItem: 4) { range in fast.apply(s + range.lowerBound, d + range.lowerBound, range.count) }
  }
  return out
}

/// An elementwise operation as a type, so the loops that take one are specialized with it inlined
/// (for the reason of `FloatMap`).
protocol BinaryMap {
  associatedtype Element
  func callAsFunction(_ a: Element, _ b: Element) -> Element
}
protocol FloatBinaryMap: BinaryMap where Element == Float {}

/// Wrapping two's-complement integer arithmetic.
enum IntegerBinaryMaps {
  struct Add<T: FixedWidthInteger>: BinaryMap { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a &+ b } }
  struct Sub<T: FixedWidthInteger>: BinaryMap { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a &- b } }
  struct Mul<T: FixedWidthInteger>: BinaryMap { @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { a &* b } }
}

enum FloatBinaryMaps {
  struct Add: FloatBinaryMap { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
  struct Sub: FloatBinaryMap { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
  struct Mul: FloatBinaryMap { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
  struct Div: FloatBinaryMap { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
  /// Any other operator, computed in Double.
  struct Function: FloatBinaryMap {
    let f: (Double, Double) -> Double
    func callAsFunction(_ a: Float, _ b: Float) -> Float { Float(f(Double(a), Double(b))) }
  }
}

/// z = g(x, y) with broadcasting; contiguous and scalar-operand rows get straight loops.
@inline(__always)
func floatBinary<G: FloatBinaryMap>(_ shape: [Int], _ aShape: [Int], _ bShape: [Int], _ x: Elements<Float>,
                                    _ y: Elements<Float>, _ z: Elements<Float>, _ g: G) {
  withExtendedLifetime((x, y, z)) {
    guard let xp = x.baseAddress, let yp = y.baseAddress, let zp = z.baseAddress else { return }
    let na = x.count, nb = y.count, nz = z.count
    // The common shapes get loops here, where `g` is inlined: equal shapes, a scalar operand,
    // and an operand whose shape is a suffix of the other's (biases, scales, residuals).
    if aShape == bShape {
      Parallel.forEach(nz) { range in for i in range { zp[i] = g(xp[i], yp[i]) } }
      return
    }
    if nb == 1 && na == nz {
      let v = yp[0]
      for i in 0..<nz { zp[i] = g(xp[i], v) }
      return
    }
    if na == 1 && nb == nz {
      let v = xp[0]
      for i in 0..<nz { zp[i] = g(v, yp[i]) }
      return
    }
    func isSuffix(_ small: [Int], _ large: [Int]) -> Bool {
      let trimmed = Array(small.drop { $0 == 1 })
      return trimmed.count <= large.count && Array(large.suffix(trimmed.count)) == trimmed
    }
    if na == nz && nb > 0 && nz % nb == 0 && isSuffix(bShape, aShape) {
      Parallel.forEach(nz / nb, costPerItem: nb) { rows in
        for r in rows {
          let xr = xp + r * nb, zr = zp + r * nb
          for k in 0..<nb { zr[k] = g(xr[k], yp[k]) }
        }
      }
      return
    }
    // One value per leading index of the other operand's shape (squeeze-excitation's [N, C, 1, 1]
    // scale of an [N, C, H, W] map): rows, each with its one value, split among the threads.
    func isPrefix(_ small: [Int], _ large: [Int]) -> Bool {
      guard small.count == large.count, let last = small.lastIndex(where: { $0 != 1 }) else { return false }
      return small[...last] == large[...last] && small[(last + 1)...].allSatisfy { $0 == 1 }
    }
    if na == nz && nb > 0 && nz % nb == 0 && isPrefix(bShape, aShape) {
      let length = nz / nb
      Parallel.forEach(nb, costPerItem: length) { rows in
        for r in rows {
          let v = yp[r], xr = xp + r * length, zr = zp + r * length
          for k in 0..<length { zr[k] = g(xr[k], v) }
        }
      }
      return
    }
    if nb == nz && na > 0 && nz % na == 0 && isPrefix(aShape, bShape) {
      let length = nz / na
      Parallel.forEach(na, costPerItem: length) { rows in
        for r in rows {
          let v = xp[r], yr = yp + r * length, zr = zp + r * length
          for k in 0..<length { zr[k] = g(v, yr[k]) }
        }
      }
      return
    }
    if nb == nz && na > 0 && nz % na == 0 && isSuffix(aShape, bShape) {
      for r in 0..<(nz / na) {
        let yr = yp + r * na, zr = zp + r * na
        for k in 0..<na { zr[k] = g(xp[k], yr[k]) }
      }
      return
    }
    binaryRows(shape, aShape, bShape, xp, yp, zp, g)
  }
}

/// z = g(x, y) over the rows of a broadcast (`broadcastRows`), with `g` inlined into each loop.
@inline(__always)
func binaryRows<G: BinaryMap>(_ shape: [Int], _ aShape: [Int], _ bShape: [Int], _ xp: UnsafeMutablePointer<G.Element>,
                              _ yp: UnsafeMutablePointer<G.Element>, _ zp: UnsafeMutablePointer<G.Element>, _ g: G) {
  broadcastRows(shape, [aShape, bShape]) { o, offs, st, n in
    let xa = xp + offs[0], yb = yp + offs[1], zo = zp + o
    switch (st[0], st[1]) {
    case (1, 1): for k in 0..<n { zo[k] = g(xa[k], yb[k]) }
    case (1, 0): let v = yb[0]; for k in 0..<n { zo[k] = g(xa[k], v) }
    case (0, 1): let v = xa[0]; for k in 0..<n { zo[k] = g(v, yb[k]) }
    default:
      var i = 0, j = 0
      for k in 0..<n {
        zo[k] = g(xa[i], yb[j])
        i += st[0]
        j += st[1]
      }
    }
  }
}

/// f over every element, in the input's own type (Float math for Float, Double otherwise).
func map(_ c: KernelContext, _ x: NDArray, _ f: (Double) -> Double) throws -> NDArray {
  switch x.dataType {
  case .float:
    var out = NDArray(uninitialized: .float, x.shape)
    let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
    for i in 0..<src.count { dst[i] = Float(f(Double(src[i]))) }
    return out
  case .double, .float16, .bfloat16, .int64, .int32, .int8, .uint8, .int16, .uint16, .uint32, .uint64:
    let v = try x.converted(to: .double)
    var out = v
    let e = out.mutableElements(Double.self)
    for i in e.indices { e[i] = f(e[i]) }
    return try out.converted(to: x.dataType)
  default:
    throw c.unsupported("\(x.dataType) inputs are not supported")
  }
}

/// a ∘ b with broadcasting, in the inputs' common type.
func arithmetic(_ c: KernelContext, _ a: NDArray, _ b: NDArray, op: String, _ f: (Double, Double) -> Double) throws -> NDArray {
  guard a.dataType == b.dataType || op == "Pow" || op == "PRelu" else {
    throw c.fail("inputs have different types (\(a.dataType) and \(b.dataType))")
  }
  guard let shape = broadcastShape(a.shape, b.shape) else {
    throw c.fail("shapes \(a.shape) and \(b.shape) do not broadcast")
  }
  if shape != a.shape && shape != b.shape { try NDArray.checkAllocation(shape, a.dataType, c) }
  guard let kind = numericKind(a.dataType) else { throw c.unsupported("\(a.dataType) inputs are not supported") }
  if kind == .float && a.dataType == .float && b.dataType == .float {
    // The common case without conversions; Float math, as other runtimes compute it.
    var out = NDArray(uninitialized: .float, shape)
    let x = a.elements(Float.self), y = b.elements(Float.self), z = out.mutableElements(Float.self)
    switch op {
    case "Add", "Sum": floatBinary(shape, a.shape, b.shape, x, y, z, FloatBinaryMaps.Add())
    case "Sub": floatBinary(shape, a.shape, b.shape, x, y, z, FloatBinaryMaps.Sub())
    case "Mul": floatBinary(shape, a.shape, b.shape, x, y, z, FloatBinaryMaps.Mul())
    case "Div": floatBinary(shape, a.shape, b.shape, x, y, z, FloatBinaryMaps.Div())
    default:
      withoutActuallyEscaping(f) { f in floatBinary(shape, a.shape, b.shape, x, y, z, FloatBinaryMaps.Function(f: f)) }
    }
    return out
  }
  if a.dataType == b.dataType, ["Add", "Sum", "Sub", "Mul", "Div", "Max", "Min", "Mod"].contains(op) {
    // Exact integer arithmetic: Double loses precision above 2^53 (shape arithmetic, hashes),
    // and the int32 sums of integer convolutions are hot.
    if a.dataType == .int64 { return integerArithmetic(c, a, b, shape: shape, op: op, Int64.self) }
    if a.dataType == .int32 { return integerArithmetic(c, a, b, shape: shape, op: op, Int32.self) }
  }
  let x = try a.converted(to: .double), y = try b.converted(to: .double)
  var out = NDArray(uninitialized: .double, shape)
  let xe = x.elements(Double.self), ye = y.elements(Double.self), z = out.mutableElements(Double.self)
  let integer = !a.dataType.isFloatingPoint
  forEachPair(shape, a.shape, b.shape) { o, i, j in
    let v = f(xe[i], ye[j])
    z[o] = integer && op == "Div" ? v.rounded(.towardZero) : v
  }
  return try out.converted(to: a.dataType)
}

/// Wrapping two's-complement arithmetic on int32 or int64, as other runtimes compute it; division
/// by zero gives 0 and min ÷ −1 wraps instead of trapping.
private func integerArithmetic<T: FixedWidthInteger & SignedInteger & ElementType>(_ c: KernelContext, _ a: NDArray, _ b: NDArray, shape: [Int],
                                                                    op: String, _: T.Type) -> NDArray {
  var out = NDArray(uninitialized: a.dataType, shape)
  let p = a.elements(T.self), q = b.elements(T.self), r = out.mutableElements(T.self)
  // Rows of the broadcast, with the operation inlined: the int32 sums of integer convolutions
  // and their per-channel biases are hot in dynamically quantized models.
  switch op {
  case "Add", "Sum": integerRows(shape, a.shape, b.shape, p, q, r, IntegerBinaryMaps.Add<T>()); return out
  case "Sub": integerRows(shape, a.shape, b.shape, p, q, r, IntegerBinaryMaps.Sub<T>()); return out
  case "Mul": integerRows(shape, a.shape, b.shape, p, q, r, IntegerBinaryMaps.Mul<T>()); return out
  default: break
  }
  let fmod = c.int("fmod", 0) == 1
  forEachPair(shape, a.shape, b.shape) { o, i, j in
    let u = p[i], v = q[j]
    switch op {
    case "Add", "Sum": r[o] = u &+ v
    case "Sub": r[o] = u &- v
    case "Mul": r[o] = u &* v
    case "Div": r[o] = v == 0 ? 0 : u.dividedReportingOverflow(by: v).partialValue
    case "Max": r[o] = Swift.max(u, v)
    case "Min": r[o] = Swift.min(u, v)
    default:
      guard v != 0 else { r[o] = 0; return }
      let m = u.remainderReportingOverflow(dividingBy: v).partialValue
      r[o] = fmod || m == 0 || (m < 0) == (v < 0) ? m : m &+ v
    }
  }
  return out
}

@inline(__always)
private func integerRows<G: BinaryMap>(_ shape: [Int], _ aShape: [Int], _ bShape: [Int], _ x: Elements<G.Element>,
                                       _ y: Elements<G.Element>, _ z: Elements<G.Element>, _ g: G) {
  withExtendedLifetime((x, y, z)) {
    guard let xp = x.baseAddress, let yp = y.baseAddress, let zp = z.baseAddress else { return }
    binaryRows(shape, aShape, bShape, xp, yp, zp, g)
  }
}

/// A bool tensor of `test` on every element of a floating-point tensor (IsNaN, IsInf).
func classify(_ c: KernelContext, _ x: NDArray, _ test: (Double) -> Bool) throws -> NDArray {
  guard x.dataType.isFloatingPoint else { throw c.fail("input is \(x.dataType), not a floating-point type") }
  var out = NDArray(uninitialized: .bool, x.shape)
  let z = out.mutableElements(UInt8.self)
  switch x.dataType {
  case .float:
    let e = x.elements(Float.self)
    for i in 0..<e.count { z[i] = test(Double(e[i])) ? 1 : 0 }
  case .double:
    let e = x.elements(Double.self)
    for i in 0..<e.count { z[i] = test(e[i]) ? 1 : 0 }
  case .float16, .bfloat16:
    let e = try x.converted(to: .double).elements(Double.self)
    for i in 0..<e.count { z[i] = test(e[i]) ? 1 : 0 }
  default:
    throw c.unsupported("\(x.dataType) inputs are not supported")
  }
  return out
}

enum Comparison {
  case equal, greater, less, greaterOrEqual, lessOrEqual
}

/// Equal, Greater, Less and their -OrEqual forms. Operands of one type compare in that type
/// (exact for 64-bit integers, no Double arrays made for the scalar tests exporters put before
/// every If); mixed types through Double.
func compare(_ c: KernelContext, _ a: NDArray, _ b: NDArray, _ op: Comparison) throws -> NDArray {
  guard let shape = broadcastShape(a.shape, b.shape) else { throw c.fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
  if shape != a.shape && shape != b.shape { try NDArray.checkAllocation(shape, .double, c) }
  var out = NDArray(uninitialized: .bool, shape)
  let z = out.mutableElements(UInt8.self)
  func typed<T: ElementType & Comparable>(_ x: NDArray, _ y: NDArray, _: T.Type) {
    let xe = x.elements(T.self), ye = y.elements(T.self)
    @inline(__always) func each(_ holds: (T, T) -> Bool) {
      forEachPair(shape, a.shape, b.shape) { o, i, j in z[o] = holds(xe[i], ye[j]) ? 1 : 0 }
    }
    switch op {
    case .equal: each(==)
    case .greater: each(>)
    case .less: each(<)
    case .greaterOrEqual: each(>=)
    case .lessOrEqual: each(<=)
    }
  }
  switch (a.dataType, b.dataType) {
  case (.float, .float): typed(a, b, Float.self)
  case (.int64, .int64): typed(a, b, Int64.self)
  case (.int32, .int32): typed(a, b, Int32.self)
  case (.double, .double): typed(a, b, Double.self)
  case (.uint8, .uint8), (.bool, .bool): typed(a, b, UInt8.self)
  default: typed(try a.converted(to: .double), try b.converted(to: .double), Double.self)
  }
  return out
}

/// Calls body(output index, index in a, index in b) for every element of a two-input broadcast.
@inline(__always)
func forEachPair(_ shape: [Int], _ a: [Int], _ b: [Int], _ body: (Int, Int, Int) -> Void) {
  broadcastRows(shape, [a, b]) { o, offs, st, n in
    var i = offs[0], j = offs[1]
    for k in 0..<n {
      body(o + k, i, j)
      i += st[0]
      j += st[1]
    }
  }
}

func equalStrings(_ c: KernelContext, _ a: NDArray, _ b: NDArray) throws -> NDArray {
  guard let shape = broadcastShape(a.shape, b.shape) else { throw c.fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
  if shape != a.shape && shape != b.shape { try NDArray.checkAllocation(shape, .double, c) }
  var out = NDArray(uninitialized: .bool, shape)
  let z = out.mutableElements(UInt8.self)
  forEachPair(shape, a.shape, b.shape) { o, i, j in z[o] = a.strings[i] == b.strings[j] ? 1 : 0 }
  return out
}

func logical(_ c: KernelContext, _ a: NDArray, _ b: NDArray, _ f: (Bool, Bool) -> Bool) throws -> NDArray {
  guard let shape = broadcastShape(a.shape, b.shape) else { throw c.fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
  if shape != a.shape && shape != b.shape { try NDArray.checkAllocation(shape, .double, c) }
  var out = NDArray(uninitialized: .bool, shape)
  let x = a.elements(UInt8.self), y = b.elements(UInt8.self), z = out.mutableElements(UInt8.self)
  forEachPair(shape, a.shape, b.shape) { o, i, j in z[o] = f(x[i] != 0, y[j] != 0) ? 1 : 0 }
  return out
}

/// Where(condition, x, y) for any element width, copying bytes.
func whereOp(_ c: KernelContext) throws -> NDArray {
  let cond = try c.input(0), x = try c.input(1), y = try c.input(2)
  guard x.dataType == y.dataType else { throw c.fail("x is \(x.dataType) but y is \(y.dataType)") }
  guard let shape = broadcastShape([cond.shape, x.shape, y.shape]) else {
    throw c.fail("shapes \(cond.shape), \(x.shape) and \(y.shape) do not broadcast")
  }
  try NDArray.checkAllocation(shape, x.dataType, c)
  var out = NDArray(uninitialized: x.dataType, shape)
  let width = (x.dataType.bitWidth ?? 8) / 8
  let ce = cond.elements(UInt8.self)
  let zv = out.mutableElements(UInt8.self)
  guard let xs = x.storage.base, let ys = y.storage.base, let zs = zv.baseAddress else {
    return out  // an empty result
  }
  withExtendedLifetime((x, y, zv)) {
  broadcastRows(shape, [cond.shape, x.shape, y.shape]) { o, offs, st, n in
    var i = offs[0], j = offs[1], k = offs[2]
    for e in 0..<n {
      let src = ce[i] != 0 ? xs + j * width : ys + k * width
      (UnsafeMutableRawPointer(zs) + (o + e) * width).copyMemory(from: src, byteCount: width)
      i += st[0]
      j += st[1]
      k += st[2]
    }
  }
  }
  return out
}

/// ONNX Runtime's com.microsoft activations: Gelu (erf), BiasGelu (Gelu of A + B), FastGelu
/// (the tanh approximation, with an optional bias), QuickGelu (x·σ(αx)) and BiasAdd (X + bias +
/// skip). Computed in Float for every float type, as ONNX Runtime's CPU kernels do.
extension Kernels {
  static let activationContrib: [String: Kernel] = [
    "Gelu": { c in [try floatMap(c, try c.input(0), bias: nil) { x in 0.5 * x * (1 + FastMath.scalar(x * Float(0.5.squareRoot()), FastMath.erf)) }] },
    "BiasGelu": { c in
      [try floatMap(c, try c.input(0), bias: try c.input(1)) { x in 0.5 * x * (1 + FastMath.scalar(x * Float(0.5.squareRoot()), FastMath.erf)) }]
    },
    "FastGelu": { c in
      // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the constants as ONNX Runtime writes them.
      let a: Float = 0.7978845608028654, b: Float = 0.035677408136300125
      return [try floatMap(c, try c.input(0), bias: c.optionalInput(1)) { x in 0.5 * x * (1 + Foundation.tanh(x * (a + b * x * x))) }]
    },
    "QuickGelu": { c in
      let alpha = c.float("alpha", 1.702)
      return [try floatMap(c, try c.input(0), bias: nil) { x in x / (1 + Foundation.exp(-alpha * x)) }]
    },
    "BiasAdd": { c in
      let x = try c.input(0), bias = try c.input(1), skip = try c.input(2)
      guard x.rank == 3, bias.shape == [x.shape[2]], skip.shape == x.shape else {
        throw c.fail("X \(x.shape), bias \(bias.shape) and skip \(skip.shape) must be [N, S, C], [C] and [N, S, C]")
      }
      let sum = try arithmetic(c, try x.converted(to: .float), try bias.converted(to: .float), op: "Add", +)
      let y = try arithmetic(c, sum, try skip.converted(to: .float), op: "Add", +)
      return [try y.converted(to: x.dataType)]
    },
  ]
}

/// f(x + bias) in Float over every element; `bias` (optional) is 1-D and runs along the last axis.
func floatMap(_ c: KernelContext, _ x0: NDArray, bias bias0: NDArray?, _ f: (Float) -> Float) throws -> NDArray {
  guard x0.dataType.isFloatingPoint else { throw c.fail("input is \(x0.dataType), not a float type") }
  let x = try x0.converted(to: .float)
  var bias: [Float]?
  if let bias0 {
    guard let last = x.shape.last, bias0.count == last else { throw c.fail("the bias \(bias0.shape) must have the input's last dimension \(x.shape)") }
    bias = try bias0.floats()
  }
  var out = NDArray(uninitialized: .float, x.shape)
  let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
  let width = bias?.count ?? 1
  for i in 0..<src.count { dst[i] = f(src[i] + (bias.map { $0[i % width] } ?? 0)) }
  return try out.converted(to: x0.dataType)
}

/// The activation ONNX Runtime's fused operators (FusedConv, FusedGemm) name in their
/// `activation` attribute, with its parameters in order (alpha, beta).
struct NamedActivation {
  let apply: (Float) -> Float

  init(_ c: KernelContext, name: String, parameters p: [Float]) throws {
    func parameter(_ i: Int, _ fallback: Float) -> Float { i < p.count ? p[i] : fallback }
    switch name {
    case "", "Identity": apply = { $0 }
    case "Relu": apply = { Swift.max($0, 0) }
    case "Tanh": apply = { Foundation.tanh($0) }
    case "Sigmoid": apply = { 1 / (1 + Foundation.exp(-$0)) }
    case "LeakyRelu": let a = parameter(0, 0.01); apply = { $0 < 0 ? a * $0 : $0 }
    case "HardSigmoid": let a = parameter(0, 0.2), b = parameter(1, 0.5); apply = { Swift.max(0, Swift.min(1, a * $0 + b)) }
    case "Clip": let lo = parameter(0, -.infinity), hi = parameter(1, .infinity); apply = { Swift.min(Swift.max($0, lo), hi) }
    case "HardSwish": apply = { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }
    default: throw c.unsupported("fused activation '\(name)' is not supported")
    }
  }

  /// The activation over a Float tensor, in place.
  func callAsFunction(_ x: inout NDArray) {
    let e = x.mutableElements(Float.self)
    for i in 0..<e.count { e[i] = apply(e[i]) }
  }
}
