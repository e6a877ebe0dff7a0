import ArgumentParser
import Compression
import Datasets
import Foundation
import Report
import IR
import ONNX
import Runtime
import Support

extension Compressor {
  struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Measure a model's quality on data: accuracy against labels, agreement with a reference model.",
      discussion: """
        Metrics use the first output, one row per sample (a leading batch dimension is allowed). \
        With --labels: top-1 accuracy. With --reference: top-1 agreement, mean cosine similarity, \
        max and mean absolute error and SQNR (dB) against the reference's outputs.
        """)

    @Argument(help: "The ONNX model to evaluate.")
    var model: String

    @Option(help: "A reference model (usually the float original) to compare against.")
    var reference: String?

    @Option(help: "A directory of .npy/.npz/.pb samples (read in file-name order), or one such file.")
    var data: String

    @Option(help: "A .npy of class indices, one per sample.")
    var labels: String?

    @Option(help: "Threads for BLAS.")
    var threads = 1

    @Flag(help: "Print the metrics as JSON on stdout.")
    var json = false

    @OptionGroup var gate: GateOptions

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
      if reference == nil && labels == nil { throw ValidationError("give --labels, --reference, or both") }
      if threads < 1 { throw ValidationError("--threads must be 1 or more, not \(threads)") }
      for g in gate.parsedGates {
        if g.kind.needsLabels && labels == nil { throw ValidationError("the gate \(g.kind.rawValue) needs --labels") }
        if g.kind != .accuracy && reference == nil {
          throw ValidationError("the gate \(g.kind.rawValue) compares with a reference model; give --reference")
        }
      }
    }

    func run() throws {
      let loaded = try ModelReader.read(model)
      let executor = try Executor(model: loaded.model, threads: threads)
      let refExecutor = try reference.map { try Executor(model: try ModelReader.read($0).model, threads: threads) }
      let inputs = loaded.model.graph.feedNames
      let dataset = try Dataset(path: data, inputNames: inputs)
      let labelValues = try labels.map(loadLabels)
      var metrics = QualityMetrics(iouThresholds: iouThresholds(gate.parsedGates)), referenceMetrics = QualityMetrics()
      for i in 0..<dataset.files.count {
        let feeds = try dataset.batch(i)
        let out = try executor.run(feeds)[0].value
        let ref = try refExecutor.map { try $0.run(feeds)[0].value }
        let rows = QualityMetrics.rows(feeds)
        try metrics.add(output: out, reference: ref, labels: labelValues, file: dataset.files[i], inputRows: rows)
        if let ref { try referenceMetrics.add(output: ref, reference: nil, labels: labelValues, file: dataset.files[i], inputRows: rows) }
      }
      if let labelValues, labelValues.count != metrics.samples {
        throw CompressorError.invalid("\(labels ?? ""): \(labelValues.count) labels for \(metrics.samples) samples")
      }
      let result = metrics.summary(hasLabels: labels != nil, hasReference: reference != nil)
      let gates = try evaluateGates(loaded, result: result,
                                    referenceAccuracy: referenceMetrics.summary(hasLabels: labels != nil, hasReference: false)["accuracy"])
      if json {
        var body = result.keys.sorted().map { "\"\($0)\": \(jsonNumber(result[$0] ?? 0))" }.joined(separator: ", ")
        if let gates {
          body = "\"gates\": [" + gates.map { g in
            "{\"gate\": \"\(g.gate)\", \"limit\": \(jsonNumber(g.limit)), \"passed\": \(g.passed), \"value\": \(g.value.map(jsonNumber) ?? "null")}"
          }.joined(separator: ", ") + "], " + body
        }
        FileHandle.standardOutput.write("{" + body + "}\n")
      } else {
        for key in result.keys.sorted() { FileHandle.standardOutput.write("\(key)  \(jsonNumber(result[key] ?? 0))\n") }
      }
      if let gates {
        FileHandle.standardError.write(gateLine(gates, fd: 2) + "\n")
        if gates.contains(where: { !$0.passed }) { throw ExitCode(2) }
      }
    }

    /// --gate: the model against --reference (accuracy alone needs none).
    func evaluateGates(_ loaded: LoadedModel, result: [String: Double], referenceAccuracy: Double?) throws -> [GateResult]? {
      let gates = gate.parsedGates
      if gates.isEmpty { return nil }
      let ref = try reference.map { try ModelReader.read($0) }
      let kinds = Set(gates.map(\.kind))
      var latency: (reference: Double, candidate: Double)?
      if let ref, kinds.contains(.latencyP50) {
        latency = try measureLatency(ref.model, loaded.model, data: data, threads: threads)
      }
      let macs = kinds.contains(.macs)
      let measures = GateMeasures(
        referenceAccuracy: referenceAccuracy, accuracy: result["accuracy"], agreement: result["agreement"], meanCosine: result["meanCosine"], iou: iouMeasures(result),
        referenceBytes: ref?.totalBytes ?? 0, bytes: loaded.totalBytes,
        referenceParameters: ref.map { parameterCount($0.model) } ?? 0, parameters: parameterCount(loaded.model),
        referenceMACs: macs ? ref.flatMap { singleSampleMACs($0.model, data: data) } : nil,
        macs: macs ? singleSampleMACs(loaded.model, data: data) : nil,
        referenceLatencyMs: latency?.reference, latencyMs: latency?.candidate)
      return gates.map { $0.evaluate(measures, against: "reference", includeTimings: true) }
    }
  }
}

/// Class indices, one per sample, from the first array of a data file.
func loadLabels(_ path: String) throws -> [Int] {
  guard let (_, array) = try DataFile.load(path).first else { throw CompressorError.invalid("\(path) is empty") }
  return try array.integers()
}

func jsonNumber(_ v: Double) -> String {
  if v.isNaN { return "null" }
  if v.isInfinite { return v > 0 ? "1e308" : "-1e308" }
  if v == v.rounded() && abs(v) < 1e15 { return String(Int(v)) }
  return String(format: "%.6g", v)
}
