import ArgumentParser
import Compression
import Foundation
import IR
import ONNX
import Report
import Support

extension Compressor {
  struct Factorize: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Factorize Gemm, MatMul and Conv weights into two thin factors (truncated SVD; data-aware with --data).",
      discussion: """
        Give one rank rule: --rank, --rank-ratio, --energy, --target-params or --target-macs. A \
        layer is factorized only when rank·(K+N) < K·N. With --data the factors minimize the \
        error of each layer's output on those samples (whitened SVD), and the report gives the \
        output error of the plain and data-aware factors, the weight error, the kept energy, \
        parameters before and after, and the quality against the input model. Convolutions \
        follow --conv-scheme (plain SVD of the kernel; grouped and depthwise ones are skipped).
        """)

    @Argument(help: "The ONNX model to factorize.")
    var model: String

    @OptionGroup var output: OutputOption<FactorizeStep>

    @OptionGroup var step: FactorizeStep

    @OptionGroup var reporting: RunOptions<FactorizeStep>

    @OptionGroup var memory: MemoryOptions

    func run() throws {
      try TransformCommandRun(step: step, model: model, output: output.output ?? defaultOutput(model, suffix: "lowrank"), run: reporting)()
    }
  }
}

/// `factorize`'s options (a recipe's `factorize:` step).
struct FactorizeStep: StepOptions, StepHelp {
  static let stepName = "factorize"
  static let pathKeys: Set<String> = ["data", "labels"]
  static let outputHelp = "Where to write the result (default: beside the input, MODEL.lowrank.onnx)."
  static let dataHelp = "Calibration samples for data-aware factorization and the quality section."
  static let threadsHelp = "Threads for the SVDs and the runtime."

  @Option(help: "The same rank for every layer (clamped to min(K, N)).")
  var rank: Int?

  @Option(help: "Rank as a fraction of min(K, N), in (0, 1].")
  var rankRatio: Double?

  @Option(help: "The smallest rank keeping this fraction of the (whitened) singular-value energy, in (0, 1].")
  var energy: Double?

  @Option(help: "Keep this fraction of the model's parameters, ranks chosen greedily by output energy lost per parameter saved.")
  var targetParams: Double?

  @Option(help: "Keep this fraction of the model's MACs (needs --data), ranks chosen greedily.")
  var targetMacs: Double?

  @Option(help: "Convolutions: channel (k×k to rank r, then 1×1) or spatial (k×1 to rank r, then 1×k).")
  var convScheme: String = "channel"

  @Option(help: "Use a randomized SVD for weights with more elements than this (default: always LAPACK's full gesdd).")
  var randomizedAbove: Int?

  @OptionGroup var samples: DataOptions<FactorizeStep>

  @OptionGroup var runtime: RuntimeOptions<FactorizeStep>

  var data: String? { samples.data }
  var labels: String? { samples.labels }

  func validate() throws {
    let rules = [rank != nil, rankRatio != nil, energy != nil, targetParams != nil, targetMacs != nil].filter { $0 }.count
    if rules != 1 { throw ValidationError("give exactly one of --rank, --rank-ratio, --energy, --target-params or --target-macs") }
    if let r = rank, r < 1 { throw ValidationError("--rank must be 1 or more, not \(r)") }
    for (flag, v) in [("--rank-ratio", rankRatio), ("--energy", energy), ("--target-params", targetParams), ("--target-macs", targetMacs)] {
      if let v, !(v > 0 && v <= 1) { throw ValidationError("\(flag) must be in (0, 1], not \(v)") }
    }
    if targetMacs != nil && data == nil { throw ValidationError("--target-macs needs --data (to count each layer's MACs)") }
    if labels != nil && data == nil { throw ValidationError("--labels needs --data") }
    if FactorizeLayers.ConvScheme(rawValue: convScheme) == nil {
      throw ValidationError("--conv-scheme must be channel or spatial, not '\(convScheme)'")
    }
    if let n = randomizedAbove, n < 0 { throw ValidationError("--randomized-above must be 0 or more, not \(n)") }
  }

  var inputFiles: [(role: String, path: String)] {
    [("data", data), ("labels", labels)].compactMap { r, p in p.map { (r, $0) } }
  }
  var qualityData: (data: String, labels: String?)? { data.map { ($0, labels) } }

  func plan(_ environment: StepEnvironment) throws -> StepPlan {
    let threads = runtime.threads
    let rule: FactorizeLayers.RankRule =
      rank.map { .rank($0) } ?? rankRatio.map { .ratio($0) } ?? energy.map { .energy($0) }
      ?? targetParams.map { .parameters($0) } ?? .macs(targetMacs ?? 1)
    let passes: [Pass] = preparationPasses() + [FactorizeLayers(rule: rule, convScheme: FactorizeLayers.ConvScheme(rawValue: convScheme) ?? .channel,
                                          randomizedAbove: randomizedAbove, data: data, threads: threads), RemoveDeadCode()]
    let quality = data.map { QualityCheck(data: $0, labels: labels, threads: threads) }
    return StepPlan(passes: passes, measureSizes: true, quality: quality, summary: { outcome in
      let rows = outcome.passes.first { $0.pass == FactorizeLayers.name }?.changes ?? []
      let factorized = rows.filter { $0.action == "factorized" }.count
      var line = "\(factorized) layers factorized"
      line += ", parameters \(parameterCount(outcome.input.model)) → \(parameterCount(outcome.result))"
      if let s = outcome.sizes, let a = s.macsBefore, let b = s.macsAfter { line += ", MACs \(a) → \(b)" }
      line += outcome.quality?.headline ?? ""
      var warnings = [String]()
      if factorized == 0 {
        warnings.append("no layer was factorized: \(whyNothingPrunes(outcome.result, changes: rows, mainGraphOnly: true))")
      }
      return (line, warnings)
    })
  }
}
