/// One operator invocation. Inputs and outputs are value names; "" marks an omitted
/// optional input or output.
public struct Node: Equatable, Sendable {
  public var name: String
  public var opType: String
  public var domain: String
  public var overload: String
  public var inputs: [String]
  public var outputs: [String]
  public var attributes: [Attribute]
  public var docString: String
  public var metadata: [StringPair]
  public var unknownFields: [UnknownField]

  public init(name: String = "", opType: String, domain: String = "", overload: String = "",
              inputs: [String], outputs: [String], attributes: [Attribute] = [],
              docString: String = "", metadata: [StringPair] = [], unknownFields: [UnknownField] = []) {
    self.name = name; self.opType = opType; self.domain = domain; self.overload = overload
    self.inputs = inputs; self.outputs = outputs; self.attributes = attributes
    self.docString = docString; self.metadata = metadata; self.unknownFields = unknownFields
  }

  public func attribute(_ name: String) -> Attribute? { attributes.first { $0.name == name } }

  /// "" and "ai.onnx" both name the standard operator set.
  public var isDefaultDomain: Bool { domain.isEmpty || domain == "ai.onnx" }

  /// How the node is named in messages: its name, or its op type and first output.
  public var displayName: String {
    name.isEmpty ? "\(opType) node producing '\(outputs.first ?? "")'" : "node '\(name)' (\(opType))"
  }
}

public struct TensorAnnotation: Equatable, Sendable {
  public var tensorName: String
  public var quantParameterTensorNames: [StringPair]
  public init(tensorName: String, quantParameterTensorNames: [StringPair]) {
    self.tensorName = tensorName; self.quantParameterTensorNames = quantParameterTensorNames
  }
}

/// A computation graph: the model's main graph or the body of an If/Loop/Scan attribute,
/// which may read values of the graphs around it.
public struct Graph: Equatable, Sendable {
  public var name: String
  public var nodes: [Node]
  public var initializers: [Tensor]
  public var sparseInitializers: [SparseTensor]
  public var inputs: [ValueInfo]
  public var outputs: [ValueInfo]
  public var valueInfo: [ValueInfo]
  public var quantizationAnnotations: [TensorAnnotation]
  public var docString: String
  public var metadata: [StringPair]
  public var unknownFields: [UnknownField]

  public init(name: String = "", nodes: [Node] = [], initializers: [Tensor] = [],
              sparseInitializers: [SparseTensor] = [], inputs: [ValueInfo] = [],
              outputs: [ValueInfo] = [], valueInfo: [ValueInfo] = [],
              quantizationAnnotations: [TensorAnnotation] = [], docString: String = "",
              metadata: [StringPair] = [], unknownFields: [UnknownField] = []) {
    self.name = name; self.nodes = nodes; self.initializers = initializers
    self.sparseInitializers = sparseInitializers; self.inputs = inputs; self.outputs = outputs
    self.valueInfo = valueInfo; self.quantizationAnnotations = quantizationAnnotations
    self.docString = docString; self.metadata = metadata; self.unknownFields = unknownFields
  }

  /// Rewrites this graph and every subgraph below it in place, subgraphs first.
  public mutating func transformGraphs(_ body: (inout Graph) throws -> Void) rethrows {
    for n in nodes.indices {
      for a in nodes[n].attributes.indices {
        switch nodes[n].attributes[a].value {
        case .graph(var g):
          try g.transformGraphs(body)
          nodes[n].attributes[a].value = .graph(g)
        case .graphs(var gs):
          for i in gs.indices { try gs[i].transformGraphs(body) }
          nodes[n].attributes[a].value = .graphs(gs)
        default: break
        }
      }
    }
    try body(&self)
  }

  /// Every value name read by this graph's nodes and outputs and by its subgraphs, with counts.
  /// Every subgraph of every node, at any depth (not this graph itself).
  public var nestedGraphs: [Graph] {
    var all = [Graph]()
    forEachGraph { all.append($0) }
    return Array(all.dropFirst())
  }

