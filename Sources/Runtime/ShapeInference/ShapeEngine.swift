import IR
import Linalg
import Support

/// What static inference knows about one value: its element type, its shape (each dimension an
/// expression, or nil when nothing is known about it; the whole shape nil when even the rank is
/// unknown), and for small tensors the values themselves — `elements` as expressions (the
/// `Shape → Gather → Concat → Reshape` arithmetic of exported models) and `constant` when the
/// value follows from initializers and Constant nodes alone.
public struct InferredTensor: Sendable {
  public var type: DataType?
  public var shape: [DimExpr?]?
  /// Every element, row-major, for integer-valued tensors of at most `ShapeEngine.elementLimit`
  /// elements; an element is nil when it is not known.
  public var elements: [DimExpr?]?
  /// The value, when it is computable from constants and small (`ShapeEngine.foldLimit`).
  public var constant: NDArray?
  /// What a sequence or an optional holds, for the sequence and optional rules. Such a value has
  /// no type or shape of its own: every other rule sees it as unknown.
  var container: InferredContainer?

  public init(type: DataType?, shape: [DimExpr?]?, elements: [DimExpr?]? = nil) {
    self.type = type; self.shape = shape; self.elements = elements
  }

  /// A known value: its type and shape, and its elements when it is small and integer-valued.
  init(constant value: NDArray) {
    type = value.dataType
    shape = value.shape.map { DimExpr($0) }
    constant = value
    elements = Self.elements(of: value)
  }

  public static let unknown = InferredTensor(type: nil, shape: nil)

  /// A sequence value.
  static func sequence(_ s: InferredSequence) -> InferredTensor {
    var v = InferredTensor.unknown
    v.container = .sequence(s)
    return v
  }

  /// An optional value; `content` nil when it is known to be empty.
  static func optional(_ content: InferredTensor?) -> InferredTensor {
    var v = InferredTensor.unknown
    v.container = .optional(content)
    return v
  }

  /// The type and shape alone (no values, no container).
  var typeAndShape: InferredTensor { InferredTensor(type: type, shape: shape) }

  /// Gives a value whose every element is a known number its `constant`, so that the kernels of
  /// the nodes after it can fold it (`ConstantOfShape(Sub(Size(Shape(x)), 1))`).
  mutating func materialize() {
    guard constant == nil, let type, type != .string, let dims = constantShape, let e = elements, e.count == numberOfElements(dims) else { return }
    var values = [Int]()
    for x in e {
      guard let k = x?.constant else { return }
      values.append(k)
    }
    // int64 directly: through Double, values past 2⁵³ (INT64_MAX sentinels) would change.
    constant = type == .int64 ? NDArray(values.map { Int64($0) }, shape: dims)
                              : try? NDArray(doubles: values.map(Double.init), as: type, shape: dims)
  }

  public var rank: Int? { shape?.count }

  /// The number of elements, when every dimension is known.
  public var elementCount: DimExpr? {
    guard let shape else { return nil }
    var n: DimExpr = 1
    for d in shape {
      guard let d, let p = try? n * d else { return nil }
      n = p
    }
    return n
  }

  /// The shape when every dimension is a number.
  public var constantShape: [Int]? {
    guard let shape else { return nil }
    var dims = [Int]()
    for d in shape {
      guard let k = d?.constant else { return nil }
      dims.append(k)
    }
    return dims
  }

  static func elements(of value: NDArray) -> [DimExpr?]? {
    guard value.count <= ShapeEngine.elementLimit else { return nil }
    if value.dataType.isFloatingPoint {
      let f = value.dataType == .double ? Array(value.elements(Double.self)) : ((try? value.floats()) ?? []).map(Double.init)
      guard f.count == value.count, f.allSatisfy({ $0.rounded() == $0 && abs($0) < 1e15 }) else { return nil }
      return f.map { DimExpr(Int($0)) }
    }
    guard let ints = try? value.integers() else { return nil }
    return ints.map { DimExpr($0) }
  }
}

