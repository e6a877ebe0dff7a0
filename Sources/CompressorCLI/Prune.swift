import ArgumentParser
import Compression
import Foundation
import IR
import ONNX
import Report
import Support

extension Compressor {
  struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Prune a model: magnitude (unstructured), N:M semi-structured, or whole channels (structured, physically smaller).",
      discussion: """
        Give one of --sparsity (unstructured), --pattern (N:M) or --structured --ratio. Runs the \
        preparation passes of `optimize` first and folds BatchNormalization after pruning. \
        Unstructured and N:M pruning zero weights of Conv, Gemm and MatMul layers (first and last \
        kept dense unless --prune-first-last); structured pruning finds channel dependency groups \
        (residual sums, depthwise convs, Concat, squeeze-excitation, MLP chains) and removes the \
        least important channels of each from every tensor indexed by them. The report lists \
        every layer and group pruned or left alone with the reason, parameters, MACs and deflated \
        sizes before and after, and with --data the quality against the input model.
        """)

    @Argument(help: "The ONNX model to prune.")
    var model: String

    @OptionGroup var output: OutputOption<PruneStep>

    @OptionGroup var step: PruneStep

    @OptionGroup var reporting: RunOptions<PruneStep>

    @OptionGroup var memory: MemoryOptions

    static func parsePattern(_ p: String) -> (n: Int, m: Int)? { PruneStep.parsePattern(p) }

    func run() throws {
      let out = output.output ?? defaultOutput(model, suffix: "pruned")
      let outcome = try TransformCommandRun(step: step, model: model, output: out, run: reporting, writesModel: !step.analyze)()
      guard step.analyze, let outcome else { return }
      let rows = outcome.passes.first { $0.pass == PruneSearch.name }?.changes.filter { $0.action == "analyzed" } ?? []
      FileHandle.standardOutput.write("group  ratio  loss  MACs  parameters\n")
      for row in rows {
        let v = row.values ?? [:]
        FileHandle.standardOutput.write("\(row.target)  \(jsonNumber(v["ratio"] ?? 0))  \(jsonNumber(v["loss"] ?? 0))  \(jsonNumber(v["macs"] ?? 0))  \(jsonNumber(v["parameters"] ?? 0))\n")
      }
    }
  }
}

/// `prune`'s options (a recipe's `prune:` step).
struct PruneStep: StepOptions, StepHelp {
  static let stepName = "prune"
  static let pathKeys: Set<String> = ["data", "labels"]
  static let outputHelp = "Where to write the result (default: beside the input, MODEL.pruned.onnx)."
  static let dataHelp = "Samples for --criterion activation and for the quality section."
  static let threadsHelp = "Threads for the runtime (activation criterion, quality)."

  @Option(help: "Unstructured: the fraction of each layer's weights set to zero, in [0, 1).")
  var sparsity: Double?

  @Flag(help: "Unstructured: one magnitude threshold across all layers instead of the same sparsity in each.")
  var global = false

  @Option(help: "N:M semi-structured sparsity: keep N of every M weights along the input dimension (2:4, 4:8).")
  var pattern: String?

  @Flag(help: "Remove whole channels (with --ratio).")
  var structured = false

  @Option(help: "Structured: the fraction of each group's channels removed, in [0, 1).")
  var ratio: Double?

  @Option(help: "Structured: channel importance — l1, l2, bn-scale or activation (needs --data).")
  var criterion: String = "l1"

  @Flag(help: "Structured: also remove whole attention heads (the same --ratio of each block's heads).")
  var heads = false

  @Flag(help: "Structured: prune each channel group alone at ratios 0.1…0.7 and report the quality lost (needs --data); writes no model.")
  var analyze = false

  @Option(help: "Structured: keep this fraction of the MACs, choosing per-group ratios by sensitivity (needs --data).")
  var targetMacs: Double?

  @Option(help: "Structured: keep this fraction of the parameters, choosing per-group ratios by sensitivity (needs --data).")
  var targetParams: Double?

  @Option(help: "Structured: keep whole multiples of this many channels, the nearest to the ratio (1 to keep exact ratios; ONNX Runtime blocks channels by 16 with AVX-512, 8 with AVX2).")
  var channelMultiple = 16

  @Option(help: "Per-layer ratios: PATTERN=RATIO[,…], PATTERN a node-name glob or an op type.")
  var overrides: String?

  @Flag(help: "Unstructured and N:M: prune the first and last layers too.")
  var pruneFirstLast = false

  @OptionGroup var samples: DataOptions<PruneStep>

  @OptionGroup var runtime: RuntimeOptions<PruneStep>

  var data: String? { samples.data }
  var labels: String? { samples.labels }

