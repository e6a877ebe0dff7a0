import ArgumentParser
import Compression
import Datasets
import Dispatch
import IR
import ONNX
import Report
import Support

#if canImport(Glibc)
import Glibc
#endif

/// What every transforming subcommand does around its step: refuse bad outputs before any work,
/// read the model, run the step, write the model, the summary line, the report and the gates.
/// `compressor pipeline` runs the same steps (`executeStep`) on models held in memory.
struct TransformCommandRun<S: StepOptions, Help: StepHelp> {
  var step: S
  var model: String
  var output: String
  var run: RunOptions<Help>
  /// Analyses (prune --analyze) report without writing a model.
  var writesModel = true
  /// Progress lines (on a terminal) unless --quiet.
  var showProgress = true

  /// Runs the step; nil after `--print-step`. Exits 2 (by throwing) when a gate fails, after
  /// everything has been written.
  @discardableResult
  func callAsFunction() throws -> StepOutcome? {
    let start = DispatchTime.now().uptimeNanoseconds
    let given = run.parsedGates
    if run.printStep {
      FileHandle.standardOutput.write(printStepYAML(step, gates: given))
      return nil
    }
    try checkGatesMeasurable(given, hasQualityData: step.qualityData != nil, hasLabels: step.qualityData?.labels != nil,
                             where: "this command")
    var plan = try step.plan(StepEnvironment(inputLabel: model, original: nil, showProgress: showProgress && isatty(2) != 0))
    let gates = plan.gates(besides: given)
    plan.quality?.iouThresholds = iouThresholds(gates)
    let identities = FileIdentity(path: model).map { [$0] } ?? []
    if writesModel { try ModelWriter.checkOutput(output, options: WriteOptions(force: run.force), inputs: identities) }
    for path in [run.report, run.html].compactMap({ $0 }) { try checkOutputPath(path, force: run.force, inputs: identities) }
    let loaded = try ModelReader.read(model)
    if writesModel && keepsExternalData(loaded) != nil { SpillStorage.enable(in: directoryName(output)) }
    let input = StepInput(loaded: loaded, path: model)
    let (result, passes, quality) = try executeStep(plan, on: input, seed: step.seed)
    let options = WriteOptions(force: run.force, externalData: keepsExternalData(loaded),
                               notLargerThanInput: plan.notLargerThanInput ? loaded.totalBytes : nil)
    let written = writesModel ? try ModelWriter.write(result, to: output, options: options, inputs: loaded.inputFiles) : nil
    var sizes: StepOutcome.Sizes?
    if plan.measureSizes {
      let data = plan.quality?.data
      sizes = .init(macsBefore: singleSampleMACs(loaded.model, data: data), macsAfter: singleSampleMACs(result, data: data),
                    deflatedBefore: try DeflatedSize.of(model), deflatedAfter: written == nil ? nil : try DeflatedSize.of(output))
    }
    let outcome = StepOutcome(input: input, result: result, passes: passes, quality: quality,
                              outputBytes: (written?.modelBytes ?? 0) + (written?.dataBytes ?? 0),
                              outputFile: written == nil ? "" : baseName(output), sizes: sizes)
    let stepMs = millisecondsSince(start)
    guard writesModel else {
      if run.report != nil || run.html != nil {
        try writeReport(outcome, plan: plan, gates: nil, warnings: [], latency: nil, stepMs: stepMs, start: start)
      }
      return outcome
    }

    // Gates, measured on the step's reference (its input, or distill's teacher for quality).
    var gateResults: [GateResult]?
    var latency: (reference: Double, candidate: Double)?
    if !gates.isEmpty {
      if gates.contains(where: { $0.kind == .latencyP50 }) {
        latency = try measureLatency(input.model, result, data: plan.quality?.data, threads: threadCount)
      }
      let measures = try gateMeasures(outcome, plan: plan, gates: gates, latency: latency)
      gateResults = gates.map { $0.evaluate(measures, against: $0.kind.needsQualityData ? plan.qualityAgainst : "input",
                                            includeTimings: !run.noTimings) }
    }
    let (text, warnings) = plan.summary(outcome)
    // A progress line (calibration) ends where the summary begins.
    if showProgress && isatty(2) != 0 { FileHandle.standardError.write("\r\u{1B}[K") }
    var line = "wrote \(output) (\(text)"
    if let gateResults { line += "; " + gateLine(gateResults, fd: 2) }
    FileHandle.standardError.write(line + ")\n")
    for w in warnings { FileHandle.standardError.write("compressor: warning: \(w)\n") }
    if run.report != nil || run.html != nil {
      try writeReport(outcome, plan: plan, gates: gateResults, warnings: warnings, latency: latency, stepMs: stepMs, start: start)
    }
    if let failed = gateResults?.filter({ !$0.passed }), !failed.isEmpty {
      for g in failed { FileHandle.standardError.write("compressor: gate failed: \(g.summary ?? g.gate)\n") }
      throw ExitCode(2)
    }
    return outcome
  }