/// A value that is not a tensor: a sequence, or an optional (`InferredTensor.container`).
indirect enum InferredContainer: Sendable {
  case sequence(InferredSequence)
  /// An optional holding this value; nil when it is known to be empty.
  case optional(InferredTensor?)
  /// An optional that holds this value or nothing (a declared optional input: a feed decides).
  case maybe(InferredTensor)
}

/// What static inference knows about a sequence of tensors: each tensor when their number is
/// known, and always what holds of every one of them.
struct InferredSequence: Sendable {
  /// The tensors in order (type and shape, values when small), when their number is known.
  var tensors: [InferredTensor]?
  /// What holds of every tensor: the element type, and the dimensions on which all of them agree
  /// (nil where they differ or are unknown). Of an empty sequence, only the element type.
  var element: InferredTensor
  /// The number of tensors; nil when unknown.
  var length: DimExpr?

  /// A sequence of exactly these tensors.
  init(_ tensors: [InferredTensor], elementType: DataType?) {
    self.tensors = tensors
    var common = tensors.first.map(\.typeAndShape) ?? InferredTensor(type: elementType, shape: nil)
    for t in tensors.dropFirst() { common = Self.common(common, t) }
    if common.type == nil { common.type = elementType }
    element = common
    length = DimExpr(tensors.count)
  }

  /// A sequence of `length` tensors (nil: unknown) of which only `element` is known.
  init(element: InferredTensor, length: DimExpr?) {
    tensors = nil
    self.element = element.typeAndShape
    self.length = length
  }

  /// What holds of both tensors: the type, and the dimensions on which they agree.
  static func common(_ a: InferredTensor, _ b: InferredTensor) -> InferredTensor {
    var out = InferredTensor(type: a.type ?? b.type, shape: nil)
    if let s = a.shape, let t = b.shape, s.count == t.count { out.shape = zip(s, t).map { $0 == $1 ? $0 : nil } }
    return out
  }
}

/// Everything a shape rule sees of the node it describes: the node, the opset of its domain,
/// and what is known about each input.
struct ShapeContext {
  let node: Node
  /// The version of the node's domain in the model's opset imports.
  let opset: Int64
  /// Inputs in node order; nil for an omitted optional input ("").
  let inputs: [InferredTensor?]
  let engine: ShapeEngine
  let scope: ShapeScope

  var inputCount: Int { inputs.count }

  /// The most dimensions a shape made from a value's length may have: a declared length past it
  /// is not trusted with an allocation.
  static let rankLimit = 256

  /// `count` unknown dimensions, when count is a plausible rank.
  func unknownDims(_ count: Int?) -> [DimExpr?]? {
    guard let count, count >= 0, count <= Self.rankLimit else { return nil }
    return Array(repeating: nil, count: count)
  }

  /// The length of a 1-D input, when known.
  func length(_ i: Int) -> Int? { shape(i).flatMap { $0.count == 1 ? $0[0]?.constant : nil } }
  func has(_ i: Int) -> Bool { i < inputs.count && inputs[i] != nil }
  func input(_ i: Int) -> InferredTensor { (i < inputs.count ? inputs[i] : nil) ?? .unknown }
  func shape(_ i: Int) -> [DimExpr?]? { input(i).shape }
  func rank(_ i: Int) -> Int? { input(i).rank }
  func type(_ i: Int) -> DataType? { input(i).type }
  func elements(_ i: Int) -> [DimExpr?]? { input(i).elements }
  /// Input `i` as a sequence, when it is known to be one.
  func sequence(_ i: Int) -> InferredSequence? {
    if case .sequence(let s)? = input(i).container { return s }
    return nil
  }

  /// The input's elements when every one is a known number.
  func inputInts(_ i: Int) -> [Int]? {
    guard let e = elements(i) else { return nil }
    var out = [Int]()
    for x in e {
      guard let k = x?.constant else { return nil }
      out.append(k)
    }
    return out
  }

  /// The input's value as doubles, when it is a known constant.
  func inputFloats(_ i: Int) -> [Double]? {
    if let c = input(i).constant, let f = try? c.floats() { return f.map(Double.init) }
    return inputInts(i)?.map(Double.init)
  }

