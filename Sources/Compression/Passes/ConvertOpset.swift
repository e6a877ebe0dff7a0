import IR
import Support

/// Converts the model's standard operator set (domain "" / "ai.onnx") to opset `target`.
///
/// Upward, every node of the main graph, of every If/Loop/Scan body, of training graphs and of
/// model-local functions crosses each change of its operator's schema between the two opsets
/// with the adapter `OpsetAdapters.table` gives for it: most changes only added types or
/// attributes whose defaults keep the old meaning; the others are rewritten so that the node
/// computes exactly what it did (attributes moved to inputs, changed defaults made explicit,
/// helper nodes around Softmax's old 2-D coercion, Upsample → Resize, …). A node no adapter
/// converts exactly stops the pass with exit 69 naming it. Downward, the model is relabelled only
/// when no node's operator changed between the two opsets; otherwise the first node whose
/// operator did is named (exit 69). The IR version rises to the lowest that may import the target.
/// Other domains (com.microsoft, ai.onnx.ml, model-local function domains) are left as they are.
///
/// Commands that need a newer opset for what they write (per-channel DequantizeLinear needs 13)
/// use `atLeast`: older models are raised to the target, newer ones left alone; a model that
/// cannot be converted exactly is left as it was, with the reason as a skipped row, unless the
/// conversion is `required`. `keep` only reports that the opset stays (quantize --keep-opset).
public struct ConvertOpset: Pass {
  public static let name = "convert-opset"
  public enum Policy: Sendable, Equatable {
    /// To `target` exactly, up or down; a node without an exact conversion is an error.
    case exactly
    /// Up to `target` if the model is older; on a refusal, an error only when `required`.
    case atLeast(required: Bool)
    /// Leave the opset; report it when it is older than `target`.
    case keep
  }
  public var target: Int64
  public var policy: Policy
  /// What the target opset is for, in the report and errors ("per-channel weights").
  public var purpose: String?
  /// `atLeast`: whether this model needs the target at all (quantize: does any weight become
  /// per-channel?); a model that does not is left at its opset, and a row says so.
  public var isNeeded: (@Sendable (Model) -> Bool)?

  /// Opsets the converter reads and writes: up to the newest the operator tables describe. Every
  /// operator change from opset 8 on has an adapter; a node of an older model whose operator
  /// changed at 7 or before is refused (exit 69) like any change without one.
  public static let supportedOpsets: ClosedRange<Int64> = 1...OperatorVersions.latestOpset

  public init(target: Int64, policy: Policy = .exactly, purpose: String? = nil, isNeeded: (@Sendable (Model) -> Bool)? = nil) {
    self.target = target; self.policy = policy; self.purpose = purpose; self.isNeeded = isNeeded
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let current = model.defaultOpsetVersion ?? 0
    let why = purpose.map { " for \($0)" } ?? ""
    if policy == .exactly { return try convert(&model) }
    guard current < target else { return PassResult(pass: Self.name, changes: []) }
    if let isNeeded, !isNeeded(model) {
      return PassResult(pass: Self.name, changes: [.init(target: "model", action: "skipped",
                                                         detail: "opset \(current) kept: nothing here needs \(target)\(why)",
                                                         values: ["from": Double(current), "to": Double(current), "needed": 0])])
    }
    guard case .atLeast(let required) = policy else {
      return PassResult(pass: Self.name, changes: [.init(target: "model", action: "skipped",
                                                         detail: "opset \(current) kept (--keep-opset); \(target) is needed\(why)",
                                                         values: ["from": Double(current), "to": Double(current)])])
    }
    // Converted on a copy: a refusal part-way leaves the model as it was.
    var converted = model
    do {
      let result = try convert(&converted)
      model = converted
      return result
    } catch let e as CompressorError where e.kind == .unsupported {
      if required { throw CompressorError.unsupported("opset \(target) is needed\(why): \(e.message)") }
      return PassResult(pass: Self.name, changes: [.init(target: "model", action: "skipped",
                                                         detail: "opset \(current) kept (\(target) is needed\(why)): \(e.message)",
                                                         values: ["from": Double(current), "to": Double(current)])])
    }
  }

