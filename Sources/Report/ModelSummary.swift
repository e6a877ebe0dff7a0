import IR

/// What `compressor inspect` reports about a model. Every list is in a fixed order (file order
/// or sorted), so the JSON is byte-identical for the same model in any process.
public struct ModelSummary: Codable, Equatable {
  public static let schemaVersion = 1

  public struct Opset: Codable, Equatable { public var domain: String; public var version: Int64 }
  public struct Value: Codable, Equatable {
    public var name: String
    public var type: String
    public var shape: [String]?
  }
  public struct OpCount: Codable, Equatable { public var domain: String; public var opType: String; public var count: Int }
  public struct TypeTotal: Codable, Equatable { public var type: String; public var elements: Int; public var bytes: Int; public var tensors: Int }
  public struct TensorRow: Codable, Equatable {
    public var name: String
    public var type: String
    public var shape: [Int64]
    public var bytes: Int
    /// "initializer", "constant" (a Constant node's value) or "external" (initializer in a data file)
    public var storage: String
  }
  public struct ExternalFile: Codable, Equatable { public var file: String; public var tensors: Int; public var bytes: Int }
  public struct Parameters: Codable, Equatable {
    public var elements: Int
    public var bytes: Int
    public var byType: [TypeTotal]
  }
  public struct ConstantWeights: Codable, Equatable {
    public var nodes: Int
    public var elements: Int
    public var bytes: Int
  }

  public var schemaVersion: Int
  public var file: String
  public var fileBytes: Int
  public var irVersion: Int64
  public var producerName: String
  public var producerVersion: String
  public var opsets: [Opset]
  public var inputs: [Value]
  public var outputs: [Value]
  public var nodes: Int
  public var ops: [OpCount]
  public var subgraphs: Int
  public var functions: Int
  public var parameters: Parameters
  public var largestTensors: [TensorRow]
  public var constantWeights: ConstantWeights
  public var externalData: [ExternalFile]
  public var unknownFields: Int
  /// Per-node shapes and costs, present with `inspect --shapes` or `--input-shape`.
  public var shapes: Shapes?

  public struct Shapes: Codable, Equatable {
    public struct Output: Codable, Equatable {
      public var name: String
      public var type: String
      /// A number, an expression of symbols ("2*height", "ceil(width/32)") or "?" per dimension;
      /// nil when the rank is unknown.
      public var shape: [String]?
      public init(name: String, type: String, shape: [String]?) { self.name = name; self.type = type; self.shape = shape }
    }
    public struct Node: Codable, Equatable {
      public var name: String
      public var opType: String
      public var outputs: [Output]
      /// The node's multiply-accumulates when they are a number...
      public var macs: Int?
      /// ...or the expression of symbols they are.
      public var macsExpression: String?
      public init(name: String, opType: String, outputs: [Output], macs: Int?, macsExpression: String? = nil) {
        self.name = name; self.opType = opType; self.outputs = outputs; self.macs = macs; self.macsExpression = macsExpression
      }
    }
    /// Symbolic input dimensions left unbound (`--input-shape` binds them).
    public var unboundSymbols: [String]
    /// Symbols for sizes only the data decides (NonZero, NonMaxSuppression, If branches that differ).
    public var dataDependentSymbols: [String]
    /// Totals as numbers when every size they depend on is bound, else as expressions.
    public var macs: Int?
    public var macsExpression: String?
    public var flops: Int?
    public var flopsExpression: String?
    public var peakActivationBytes: Int?
    public var peakActivationBytesExpression: String?
    /// Whether some node's costs or some value's size could not be inferred (totals are then lower bounds).
    public var incomplete: Bool
    public var nodes: [Node]
    public init(unboundSymbols: [String], dataDependentSymbols: [String], macs: Int?, macsExpression: String?, flops: Int?,
                flopsExpression: String?, peakActivationBytes: Int?, peakActivationBytesExpression: String?, incomplete: Bool,
                nodes: [Node]) {
      self.unboundSymbols = unboundSymbols; self.dataDependentSymbols = dataDependentSymbols
      self.macs = macs; self.macsExpression = macsExpression; self.flops = flops; self.flopsExpression = flopsExpression
      self.peakActivationBytes = peakActivationBytes; self.peakActivationBytesExpression = peakActivationBytesExpression
      self.incomplete = incomplete; self.nodes = nodes
    }
  }