  func int(_ name: String, _ fallback: Int) -> Int { node.attribute(name)?.int.map { Int(clamping: $0) } ?? fallback }
  func ints(_ name: String) -> [Int]? { node.attribute(name)?.ints.map { $0.map { Int(clamping: $0) } } }
  func float(_ name: String, _ fallback: Float) -> Float { node.attribute(name)?.float ?? fallback }
  func string(_ name: String, _ fallback: String) -> String { node.attribute(name)?.string ?? fallback }

  /// An element type attribute (`to`, `dtype`, `output_dtype`, …): a code without a layout is
  /// an error naming the node, before any kernel sees it.
  func dataType(_ name: String, _ fallback: DataType) throws -> DataType {
    guard let code = node.attribute(name)?.int else { return fallback }
    guard let raw = Int32(exactly: code), DataType(rawValue: raw).isKnown else { throw fail("\(name) = \(code) is not an element type") }
    return DataType(rawValue: raw)
  }

  func graph(_ name: String) throws -> Graph {
    guard case .graph(let g)? = node.attribute(name)?.value else { throw fail("attribute '\(name)' (a graph) is missing") }
    return g
  }

  /// An error naming this node: "node 'x' (Op): message" (exit 65).
  func fail(_ message: String) -> CompressorError { .invalid("\(node.displayName): \(message)") }

  /// Normalizes a possibly negative axis for a tensor of `rank`.
  func axis(_ a: Int, rank: Int) throws -> Int {
    let r = a < 0 ? a + rank : a
    guard r >= 0 && r < Swift.max(rank, 1) else { throw fail("axis \(a) is out of range for rank \(rank)") }
    return r
  }

  /// A new symbol for a size only the data decides (`nonzero_1`, `topk_2`).
  func fresh(_ hint: String) -> DimExpr { engine.freshSymbol(hint) }

  /// Two dimensions the operator requires to be equal. Known numbers that differ are an error;
  /// otherwise the simpler expression stands for both (they are equal whenever the model runs).
  func same(_ a: DimExpr?, _ b: DimExpr?, _ what: @autoclosure () -> String) throws -> DimExpr? {
    guard let a else { return b }
    guard let b else { return a }
    if a == b { return a }
    if let x = a.constant, let y = b.constant, x != y { throw fail("\(what()): \(x) and \(y) differ") }
    if a.isConstant { return a }
    if b.isConstant { return b }
    return b.complexity < a.complexity ? b : a
  }

  /// The multidirectional (numpy) broadcast of `shapes`; nil when a rank is unknown.
  ///
  /// Equal dimensions stay; 1 gives way to the other; a number n against an expression gives n
  /// (the expression must be 1 or n); two different expressions are taken to be equal, as ONNX
  /// Runtime assumes, and the simpler stands for both — should one of them be 1 when the model
  /// runs, the other is the size and the inferred one may be wrong. An unknown dimension against
  /// anything but 1 gives that thing.
  func broadcast(_ shapes: [[DimExpr?]?]) throws -> [DimExpr?]? {
    var out = [DimExpr?]()
    for s in shapes {
      guard let s else { return nil }
      if s.count > out.count { out = Array(repeating: DimExpr(1), count: s.count - out.count) + out }
      let offset = out.count - s.count
      for (i, d) in s.enumerated() {
        out[offset + i] = try broadcastDim(out[offset + i], d)
      }
    }
    return out
  }

  private func broadcastDim(_ a: DimExpr?, _ b: DimExpr?) throws -> DimExpr? {
    if a?.constant == 1 { return b }
    if b?.constant == 1 { return a }
    guard let a else { return b }
    guard let b else { return a }
    if a == b { return a }
    if let x = a.constant, let y = b.constant { throw fail("dimensions \(x) and \(y) do not broadcast") }
    if a.isConstant { return a }
    if b.isConstant { return b }
    return b.complexity < a.complexity ? b : a
  }