  private func convert(_ model: inout Model) throws -> PassResult {
    guard Self.supportedOpsets.contains(target) else {
      throw CompressorError.usage("--opset \(target) is outside the supported range \(Self.supportedOpsets.lowerBound)...\(Self.supportedOpsets.upperBound)")
    }
    guard let importIndex = model.opsetImports.firstIndex(where: \.isDefaultDomain) else {
      // No standard operator is used; importing the target opset changes nothing a node computes.
      model.opsetImports.append(OpsetImport(domain: "", version: target))
      try raiseIRVersion(&model)
      return PassResult(pass: Self.name, changes: [.init(target: "model", action: "opset", detail: "no standard operators; opset \(target) imported",
                                                         values: ["from": 0, "to": Double(target)])])
    }
    let source = model.opsetImports[importIndex].version
    if source == target {
      return PassResult(pass: Self.name, changes: [.init(target: "model", action: "skipped", detail: "already at opset \(target)")])
    }
    guard Self.supportedOpsets.contains(source) else {
      throw CompressorError.unsupported("the model imports opset \(source); the converter reads opsets \(Self.supportedOpsets.lowerBound)...\(Self.supportedOpsets.upperBound)")
    }
    let irBefore = model.irVersion
    var changes = [PassResult.Change]()
    var counts = Counts()
    if target > source {
      let state = ConversionState(model: model)
      try upgrade(&model.graph, parent: nil, from: source, state: state, changes: &changes, counts: &counts)
      for i in model.trainingInfo.indices {
        if var g = model.trainingInfo[i].initialization {
          try upgrade(&g, parent: nil, from: source, state: state, changes: &changes, counts: &counts)
          model.trainingInfo[i].initialization = g
        }
        if var g = model.trainingInfo[i].algorithm {
          try upgrade(&g, parent: nil, from: source, state: state, changes: &changes, counts: &counts)
          model.trainingInfo[i].algorithm = g
        }
      }
      for i in model.functions.indices {
        try convertFunction(&model.functions[i], modelSource: source, state: state, changes: &changes, counts: &counts)
      }
      if !state.droppedValueInfo.isEmpty {
        model.graph.transformGraphs { g in g.valueInfo.removeAll { state.droppedValueInfo.contains($0.name) } }
      }
    } else {
      try checkDowngrade(model.graph, from: source, counts: &counts)
      for t in model.trainingInfo {
        for g in [t.initialization, t.algorithm].compactMap({ $0 }) { try checkDowngrade(g, from: source, counts: &counts) }
      }
      for i in model.functions.indices {
        try convertFunction(&model.functions[i], modelSource: source, state: nil, changes: &changes, counts: &counts)
      }
    }
    model.opsetImports[importIndex].version = target
    try raiseIRVersion(&model)
    var detail = "default domain opset \(source) → \(target)" + (purpose.map { " for \($0)" } ?? "")
    if model.irVersion != irBefore { detail += ", IR version \(irBefore) → \(model.irVersion)" }
    detail += "; \(counts.rewritten) node(s) rewritten, \(counts.unchanged) unchanged"
    changes.insert(.init(target: "model", action: "opset", detail: detail,
                         values: ["from": Double(source), "to": Double(target), "rewritten": Double(counts.rewritten),
                                  "unchanged": Double(counts.unchanged)]), at: 0)
    return PassResult(pass: Self.name, changes: changes)
  }

  private struct Counts {
    var rewritten = 0
    var unchanged = 0
  }

  private func raiseIRVersion(_ model: inout Model) throws {
    guard let needed = OperatorVersions.minimumIRVersion[target] else { return }
    if model.irVersion < needed { model.irVersion = needed }
  }

  // MARK: - Upward

  /// Converts `graph`'s nodes in order, each node's subgraphs before the node itself.
  private func upgrade(_ graph: inout Graph, parent: ValueFacts?, from source: Int64, state: ConversionState,
                       changes: inout [PassResult.Change], counts: inout Counts) throws {
    let facts = ValueFacts(graph: graph, parent: parent)
    let scope = GraphScope(inFunction: false)
    graph.nodes = try upgrade(graph.nodes, facts: facts, scope: scope, from: source, state: state, changes: &changes, counts: &counts)
    graph.initializers += scope.initializers
  }

  /// Each node's subgraphs first (they see `facts` as their outer scope), then the node itself.
  private func upgrade(_ nodes: [Node], facts: ValueFacts, scope: GraphScope, from source: Int64, state: ConversionState,
                       changes: inout [PassResult.Change], counts: inout Counts) throws -> [Node] {
    var upgraded = [Node]()
    upgraded.reserveCapacity(nodes.count)
    for var node in nodes {
      for a in node.attributes.indices {
        switch node.attributes[a].value {
        case .graph(var g):
          try upgrade(&g, parent: facts, from: source, state: state, changes: &changes, counts: &counts)
          node.attributes[a].value = .graph(g)
        case .graphs(var gs):
          for i in gs.indices { try upgrade(&gs[i], parent: facts, from: source, state: state, changes: &changes, counts: &counts) }
          node.attributes[a].value = .graphs(gs)
        default: break
        }
      }
      upgraded += try step(&node, from: source, facts: facts, state: state, scope: scope, changes: &changes, counts: &counts)
    }
    return upgraded
  }

