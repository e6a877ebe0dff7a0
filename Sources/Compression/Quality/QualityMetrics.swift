import Foundation
import Runtime
import Support

/// Streaming quality metrics over batches of outputs: nothing per sample is kept. `eval`, every
/// report's quality section and `quantize --target` measure with it.
public struct QualityMetrics {
  public var samples = 0
  public var correct = 0
  public var agree = 0
  public var cosineSum = 0.0
  public var cosineSquares = 0.0
  public var maxAbs = 0.0
  public var absSum = 0.0
  public var elements = 0
  public var signal = 0.0
  public var noise = 0.0
  /// Detectors' and segmenters' maps: at each threshold, the intersection over union of
  /// {output > threshold} and {reference > threshold}, pooled over every sample's elements (as
  /// segmentation benchmarks count it): a mean of per-sample ratios would let a sample whose map
  /// has a few dozen elements on count as much as a full page.
  public var iouThresholds: [Double]
  public var intersections: [Int]
  public var unions: [Int]

  public init(iouThresholds: [Double] = []) {
    self.iouThresholds = iouThresholds
    intersections = iouThresholds.map { _ in 0 }
    unions = intersections
  }

  /// `inputRows`: the samples the output was computed from. A sample is a row of the output when
  /// its first axis has that length; otherwise (detections after NMS, a variable-length list)
  /// the whole output is one sample, and outputs of different sizes are a sample that does not
  /// agree (cosine 0) rather than an error.
  public mutating func add(output: NDArray, reference: NDArray?, labels: [Int]?, file: String, inputRows: Int? = nil) throws {
    let perRow = inputRows == nil || (output.rank > 0 && output.shape[0] == inputRows)
    let rows = !perRow || output.rank == 0 ? 1 : output.shape[0]
    let width = rows == 0 ? 0 : output.count / rows
    let y = try output.floats()
    let r = try reference?.floats()
    if let r, r.count != y.count {
      guard !perRow else { throw CompressorError.invalid("\(file): the reference's output has \(r.count) values, the model's \(y.count)") }
      samples += 1
      return
    }
    for row in 0..<rows {
      let s = row * width
      let top = argmax(y, s, width)
      if let labels, samples < labels.count, top == labels[samples] { correct += 1 }
      if let r {
        if argmax(r, s, width) == top { agree += 1 }
        var dot = 0.0, nx = 0.0, ny = 0.0
        for k in s..<(s + width) {
          let a = Double(y[k]), b = Double(r[k])
          dot += a * b; nx += a * a; ny += b * b
          let e = abs(a - b)
          maxAbs = max(maxAbs, e)
          absSum += e
          signal += b * b
          noise += (a - b) * (a - b)
        }
        for (j, threshold) in iouThresholds.enumerated() {
          let t = Float(threshold)
          for k in s..<(s + width) {
            let inY = y[k] > t, inR = r[k] > t
            if inY && inR { intersections[j] += 1 }
            if inY || inR { unions[j] += 1 }
          }
        }
        let cosine = nx > 0 && ny > 0 ? dot / (nx.squareRoot() * ny.squareRoot()) : (nx == ny ? 1 : 0)
        cosineSum += cosine
        cosineSquares += cosine * cosine
        elements += width
      }
      samples += 1
    }
  }

  /// The mean cosine less two standard errors of it (sample variance over the samples): what the
  /// mean may be on other samples from the same source, with a few of them measured.
  public var cosineLowerBound: Double {
    guard samples > 1 else { return cosineSum / Double(max(samples, 1)) }
    let n = Double(samples), mean = cosineSum / n
    let variance = max(0, (cosineSquares - n * mean * mean) / (n - 1))
    return mean - 2 * (variance / n).squareRoot()
  }

  /// The number of samples in a batch of feeds (the shortest first axis).
  public static func rows(_ feeds: [String: NDArray]) -> Int? {
    feeds.values.map { $0.rank == 0 ? 1 : $0.shape[0] }.min()
  }

  /// The summary's name for the IoU at `threshold`: "iou@0.3".
  public static func iouKey(_ threshold: Double) -> String { "iou@\(shortNumber(threshold))" }

  private func argmax(_ v: [Float], _ start: Int, _ n: Int) -> Int {
    var best = 0
    for k in 0..<n where v[start + k] > v[start + best] { best = k }
    return best
  }

  public func summary(hasLabels: Bool, hasReference: Bool) -> [String: Double] {
    var m: [String: Double] = ["samples": Double(samples)]
    let n = Double(max(samples, 1))
    if hasLabels { m["accuracy"] = Double(correct) / n }
    if hasReference {
      m["agreement"] = Double(agree) / n
      m["meanCosine"] = cosineSum / n
      m["maxAbsError"] = maxAbs
      m["meanAbsError"] = elements > 0 ? absSum / Double(elements) : 0
      m["sqnrDb"] = noise == 0 ? .infinity : 10 * log10(signal / noise)
      // Maps empty in both models agree perfectly.
      for (j, t) in iouThresholds.enumerated() {
        m[Self.iouKey(t)] = unions[j] == 0 ? 1 : Double(intersections[j]) / Double(unions[j])
      }
    }
    return m
  }
}

/// 0.3 → "0.3", 1 → "1": a threshold as a person writes it.
func shortNumber(_ v: Double) -> String {
  v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(format: "%g", v)
}
