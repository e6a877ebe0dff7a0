import IR
import Runtime
import Support

/// How a node crosses one change in its operator's history: written for the schema in force just
/// before `version`, it becomes a node of the schema introduced at `version`. The table of these
/// (`OpsetAdapters.table`) is the whole of what the converter knows about operator semantics.
struct OpsetAdapter: Sendable {
  enum Rule: Sendable {
    /// Every node of the older schema is a node of the newer one with the same meaning; `why`
    /// says what changed instead (element types added, an optional input, negative axes, an
    /// attribute whose default keeps the old behaviour). Nothing is rewritten.
    case compatible(why: String)
    /// The node is rewritten; `summary` says how, for the coverage table and the report.
    case rewrite(summary: String, @Sendable (inout Node, AdapterContext) throws -> Void)
  }
  var rule: Rule

  static func compatible(_ why: String) -> OpsetAdapter { OpsetAdapter(rule: .compatible(why: why)) }
  static func rewrite(_ summary: String, _ body: @escaping @Sendable (inout Node, AdapterContext) throws -> Void) -> OpsetAdapter {
    OpsetAdapter(rule: .rewrite(summary: summary, body))
  }
}

/// What an adapter may use while it rewrites one node: facts about the values the node reads,
/// fresh names, and places for the constants and helper nodes it adds. Helper nodes are written
/// for the final opset (`target`), never revisited by later adapters, so they use only operators
/// whose form is the same from `version` up to `target` (or pick their form from `target`).
final class AdapterContext {
  /// The opset the node was written for before this step, and the one it is converted to.
  let from: Int64
  let version: Int64
  /// The opset the whole model is converted to.
  let target: Int64
  let facts: ValueFacts
  private let state: ConversionState
  private let scope: GraphScope
  /// Helper nodes to place before and after the converted node, in order.
  private(set) var before: [Node] = []
  private(set) var after: [Node] = []

  init(from: Int64, version: Int64, target: Int64, facts: ValueFacts, state: ConversionState, scope: GraphScope) {
    self.from = from; self.version = version; self.target = target
    self.facts = facts; self.state = state; self.scope = scope
  }

  /// A name no value, node or initializer of the model uses yet.
  func fresh(_ base: String) -> String { state.names.fresh(base) }

  /// A base for names derived from `node`: its name, or its op type and first output.
  func base(_ node: Node, _ suffix: String) -> String {
    let stem = node.name.isEmpty ? (node.outputs.first.map { $0.isEmpty ? node.opType : $0 } ?? node.opType) : node.name
    return "\(stem)_\(suffix)"
  }

  /// The name of a new constant holding `array`: an initializer of the graph, or in a function
  /// body (which has no initializers) the output of a Constant node placed before the node.
  func constant(_ array: NDArray, _ base: String) -> String {
    let name = fresh(base)
    let tensor = array.irTensor(name: name)
    if scope.inFunction {
      before.append(Node(name: fresh("\(base)_constant"), opType: "Constant", inputs: [], outputs: [name],
                         attributes: [Attribute(name: "value", value: .tensor(Tensor(name: "", dataType: tensor.dataType, dims: tensor.dims, data: tensor.data)))]))
    } else {
      scope.initializers.append(tensor)
    }
    return name
  }

  /// A 1-D int64 constant (axes, pads, starts, split sizes, k).
  func int64s(_ values: [Int64], _ base: String) -> String { constant(NDArray(values, shape: [values.count]), base) }

  func insertBefore(_ node: Node) { before.append(node) }
  func insertAfter(_ node: Node) { after.append(node) }

  /// `output` of `node` has no readers anywhere in the model and is not a graph output.
  func isUnused(_ output: String) -> Bool { state.readers[output, default: 0] == 0 }

  /// Forgets what the model declared about `value` (value_info), whose type or shape the step changes.
  func dropValueInfo(_ value: String) { state.droppedValueInfo.insert(value) }

  /// Marks a Resize made from an Upsample: its scales are 1 or more by Upsample's definition.
  func markUpsampling(_ output: String) { state.upsamplingOutputs.insert(output) }
  func isUpsampling(_ output: String) -> Bool { state.upsamplingOutputs.contains(output) }

  /// The error for a node this step cannot convert exactly.
  func refuse(_ node: Node, _ why: String) -> CompressorError {
    CompressorError.unsupported("\(node.displayName): no exact conversion from opset \(from) to \(version): \(why)")
  }

