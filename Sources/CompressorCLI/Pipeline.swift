import ArgumentParser
import Compression
import Datasets
import Dispatch
import Foundation
import IR
import ONNX
import Report
import Support

#if canImport(Glibc)
import Glibc
#endif

extension Compressor {
  struct Pipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Run a compression recipe (YAML or JSON): steps from the input model to the output, quality gates, one report.",
      discussion: """
        A recipe names the model, defaults for every step (data, labels, threads, seed), the steps \
        — optimize, quantize, prune, factorize, distill, each with the keys of its subcommand's long \
        options ({structured: true, ratio: 0.3}; `teacher: original` is the recipe's model), plus \
        keep: true|FILE and gate: {…}; `repeat: N` with steps: [...] repeats them — and gates on \
        the result against the input model: accuracy-drop (points), accuracy, agreement, cosine, \
        size, params, macs, latency-p50 (ratios unless given with a unit: 2MiB, 1.5M, 4ms). Models \
        stay in memory between steps; the result equals the same steps run as subcommands. Files \
        in a recipe are relative to it. A failed gate still writes the model and the report, and \
        exits 2. The summary line (or --json) is on stdout; each step's line on stderr. See \
        examples/ and docs/pipeline.md.
        """)

    @Argument(help: "The recipe: a .yaml/.yml or .json file.")
    var recipe: String

    @Option(name: .shortAndLong, help: "Where to write the result (default: the recipe's output, else beside the model, MODEL.RECIPE.onnx).")
    var output: String?

    @Option(help: "Write the JSON report to this file (default: the recipe's report).")
    var report: String?

    @Option(help: "Write the report as one self-contained HTML page to this file (default: the recipe's html).")
    var html: String?

    @Flag(help: "Leave wall-clock times and latencies out of the report, so that it is byte-identical run after run.")
    var noTimings = false

    @Flag(help: "Check the recipe, its files and its outputs, print the steps as command-line options, and stop.")
    var dryRun = false

    @Flag(help: "Replace the output, report and kept models if they exist.")
    var force = false

    @Flag(help: "Print the summary as JSON on stdout.")
    var json = false

    @Flag(help: "No step lines and no progress on stderr.")
    var quiet = false

    @OptionGroup var memory: MemoryOptions

    func run() throws {
      let start = DispatchTime.now().uptimeNanoseconds
      let recipe = try Recipe.load(self.recipe)
      let plan = try RunPlan(recipe: recipe, output: output, report: report, html: html, force: force)
      if dryRun {
        FileHandle.standardOutput.write(try plan.describe())
        return
      }
      try PipelineRun(plan: plan, quiet: quiet, noTimings: noTimings, json: json, start: start).run()
    }
  }
}

/// Where a recipe's run reads and writes, checked before any work.
struct RunPlan {
  var recipe: Recipe
  var output: String
  var report: String?
  var html: String?
  var force: Bool
  /// Where each step's model is kept, by schedule index (the last step's is the output).
  var keeps: [Int: String]
  /// The samples the metrics after every step use.
  var evalData: String?
  var evalLabels: String?
  var threads: Int

  init(recipe: Recipe, output: String?, report: String?, html: String?, force: Bool) throws {
    self.recipe = recipe
    let name = baseName(recipe.file).split(separator: ".").first.map(String.init) ?? "pipeline"
    self.output = output ?? recipe.output ?? defaultOutput(recipe.model, suffix: name)
    self.report = report ?? recipe.report
    self.html = html ?? recipe.html
    self.force = force
    evalData = recipe.evalData ?? recipe.data
    evalLabels = recipe.evalData != nil ? recipe.evalLabels : recipe.labels
    threads = recipe.threads.flatMap { Int($0) } ?? 1
    keeps = [:]
    let base = self.output.hasSuffix(".onnx") ? String(self.output.dropLast(5)) : self.output
    var used = [String: String]()
    for (i, s) in recipe.schedule.enumerated() where i < recipe.schedule.count - 1 {
      guard let keep = s.step.keep else { continue }
      let path: String
      switch keep {
      case .defaultName: path = "\(base).step\(s.at)-\(s.step.name).onnx"
      case .path(let p): path = p
      }
      if let other = used[path] {
        throw CompressorError.usage("steps \(other) and \(s.at) both keep their model in \(path), \(s.step.place)")
      }
      used[path] = s.at
      keeps[i] = path
    }
    try check()
  }

