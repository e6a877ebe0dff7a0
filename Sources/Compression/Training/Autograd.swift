import IR
import Runtime
import Support

/// What a gradient function sees of one node: its inputs and outputs from the forward pass, the
/// gradients arriving at its outputs, and which inputs want a gradient back.
struct GradientContext {
  let node: Node
  let inputs: [NDArray?]
  let outputs: [NDArray]
  let outputGradients: [NDArray?]
  /// needs[i]: input i leads back to a trainable weight (only differentiable inputs are asked).
  let needs: [Bool]
  let opset: Int64
  /// Runs forward kernels, so gradients compose from the same broadcasting, reshaping and
  /// reducing code the executor uses.
  let executor: Executor

  func input(_ i: Int) throws -> NDArray {
    guard i < inputs.count, let v = inputs[i] else { throw fail("input \(i) is required") }
    return v
  }

  func optionalInput(_ i: Int) -> NDArray? { i < inputs.count ? inputs[i] : nil }

  func needs(_ i: Int) -> Bool { i < needs.count && needs[i] }

  /// The gradient of output `i`, zeros when nothing downstream used it.
  func gradient(_ i: Int = 0) -> NDArray {
    if i < outputGradients.count, let g = outputGradients[i] { return g }
    return NDArray(zeros: .float, outputs[i].shape)
  }

  func int(_ name: String, _ fallback: Int) -> Int { node.attribute(name)?.int.map { Int(clamping: $0) } ?? fallback }
  func ints(_ name: String) -> [Int]? { node.attribute(name)?.ints.map { $0.map { Int(clamping: $0) } } }
  func float(_ name: String, _ fallback: Float) -> Float { node.attribute(name)?.float ?? fallback }

  func fail(_ message: String) -> CompressorError { .invalid("\(node.displayName): \(message)") }

  /// Runs the forward kernel of `op` on `inputs`.
  func apply(_ op: String, _ inputs: [NDArray?], _ attributes: [Attribute] = []) throws -> NDArray {
    let n = Node(name: node.name, opType: op, inputs: inputs.map { $0 == nil ? "" : "x" }, outputs: ["y"], attributes: attributes)
    guard let first = try executor.evaluate(n, inputs).first else { throw fail("\(op) produced no output") }
    return first
  }

  /// Sums a broadcast gradient back to the shape of the input it came from.
  func sumTo(_ g: NDArray, _ shape: [Int]) throws -> NDArray {
    if g.shape == shape { return g }
    let lead = g.rank - shape.count
    guard lead >= 0 else { throw fail("gradient \(g.shape) cannot be reduced to \(shape)") }
    var axes = [Int64](), kept = [Int]()
    for (i, d) in g.shape.enumerated() {
      if i < lead { axes.append(Int64(i)); continue }
      if shape[i - lead] == 1 && d != 1 { axes.append(Int64(i)) }
      kept.append(shape[i - lead])
    }
    if axes.isEmpty { return g.reshaped(shape) }
    // Axes as the input (opset 13 on) and as the attribute (before 13), whichever the model's opset reads.
    let summed = try apply("ReduceSum", [g, NDArray(axes, shape: [axes.count])],
                           [Attribute(name: "keepdims", value: .int(1)), Attribute(name: "axes", value: .ints(axes))])
    guard summed.count == kept.reduce(1, *) else { throw fail("gradient \(g.shape) cannot be reduced to \(shape)") }
    return summed.reshaped(shape)
  }
}

/// How one op differentiates: which inputs can carry a gradient, and the function giving them.
struct GradientRule {
  /// Inputs a gradient flows into (nil: every input).
  var differentiable: [Int]?
  var function: (GradientContext) throws -> [NDArray?]

  init(_ differentiable: [Int]?, _ function: @escaping (GradientContext) throws -> [NDArray?]) {
    self.differentiable = differentiable
    self.function = function
  }

  func isDifferentiable(_ input: Int) -> Bool { differentiable?.contains(input) ?? true }
}

/// Op type → gradient rule. Each file in Training/Gradients contributes one op family.
public enum Gradients {
  static let rules: [String: GradientRule] = {
    var all = [String: GradientRule]()
    for family in [matrix, convolution, elementwise, activations, normalization, pooling, shapeOps, softmax,
                   reduction, quantization] {
      all.merge(family) { a, _ in a }
    }
    return all
  }()

  static func rule(for node: Node) -> GradientRule? { node.isDefaultDomain ? rules[node.opType] : nil }

  /// The default-domain operators the training engine differentiates (distillation, training).
  public static var differentiableOperators: Set<String> { Set(rules.keys) }
}

// MARK: - Float helpers shared by the gradient files

extension NDArray {
  /// A float tensor of `shape` whose elements `body` writes (uninitialized before).
  static func filled(_ shape: [Int], _ body: (UnsafeMutablePointer<Float>, Int) -> Void) -> NDArray {
    var out = NDArray(uninitialized: .float, shape)
    let e = out.mutableElements(Float.self)
    e.withPointer { p in if let p { body(p, e.count) } }
    return out
  }

  /// Elements as a read-only pointer for the duration of `body` (empty tensors get a dummy).
  func withFloats<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
    let e = elements(Float.self)
    return try e.withPointer { p in
      if let p { return try body(p) }
      var dummy: Float = 0
      return try body(&dummy)
    }
  }

  /// The element-wise map f(a, b) of two same-shaped float tensors.
  static func zipMap(_ a: NDArray, _ b: NDArray, _ f: (Float, Float) -> Float) -> NDArray {
    filled(a.shape) { out, n in
      a.withFloats { pa in b.withFloats { pb in for i in 0..<n { out[i] = f(pa[i], pb[i]) } } }
    }
  }

  /// self += other, element-wise (same shape).
  mutating func add(_ other: NDArray) {
    let e = mutableElements(Float.self)
    other.withFloats { po in e.withPointer { p in if let p { for i in 0..<e.count { p[i] += po[i] } } } }
  }

  /// f applied to every element of a float tensor.
  func mapFloats(_ f: (Float) -> Float) -> NDArray {
    NDArray.filled(shape) { out, n in withFloats { p in for i in 0..<n { out[i] = f(p[i]) } } }
  }

  /// The same tensor as float32 (gradients are float whatever the forward type).
  func asFloat() throws -> NDArray { dataType == .float ? self : try converted(to: .float) }
}
