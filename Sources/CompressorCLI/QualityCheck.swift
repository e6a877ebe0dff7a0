import Compression
import Datasets
import Foundation
import IR
import Runtime
import Support

/// The quality section of a report: the compressed model against the float one on the same
/// samples, both run by compressor's executor.
struct QualityCheck {
  var data: String
  var labels: String?
  var threads: Int
  /// Use at most this many samples.
  var maxSamples: Int?
  /// Thresholds at which the IoU of the output maps is measured (iou gates and targets).
  var iouThresholds: [Double] = []

  struct Result: Encodable {
    var data: String
    var samples: Int
    /// The float model alone (accuracy with labels).
    var float: [String: Double]
    /// The compressed model: accuracy with labels, and agreement, mean cosine, errors and SQNR against the float model.
    var compressed: [String: Double]

    /// ", accuracy …, agreement …, meanCosine … (input accuracy …)" for a command's summary line.
    var headline: String {
      var text = compressed.keys.sorted().filter { ["accuracy", "agreement", "meanCosine"].contains($0) || $0.hasPrefix("iou@") }
        .map { ", \($0) \(jsonNumber(compressed[$0] ?? 0))" }.joined()
      if let a = float["accuracy"] { text += " (input accuracy \(jsonNumber(a)))" }
      return text
    }
  }

  func run(original: Model, compressed: Model) throws -> Result {
    let reference = try Executor(model: original, threads: threads)
    let candidate = try Executor(model: compressed, threads: threads)
    let dataset = try Dataset(path: data, inputNames: original.graph.feedNames)
    let labelValues = try labels.map(loadLabels)
    var before = QualityMetrics(), after = QualityMetrics(iouThresholds: iouThresholds)
    try dataset.forEachChunk(rows: 16, limit: maxSamples ?? Int.max) { feeds in
      let ref = try reference.run(feeds)[0].value
      let out = try candidate.run(feeds)[0].value
      let rows = QualityMetrics.rows(feeds)
      try before.add(output: ref, reference: nil, labels: labelValues, file: data, inputRows: rows)
      try after.add(output: out, reference: ref, labels: labelValues, file: data, inputRows: rows)
    }
    if let labelValues, labelValues.count != after.samples, maxSamples == nil || labelValues.count < after.samples {
      throw CompressorError.invalid("\(labels ?? ""): \(labelValues.count) labels for \(after.samples) samples")
    }
    return Result(data: baseName(data), samples: after.samples,
                  float: before.summary(hasLabels: labels != nil, hasReference: false).filter { $0.key != "samples" },
                  compressed: after.summary(hasLabels: labels != nil, hasReference: true).filter { $0.key != "samples" && $0.value.isFinite })
  }
}