  /// Every file the run reads exists; every file it writes may be written.
  func check() throws {
    var reads: [(role: String, path: String, place: String)] = [("model", recipe.model, recipe.file)]
    for s in recipe.schedule {
      reads += s.step.options.inputFiles.map { ($0.role, $0.path, s.step.place) }
    }
    if let evalData { reads.append(("eval-data", evalData, recipe.file)) }
    if let evalLabels { reads.append(("eval-labels", evalLabels, recipe.file)) }
    for (_, path, place) in reads where !FileManager.default.fileExists(atPath: path) {
      throw CompressorError.missing("\(path): no such file or directory, \(place)")
    }
    let identities = FileIdentity(path: recipe.model).map { [$0] } ?? []
    let outputs = [output] + keeps.keys.sorted().compactMap { keeps[$0] } + [report, html].compactMap { $0 }
    var seen = Set<String>()
    for path in outputs {
      if !seen.insert(path).inserted { throw CompressorError.usage("\(path) is given as two of the run's outputs") }
      try checkOutputPath(path, force: force, inputs: identities)
    }
    if reads.contains(where: { $0.path == output }) { throw CompressorError.output("\(output) is an input of this run; choose another output path") }
  }

  /// `--dry-run`: the steps as the options of their commands.
  func describe() throws -> String {
    let loaded = try ModelReader.read(recipe.model)
    var text = "recipe \(recipe.file): \(recipe.schedule.count) step\(recipe.schedule.count == 1 ? "" : "s") on \(recipe.model) (\(loaded.totalBytes) bytes, valid)\n"
    for (i, s) in recipe.schedule.enumerated() {
      let args = s.step.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
      text += "  \(s.at)  compressor \(s.step.name)\(args.isEmpty ? "" : " " + args)"
      if let keep = keeps[i] { text += "  (kept in \(keep))" }
      for (g, _) in s.step.gates { text += "  gate \(g.kind.rawValue)\(g.comparison)\(g.recipeText)" }
      text += "\n"
    }
    if !recipe.gates.isEmpty {
      text += "gates: " + recipe.gates.map { "\($0.spec.kind.rawValue)\($0.spec.comparison)\($0.spec.recipeText)" }.joined(separator: ", ") + "\n"
    }
    text += "writes \(output)" + (report.map { ", \($0)" } ?? "") + (html.map { ", \($0)" } ?? "") + "\n"
    text += "dry run: recipe, files and outputs checked; nothing was run\n"
    return text
  }
}

/// One run of a recipe: the steps on models held in memory, then the output, report and gates.
struct PipelineRun {
  var plan: RunPlan
  var quiet: Bool
  var noTimings: Bool
  var json: Bool
  var start: UInt64

  var recipe: Recipe { plan.recipe }

