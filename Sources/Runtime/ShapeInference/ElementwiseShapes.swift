import IR

/// Element-wise operators: the output has the broadcast shape of the inputs. Arithmetic on small
/// integer tensors is tracked (sizes computed from Shape), comparisons are decided where bounds
/// or equality settle them, so that masks and Where in shape computations stay known.
extension ShapeRules {
  /// Operators whose output has the input's type and shape; a new one needs only its name here.
  static let unary = [
    "Relu", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Sigmoid", "Tanh", "Erf", "Floor", "Ceil", "Round",
    "Sign", "Softplus", "Softsign", "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "Gelu", "Clip",
    "ThresholdedRelu", "Mish", "Shrink", "Not", "Swish",
  ]

  /// An operator whose output has its first input's type and shape.
  static func sameAsInput(_ c: ShapeContext) -> [InferredTensor] { [InferredTensor(type: c.type(0), shape: c.shape(0))] }

  /// ONNX Runtime's activations: Gelu, FastGelu and QuickGelu keep the input's shape; BiasGelu
  /// broadcasts its bias; BiasAdd (X + bias + skip) keeps X's [N, S, C].
  static let activationContrib: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in ["Gelu", "FastGelu", "QuickGelu"] { r[op] = sameAsInput }
    r["BiasGelu"] = { c in [InferredTensor(type: c.type(0), shape: try c.broadcast([c.shape(0), c.shape(1)]))] }
    r["BiasAdd"] = { c in
      guard let x = c.shape(0) else { return [InferredTensor(type: c.type(0), shape: c.shape(2))] }
      guard x.count == 3 else { throw c.fail("X has rank \(x.count), not 3") }
      guard let skip = c.shape(2) else { return [InferredTensor(type: c.type(0), shape: x)] }
      guard skip.count == 3 else { throw c.fail("skip has rank \(skip.count), not 3") }
      return [InferredTensor(type: c.type(0), shape: try (0..<3).map { try c.same(x[$0], skip[$0], "dimension \($0) of X and skip") })]
    }
    return r
  }()

  static let elementwise: [String: ShapeRule] = {
    var r = [String: ShapeRule]()
    for op in unary {
      r[op] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0), elements: try unaryElements(c, op))] }
    }
    for op in ["IsNaN", "IsInf"] {
      r[op] = { c in [InferredTensor(type: .bool, shape: c.shape(0))] }
    }
    // Swish(A) · B of one shape.
    r["SwiGLU"] = sameAsInput
    let arithmetic: [(String, (ShapeContext, DimExpr, DimExpr) throws -> DimExpr?)] = [
      ("Add", { _, a, b in try a + b }), ("Sub", { _, a, b in try a - b }), ("Mul", { _, a, b in try a * b }),
      ("Div", { c, a, b in try divide(c, a, b) }), ("Mod", { c, a, b in try modulo(c, a, b) }),
      ("Pow", { _, a, b in
        guard let e = b.constant, e >= 0, e <= 8 else { return nil }
        var p: DimExpr = 1
        for _ in 0..<e { p = try p * a }
        return p
      }),
    ]
    for (op, f) in arithmetic {
      r[op] = { c in
        let shape = c.opset < 7 ? c.shape(0) : try c.broadcast([c.shape(0), c.shape(1)])
        let values = try c.mapElements([0, 1]) { try f(c, $0[0], $0[1]) }
        return [InferredTensor(type: c.type(0) ?? c.type(1), shape: shape, elements: values?.elements)]
      }
    }
    r["PRelu"] = { c in [InferredTensor(type: c.type(0), shape: c.shape(0))] }
    let comparisons: [(String, (DimExpr, DimExpr) throws -> Bool?)] = [
      ("Equal", { a, b in
        if a == b { return true }
        let d = try (a - b).bounds
        return d.lowerBound > 0 || d.upperBound < 0 ? false : nil
      }),
      ("Greater", { a, b in try decide(a, b, true: { $0.lowerBound > 0 }, false: { $0.upperBound <= 0 }) }),
      ("Less", { a, b in try decide(a, b, true: { $0.upperBound < 0 }, false: { $0.lowerBound >= 0 }) }),
      ("GreaterOrEqual", { a, b in try decide(a, b, true: { $0.lowerBound >= 0 }, false: { $0.upperBound < 0 }) }),
      ("LessOrEqual", { a, b in try decide(a, b, true: { $0.upperBound <= 0 }, false: { $0.lowerBound > 0 }) }),
      ("And", { a, b in truth(a).flatMap { x in truth(b).map { x && $0 } } }),
      ("Or", { a, b in truth(a).flatMap { x in truth(b).map { x || $0 } } }),
      ("Xor", { a, b in truth(a).flatMap { x in truth(b).map { x != $0 } } }),
    ]
    for (op, f) in comparisons {
      r[op] = { c in
        let values = try c.mapElements([0, 1]) { try f($0[0], $0[1]).map { DimExpr($0 ? 1 : 0) } }
        return [InferredTensor(type: .bool, shape: try c.broadcast([c.shape(0), c.shape(1)]), elements: values?.elements)]
      }
    }
    let variadic: [(String, ([DimExpr]) throws -> DimExpr?)] = [
      ("Max", { try DimExpr.max($0) }), ("Min", { try DimExpr.min($0) }),
      ("Sum", { try $0.dropFirst().reduce($0[0]) { try $0 + $1 } }), ("Mean", { _ in nil }),
    ]
    for (op, f) in variadic {
      r[op] = { c in
        let all = Array(0..<c.inputCount)
        let shape = c.opset < 8 && op != "Max" && op != "Min" ? c.shape(0) : try c.broadcast(all.map { c.shape($0) })
        let values = try c.mapElements(all) { try f($0) }
        return [InferredTensor(type: all.lazy.compactMap { c.type($0) }.first, shape: shape, elements: values?.elements)]
      }
    }
    r["Where"] = { c in
      let values = c.mapElements([0, 1, 2]) { v in truth(v[0]).map { $0 ? v[1] : v[2] } }
      return [InferredTensor(type: c.type(1) ?? c.type(2), shape: try c.broadcast([c.shape(0), c.shape(1), c.shape(2)]),
                             elements: values?.elements)]
    }
    return r
  }()
}