  func validate() throws {
    let modes = [sparsity != nil, pattern != nil, structured].filter { $0 }.count
    if modes != 1 { throw ValidationError("give exactly one of --sparsity, --pattern or --structured") }
    if let s = sparsity, !(s >= 0 && s < 1) {
      throw ValidationError("--sparsity must be in [0, 1), not \(s)\(s == 1 ? " (that would empty every layer)" : "")")
    }
    let searching = analyze || targetMacs != nil || targetParams != nil
    if searching {
      if !structured { throw ValidationError("--analyze, --target-macs and --target-params go with --structured") }
      if data == nil { throw ValidationError("--analyze, --target-macs and --target-params need --data") }
      if ratio != nil { throw ValidationError("--ratio is chosen by --target-macs / --target-params; give one or the other") }
      if targetMacs != nil && targetParams != nil { throw ValidationError("give --target-macs or --target-params, not both") }
      for t in [targetMacs, targetParams].compactMap({ $0 }) where !(t > 0 && t <= 1) {
        throw ValidationError("a target must be a fraction in (0, 1], not \(t)")
      }
    } else if structured {
      guard let r = ratio else { throw ValidationError("--structured needs --ratio") }
      if !(r >= 0 && r < 1) { throw ValidationError("--ratio must be in [0, 1), not \(r)\(r == 1 ? " (that would empty every group)" : "")") }
    } else if ratio != nil {
      throw ValidationError("--ratio goes with --structured")
    }
    if let p = pattern, Self.parsePattern(p) == nil {
      throw ValidationError("--pattern must be N:M with 0 < N < M (2:4, 4:8), not '\(p)'")
    }
    guard let c = PruneChannels.Criterion(rawValue: criterion) else {
      throw ValidationError("--criterion must be l1, l2, bn-scale or activation, not '\(criterion)'")
    }
    if c == .activation && data == nil { throw ValidationError("--criterion activation needs --data") }
    if labels != nil && data == nil { throw ValidationError("--labels needs --data") }
    if channelMultiple < 1 { throw ValidationError("--channel-multiple must be 1 or more, not \(channelMultiple)") }
    if heads && (!structured || ratio == nil) { throw ValidationError("--heads goes with --structured --ratio") }
    if global && sparsity == nil { throw ValidationError("--global goes with --sparsity") }
  }

  static func parsePattern(_ p: String) -> (n: Int, m: Int)? {
    let parts = p.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]), n > 0, n < m, m <= 64 else { return nil }
    return (n, m)
  }

  var inputFiles: [(role: String, path: String)] {
    [("data", data), ("labels", labels)].compactMap { r, p in p.map { (r, $0) } }
  }
  var qualityData: (data: String, labels: String?)? { analyze ? nil : data.map { ($0, labels) } }
  var notAPipelineStep: String? { analyze ? "prune analyze writes no model" : nil }

  func plan(_ environment: StepEnvironment) throws -> StepPlan {
    let threads = runtime.threads
    let overrides = try self.overrides.map { try RatioOverrides.parse($0) } ?? RatioOverrides()
    var pruning = [Pass]()
    if let s = sparsity {
      pruning = [PruneUnstructured(sparsity: s, global: global, overrides: overrides, pruneFirstLast: pruneFirstLast)]
    } else if let p = pattern.flatMap(Self.parsePattern) {
      pruning = [PruneNM(n: p.n, m: p.m, pruneFirstLast: pruneFirstLast)]
    } else if analyze || targetMacs != nil || targetParams != nil {
      let budget: PruneSearch.Budget? = targetMacs.map { .macs($0) } ?? targetParams.map { .parameters($0) }
      pruning = [PruneSearch(budget: budget, data: data ?? "", criterion: PruneChannels.Criterion(rawValue: criterion) ?? .l1,
                             multiple: channelMultiple, threads: threads)]
    } else {
      if heads { pruning.append(PruneHeads(ratio: ratio ?? 0)) }
      pruning.append(PruneChannels(ratio: ratio ?? 0, criterion: PruneChannels.Criterion(rawValue: criterion) ?? .l1,
                                   overrides: overrides, data: data, threads: threads, multiple: channelMultiple))
    }
    let passes = preparationPasses(foldBatchNorm: false) + pruning + [FoldBatchNormIntoConv(), RemoveDeadCode()]
    let quality = analyze ? nil : data.map { QualityCheck(data: $0, labels: labels, threads: threads) }
    let pruneNames = Set(pruning.map { type(of: $0).name })
    let pruneName = pruning.last.map { type(of: $0).name } ?? ""
    let (label, analyze, structured) = (environment.inputLabel, self.analyze, self.structured)
    return StepPlan(passes: passes, afterPasses: { results, prepared in
      guard let r = results.first(where: { $0.pass == pruneName }) else { return }
      let all = results.filter { pruneNames.contains($0.pass) }.flatMap(\.changes)
      if analyze {
        if !r.changes.contains(where: { $0.action == "analyzed" }) {
          throw CompressorError.unsupported("no channel group of \(label) can be pruned (\(r.changes.first?.detail ?? "none found"))")
        }
      } else if !all.contains(where: { $0.action == "pruned" }) {
        let why = whyNothingPrunes(prepared, changes: all, mainGraphOnly: structured)
        throw CompressorError.unsupported("nothing in \(label) can be pruned this way: \(why)")
      }
    }, measureSizes: true, quality: quality, summary: { outcome in
      let pruned = outcome.passes.filter { pruneNames.contains($0.pass) }.flatMap(\.changes).filter { $0.action == "pruned" }.count
      var line = "\(pruned) layers/groups pruned"
      line += ", parameters \(parameterCount(outcome.input.model)) → \(parameterCount(outcome.result))"
      if let s = outcome.sizes {
        if let a = s.macsBefore, let b = s.macsAfter { line += ", MACs \(a) → \(b)" }
        if let after = s.deflatedAfter { line += ", deflated \(s.deflatedBefore) → \(after) bytes" }
      }
      line += outcome.quality?.headline ?? ""
      return (line, [])
    })
  }
}
