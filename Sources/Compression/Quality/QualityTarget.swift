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
  public enum Metric: String, Sendable, CaseIterable {
    case cosine, agreement, iou
    /// Points of top-1 accuracy lost against the float model (labels needed).
    case accuracyDrop = "accuracy-drop"
  }
  public var metric: Metric
  /// The bound: a lower one for cosine, agreement and IoU, an upper one for accuracy-drop.
  public var limit: Double
  /// IoU: the value above which an output element is "on" in both maps.
  public var threshold: Double?
  /// Evaluation samples: a directory or one data file.
  public var data: String
  /// accuracy-drop: the class indices aligned with `data`.
  public var labels: String?
  public var maxSamples: Int?
  public var threads: Int
  /// quantize's floor when no target is given: reported, never a gate.
  public var isDefault = false

  public init(metric: Metric, limit: Double, threshold: Double? = nil, data: String, labels: String? = nil,
              maxSamples: Int? = nil, threads: Int = 1) {
    self.metric = metric; self.limit = limit; self.threshold = threshold; self.data = data; self.labels = labels
    self.maxSamples = maxSamples; self.threads = threads
  }

  public var description: String {
    metric == .accuracyDrop ? "accuracy-drop<=\(shortNumber(limit))"
      : "\(metric.rawValue)>=\(shortNumber(limit))" + (threshold.map { "@\(shortNumber($0))" } ?? "")
  }

  /// What the score is, as reports name it: the default floor scores the cosine's lower bound.
  public var measureName: String { isDefault && metric == .cosine ? "cosine lower bound" : metric.rawValue }

  /// accuracy-drop is the one measure where less is better.
  public var lowerIsBetter: Bool { metric == .accuracyDrop }
  public func isMet(by value: Double) -> Bool { lowerIsBetter ? value <= limit + 1e-12 : value >= limit - 1e-12 }
  public func isBetter(_ a: Double, than b: Double) -> Bool { lowerIsBetter ? a < b : a > b }
  /// How far `value` is from the limit on the wrong side (0 when met).
  public func shortfall(_ value: Double) -> Double { max(0, lowerIsBetter ? value - limit : limit - value) }
}

/// Scores candidate models against the float model's outputs, which are computed once.
final class TargetScorer {
  let target: QualityTarget
  let dataset: Dataset
  private var references = [NDArray]()
  private var labels: [Int]?
  private var floatAccuracy = 0.0

  init(reference model: Model, target: QualityTarget) throws {
    self.target = target
    dataset = try Dataset(path: target.data, inputNames: model.graph.feedNames)
    if let path = target.labels {
      guard let (_, array) = try DataFile.load(path).first else { throw CompressorError.invalid("\(path) is empty") }
      labels = try array.integers()
    }
    let executor = try Executor(model: model, threads: target.threads)
    var metrics = QualityMetrics()
    _ = try dataset.forEachChunk(rows: 16, limit: target.maxSamples ?? Int.max) { feeds in
      let out = try executor.run(feeds)[0].value
      try metrics.add(output: out, reference: nil, labels: labels, file: target.data, inputRows: QualityMetrics.rows(feeds))
      references.append(out)
    }
    if references.isEmpty { throw CompressorError.usage("\(target.data): no samples to measure the target \(target.description) on") }
    if let labels, labels.count < metrics.samples {
      throw CompressorError.invalid("\(target.labels ?? ""): \(labels.count) labels for \(metrics.samples) samples")
    }
    floatAccuracy = metrics.summary(hasLabels: true, hasReference: false)["accuracy"] ?? 0
  }

  /// The target's measure for `model`, in its own unit (a fraction, or points of accuracy).
  func score(_ model: Model) throws -> Double {
    let executor = try Executor(model: model, threads: target.threads)
    var metrics = QualityMetrics(iouThresholds: target.threshold.map { [$0] } ?? [])
    var chunk = 0
    _ = try dataset.forEachChunk(rows: 16, limit: target.maxSamples ?? Int.max) { feeds in
      guard chunk < references.count else { return }
      try metrics.add(output: try executor.run(feeds)[0].value, reference: references[chunk], labels: labels, file: target.data,
                      inputRows: QualityMetrics.rows(feeds))
      chunk += 1
    }
    let summary = metrics.summary(hasLabels: labels != nil, hasReference: true)
    switch target.metric {
    // The default floor is a margin for inputs nobody measured: it must hold for the mean less
    // two standard errors (8 calibration samples meeting 0.995 on average left text recognizers
    // at 0.989 on 8 others).
    case .cosine: return target.isDefault ? metrics.cosineLowerBound : summary["meanCosine"] ?? 0
    case .agreement: return summary["agreement"] ?? 0
    case .iou: return summary[QualityMetrics.iouKey(target.threshold ?? 0.5)] ?? 0
    // Rounded as the accuracy-drop gate rounds it, so the pass and the gate agree.
    case .accuracyDrop: return ((floatAccuracy - (summary["accuracy"] ?? 0)) * 100 * 1e6).rounded() / 1e6
    }
  }
}
