import IR
import Support

/// One rewrite of a model: a name, options as stored properties, and a `run` that says what it
/// changed. Passes never see protobuf; they read and rewrite the IR.
public protocol Pass {
  static var name: String { get }
  func run(_ model: inout Model, _ context: PassContext) throws -> PassResult
}

/// What every pass may use besides the model.
public struct PassContext {
  public var seed: UInt64
  public init(seed: UInt64 = 0) { self.seed = seed }
}

/// What a pass did: one row per node or tensor it changed or deliberately left alone.
public struct PassResult: Codable, Equatable {
  public struct Change: Codable, Equatable {
    /// The node or tensor concerned.
    public var target: String
    /// What happened: e.g. "moved to initializer", "folded", "removed", "skipped".
    public var action: String
    /// Why, or the details of what was done.
    public var detail: String
    /// The same details as numbers a script can gate on (scales, SQNR, ranges); finite only.
    public var values: [String: Double]?
    public init(target: String, action: String, detail: String, values: [String: Double]? = nil) {
      self.target = target; self.action = action; self.detail = detail
      self.values = values?.filter { $0.value.isFinite }
    }
  }
  public var pass: String
  public var modified: Bool
  public var changes: [Change]
  public init(pass: String, changes: [Change]) {
    self.pass = pass
    self.changes = changes
    self.modified = changes.contains { $0.action != "skipped" }
  }
}

/// Runs passes in order and collects their results; the model must still validate afterwards.
public struct PassManager {
  public var passes: [Pass]
  public init(_ passes: [Pass]) { self.passes = passes }

  public func run(_ model: inout Model, context: PassContext = .init(), file: String) throws -> [PassResult] {
    var results = [PassResult]()
    for pass in passes {
      results.append(try pass.run(&model, context))
      model.listInitializersAsInputsIfRequired()
      do {
        try validate(model, file: file)
      } catch let e as CompressorError {
        throw CompressorError.internalError("pass \(type(of: pass).name) produced an invalid model: \(e.message)")
      }
    }
    return results
  }
}

/// A node as reports name it: its name, or its op type and first output.
func label(_ n: Node) -> String { n.name.isEmpty ? "\(n.opType):\(n.outputs.first ?? "")" : n.name }
