import Compression
import Datasets
import IR
import ONNX
import Report
import Support

/// What every transforming command does around its passes: refuse bad outputs before any work,
/// read the model, run the passes, let the command check the result, write the model and the
/// report atomically.
struct TransformRun {
  var command: String
  var model: String
  var output: String
  var report: String?
  var force: Bool
  /// Compressing commands: a result larger than the input is a bug.
  var notLargerThanInput = false
  /// With data: the result measured against the input model, for the report and the summary line.
  var quality: QualityCheck?
  /// The model the quality section measures against (default: the input model).
  var qualityReference: Model?
  /// Shape-changing commands: report MACs before and after, and the deflated file sizes.
  var measureSizes = false
  /// Analyses (prune --analyze) report without writing a model.
  var writesModel = true

  struct Outcome {
    var loaded: LoadedModel
    var result: Model
    var passes: [PassResult]
    /// nil when the command writes no model.
    var written: WriteResult?
    /// Bytes of the written model and its external data (0 when none was written).
    var writtenBytes: Int { (written?.modelBytes ?? 0) + (written?.dataBytes ?? 0) }
    var quality: QualityCheck.Result?
    var sizes: Sizes?
  }

  struct Sizes {
    var macsBefore: Int?
    var macsAfter: Int?
    var deflatedBefore: Int
    var deflatedAfter: Int?
  }

  /// `check` sees the model as read; `afterPasses` the pass results and the model they made,
  /// before anything is written.
  func run(_ passes: [Pass], check: (LoadedModel) throws -> Void = { _ in },
           afterPasses: ([PassResult], Model) throws -> Void = { _, _ in }) throws -> Outcome {
    let inputs = FileIdentity(path: model).map { [$0] } ?? []
    if writesModel { try ModelWriter.checkOutput(output, options: WriteOptions(force: force), inputs: inputs) }
    if let report { try checkOutputPath(report, force: force, inputs: inputs) }
    let loaded = try ModelReader.read(model)
    try check(loaded)
    var result = loaded.model
    let passResults = try PassManager(passes).run(&result, file: model)
    try afterPasses(passResults, result)
    let options = WriteOptions(force: force, notLargerThanInput: notLargerThanInput ? loaded.totalBytes : nil)
    let measured = try quality?.run(original: qualityReference ?? loaded.model, compressed: result)
    let written = writesModel ? try ModelWriter.write(result, to: output, options: options, inputs: loaded.inputFiles) : nil
    var sizes: Sizes?
    if measureSizes {
      let data = quality?.data
      sizes = Sizes(macsBefore: singleSampleMACs(loaded.model, data: data), macsAfter: singleSampleMACs(result, data: data),
                    deflatedBefore: try DeflatedSize.of(model), deflatedAfter: written == nil ? nil : try DeflatedSize.of(output))
    }
    if let report {
      let r = PassReport(command: command,
                         input: .init(file: baseName(model), bytes: loaded.totalBytes, model: loaded.model,
                                      macs: sizes?.macsBefore, deflatedBytes: sizes?.deflatedBefore),
                         output: .init(file: written == nil ? "" : baseName(output),
                                       bytes: (written?.modelBytes ?? 0) + (written?.dataBytes ?? 0), model: result,
                                       macs: sizes?.macsAfter, deflatedBytes: sizes?.deflatedAfter),
                         passes: passResults, quality: measured)
      let writer = try AtomicFileWriter(destination: report)
      try writer.write(try encodeJSON(r))
      try writer.commit()
    }
    return Outcome(loaded: loaded, result: result, passes: passResults, written: written, quality: measured, sizes: sizes)
  }
}