  /// Infers a subgraph of this node with `inputs` bound to its inputs by position, seeing this
  /// node's scope; returns what is known of its outputs.
  func inferSubgraph(_ g: Graph, inputs: [InferredTensor]) throws -> [InferredTensor] {
    try engine.inferSubgraph(g, outer: scope, inputs: inputs)
  }

  /// Applies `f` to every output element of a broadcast between small inputs of known shape,
  /// for value tracking; nil when an input's elements or shape are unknown, or f gives nil.
  func mapElements(_ indices: [Int], _ f: ([DimExpr]) throws -> DimExpr?) rethrows -> (shape: [Int], elements: [DimExpr?])? {
    var shapes = [[Int]](), values = [[DimExpr?]]()
    for i in indices {
      guard let s = input(i).constantShape, let e = elements(i), e.count == numberOfElements(s) else { return nil }
      shapes.append(s)
      values.append(e)
    }
    guard let out = broadcastShape(shapes), let total = numberOfElements(out), total <= ShapeEngine.elementLimit else { return nil }
    let outStrides = strides(out)
    let inStrides = shapes.map { s -> [Int] in
      let st = strides(s)
      return (0..<out.count).map { d in
        let k = d - (out.count - s.count)
        return k >= 0 && s[k] != 1 ? st[k] : 0
      }
    }
    var result = [DimExpr?]()
    for o in 0..<total {
      var args = [DimExpr]()
      for (k, v) in values.enumerated() {
        var rest = o, at = 0
        for d in 0..<out.count {
          at += rest / outStrides[d] * inStrides[k][d]
          rest %= outStrides[d]
        }
        guard let x = v[at] else { break }
        args.append(x)
      }
      result.append(args.count == values.count ? try f(args) : nil)
    }
    return (out, result)
  }
}

typealias ShapeRule = (ShapeContext) throws -> [InferredTensor]

/// The number of elements of a shape of numbers; nil when it overflows or a size is negative.
public func numberOfElements(_ dims: [Int]) -> Int? {
  var n = 1
  for d in dims {
    guard d >= 0 else { return nil }
    let (p, o) = n.multipliedReportingOverflow(by: d)
    if o { return nil }
    n = p
  }
  return n
}

/// Op type → shape rule, per domain, as `Kernels` registers the kernels; each file in
/// ShapeInference/ contributes one op family, named after the kernel file of the same family
/// (ElementwiseShapes.swift for Elementwise.swift), its other domains' rules beside the default
/// domain's (`normalizationContrib` next to `normalization`).
///
/// Adding a rule for a new operator: in the family's file, add an entry
/// `r["OpType"] = { c in … }` whose closure returns one `InferredTensor` per output (fewer
/// means the rest are unknown). Read inputs with `c.shape(i)`, `c.type(i)`, `c.elements(i)`
/// (values of small integer tensors) and attributes with `c.int`, `c.ints`, `c.string`, mind
/// `c.opset` where attributes became inputs, compute dimensions with `DimExpr` arithmetic
/// (`+ - *`, `floorDiv`, `ceilDiv`, `min`, `max`: they throw rather than overflow), combine
/// dimensions that must agree with `c.same` or `c.broadcast`, name sizes only the data decides
/// with `c.fresh("opname")`, and throw `c.fail(…)` for a model that cannot run. Element-wise
/// unary operators need only their name in `ElementwiseShapes.unary`. Constant inputs are folded
/// by the op's kernel after the rule, so a rule needs value tracking only for symbolic values.
/// `ShapeInferenceTests.testEveryKernelHasAShapeRule` fails for a kernel without a rule.
enum ShapeRules {
  static let standard: [String: ShapeRule] = {
    var all = [String: ShapeRule]()
    for family in [elementwise, matrix, convolution, normalization, pooling, reduction, shapeOps, controlFlow,
                   quantization, softmax, resize, indexing, quantizedMatrix, recurrent, einsum, trigonometric, bitwise,
                   selection, signal, random, detection, sampling, patches, loss, attention, text, sequences] {
      all.merge(family) { a, _ in a }
    }
    return all
  }()

