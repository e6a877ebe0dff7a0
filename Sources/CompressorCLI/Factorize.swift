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

    @Option(name: .shortAndLong, help: "Where to write the result (default: beside the input, MODEL.lowrank.onnx).")
    var output: String?

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

    @Option(help: "Calibration samples for data-aware factorization and the quality section.")
    var data: String?

    @Option(help: "A .npy of class indices aligned with --data, for accuracy.")
    var labels: String?

    @Option(help: "Threads for the SVDs and the runtime.")
    var threads = 1

    @Option(help: "Write a JSON report of every change to this file.")
    var report: String?

    @Flag(help: "Replace the output (and report) if they exist.")
    var force = false

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
      let rules = [rank != nil, rankRatio != nil, energy != nil, targetParams != nil, targetMacs != nil].filter { $0 }.count
      if rules != 1 { throw ValidationError("give exactly one of --rank, --rank-ratio, --energy, --target-params or --target-macs") }
      if let r = rank, r < 1 { throw ValidationError("--rank must be 1 or more, not \(r)") }
      for (flag, v) in [("--rank-ratio", rankRatio), ("--energy", energy), ("--target-params", targetParams), ("--target-macs", targetMacs)] {
        if let v, !(v > 0 && v <= 1) { throw ValidationError("\(flag) must be in (0, 1], not \(v)") }
      }
      if targetMacs != nil && data == nil { throw ValidationError("--target-macs needs --data (to count each layer's MACs)") }
      if labels != nil && data == nil { throw ValidationError("--labels needs --data") }
      if threads < 1 { throw ValidationError("--threads must be 1 or more, not \(threads)") }
      if FactorizeLayers.ConvScheme(rawValue: convScheme) == nil {
        throw ValidationError("--conv-scheme must be channel or spatial, not '\(convScheme)'")
      }
      if let n = randomizedAbove, n < 0 { throw ValidationError("--randomized-above must be 0 or more, not \(n)") }
    }

    func run() throws {
      let out = output ?? defaultOutput(model, suffix: "lowrank")
      let rule: FactorizeLayers.RankRule =
        rank.map { .rank($0) } ?? rankRatio.map { .ratio($0) } ?? energy.map { .energy($0) }
        ?? targetParams.map { .parameters($0) } ?? .macs(targetMacs ?? 1)
      let passes: [Pass] = preparationPasses() + [FactorizeLayers(rule: rule, convScheme: FactorizeLayers.ConvScheme(rawValue: convScheme) ?? .channel,
                                            randomizedAbove: randomizedAbove, data: data, threads: threads), RemoveDeadCode()]
      let quality = data.map { QualityCheck(data: $0, labels: labels, threads: threads) }
      let outcome = try TransformRun(command: "factorize", model: model, output: out, report: report, force: force,
                                     quality: quality, measureSizes: true).run(passes)
      let rows = outcome.passes.first { $0.pass == FactorizeLayers.name }?.changes ?? []
      let factorized = rows.filter { $0.action == "factorized" }.count
      var line = "wrote \(out) (\(factorized) layers factorized"
      line += ", parameters \(parameterCount(outcome.loaded.model)) → \(parameterCount(outcome.result))"
      if let s = outcome.sizes, let a = s.macsBefore, let b = s.macsAfter { line += ", MACs \(a) → \(b)" }
      line += outcome.quality?.headline ?? ""
      FileHandle.standardError.write(line + ")\n")
      if factorized == 0 {
        let why = whyNothingPrunes(outcome.result, changes: rows, mainGraphOnly: true)
        FileHandle.standardError.write("compressor: warning: no layer was factorized: \(why)\n")
      }
    }
  }
}
