import IR
import Support

/// A node held by reference: handing it to a kernel retains one object instead of copying its
/// ten fields (names, inputs, attributes…) — on a model of small nodes, reference counting was
/// half of the time per node.
final class NodeReference {
  let node: Node
  /// The node's subgraphs (If branches, Loop and Scan bodies) once they have run, by attribute.
  var subgraphs: [(attribute: String, entry: Executor.SubgraphEntry)] = []
  /// What kernels derived from the node's attributes on its first run (`KernelContext.memo`).
  var memos: [String: Any] = [:]
  init(_ node: Node) { self.node = node }
}

/// Everything a kernel sees of the node it executes.
public struct KernelContext {
  // Unowned: the executor's loop makes a context per node, and retaining and releasing these
  // three was a tenth of a small node's cost. `owners` holds them when whoever made the context
  // does not (every initializer but `init(borrowing:…)`).
  unowned(unsafe) let nodeReference: NodeReference
  /// Read in place (a borrow), not copied field by field on every use.
  public var node: Node { _read { yield nodeReference.node } }
  /// Inputs in node order; nil for an omitted optional input (""). Empty for value kernels,
  /// which read `values`.
  public let inputs: [NDArray?]
  /// The version of the node's domain in the model's opset imports.
  public let opset: Int64
  unowned(unsafe) let executor: Executor
  unowned(unsafe) let scope: Scope
  private let owners: Owners?
  private final class Owners {
    let node: NodeReference, executor: Executor, scope: Scope
    init(_ node: NodeReference, _ executor: Executor, _ scope: Scope) { self.node = node; self.executor = executor; self.scope = scope }
  }
  /// For value kernels (sequences, optionals, control flow): every input as a value, in node
  /// order; nil for an omitted one. Empty for tensor kernels.
  public let values: [Value?]

  init(node: Node, inputs: [NDArray?], opset: Int64, executor: Executor, scope: Scope, values: [Value?] = []) {
    self.init(node: NodeReference(node), inputs: inputs, opset: opset, executor: executor, scope: scope, values: values)
  }

  init(node: NodeReference, inputs: [NDArray?], opset: Int64, executor: Executor, scope: Scope, values: [Value?] = []) {
    self.init(node, inputs, opset, executor, scope, values, owners: Owners(node, executor, scope))
  }

  /// A context that does not keep `node`, `executor` and `scope` alive: the caller holds all
  /// three until the kernel returns (the executor's loop).
  init(borrowing node: NodeReference, inputs: [NDArray?], opset: Int64, executor: Executor, scope: Scope, values: [Value?] = []) {
    self.init(node, inputs, opset, executor, scope, values, owners: nil)
  }

  private init(_ node: NodeReference, _ inputs: [NDArray?], _ opset: Int64, _ executor: Executor, _ scope: Scope, _ values: [Value?],
               owners: Owners?) {
    self.nodeReference = node
    self.inputs = inputs
    self.opset = opset
    self.executor = executor
    self.scope = scope
    self.values = values
    self.owners = owners
  }

  /// Something a kernel derives from the node's attributes (and the shapes in `valid`), made on
  /// the node's first run and kept with the node: parsing a convolution's window on every call
  /// was a tenth of a small convolution's time.
  func memo<T>(_ key: String, valid: (T) -> Bool = { _ in true }, _ make: () throws -> T) rethrows -> T {
    if let kept = nodeReference.memos[key] as? T, valid(kept) { return kept }
    let made = try make()
    nodeReference.memos[key] = made
    return made
  }

  public func input(_ i: Int) throws -> NDArray {
    guard i < inputs.count, let v = inputs[i] else { throw fail("input \(i) is required") }
    return v
  }

  public func optionalInput(_ i: Int) -> NDArray? { i < inputs.count ? inputs[i] : nil }

  /// Whether input `i` is present and a constant of the main graph (what `derived` makes once).
  public func isConstant(_ i: Int) -> Bool {
    guard let x = optionalInput(i), i < node.inputs.count else { return false }
    return executor.constantStorage(x, name: node.inputs[i]) != nil
  }