  /// The com.microsoft operators (ONNX Runtime's contrib operators), in the families of their
  /// kernels. Some share a name with a default-domain operator of another layout (Attention,
  /// RotaryEmbedding): the node's domain picks the rule.
  static let microsoft: [String: ShapeRule] = {
    var all = [String: ShapeRule]()
    for family in [quantizedMatrixContrib, activationContrib, normalizationContrib, matrixContrib, convolutionContrib,
                   quantizedContrib, quantizationContrib, attentionContrib, recurrentContrib] {
      all.merge(family) { a, _ in a }
    }
    return all
  }()

  /// The ai.onnx.preview.training operators.
  static let training: [String: ShapeRule] = trainingOptimizers.merging(gradient) { a, _ in a }

  static func rule(domain: String, opType: String) -> ShapeRule? {
    if domain.isEmpty || domain == "ai.onnx" { return standard[opType] }
    if domain == "com.microsoft" { return microsoft[opType] }
    if domain == "ai.onnx.preview.training" { return training[opType] }
    return nil
  }

  /// Op types with a rule, sorted; operators of other domains carry their domain
  /// ("com.microsoft.X"), as `Kernels.supportedOps` names them.
  static var coveredOps: [String] {
    standard.keys.sorted() + microsoft.keys.sorted().map { "com.microsoft.\($0)" }
      + training.keys.sorted().map { "ai.onnx.preview.training.\($0)" }
  }
}

/// Values visible while a graph is inferred: its own, then those of the graphs around it.
final class ShapeScope {
  var values: [String: InferredTensor] = [:]
  let parent: ShapeScope?
  init(parent: ShapeScope?) { self.parent = parent }

  func lookup(_ name: String) -> InferredTensor? {
    var s: ShapeScope? = self
    while let scope = s {
      if let v = scope.values[name] { return v }
      s = scope.parent
    }
    return nil
  }
}

/// Walks a graph in the executor's order, applying each node's rule, folding constant inputs
/// with the node's kernel, and tracking which values are alive (the executor's last-use order) to
/// estimate peak activation memory. Subgraphs (If/Loop/Scan bodies) are inferred by their
/// node's rule through `ShapeContext.inferSubgraph`.
final class ShapeEngine {
  /// The most elements whose values are tracked (shape arithmetic is small).
  static let elementLimit = 1024
  /// The most elements an output computed from constants may have to be folded.
  static let foldLimit = 1 << 16

  let model: Model
  private let opsets: [String: Int64]
  /// Runs kernels on constant inputs (and provides the executor's schedule); owns no model.
  private let folder: Executor
  /// Symbols in use, so that fresh ones never collide.
  private var taken: Set<String>
  private var counters: [String: Int] = [:]
  /// The largest activation memory a subgraph of the current node needed, as its rule inferred it.
  private var subgraphPeak: DimExpr?

  init(model: Model, takenSymbols: Set<String>) throws {
    self.model = model
    var opsets = [String: Int64]()
    for o in model.opsetImports { opsets[o.isDefaultDomain ? "" : o.domain] = o.version }
    self.opsets = opsets
    taken = takenSymbols
    folder = try Executor(model: Model(irVersion: model.irVersion, opsetImports: model.opsetImports, graph: Graph()),
                          threads: Linalg.threads)
  }

  func freshSymbol(_ hint: String) -> DimExpr {
    while true {
      let n = counters[hint, default: 0] + 1
      counters[hint] = n
      let name = "\(hint)_\(n)"
      if taken.insert(name).inserted { return .symbol(name) }
    }
  }

  /// What a graph computes and the activation memory it needs at most.
  struct GraphResult {
    var outputs: [InferredTensor]
    /// Bytes of values produced in this graph alive at once, at most (subgraphs included).
    var peakCandidates: [DimExpr]
    /// Whether some value's size is unknown (so the peak is a lower bound).
    var incomplete: Bool
  }