  func run() throws {
    let loaded = try ModelReader.read(recipe.model)
    if keepsExternalData(loaded) != nil { SpillStorage.enable(in: directoryName(plan.output)) }
    let original = loaded.model
    var current = StepInput(loaded: loaded, path: recipe.model)
    let evaluation = plan.evalData.map {
      QualityCheck(data: $0, labels: plan.evalLabels, threads: plan.threads, iouThresholds: iouThresholds(recipe.gates.map(\.spec)))
    }
    let measuresLatency = recipe.gates.contains { $0.spec.kind == .latencyP50 }
    let progress = !quiet && isatty(2) != 0

    var rows = [MetricsRow(step: "input", at: "0", bytes: loaded.totalBytes, deflatedBytes: try DeflatedSize.of(recipe.model),
                           parameters: parameterCount(original), nodes: modelFacts(file: "", bytes: 0, model: original).nodes,
                           macs: singleSampleMACs(original, data: plan.evalData),
                           quality: try evaluation.flatMap { q -> [String: Double]? in
                             q.labels == nil ? nil : try q.run(original: original, compressed: original).float.filter { $0.key == "accuracy" }
                           })]
    var sections = [StepSection]()
    var stepTimings = [Timings.Step]()
    var latencies = [Timings.Latency]()
    var warnings = [String]()
    var failedStep: String?
    var written: String?
    let schedule = recipe.schedule
    for (index, scheduled) in schedule.enumerated() {
      let step = scheduled.step
      let stepStart = DispatchTime.now().uptimeNanoseconds
      if progress { FileHandle.standardError.write(colored("[\(index + 1)/\(schedule.count)] \(step.name)…", "2", fd: 2) + "\n") }
      var stepPlan = try step.options.plan(StepEnvironment(inputLabel: current.label, original: original, showProgress: progress))
      let (result, passes, quality) = try executeStep(stepPlan, on: current, seed: step.options.seed)
      let outputBytes = try ModelWriter.encodedSize(result)
      if stepPlan.notLargerThanInput && outputBytes > current.bytes {
        throw CompressorError.unsupported("\(current.label): the result of step \(scheduled.at) (\(step.name)) would be \(outputBytes) bytes, larger than its input (\(current.bytes) bytes); its weights are too small for what the added nodes cost")
      }
      let isLast = index == schedule.count - 1
      let gates = stepPlan.gates(besides: step.gates.map(\.spec))
      stepPlan.quality?.iouThresholds = iouThresholds(gates)
      // The step's gates first: a failed one ends the run with this step's model as the output.
      var latency: (reference: Double, candidate: Double)?
      if gates.contains(where: { $0.kind == .latencyP50 }) {
        latency = try measureLatency(current.model, result, data: stepPlan.quality?.data, threads: plan.threads)
      }
      let preliminary = StepOutcome(input: current, result: result, passes: passes, quality: quality, outputBytes: outputBytes,
                                    outputFile: "", sizes: nil)
      var gateResults: [GateResult]?
      if !gates.isEmpty {
        let measures = try stepGateMeasures(preliminary, plan: stepPlan, gates: gates, latency: latency)
        gateResults = gates.map { $0.evaluate(measures, against: $0.kind.needsQualityData ? stepPlan.qualityAgainst : "input",
                                              includeTimings: !noTimings) }
      }
      let stepFailed = gateResults?.contains { !$0.passed } ?? false
      let writeTo = isLast || stepFailed ? plan.output : plan.keeps[index]
      if let writeTo {
        try ModelWriter.write(result, to: writeTo, options: WriteOptions(force: plan.force, externalData: keepsExternalData(loaded)),
                              inputs: loaded.inputFiles)
        if writeTo == plan.output { written = writeTo }
      }
      var sizes: StepOutcome.Sizes?
      if stepPlan.measureSizes {
        let data = stepPlan.quality?.data
        sizes = .init(macsBefore: singleSampleMACs(current.model, data: data), macsAfter: singleSampleMACs(result, data: data),
                      deflatedBefore: try current.deflatedBytes(),
                      deflatedAfter: try writeTo.map { try DeflatedSize.of($0) } ?? deflatedSize(of: result))
      }
      let outcome = StepOutcome(input: current, result: result, passes: passes, quality: quality, outputBytes: outputBytes,
                                outputFile: writeTo.map(baseName) ?? "", sizes: sizes)
      let (text, stepWarnings) = stepPlan.summary(outcome)
      if progress { FileHandle.standardError.write("\r\u{1B}[K") }
      if !quiet {
        var line = "step \(scheduled.at) \(step.name): \(text)"
        if let gateResults { line += "; " + gateLine(gateResults, fd: 2) }
        FileHandle.standardError.write(line + "\n")
        for w in stepWarnings { FileHandle.standardError.write("compressor: warning: step \(scheduled.at) (\(step.name)): \(w)\n") }
      }
      warnings += stepWarnings.map { "step \(scheduled.at) (\(step.name)): \($0)" }
      sections.append(stepSection(command: step.name, at: scheduled.at, options: step.options.reportedOptions, outcome: outcome,
                                  gates: gateResults, warnings: stepWarnings))
      rows.append(MetricsRow(step: step.name, at: scheduled.at, bytes: outputBytes,
                             deflatedBytes: try sizes?.deflatedAfter ?? writeTo.map { try DeflatedSize.of($0) } ?? deflatedSize(of: result),
                             parameters: parameterCount(result), nodes: modelFacts(file: "", bytes: 0, model: result).nodes,
                             macs: singleSampleMACs(result, data: plan.evalData),
                             quality: try evaluation.map { try $0.run(original: original, compressed: result).headlineMetrics }))
      stepTimings.append(.init(step: step.name, at: scheduled.at, ms: millisecondsSince(stepStart)))
      if measuresLatency {
        let (reference, candidate) = try measureLatency(original, result, data: plan.evalData, threads: plan.threads)
        latencies.append(.init(step: step.name, at: scheduled.at, p50Ms: candidate, inputP50Ms: reference))
      }
      current = StepInput(model: result, label: "the model after step \(scheduled.at) (\(step.name))", file: outcome.outputFile,
                          bytes: outputBytes, path: writeTo)
      if stepFailed {
        failedStep = scheduled.at
        if !isLast { warnings.append("step \(scheduled.at) (\(step.name)) failed its gate; the steps after it were not run") }
        break
      }
    }

    // The recipe's gates: the result against the input model.
    let first = rows[0], last = rows[rows.count - 1]
    var recipeGates: [GateResult]?
    if !recipe.gates.isEmpty {
      let measures = GateMeasures(
        referenceAccuracy: first.quality?["accuracy"], accuracy: last.quality?["accuracy"], agreement: last.quality?["agreement"],
        meanCosine: last.quality?["meanCosine"], iou: iouMeasures(last.quality), referenceBytes: first.bytes, bytes: last.bytes,
        referenceParameters: first.parameters, parameters: last.parameters, referenceMACs: first.macs, macs: last.macs,
        referenceLatencyMs: latencies.last?.inputP50Ms, latencyMs: latencies.last?.p50Ms)
      recipeGates = recipe.gates.map { $0.spec.evaluate(measures, against: "input", includeTimings: !noTimings) }
    }

    let final = current
    let inputs = try inputFiles(pipelineInputs(externalData: StepInput(loaded: loaded, path: recipe.model).externalDataFiles))
    var timings: Timings?
    if !noTimings { timings = Timings(totalMs: millisecondsSince(start), steps: stepTimings, latency: latencies.isEmpty ? nil : latencies) }
    let report = RunReport(
      command: "pipeline", inputs: inputs,
      input: modelFacts(file: baseName(recipe.model), bytes: loaded.totalBytes, model: original, macs: first.macs, deflatedBytes: first.deflatedBytes),
      output: modelFacts(file: written.map(baseName) ?? "", bytes: final.bytes, model: final.model, macs: last.macs, deflatedBytes: last.deflatedBytes),
      steps: sections, metrics: rows, gates: recipeGates, warnings: warnings, timings: timings)
    if plan.report != nil || plan.html != nil { try writeReportFiles(report, json: plan.report, html: plan.html) }

    let allGates = sections.flatMap { s in (s.gates ?? []).map { (s.at ?? "", $0) } } + (recipeGates ?? []).map { ("", $0) }
    let failed = allGates.filter { !$0.1.passed }
    if json {
      FileHandle.standardOutput.write(try encodeJSON(PipelineSummary(
        recipe: baseName(recipe.file), output: written ?? plan.output, steps: schedule.count, stepsRun: sections.count,
        input: first, result: last, gates: recipeGates ?? [], stepGates: sections.flatMap { $0.gates ?? [] },
        passed: failed.isEmpty)))
    } else {
      FileHandle.standardOutput.write(summaryLine(first: first, last: last, stepsRun: sections.count, failedStep: failedStep,
                                                  recipeGates: recipeGates, failed: failed.map(\.1)) + "\n")
    }
    if !failed.isEmpty {
      for (at, g) in failed {
        FileHandle.standardError.write("compressor: gate failed: \(at.isEmpty ? "" : "step \(at): ")\(g.summary ?? g.gate)\n")
      }
      throw ExitCode(2)
    }
  }