  /// `make()` — something computed from inputs `slots` only — made once per executor when every
  /// one of those inputs that is present is a constant of the main graph, and on every call
  /// otherwise (a fed or computed input, a subgraph).
  public func derived(fromInputs slots: [Int], _ purpose: String, _ make: () throws -> NDArray) throws -> NDArray {
    var sources = [NDArray.Storage]()
    for i in slots {
      guard let x = optionalInput(i) else { continue }
      guard i < node.inputs.count, let storage = executor.constantStorage(x, name: node.inputs[i]) else { return try make() }
      sources.append(storage)
    }
    guard !sources.isEmpty else { return try make() }
    return try executor.derivedArrays.value(sources: sources, purpose: purpose, make)
  }

  /// Value input `i` (value kernels); nil when omitted or past the node's inputs.
  public func optionalValue(_ i: Int) -> Value? { i < values.count ? values[i] : nil }

  public func value(_ i: Int) throws -> Value {
    guard let v = optionalValue(i) else { throw fail("input \(i) is required") }
    return v
  }

  /// Value input `i`, which must be a tensor.
  public func tensor(_ i: Int) throws -> NDArray {
    let v = try value(i)
    guard case .tensor(let t) = v else { throw fail("input \(i) must be a tensor, not a \(v.typeDescription)") }
    return t
  }

  public func optionalTensor(_ i: Int) throws -> NDArray? {
    guard let v = optionalValue(i) else { return nil }
    guard case .tensor(let t) = v else { throw fail("input \(i) must be a tensor, not a \(v.typeDescription)") }
    return t
  }

  /// Value input `i`, which must be a sequence.
  public func sequence(_ i: Int) throws -> TensorSequence {
    let v = try value(i)
    guard case .sequence(let s) = v else { throw fail("input \(i) must be a sequence, not a \(v.typeDescription)") }
    return s
  }

  public func int(_ name: String, _ fallback: Int) -> Int {
    node.attribute(name)?.int.map { Int(clamping: $0) } ?? fallback
  }

  public func ints(_ name: String) -> [Int]? {
    node.attribute(name)?.ints.map { $0.map { Int(clamping: $0) } }
  }

  public func float(_ name: String, _ fallback: Float) -> Float { node.attribute(name)?.float ?? fallback }

  public func string(_ name: String, _ fallback: String) -> String { node.attribute(name)?.string ?? fallback }

  public func floats(_ name: String) -> [Float]? {
    if case .floats(let v)? = node.attribute(name)?.value { return v }
    return nil
  }

  public func strings(_ name: String) -> [String]? {
    if case .strings(let v)? = node.attribute(name)?.value { return v.map { String(decoding: $0, as: UTF8.self) } }
    return nil
  }

  public func graph(_ name: String) throws -> Graph {
    guard case .graph(let g)? = node.attribute(name)?.value else { throw fail("attribute '\(name)' (a graph) is missing") }
    return g
  }

  /// Runs the subgraph in this node's attribute `name` with `feeds` bound to its inputs, seeing
  /// this scope's values.
  public func runSubgraph(_ name: String, feeds: [Value?]) throws -> [Value] {
    try executor.runSubgraph(of: nodeReference, attribute: name, outer: scope, feeds: feeds)
  }

  /// The same for a subgraph of tensors (Scan's body): a sequence or optional output is an error.
  public func runTensorSubgraph(_ name: String, feeds: [NDArray?]) throws -> [NDArray] {
    let outputs = try runSubgraph(name, feeds: feeds.map { $0.map(Value.tensor) })
    return try zip(try graph(name).outputs, outputs).map { info, v in
      guard case .tensor(let t) = v else { throw fail("subgraph output '\(info.name)' must be a tensor, not a \(v.typeDescription)") }
      return t
    }
  }

  /// An error naming this node: "node 'x' (Op): message".
  public func fail(_ message: String) -> CompressorError {
    .invalid("\(node.displayName): \(message)")
  }

  public func unsupported(_ message: String) -> CompressorError {
    .unsupported("\(node.displayName): \(message)")
  }

  /// Normalizes a possibly negative axis for a tensor of `rank` (a scalar has no axis).
  public func axis(_ a: Int, rank: Int) throws -> Int {
    let r = a < 0 ? a &+ rank : a
    guard r >= 0 && r < rank else { throw fail("axis \(a) is out of range for rank \(rank)") }
    return r
  }
}

/// A kernel of tensors: nearly every operator.
public typealias Kernel = (KernelContext) throws -> [NDArray]
/// A kernel whose inputs or outputs may be sequences or optionals (`KernelContext.values`).
public typealias ValueKernel = (KernelContext) throws -> [Value]