  /// `node` carried through every change of its operator between `source` and `target`, with the
  /// helper nodes the adapters add around it, in order.
  private func step(_ node: inout Node, from source: Int64, facts: ValueFacts, state: ConversionState, scope: GraphScope,
                    changes: inout [PassResult.Change], counts: inout Counts) throws -> [Node] {
    guard node.isDefaultDomain else { return [node] }
    let original = node
    guard let history = OperatorVersions.changes[node.opType] else {
      throw CompressorError.unsupported("\(node.displayName): \(node.opType) is not an operator of the standard opsets this build knows (1...\(OperatorVersions.latestOpset))")
    }
    guard let introduced = history.first, introduced <= source else {
      throw CompressorError.invalid("\(node.displayName): \(node.opType) is not in opset \(source) (it was introduced at \(history.first ?? 0))")
    }
    var version = source
    // A node of an operator its opset had already removed is read as the last schema before the removal.
    if let removed = OperatorVersions.removals[node.opType], removed <= source { version = removed - 1 }
    var before = [Node](), after = [Node](), steps = [String]()
    while let next = OperatorVersions.changes[node.opType]?.first(where: { $0 > version && $0 <= target }) {
      guard let adapter = OpsetAdapters.adapter(node.opType, next) else {
        throw CompressorError.unsupported(
          "\(node.displayName): no exact conversion from opset \(source) to \(target) (\(node.opType) changed at opset \(next))")
      }
      if case .rewrite(let summary, let body) = adapter.rule {
        let context = AdapterContext(from: version, version: next, target: target, facts: facts, state: state, scope: scope)
        let op = node.opType
        try body(&node, context)
        before += context.before
        after = context.after + after
        steps.append("\(op) \(version)→\(next): \(summary)")
      }
      version = next
    }
    if let removed = OperatorVersions.removals[node.opType], removed <= target {
      throw CompressorError.unsupported("\(node.displayName): \(node.opType) was removed at opset \(removed) and has no replacement here")
    }
    if node == original && before.isEmpty && after.isEmpty {
      counts.unchanged += 1
    } else {
      counts.rewritten += 1
      var detail = steps.joined(separator: "; ")
      if !before.isEmpty || !after.isEmpty { detail += " (+\(before.count + after.count) helper node(s))" }
      changes.append(.init(target: label(original), action: "converted", detail: detail))
    }
    return before + [node] + after
  }

  // MARK: - Functions

  /// A model-local function is converted like a graph when it imports the default domain (its
  /// constants become Constant nodes: a function has no initializers); its import is set to the
  /// target. Downward (`state` nil) it is only checked.
  private func convertFunction(_ f: inout Function, modelSource: Int64, state: ConversionState?,
                               changes: inout [PassResult.Change], counts: inout Counts) throws {
    guard let index = f.opsetImports.firstIndex(where: \.isDefaultDomain) else { return }
    let source = f.opsetImports[index].version
    guard source != target else { return }
    guard let state, target > source else {
      let body = Graph(name: "function '\(f.name)'", nodes: f.nodes)
      try checkDowngrade(body, from: source, counts: &counts)
      f.opsetImports[index].version = target
      return
    }
    guard Self.supportedOpsets.contains(source) else {
      throw CompressorError.unsupported("function '\(f.domain).\(f.name)' imports opset \(source); the converter reads opsets \(Self.supportedOpsets.lowerBound)...\(Self.supportedOpsets.upperBound)")
    }
    let facts = ValueFacts(function: f)
    let scope = GraphScope(inFunction: true)
    f.nodes = try upgrade(f.nodes, facts: facts, scope: scope, from: source, state: state, changes: &changes, counts: &counts)
    f.opsetImports[index].version = target
  }

  // MARK: - Downward

  /// Every node's operator must have the same schema at both opsets (and exist at the target).
  private func checkDowngrade(_ graph: Graph, from source: Int64, counts: inout Counts) throws {
    try graph.forEachGraph { g in
      for node in g.nodes where node.isDefaultDomain {
        guard let history = OperatorVersions.changes[node.opType] else {
          throw CompressorError.unsupported("\(node.displayName): \(node.opType) is not an operator of the standard opsets this build knows")
        }
        let atSource = history.last { $0 <= source }
        let atTarget = history.last { $0 <= target }
        if atTarget == nil {
          throw CompressorError.unsupported("\(node.displayName): \(node.opType) does not exist in opset \(target) (it was introduced at \(history.first ?? 0))")
        }
        if atSource != atTarget {
          let changed = history.filter { $0 > target && $0 <= source }.map(String.init).joined(separator: ", ")
          throw CompressorError.unsupported(
            "\(node.displayName): no exact conversion from opset \(source) down to \(target) (\(node.opType) changed at opset \(changed))")
        }
        if let removed = OperatorVersions.removals[node.opType], removed <= source {
          throw CompressorError.unsupported("\(node.displayName): \(node.opType) was removed at opset \(removed)")
        }
        counts.unchanged += 1
      }
    }
  }
}