  func stepGateMeasures(_ outcome: StepOutcome, plan stepPlan: StepPlan, gates: [GateSpec], latency: (reference: Double, candidate: Double)?) throws -> GateMeasures {
    let q = outcome.quality
    let needsMACs = gates.contains { $0.kind == .macs }
    let data = stepPlan.quality?.data
    return GateMeasures(
      referenceAccuracy: q?.float["accuracy"], accuracy: q?.compressed["accuracy"], agreement: q?.compressed["agreement"],
      meanCosine: q?.compressed["meanCosine"], iou: iouMeasures(q?.compressed), referenceBytes: outcome.input.bytes, bytes: outcome.outputBytes,
      referenceParameters: parameterCount(outcome.input.model), parameters: parameterCount(outcome.result),
      referenceMACs: needsMACs ? singleSampleMACs(outcome.input.model, data: data) : nil,
      macs: needsMACs ? singleSampleMACs(outcome.result, data: data) : nil,
      referenceLatencyMs: latency?.reference, latencyMs: latency?.candidate)
  }

  /// The recipe, the model, and every file a step or the metrics read, in first-use order.
  func pipelineInputs(externalData: [String]) -> [(role: String, path: String)] {
    var files: [(role: String, path: String)] = [("recipe", recipe.file), ("model", recipe.model)]
    files += externalData.map { ("external-data", $0) }
    for s in recipe.schedule { files += s.step.options.inputFiles }
    if let d = plan.evalData { files.append(("eval-data", d)) }
    if let l = plan.evalLabels { files.append(("eval-labels", l)) }
    return files
  }