/// A node's kernel as the executor calls it.
enum ResolvedKernel {
  case tensor(Kernel)
  case value(ValueKernel)
}

/// Op type → kernel, per domain. Each file in Kernels/ contributes one op family.
public enum Kernels {
  static let standard: [String: Kernel] = {
    var all = [String: Kernel]()
    for family in [elementwise, matrix, convolution, normalization, pooling, reduction, shapeOps, controlFlow,
                   quantization, softmax, resize, indexing, quantizedMatrix, recurrent, einsum, trigonometric, bitwise, selection, signal, random, detection, sampling, patches, loss, attention, text] {
      all.merge(family) { a, _ in a }
    }
    return all
  }()

  /// Operators of the default domain that take or produce sequences and optionals.
  static let standardValues: [String: ValueKernel] = {
    var all = [String: ValueKernel]()
    for family in [controlFlowValues, sequences] { all.merge(family) { a, _ in a } }
    return all
  }()

  /// The com.microsoft operators (ONNX Runtime's contrib operators).
  static let microsoft: [String: Kernel] = {
    var all = [String: Kernel]()
    for family in [quantizedMatrixContrib, activationContrib, normalizationContrib, matrixContrib, convolutionContrib, quantizedContrib, quantizationContrib, attentionContrib, recurrentContrib] {
      all.merge(family) { a, _ in a }
    }
    return all
  }()

  static func resolve(domain: String, opType: String) -> ResolvedKernel? {
    if domain.isEmpty || domain == "ai.onnx" {
      if let k = standard[opType] { return .tensor(k) }
      return standardValues[opType].map(ResolvedKernel.value)
    }
    if domain == "com.microsoft" { return microsoft[opType].map(ResolvedKernel.tensor) }
    if domain == "ai.onnx.preview.training" { return (trainingOptimizers[opType] ?? gradient[opType]).map(ResolvedKernel.tensor) }
    return nil
  }

  /// The kernel as a function of tensors (constant folding, training, single-node evaluation):
  /// a value kernel is wrapped, and a sequence or optional among its outputs is an error.
  public static func kernel(domain: String, opType: String) -> Kernel? {
    switch resolve(domain: domain, opType: opType) {
    case .tensor(let k)?: return k
    case .value(let k)?:
      return { c in
        let context = KernelContext(node: c.nodeReference, inputs: [], opset: c.opset, executor: c.executor, scope: c.scope,
                                    values: c.inputs.map { $0.map(Value.tensor) })
        return try k(context).map { v in
          guard case .tensor(let t) = v else { throw c.unsupported("it produces a \(v.typeDescription) here, where a tensor is needed") }
          return t
        }
      }
    case nil: return nil
    }
  }

  /// One operator the executor runs, with the opsets of its domain it supports.
  public struct Operator: Sendable {
    public var domain: String
    public var opType: String
    public var firstOpset: Int64
    public var lastOpset: Int64
  }

  /// Every operator with a kernel, by domain ("ai.onnx" first, then "com.microsoft") and name.
  /// Default-domain operators run every version from the one that introduced them to the last
  /// (the onnx release's schemas, IR/OperatorVersions.swift); ONNX Runtime's own operators, which
  /// it registers in either domain, are at version 1.
  public static var operators: [Operator] {
    let standardOps = Set(standard.keys).union(standardValues.keys).sorted().map { op -> Operator in
      let range = OperatorVersions.range(of: op) ?? (1, OperatorVersions.latestOpset)
      return Operator(domain: "ai.onnx", opType: op, firstOpset: range.first, lastOpset: range.last)
    }
    return standardOps + microsoft.keys.sorted().map { Operator(domain: "com.microsoft", opType: $0, firstOpset: 1, lastOpset: 1) }
      + Set(trainingOptimizers.keys).union(gradient.keys).sorted().map { Operator(domain: "ai.onnx.preview.training", opType: $0, firstOpset: 1, lastOpset: 1) }
  }

  /// Op types with a kernel, sorted; contrib operators carry their domain ("com.microsoft.X").
  public static var supportedOps: [String] {
    Set(standard.keys).union(standardValues.keys).sorted() + microsoft.keys.sorted().map { "com.microsoft.\($0)" }
      + Set(trainingOptimizers.keys).union(gradient.keys).sorted().map { "ai.onnx.preview.training.\($0)" }
  }
}