  public init(model: Model, file: String, fileBytes: Int, unknownFields: Int, largest: Int = 10) {
    schemaVersion = Self.schemaVersion
    self.file = file
    self.fileBytes = fileBytes
    irVersion = model.irVersion
    producerName = model.producerName
    producerVersion = model.producerVersion
    opsets = model.opsetImports.map { Opset(domain: $0.domain, version: $0.version) }
    inputs = model.graph.inputs.map(Self.value)
    outputs = model.graph.outputs.map(Self.value)
    self.unknownFields = unknownFields
    functions = model.functions.count

    var nodeCount = 0
    var graphCount = 0
    var ops = [String: OpCount]()
    var tensors = [TensorRow]()
    var constant = ConstantWeights(nodes: 0, elements: 0, bytes: 0)
    var byType = [DataType: TypeTotal]()
    var external = [String: ExternalFile]()
    var externalOrder = [String]()

    func count(_ t: Tensor, storage: String) {
      tensors.append(TensorRow(name: t.name, type: t.dataType.name, shape: t.dims, bytes: t.byteCount, storage: storage))
      var total = byType[t.dataType] ?? TypeTotal(type: t.dataType.name, elements: 0, bytes: 0, tensors: 0)
      total.elements += t.elementCount
      total.bytes += t.byteCount
      total.tensors += 1
      byType[t.dataType] = total
      if let ext = t.external {
        if external[ext.location] == nil { externalOrder.append(ext.location) }
        var f = external[ext.location] ?? ExternalFile(file: ext.location, tensors: 0, bytes: 0)
        f.tensors += 1
        f.bytes += ext.length
        external[ext.location] = f
      }
    }

    model.graph.forEachGraph { g in
      graphCount += 1
      for t in g.initializers { count(t, storage: t.external == nil ? "initializer" : "external") }
      for s in g.sparseInitializers { count(s.values, storage: "sparse") }
      for n in g.nodes {
        nodeCount += 1
        let domain = n.isDefaultDomain ? "ai.onnx" : n.domain
        let key = "\(domain)\u{0}\(n.opType)"
        ops[key, default: OpCount(domain: domain, opType: n.opType, count: 0)].count += 1
        if n.opType == "Constant" && n.isDefaultDomain, let t = n.attribute("value")?.tensor {
          var named = t
          if named.name.isEmpty { named.name = n.outputs.first ?? "" }
          count(named, storage: "constant")
          constant.nodes += 1
          constant.elements += t.elementCount
          constant.bytes += t.byteCount
        }
      }
    }
    nodes = nodeCount
    subgraphs = graphCount - 1
    self.ops = ops.values.sorted { ($0.domain, $0.opType) < ($1.domain, $1.opType) }
    let totals = byType.keys.sorted().compactMap { byType[$0] }
    parameters = Parameters(elements: totals.reduce(0) { $0 + $1.elements },
                            bytes: totals.reduce(0) { $0 + $1.bytes }, byType: totals)
    largestTensors = Array(tensors.enumerated()
      .sorted { ($0.element.bytes, $1.offset) > ($1.element.bytes, $0.offset) }
      .prefix(largest).map(\.element))
    constantWeights = constant
    externalData = externalOrder.compactMap { external[$0] }
  }

  static func value(_ v: ValueInfo) -> Value {
    guard let t = v.type else { return Value(name: v.name, type: "?", shape: nil) }
    switch t.kind {
    case .tensor(let e, let s), .sparseTensor(let e, let s):
      let kind = { if case .tensor = t.kind { return "tensor" } else { return "sparse_tensor" } }()
      return Value(name: v.name, type: "\(kind)(\(e.name))", shape: s?.dims.map(\.description))
    default:
      return Value(name: v.name, type: t.description, shape: nil)
    }
  }
}