/// Values of unary operators on integer-valued elements, where the result is an integer too.
private func unaryElements(_ c: ShapeContext, _ op: String) throws -> [DimExpr?]? {
  guard let e = c.elements(0) else { return nil }
  func each(_ f: (DimExpr) throws -> DimExpr?) rethrows -> [DimExpr?] { try e.map { try $0.flatMap(f) } }
  switch op {
  case "Neg": return try each { try -$0 }
  case "Abs":
    return try each { x in
      let b = x.bounds
      return b.lowerBound >= 0 ? x : (b.upperBound <= 0 ? try -x : nil)
    }
  case "Floor", "Ceil", "Round": return e
  case "Relu": return try each { try DimExpr.max($0, 0) }
  case "Sign":
    return each { x in
      let b = x.bounds
      return b.lowerBound > 0 ? 1 : (b.upperBound < 0 ? -1 : (x.constant == 0 ? 0 : nil))
    }
  case "Not": return each { truth($0).map { DimExpr($0 ? 0 : 1) } }
  case "Clip":
    guard c.type(0).map({ !$0.isFloatingPoint }) ?? false else { return nil }
    let lo = c.opset < 11 ? nil : c.inputInts(1)?.first, hi = c.opset < 11 ? nil : c.inputInts(2)?.first
    if c.opset >= 11 && ((c.has(1) && lo == nil) || (c.has(2) && hi == nil)) { return nil }
    return try each { x in
      var y = x
      if let lo { y = try DimExpr.max(y, DimExpr(lo)) }
      if let hi { y = try DimExpr.min(y, DimExpr(hi)) }
      return y
    }
  default: return nil
  }
}

/// Integer division truncates toward zero (as ONNX Runtime's kernels do); on values that are
/// never negative that is floor division. Float tensors carrying integers divide exactly or not
/// at all.
private func divide(_ c: ShapeContext, _ a: DimExpr, _ b: DimExpr) throws -> DimExpr? {
  if let x = a.constant, let y = b.constant {
    guard y != 0 else { return nil }
    if c.type(0)?.isFloatingPoint ?? false { return x % y == 0 ? DimExpr(x / y) : nil }
    return x == Int.min && y == -1 ? nil : DimExpr(x / y)
  }
  guard b.bounds.lowerBound >= 1 else { return nil }
  let q = try DimExpr.floorDiv(a, b)
  if c.type(0)?.isFloatingPoint ?? false { return try q * b == a ? q : nil }
  return a.bounds.lowerBound >= 0 ? q : nil
}

private func modulo(_ c: ShapeContext, _ a: DimExpr, _ b: DimExpr) throws -> DimExpr? {
  if c.type(0)?.isFloatingPoint ?? false { return nil }
  if let x = a.constant, let y = b.constant, y != 0 {
    let r = x % y
    return DimExpr(c.int("fmod", 0) == 0 && r != 0 && (r < 0) != (y < 0) ? r + y : r)
  }
  guard a.bounds.lowerBound >= 0, b.bounds.lowerBound >= 1 else { return nil }
  return try DimExpr.mod(a, b)
}

/// A comparison of a and b that the bounds of a − b settle, else nil.
private func decide(_ a: DimExpr, _ b: DimExpr, true isTrue: (ClosedRange<Int>) -> Bool,
                    false isFalse: (ClosedRange<Int>) -> Bool) throws -> Bool? {
  let d = a == b ? 0...0 : try (a - b).bounds
  return isTrue(d) ? true : (isFalse(d) ? false : nil)
}

/// A boolean element's value, when known (any size is non-zero: sizes are at least 1).
func truth(_ x: DimExpr) -> Bool? {
  if let k = x.constant { return k != 0 }
  let b = x.bounds
  return b.lowerBound > 0 || b.upperBound < 0 ? true : nil
}