  /// Infers `g`; `inputs` bind its inputs by position (missing ones use the declared type);
  /// `visit` sees every node in order with its inputs and outputs.
  func infer(_ g: Graph, outer: ShapeScope?, inputs: [InferredTensor],
             visit: ((Node, [InferredTensor?], [InferredTensor]) -> Void)? = nil) throws -> GraphResult {
    let scope = ShapeScope(parent: outer)
    for (i, input) in g.inputs.enumerated() {
      scope.values[input.name] = i < inputs.count ? inputs[i] : Self.declared(input)
    }
    for t in g.initializers { scope.values[t.name] = Self.initializer(t) }
    for s in g.sparseInitializers {
      scope.values[s.values.name] = InferredTensor(type: s.values.dataType, shape: s.dims.map { DimExpr(Int(clamping: $0)) })
    }
    var declared = [String: ValueInfo]()
    for v in g.valueInfo + g.outputs { declared[v.name] = v }

    let order = try folder.topologicalOrder(g)
    let lastUse = folder.lastUses(g, order: order)
    let graphOutputs = Set(g.outputs.map(\.name))
    var live: DimExpr = 0
    var liveSizes = [String: DimExpr]()
    var candidates = [DimExpr]()
    var incomplete = false

    for (step, n) in order.enumerated() {
      let node = g.nodes[n]
      var ins = [InferredTensor?]()
      for name in node.inputs {
        if name.isEmpty { ins.append(nil); continue }
        guard let v = scope.lookup(name) else {
          throw CompressorError.invalid("\(node.displayName): input '\(name)' is not produced by any node, initializer or graph input")
        }
        ins.append(v)
      }
      let saved = subgraphPeak
      subgraphPeak = nil
      var outs = try apply(node, ins, scope: scope, declared: declared)
      let inner = subgraphPeak
      subgraphPeak = saved
      for i in outs.indices { outs[i].materialize() }
      fold(node, ins, &outs)
      while outs.count < node.outputs.count { outs.append(.unknown) }
      if let visit, outer == nil { visit(node, ins, outs) }

      // Sizes too large to add up leave the estimate incomplete rather than failing inference.
      if let inner {
        if let c = try? live + inner { candidates.append(c) } else { incomplete = true }
      }
      for (name, value) in zip(node.outputs, outs) where !name.isEmpty {
        scope.values[name] = value
        if liveSizes[name] == nil {
          if let bytes = Self.bytes(value), let sum = try? live + bytes {
            liveSizes[name] = bytes
            live = sum
          } else {
            incomplete = true
          }
        }
      }
      candidates.append(live)
      for name in lastUse[step] where !graphOutputs.contains(name) {
        if let bytes = liveSizes.removeValue(forKey: name), let rest = try? live - bytes { live = rest }
      }
    }
    let outputs = g.outputs.map { scope.lookup($0.name) ?? Self.declared($0) }
    return GraphResult(outputs: outputs, peakCandidates: candidates, incomplete: incomplete)
  }

  func inferSubgraph(_ g: Graph, outer: ShapeScope, inputs: [InferredTensor]) throws -> [InferredTensor] {
    let r = try infer(g, outer: outer, inputs: inputs)
    if let peak = Self.peak(r.peakCandidates) {
      subgraphPeak = subgraphPeak.map { (try? DimExpr.max($0, peak)) ?? $0 } ?? peak
    }
    return r.outputs
  }

  /// The largest of `candidates`, dropping those another is known to be at least as large as;
  /// nil when the sizes are too large to compare.
  static func peak(_ candidates: [DimExpr]) -> DimExpr? {
    var kept = [DimExpr]()
    var largestConstant = 0
    for c in candidates {
      if let k = c.constant { largestConstant = max(largestConstant, k); continue }
      if kept.contains(c) || kept.contains(where: { DimExpr.atLeast($0, c) }) { continue }
      kept = kept.filter { !DimExpr.atLeast(c, $0) }
      kept.append(c)
    }
    if kept.isEmpty { return DimExpr(largestConstant) }
    return try? DimExpr.max(kept + (largestConstant > 0 ? [DimExpr(largestConstant)] : []))
  }

