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

    @OptionGroup var output: OutputOption<OptimizeStep>

    @OptionGroup var step: OptimizeStep

    @OptionGroup var reporting: RunOptions<OptimizeStep>

    @OptionGroup var memory: MemoryOptions

    func run() throws {
      try TransformCommandRun(step: step, model: model, output: output.output ?? defaultOutput(model, suffix: "optimized"), run: reporting)()
    }
  }
}

/// `optimize`'s options (a recipe's `optimize:` step).
struct OptimizeStep: StepOptions, StepHelp {
  static let stepName = "optimize"
  static let pathKeys: Set<String> = ["data", "labels"]
  static let outputHelp = "Where to write the result (default: beside the input, MODEL.optimized.onnx)."
  static let dataHelp = "Samples for the quality section (the result against the input)."
  static let threadsHelp = "Threads for the runtime (quality)."

  @OptionGroup var samples: DataOptions<OptimizeStep>

  @OptionGroup var runtime: RuntimeOptions<OptimizeStep>

  func validate() throws {
    if samples.labels != nil && samples.data == nil { throw ValidationError("--labels needs --data") }
  }

  var inputFiles: [(role: String, path: String)] {
    [("data", samples.data), ("labels", samples.labels)].compactMap { r, p in p.map { (r, $0) } }
  }
  var qualityData: (data: String, labels: String?)? { samples.data.map { ($0, samples.labels) } }

  func plan(_ environment: StepEnvironment) throws -> StepPlan {
    StepPlan(passes: preparationPasses() + [InferShapes()],
             quality: samples.data.map { QualityCheck(data: $0, labels: samples.labels, threads: runtime.threads) },
             summary: { outcome in
               (outcome.passes.map { r in "\(r.pass): \(r.changes.filter { $0.action != "skipped" }.count)" }.joined(separator: ", ")
                  + (outcome.quality?.headline ?? ""), [])
             })
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
