import Compression
import Datasets
import Dispatch
import Foundation
import IR
import ONNX
import Report
import Runtime
import Support

#if canImport(Glibc)
import Glibc
#endif

/// The model a step starts from: read from a file (a subcommand, a pipeline's first step) or
/// held in memory (later pipeline steps).
struct StepInput {
  var model: Model
  /// How messages name it: its path, or "the model after step 2 (prune)".
  var label: String
  /// The report's name for it: the file's name, or "" in memory.
  var file: String
  /// Its size: the file and its external data, or the serialized size.
  var bytes: Int
  /// The file, when it was read from one.
  var path: String?
  var identities: [FileIdentity] = []
  /// Paths of the external data files the model was read with.
  var externalDataFiles: [String] = []

  init(loaded: LoadedModel, path: String) {
    model = loaded.model; label = path; file = baseName(path); bytes = loaded.totalBytes; self.path = path
    identities = loaded.inputFiles
    externalDataFiles = loaded.externalDataFiles.map { directoryName(path) + "/" + $0 }
  }

  init(model: Model, label: String, file: String, bytes: Int, path: String?) {
    self.model = model; self.label = label; self.file = file; self.bytes = bytes; self.path = path
  }

  /// The model file deflated (the file itself when there is one, as `prune` has always reported it).
  func deflatedBytes() throws -> Int {
    if let path { return try DeflatedSize.of(path) }
    return try deflatedSize(of: model)
  }
}

/// What a step did.
struct StepOutcome {
  var input: StepInput
  var result: Model
  var passes: [PassResult]
  var quality: QualityCheck.Result?
  /// Bytes of the result as written (0 when no model was written).
  var outputBytes: Int
  /// The report's name for the result ("" in memory or not written).
  var outputFile: String
  var sizes: Sizes?

  struct Sizes {
    var macsBefore: Int?
    var macsAfter: Int?
    var deflatedBefore: Int
    var deflatedAfter: Int?
  }
}

/// Runs a step's checks, passes and quality section on a model in memory; writes nothing.
func executeStep(_ plan: StepPlan, on input: StepInput, seed: UInt64) throws -> (result: Model, passes: [PassResult], quality: QualityCheck.Result?) {
  try plan.check(input.model)
  var result = input.model
  let passes = try PassManager(plan.passes).run(&result, context: PassContext(seed: seed), file: input.label)
  try plan.afterPasses(passes, result)
  let quality = try plan.quality?.run(original: plan.qualityReference ?? input.model, compressed: result)
  return (result, passes, quality)
}

/// A serialized model's deflated size, measured while serializing it (no file, no copy).
func deflatedSize(of model: Model) throws -> Int {
  let counter = try DeflatedSizeCounter()
  try ModelWriter.encode(model) { try counter.add($0) }
  return try counter.finish()
}

// MARK: - Report pieces

func modelFacts(file: String, bytes: Int, model: Model, macs: Int? = nil, deflatedBytes: Int? = nil) -> ModelFacts {
  var nodes = 0, initializers = 0
  model.graph.forEachGraph { g in
    nodes += g.nodes.count
    initializers += g.initializers.count
  }
  return ModelFacts(file: file, bytes: bytes, nodes: nodes, initializers: initializers, parameters: parameterCount(model),
                    macs: macs, deflatedBytes: deflatedBytes)
}

func passSections(_ results: [PassResult]) -> [PassSection] {
  results.map { r in
    PassSection(pass: r.pass, modified: r.modified,
                changes: r.changes.map { .init(target: $0.target, action: $0.action, detail: $0.detail, values: $0.values) })
  }
}

extension QualityCheck.Result {
  var section: QualitySection { QualitySection(data: data, samples: samples, float: float, compressed: compressed) }
  /// The result's quality as a metrics row gives it.
  var headlineMetrics: [String: Double] { compressed.filter { ["accuracy", "agreement", "meanCosine"].contains($0.key) || $0.key.hasPrefix("iou@") } }
}

func stepSection(command: String, at: String? = nil, options: [String: OptionValue], outcome: StepOutcome,
                 gates: [GateResult]?, warnings: [String]) -> StepSection {
  StepSection(command: command, at: at, options: options,
              input: modelFacts(file: outcome.input.file, bytes: outcome.input.bytes, model: outcome.input.model,
                                macs: outcome.sizes?.macsBefore, deflatedBytes: outcome.sizes?.deflatedBefore),
              output: modelFacts(file: outcome.outputFile, bytes: outcome.outputBytes, model: outcome.result,
                                 macs: outcome.sizes?.macsAfter, deflatedBytes: outcome.sizes?.deflatedAfter),
              passes: passSections(outcome.passes), quality: outcome.quality?.section, gates: gates, warnings: warnings)
}