  /// Bytes a value occupies, when its type and shape are known.
  static func bytes(_ v: InferredTensor) -> DimExpr? {
    switch v.container {
    case .optional(let content)?: return content.map(bytes) ?? 0
    case .maybe(let content)?: return bytes(content)
    case .sequence(let s)?:
      // Each tensor counts, as the executor counts a sequence (whatever storage it shares).
      if let tensors = s.tensors {
        var total: DimExpr = 0
        for t in tensors {
          guard let b = bytes(t), let sum = try? total + b else { return nil }
          total = sum
        }
        return total
      }
      // Known dimensions of the element are those of every tensor.
      guard let length = s.length, let each = bytes(s.element) else { return nil }
      return try? length * each
    case nil: break
    }
    guard let type = v.type, let n = v.elementCount, let bits = type.bitWidth else { return nil }
    if bits >= 8 { return try? n * DimExpr(bits / 8) }
    return try? DimExpr.ceilDiv(n, DimExpr(8 / bits))
  }

  private func apply(_ node: Node, _ ins: [InferredTensor?], scope: ShapeScope, declared: [String: ValueInfo]) throws -> [InferredTensor] {
    guard let rule = ShapeRules.rule(domain: node.domain, opType: node.opType) else {
      // An operator without a rule (a custom domain): what the model declares, else unknown.
      return node.outputs.map { declared[$0].map(Self.declared) ?? .unknown }
    }
    let context = ShapeContext(node: node, opset: opsets[node.isDefaultDomain ? "" : node.domain] ?? 1, inputs: ins,
                               engine: self, scope: scope)
    do {
      return try rule(context)
    } catch let e as DimExpr.Overflow {
      throw CompressorError.invalid("\(node.displayName): \(e.description)")
    }
  }

  /// Runs the node's kernel when every input is a known constant and every output is small.
  private func fold(_ node: Node, _ ins: [InferredTensor?], _ outs: inout [InferredTensor]) {
    guard !node.attributes.contains(where: { !$0.subgraphs.isEmpty }),
          Kernels.kernel(domain: node.domain, opType: node.opType) != nil else { return }
    var arrays = [NDArray?]()
    for (name, v) in zip(node.inputs, ins) {
      if name.isEmpty { arrays.append(nil); continue }
      guard let c = v?.constant else { return }
      arrays.append(c)
    }
    for (i, name) in node.outputs.enumerated() where !name.isEmpty {
      guard i < outs.count, let dims = outs[i].constantShape, let n = numberOfElements(dims), n <= Self.foldLimit else { return }
    }
    // A kernel that refuses the values leaves the rule's answer standing.
    guard let results = try? folder.evaluate(node, arrays) else { return }
    for (i, r) in results.enumerated() where i < outs.count && i < node.outputs.count && !node.outputs[i].isEmpty {
      outs[i] = InferredTensor(constant: r)
    }
  }

  /// An initializer: its type and shape, and its value when small.
  static func initializer(_ t: Tensor) -> InferredTensor {
    if t.elementCount <= foldLimit, let a = try? NDArray(t) { return InferredTensor(constant: a) }
    return InferredTensor(type: t.dataType, shape: t.dims.map { DimExpr(Int(clamping: $0)) })
  }

  /// What a value info declares; dimensions are read as expressions ("2*height") where they parse.
  static func declared(_ v: ValueInfo) -> InferredTensor { declared(v.type) }

  /// A declared type: a tensor's, a sequence of tensors (of unknown length), or an optional that
  /// may hold either.
  static func declared(_ t: TypeInfo?) -> InferredTensor {
    if case .sequence(let element)? = t?.kind {
      return .sequence(InferredSequence(element: declared(element), length: nil))
    }
    if case .optional(let content)? = t?.kind {
      var v = InferredTensor.unknown
      v.container = .maybe(declared(content))
      return v
    }
    guard case .tensor(let type, let shape)? = t?.kind else { return .unknown }
    return InferredTensor(type: type == .undefined ? nil : type, shape: shape.map { s in
      s.dims.map { d -> DimExpr? in
        switch d.value {
        case .known: return d.size.map { DimExpr(Int(clamping: $0)) }
        case .symbolic(let name): return DimExpr.parse(name)
        case .unknown: return nil
        }
      }
    })
  }
}