  var threadCount: Int {
    if case .int(let t)? = step.recipeValues(skippingDefaults: false).first(where: { $0.key == "threads" })?.value { return max(t, 1) }
    return 1
  }

  func gateMeasures(_ outcome: StepOutcome, plan: StepPlan, gates: [GateSpec], latency: (reference: Double, candidate: Double)?) throws -> GateMeasures {
    let needsMACs = gates.contains { $0.kind == .macs }
    let data = plan.quality?.data
    let q = outcome.quality
    return GateMeasures(
      referenceAccuracy: q?.float["accuracy"], accuracy: q?.compressed["accuracy"], agreement: q?.compressed["agreement"],
      meanCosine: q?.compressed["meanCosine"], iou: iouMeasures(q?.compressed), referenceBytes: outcome.input.bytes, bytes: outcome.outputBytes,
      referenceParameters: parameterCount(outcome.input.model), parameters: parameterCount(outcome.result),
      referenceMACs: needsMACs ? outcome.sizes?.macsBefore ?? singleSampleMACs(outcome.input.model, data: data) : nil,
      macs: needsMACs ? outcome.sizes?.macsAfter ?? singleSampleMACs(outcome.result, data: data) : nil,
      referenceLatencyMs: latency?.reference, latencyMs: latency?.candidate)
  }

  func writeReport(_ outcome: StepOutcome, plan: StepPlan, gates: [GateResult]?, warnings: [String],
                   latency: (reference: Double, candidate: Double)?, stepMs: Double, start: UInt64) throws {
    let data = plan.quality?.data
    let q = outcome.quality
    var rows = [MetricsRow(step: "input", at: "0", bytes: outcome.input.bytes,
                           deflatedBytes: outcome.sizes?.deflatedBefore,
                           parameters: parameterCount(outcome.input.model), nodes: modelFacts(file: "", bytes: 0, model: outcome.input.model).nodes,
                           macs: outcome.sizes?.macsBefore ?? singleSampleMACs(outcome.input.model, data: data),
                           quality: plan.qualityAgainst == "input" ? q.flatMap { $0.float["accuracy"].map { ["accuracy": $0] } } : nil)]
    if writesModel {
      rows.append(MetricsRow(step: S.stepName, at: "1", bytes: outcome.outputBytes,
                             deflatedBytes: outcome.sizes?.deflatedAfter,
                             parameters: parameterCount(outcome.result), nodes: modelFacts(file: "", bytes: 0, model: outcome.result).nodes,
                             macs: outcome.sizes?.macsAfter ?? singleSampleMACs(outcome.result, data: data),
                             quality: q?.headlineMetrics))
    }
    let files = [("model", model)] + outcome.input.externalDataFiles.map { ("external-data", $0) } + step.inputFiles
    let section = stepSection(command: S.stepName, options: reportedStepOptions(step), outcome: outcome, gates: gates, warnings: warnings)
    var timings: Timings?
    if !run.noTimings {
      timings = Timings(totalMs: millisecondsSince(start), steps: [.init(step: S.stepName, at: "1", ms: stepMs)],
                        latency: latency.map { [.init(step: S.stepName, at: "1", p50Ms: $0.candidate, inputP50Ms: $0.reference)] })
    }
    let report = RunReport(step: section, inputs: try inputFiles(files), metrics: rows, timings: timings)
    try writeReportFiles(report, json: run.report, html: run.html)
  }
}

/// The report's options: recipe keys, files by their names alone (so that reports do not depend
/// on the directory a run started in).
func reportedStepOptions<S: StepOptions>(_ step: S) -> [String: OptionValue] {
  var options = step.reportOptions
  for key in S.pathKeys {
    if case .string(let path)? = options[key] { options[key] = .string(path == "original" && key == "teacher" ? path : baseName(path)) }
  }
  return options
}

/// "gates: size 0.21 <= 0.25, accuracy-drop 2.5 > 1 (failed by 1.5)", failures first in colour.
func gateLine(_ results: [GateResult], fd: Int32) -> String {
  let failed = results.filter { !$0.passed }
  let parts = results.map { g -> String in
    let text = g.summary ?? "\(g.gate) measured (see the report's timings)"
    return g.passed ? text : colored(text, "31", fd: fd)
  }
  let verdict = failed.isEmpty ? colored("all \(results.count) passed", "32", fd: fd) : colored("\(failed.count) of \(results.count) FAILED", "31;1", fd: fd)
  return "gates \(verdict): " + parts.joined(separator: ", ")
}