/// A file the run read, with its digest; a directory by its data files.
func inputFile(role: String, path: String) throws -> InputFile {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
    throw CompressorError.missing("\(path): no such file or directory")
  }
  if !isDirectory.boolValue {
    let file = try MappedFile(path: path)
    var hash = SHA256()
    hash.update(file.bytes)
    return InputFile(role: role, file: baseName(path), bytes: file.size, sha256: hash.finalizeHex())
  }
  let names = try FileManager.default.contentsOfDirectory(atPath: path)
    .filter { [".npy", ".npz", ".pb"].contains(where: $0.hasSuffix) }
    .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
  var listing = SHA256()
  var bytes = 0
  for name in names {
    let file = try MappedFile(path: path + "/" + name)
    var hash = SHA256()
    hash.update(file.bytes)
    bytes += file.size
    listing.update(Array("\(hash.finalizeHex())  \(name)\n".utf8))
  }
  return InputFile(role: role, file: baseName(path), bytes: bytes, sha256: listing.finalizeHex(), files: names.count)
}

/// Digests of every distinct file, first use first.
func inputFiles(_ files: [(role: String, path: String)]) throws -> [InputFile] {
  var seen = Set<String>()
  var result = [InputFile]()
  for (role, path) in files where seen.insert(role + "\u{0}" + path).inserted {
    result.append(try inputFile(role: role, path: path))
  }
  return result
}

func writeReportFiles(_ report: RunReport, json: String?, html: String?) throws {
  if let json {
    let writer = try AtomicFileWriter(destination: json)
    try writer.write(try encodeJSON(report))
    try writer.commit()
  }
  if let html {
    let writer = try AtomicFileWriter(destination: html)
    try writer.write(Array(HTMLReport.render(report).utf8))
    try writer.commit()
  }
}

/// Milliseconds since `start` (DispatchTime).
func millisecondsSince(_ start: UInt64) -> Double {
  (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e4).rounded() / 100
}

// MARK: - Latency

/// Median latency of two models on the same input, measured interleaved (A, B, A, B, …) after a
/// warm-up, so that both see the same machine load: a latency gate is a ratio measured in one run.
func measureLatency(_ reference: Model, _ candidate: Model, data: String?, threads: Int, runs: Int = 21) throws -> (reference: Double, candidate: Double) {
  let feeds = try latencyFeeds(reference, data: data)
  let a = try Executor(model: reference, threads: threads), b = try Executor(model: candidate, threads: threads)
  for _ in 0..<3 { _ = try a.run(feeds); _ = try b.run(feeds) }
  var ta = [Double](), tb = [Double]()
  for _ in 0..<runs {
    var start = DispatchTime.now().uptimeNanoseconds
    _ = try a.run(feeds)
    ta.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    start = DispatchTime.now().uptimeNanoseconds
    _ = try b.run(feeds)
    tb.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
  }
  func median(_ t: [Double]) -> Double { let s = t.sorted(); return (s[s.count / 2] * 1e4).rounded() / 1e4 }
  return (median(ta), median(tb))
}

/// One sample: the first of `data`, else inputs of the model's shapes (symbolic dimensions 1), seeded.
func latencyFeeds(_ model: Model, data: String?) throws -> [String: NDArray] {
  if let data {
    let dataset = try Dataset(path: data, inputNames: model.graph.feedNames)
    var first: [String: NDArray]?
    try dataset.forEachChunk(rows: 1, limit: 1) { first = $0 }
    if let first { return first }
  }
  var rng = SplitMix64(seed: 0)
  var feeds = [String: NDArray]()
  let fed = Set(model.graph.feedNames)
  for input in model.graph.inputs where fed.contains(input.name) {
    guard case .tensor(let type, let shape)? = input.type?.kind else {
      throw CompressorError.unsupported("input '\(input.name)' is not a tensor; a latency gate needs --data")
    }
    let dims = (shape?.dims ?? []).map { d in d.size.map { Int(clamping: $0) } ?? 1 }
    try NDArray.checkAllocation(dims, type, what: "input '\(input.name)'")
    let count = dims.reduce(1, *)
    let values = (0..<count).map { _ in type.isFloatingPoint ? Double(rng.nextFloat()) : 0 }
    feeds[input.name] = try NDArray(doubles: values, as: type, shape: dims)
  }
  return feeds
}

// MARK: - Terminal

/// Colour only on a terminal and without NO_COLOR (https://no-color.org).
func colored(_ text: String, _ code: String, fd: Int32) -> String {
  guard isatty(fd) != 0, getenv("NO_COLOR").map({ String(cString: $0).isEmpty }) ?? true else { return text }
  return "\u{1B}[\(code)m\(text)\u{1B}[0m"
}

/// A model read with external data is written with external data (OUT.data beside it, tensors of
/// 1 KiB and more): a multi-gigabyte model stays writable past protobuf's 2 GiB limit, and its
/// weights stay mappable. Such a model's new tensors also wait for the writer in spill files
/// beside the output, not in memory (`SpillStorage`).
func keepsExternalData(_ loaded: LoadedModel) -> ExternalDataOptions? {
  loaded.externalDataFiles.isEmpty ? nil : ExternalDataOptions()
}
