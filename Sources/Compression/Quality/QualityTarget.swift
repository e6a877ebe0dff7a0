import Datasets
import Foundation
import IR
import Runtime
import Support

/// A quality a compressed model must keep against the float one (`quantize --target
/// "cosine>=0.995"`), measured on evaluation samples exactly as the report's quality section
/// measures it — the model's first output, against the float model's, on the same samples — so a
/// target the pass meets is a gate the command passes.
public struct QualityTarget: Sendable {
  public enum Metric: String, Sendable { case cosine, agreement }
  public var metric: Metric
  public var minimum: Double
  /// Evaluation samples: a directory or one data file.
  public var data: String
  public var maxSamples: Int?
  public var threads: Int

  public init(metric: Metric, minimum: Double, data: String, maxSamples: Int? = nil, threads: Int = 1) {
    self.metric = metric; self.minimum = minimum; self.data = data; self.maxSamples = maxSamples; self.threads = threads
  }

  public var description: String { "\(metric.rawValue)>=\(minimum)" }

  /// The report's name for the metric.
  var key: String { metric == .cosine ? "meanCosine" : "agreement" }
}

/// Scores candidate models against the float model's outputs, which are computed once.
final class TargetScorer {
  let target: QualityTarget
  let dataset: Dataset
  private var references = [NDArray]()

  init(reference model: Model, target: QualityTarget) throws {
    self.target = target
    dataset = try Dataset(path: target.data, inputNames: model.graph.feedNames)
    let executor = try Executor(model: model, threads: target.threads)
    _ = try dataset.forEachChunk(rows: 16, limit: target.maxSamples ?? Int.max) { feeds in
      references.append(try executor.run(feeds)[0].value)
    }
    if references.isEmpty { throw CompressorError.usage("\(target.data): no samples to measure the target \(target.description) on") }
  }

  /// The target's metric for `model` (higher is better).
  func score(_ model: Model) throws -> Double {
    let executor = try Executor(model: model, threads: target.threads)
    var metrics = QualityMetrics()
    var chunk = 0
    _ = try dataset.forEachChunk(rows: 16, limit: target.maxSamples ?? Int.max) { feeds in
      guard chunk < references.count else { return }
      try metrics.add(output: try executor.run(feeds)[0].value, reference: references[chunk], labels: nil, file: target.data)
      chunk += 1
    }
    return metrics.summary(hasLabels: false, hasReference: true)[target.key] ?? 0
  }
}