  /// An integer attribute moved to an input must hold a value, not a reference to a function attribute.
  func attributeValue(_ node: Node, _ name: String) throws -> Attribute? {
    guard let a = node.attribute(name) else { return nil }
    if !a.refAttrName.isEmpty {
      throw refuse(node, "attribute '\(name)' refers to the function's attribute '\(a.refAttrName)' and cannot become a constant input")
    }
    return a
  }
}

/// What the whole conversion shares: one name allocator for the model, who reads each value,
/// and the facts adapters leave for later steps.
final class ConversionState {
  var names: NameScope
  let readers: [String: Int]
  var droppedValueInfo = Set<String>()
  var upsamplingOutputs = Set<String>()
  init(model: Model) {
    names = NameScope(model)
    var count = model.graph.uses()
    for f in model.functions {
      for n in f.nodes { for i in n.inputs where !i.isEmpty { count[i, default: 0] += 1 } }
      for o in f.outputs { count[o, default: 0] += 1 }
    }
    readers = count
  }
}

/// Where one graph's (or function body's) additions go.
final class GraphScope {
  let inFunction: Bool
  var initializers: [Tensor] = []
  init(inFunction: Bool) { self.inFunction = inFunction }
}

extension Node {
  /// This node without the attribute `name`.
  mutating func removeAttribute(_ name: String) { attributes.removeAll { $0.name == name } }

  /// Sets attribute `name` to `value`, in place if the node has it, else appended.
  mutating func setAttribute(_ name: String, _ value: Attribute.Value) {
    if let i = attributes.firstIndex(where: { $0.name == name }) {
      attributes[i].value = value
      attributes[i].refAttrName = ""
    } else {
      attributes.append(Attribute(name: name, value: value))
    }
  }

  /// Sets input `index`, padding skipped optional inputs with "".
  mutating func setInput(_ index: Int, _ name: String) {
    while inputs.count <= index { inputs.append("") }
    inputs[index] = name
  }

  /// Drops trailing omitted ("") inputs, which ONNX lets a node leave out.
  mutating func trimOmittedInputs() {
    while let last = inputs.last, last.isEmpty { inputs.removeLast() }
  }
}

extension AdapterContext {
  /// Moves an integer (or integer-list) attribute to input `index` as a 1-D int64 constant, the
  /// form Squeeze, Unsqueeze, Split, Slice, Pad, TopK and the reductions take from their newer
  /// opsets on. Returns false when the node does not have the attribute.
  @discardableResult
  func moveIntegersToInput(_ node: inout Node, attribute name: String, input index: Int) throws -> Bool {
    guard let a = try attributeValue(node, name) else { return false }
    guard let values = a.ints ?? a.int.map({ [$0] }) else {
      throw CompressorError.invalid("\(node.displayName): attribute '\(name)' is not a list of integers")
    }
    node.removeAttribute(name)
    node.setInput(index, int64s(values, base(node, name)))
    return true
  }

  /// A scalar constant equal to `value` with the element type of `like`, for attributes that
  /// became inputs typed like the data (Clip's bounds, Pad's fill value). When the type is not
  /// known statically, a float constant followed by CastLike (opset 15 on) gives it at run time;
  /// before 15 the step refuses.
  func scalar(_ value: Double, like: String, for node: Node, _ suffix: String) throws -> String {
    if let type = facts.elementType(like) {
      guard let array = Self.scalarArray(value, type) else {
        throw refuse(node, "'\(like)' is \(type), which the operator does not accept here")
      }
      return constant(array, base(node, suffix))
    }
    guard target >= 15 else {
      throw refuse(node, "the element type of '\(like)' is not known without running the model (declare it in value_info, or convert to opset 15 or later)")
    }
    let float = constant(NDArray([Float(value)], shape: []), base(node, "\(suffix)_float"))
    let typed = fresh(base(node, suffix))
    insertBefore(Node(name: fresh(base(node, "\(suffix)_cast")), opType: "CastLike", inputs: [float, like], outputs: [typed]))
    return typed
  }

  /// `value` as a 0-d array of `type`, for the floating-point types old operators accept.
  static func scalarArray(_ value: Double, _ type: DataType) -> NDArray? {
    switch type {
    case .float: return NDArray([Float(value)], shape: [])
    case .double: return NDArray([value], shape: [])
    case .float16: return NDArray([Float16(Float(value))], shape: [])
    case .bfloat16:
      // Round to nearest even on the upper 16 bits of the float32 pattern.
      let bits = Float(value).bitPattern
      let rounded = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
      var array = NDArray(uninitialized: .bfloat16, [])
      array.mutableElements(UInt16.self)[0] = rounded
      return array
    default: return nil
    }
  }
}