  /// "pipeline edge-latency.yaml: wrote out.onnx (3 steps; 9106 → 2311 bytes (0.25×), …; gates all 3 passed: …)".
  func summaryLine(first: MetricsRow, last: MetricsRow, stepsRun: Int, failedStep: String?, recipeGates: [GateResult]?,
                   failed: [GateResult]) -> String {
    func ratio(_ a: Int?, _ b: Int?) -> String {
      guard let a, let b, a > 0 else { return "" }
      return String(format: " (%.2f×)", Double(b) / Double(a))
    }
    var parts = ["\(stepsRun) of \(recipe.schedule.count) steps"]
    parts.append("\(first.bytes) → \(last.bytes) bytes\(ratio(first.bytes, last.bytes))")
    parts.append("parameters \(first.parameters) → \(last.parameters)")
    if let a = first.macs, let b = last.macs { parts.append("MACs \(a) → \(b)\(ratio(a, b))") }
    if let a = first.quality?["accuracy"], let b = last.quality?["accuracy"] { parts.append("accuracy \(jsonNumber(a)) → \(jsonNumber(b))") }
    if let g = last.quality?["agreement"] { parts.append("agreement \(jsonNumber(g))") }
    var line = "pipeline \(baseName(recipe.file)): wrote \(plan.output) (" + parts.joined(separator: ", ")
    if let failedStep { line += "; step \(failedStep) failed its gate: " + failed.map { $0.summary ?? $0.gate }.joined(separator: ", ") }
    if let recipeGates { line += "; " + gateLine(recipeGates, fd: 1) }
    return line + ")"
  }
}

struct PipelineSummary: Encodable {
  var recipe: String
  var output: String
  var steps: Int
  var stepsRun: Int
  var input: MetricsRow
  var result: MetricsRow
  var gates: [GateResult]
  var stepGates: [GateResult]
  var passed: Bool
}

extension StepOptions {
  /// `--seed`, for the pass context.
  var seed: UInt64 {
    if case .int(let s)? = recipeValues(skippingDefaults: false).first(where: { $0.key == "seed" })?.value { return UInt64(clamping: s) }
    return 0
  }

  /// The report's options (files by name).
  var reportedOptions: [String: OptionValue] { reportedStepOptions(self) }
}