  /// The inputs a caller must feed: graph inputs that are not initializers (IR 3 lists both).
  public var feedNames: [String] {
    let initialized = Set(initializers.map(\.name))
    return inputs.map(\.name).filter { !initialized.contains($0) }
  }

  public func uses() -> [String: Int] {
    var count = [String: Int]()
    forEachGraph { g in
      for n in g.nodes { for i in n.inputs where !i.isEmpty { count[i, default: 0] += 1 } }
      for o in g.outputs { count[o.name, default: 0] += 1 }
    }
    return count
  }

  /// This graph's own initializers by name (the first of a repeated name wins).
  public var initializersByName: [String: Tensor] {
    var byName = [String: Tensor]()
    for t in initializers where byName[t.name] == nil { byName[t.name] = t }
    return byName
  }

  /// For each value, the indices of this graph's nodes that read it (each node once).
  public func readers() -> [String: [Int]] {
    var readers = [String: [Int]]()
    for (i, n) in nodes.enumerated() { for name in Set(n.inputs) where !name.isEmpty { readers[name, default: []].append(i) } }
    return readers
  }

  /// Every initializer of this graph and its subgraphs by name (names are unique across scopes;
  /// the outermost wins if a malformed model repeats one).
  public var initializersEverywhere: [String: Tensor] {
    var all = [String: Tensor]()
    forEachGraph { g in for t in g.initializers where all[t.name] == nil { all[t.name] = t } }
    return all
  }

  /// Replaces the initializer named `t.name` wherever it lives (this graph or a subgraph).
  public mutating func replaceInitializer(_ t: Tensor) {
    transformGraphs { g in
      if let i = g.initializers.firstIndex(where: { $0.name == t.name }) { g.initializers[i] = t }
    }
  }

  /// Replaces every read of `old` by `new`, here and in subgraphs.
  public mutating func renameUses(_ old: String, to new: String) {
    transformGraphs { g in
      for n in g.nodes.indices {
        for i in g.nodes[n].inputs.indices where g.nodes[n].inputs[i] == old { g.nodes[n].inputs[i] = new }
      }
    }
  }

  /// Calls `body` on this graph and every subgraph below it, depth first, in file order.
  public func forEachGraph(_ body: (Graph) throws -> Void) rethrows {
    try body(self)
    for node in nodes {
      for attr in node.attributes {
        for g in attr.subgraphs { try g.forEachGraph(body) }
      }
    }
  }
}

/// A model-local function (`FunctionProto`).
public struct Function: Equatable, Sendable {
  public var name: String
  public var domain: String
  public var overload: String
  public var inputs: [String]
  public var outputs: [String]
  public var attributeNames: [String]
  public var attributeDefaults: [Attribute]
  public var nodes: [Node]
  public var opsetImports: [OpsetImport]
  public var valueInfo: [ValueInfo]
  public var docString: String
  public var metadata: [StringPair]
  public var unknownFields: [UnknownField]

  public init(name: String, domain: String, overload: String = "", inputs: [String], outputs: [String],
              attributeNames: [String] = [], attributeDefaults: [Attribute] = [], nodes: [Node],
              opsetImports: [OpsetImport], valueInfo: [ValueInfo] = [], docString: String = "",
              metadata: [StringPair] = [], unknownFields: [UnknownField] = []) {
    self.name = name; self.domain = domain; self.overload = overload; self.inputs = inputs
    self.outputs = outputs; self.attributeNames = attributeNames
    self.attributeDefaults = attributeDefaults; self.nodes = nodes; self.opsetImports = opsetImports
    self.valueInfo = valueInfo; self.docString = docString; self.metadata = metadata
    self.unknownFields = unknownFields
  }
}

public struct TrainingInfo: Equatable, Sendable {
  public var initialization: Graph?
  public var algorithm: Graph?
  public var initializationBinding: [StringPair]
  public var updateBinding: [StringPair]
  public init(initialization: Graph?, algorithm: Graph?, initializationBinding: [StringPair],
              updateBinding: [StringPair]) {
    self.initialization = initialization; self.algorithm = algorithm
    self.initializationBinding = initializationBinding; self.updateBinding = updateBinding
  }
}
