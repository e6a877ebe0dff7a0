import ArgumentParser
import Compression
import Datasets
import IR
import ONNX
import Runtime
import Report
import Support

extension Compressor {
  struct Optimize: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Prepare a model for compression: Constant-node weights to initializers, constants folded, BatchNormalization folded into Conv, dead nodes removed, shapes recorded.",
      discussion: "Every pass lists what it changed and what it left alone, and why, in --report.")

    @Argument(help: "The ONNX model to optimize.")
    var model: String

    @Option(name: .shortAndLong, help: "Where to write the result (default: beside the input, MODEL.optimized.onnx).")
    var output: String?

    @Option(help: "Write a JSON report of every change to this file.")
    var report: String?

    @Flag(help: "Replace the output (and report) if they exist.")
    var force = false

    @OptionGroup var memory: MemoryOptions

    func run() throws {
      let out = output ?? defaultOutput(model, suffix: "optimized")
      let outcome = try TransformRun(command: "optimize", model: model, output: out, report: report, force: force)
        .run(preparationPasses() + [InferShapes()])
      let changed = outcome.passes.map { r in "\(r.pass): \(r.changes.filter { $0.action != "skipped" }.count)" }
      FileHandle.standardError.write("wrote \(out) (\(changed.joined(separator: ", ")))\n")
    }
  }
}

/// What every transforming command runs first: Constant-node weights to initializers, constants
/// folded, BatchNormalization folded into its Conv (prune folds after pruning instead, so that
/// bn-scale can rank channels), dead code removed.
func preparationPasses(foldBatchNorm: Bool = true) -> [Pass] {
  [ConstantsToInitializers(), FoldConstants()] + (foldBatchNorm ? [FoldBatchNormIntoConv()] : []) + [RemoveDeadCode()]
}

/// `dir/name.onnx` → `dir/name.SUFFIX.onnx`, as every transforming command names its output.
func defaultOutput(_ input: String, suffix: String) -> String {
  let base = input.hasSuffix(".onnx") ? String(input.dropLast(5)) : input
  return "\(base).\(suffix).onnx"
}

/// The report every transforming command can write with --report.
struct PassReport: Encodable {
  struct ModelFacts: Encodable {
    var file: String
    var bytes: Int
    var nodes: Int
    var initializers: Int
    var parameters: Int
    /// Prune and factorize: multiply-accumulates for one sample (see `singleSampleMACs`).
    var macs: Int?
    /// Prune and factorize: the model file's size deflated (zlib level 6), what an update over the air ships.
    var deflatedBytes: Int?
    init(file: String, bytes: Int, model: Model, macs: Int? = nil, deflatedBytes: Int? = nil) {
      self.file = file
      self.bytes = bytes
      self.macs = macs
      self.deflatedBytes = deflatedBytes
      var nodes = 0, initializers = 0
      model.graph.forEachGraph { g in
        nodes += g.nodes.count
        initializers += g.initializers.count
      }
      self.nodes = nodes
      self.initializers = initializers
      self.parameters = parameterCount(model)
    }
  }
  var schemaVersion = 1
  var command: String
  var input: ModelFacts
  var output: ModelFacts
  var passes: [PassResult]
  var quality: QualityCheck.Result?
}

/// Elements of initializers and Constant-node tensors, subgraphs included.
func parameterCount(_ model: Model) -> Int {
  var parameters = 0
  model.graph.forEachGraph { g in
    parameters += g.initializers.reduce(0) { $0 + $1.elementCount }
    for n in g.nodes where n.opType == "Constant" { parameters += n.attribute("value")?.tensor?.elementCount ?? 0 }
  }
  return parameters
}

/// Multiply-accumulates of one sample: input shapes from the first sample of `data` when given
/// (its leading dimension taken as 1), else every symbolic or unknown dimension bound to 1.
/// nil when the model cannot be run on zeros that way.
func singleSampleMACs(_ model: Model, data: String? = nil) -> Int? {
  var bindings = [String: [Int]]()
  let feeds = Set(model.graph.feedNames)
  if let data, let shapes = try? Dataset(path: data, inputNames: model.graph.feedNames).sampleShapes() {
    bindings = shapes
  } else {
    for input in model.graph.inputs where feeds.contains(input.name) {
      guard case .tensor(_, let shape)? = input.type?.kind, let shape else { return nil }
      bindings[input.name] = shape.dims.map { d in d.size.map { Int(clamping: $0) } ?? 1 }
    }
  }
  return try? ShapeInference(model: model, bindings: bindings).totalMACs
}
