/// An ONNX model: the one representation every pass reads and rewrites.
public struct Model: Equatable, Sendable {
  public var irVersion: Int64
  public var opsetImports: [OpsetImport]
  public var producerName: String
  public var producerVersion: String
  public var domain: String
  public var modelVersion: Int64
  public var docString: String
  public var graph: Graph
  public var metadata: [StringPair]
  public var trainingInfo: [TrainingInfo]
  public var functions: [Function]
  public var unknownFields: [UnknownField]

  public init(irVersion: Int64, opsetImports: [OpsetImport], producerName: String = "",
              producerVersion: String = "", domain: String = "", modelVersion: Int64 = 0,
              docString: String = "", graph: Graph, metadata: [StringPair] = [],
              trainingInfo: [TrainingInfo] = [], functions: [Function] = [],
              unknownFields: [UnknownField] = []) {
    self.irVersion = irVersion; self.opsetImports = opsetImports; self.producerName = producerName
    self.producerVersion = producerVersion; self.domain = domain; self.modelVersion = modelVersion
    self.docString = docString; self.graph = graph; self.metadata = metadata
    self.trainingInfo = trainingInfo; self.functions = functions; self.unknownFields = unknownFields
  }

  /// The version of the standard operator set the model imports, if any.
  public var defaultOpsetVersion: Int64? {
    opsetImports.first(where: \.isDefaultDomain)?.version
  }

  /// IR versions this build reads and writes; later fields are carried as unknown fields.
  public static let supportedIRVersions: ClosedRange<Int64> = 1...14
  /// Versions of the standard operator set (domain "" / "ai.onnx") this build accepts.
  public static let supportedDefaultOpsets: ClosedRange<Int64> = 1...28
}

extension Model {
  /// IR versions before 4 require every initializer to be listed among its graph's inputs
  /// (caffe2-era models list every weight). Passes add and remove initializers without thinking
  /// of that; this lists the ones a pass added, after the inputs the graph already had, so that
  /// the model stays valid for its IR version. Nothing changes for IR 4 and later.
  public mutating func listInitializersAsInputsIfRequired() {
    // The main graph only: Loop and Scan bodies bind their inputs by position.
    guard irVersion < 4 else { return }
    let listed = Set(graph.inputs.map(\.name))
    for t in graph.initializers where !listed.contains(t.name) {
      let dims = t.dims.map { Dimension(.known($0)) }
      graph.inputs.append(ValueInfo(name: t.name, type: .tensor(t.dataType, TensorShape(dims))))
    }
  }
}
