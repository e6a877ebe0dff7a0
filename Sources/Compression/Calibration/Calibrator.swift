import Datasets
import Foundation
import IR
import Runtime
import Support

/// How an activation's quantization range is chosen from what calibration saw.
public enum CalibrationMethod: Equatable, CustomStringConvertible {
  /// The smallest and largest value seen.
  case minmax
  /// The central `p` percent of values (both tails clipped).
  case percentile(Double)
  /// The range whose quantized distribution diverges least (KL) from the observed one.
  case entropy
  /// The range with the least expected squared quantization error.
  case mse
  /// Per tensor, whichever of the others disturbs the outputs of the nodes that read it least
  /// (measured on a chunk of calibration samples: `RangeSelection.swift`).
  case auto

  /// "minmax", "percentile", "percentile:99.9", "entropy", "mse", "auto".
  public init?(argument: String) {
    let parts = argument.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    switch parts.first ?? "" {
    case "minmax" where parts.count == 1: self = .minmax
    case "entropy" where parts.count == 1: self = .entropy
    case "mse" where parts.count == 1: self = .mse
    case "auto" where parts.count == 1: self = .auto
    case "percentile":
      guard parts.count == 1 || Double(parts[1]) != nil else { return nil }
      let p = parts.count == 2 ? Double(parts[1]) ?? 0 : 99.99
      guard p > 50, p <= 100 else { return nil }
      self = .percentile(p)
    default: return nil
    }
  }

  public var description: String {
    switch self {
    case .minmax: return "minmax"
    case .percentile(let p): return "percentile:\(p)"
    case .entropy: return "entropy"
    case .mse: return "mse"
    case .auto: return "auto"
    }
  }
}

/// What calibration learned about one activation.
public struct ActivationRange {
  /// The range to quantize over; always contains 0, so a zero point exists.
  public var lo: Float
  public var hi: Float
  public var observedMin: Float
  public var observedMax: Float
  /// Elements seen, and those left out of the range (non-finite, or mask-sized magnitudes).
  public var count: Int
  public var excluded: Int
  /// Fraction of the kept values outside [lo, hi] (0 for minmax).
  public var clippedFraction: Double
  /// nil when every value was float32.
  public var otherType: DataType?
  /// `auto`: the method chosen, and each candidate's error at the readers' outputs (relative
  /// squared error summed over them); nil for the other methods or when no reader could be run.
  public var chosen: CalibrationMethod?
  public var errors: [(method: CalibrationMethod, error: Double)] = []
  /// The mean of each channel along the axis `Calibrator.channelAxes` names (nil when not asked).
  public var channelMeans: [Double]?
  /// The largest magnitude seen in each channel (the same axis).
  public var channelMaxima: [Float]?
}

/// Runs the float model over calibration samples and records, for each requested tensor, a
/// streaming histogram; memory is the histograms plus one chunk of samples, whatever their number.
public struct Calibrator {
  public var method: CalibrationMethod
  /// Use at most this many samples (rows of the leading dimension), nil for all.
  public var maxSamples: Int?
  /// Rows run at once: bounds the activations held while calibrating.
  public var chunkRows: Int
  public var threads: Int
  /// Called after every chunk with the samples calibrated so far (a progress line on a terminal).
  public var progress: ((Int) -> Void)?
  /// `auto` measures ranges as the pass will use them: int8 symmetric or uint8 with a zero point.
  public var symmetricActivations = false
  /// Tensors whose per-channel means and largest magnitudes are also recorded, with their
  /// channel axis (negative: from the end) — what bias correction and smoothing need to know.
  public var channelAxes: [String: Int] = [:]
  public init(method: CalibrationMethod, maxSamples: Int? = nil, chunkRows: Int = 8, threads: Int = 1) {
    self.method = method; self.maxSamples = maxSamples; self.chunkRows = chunkRows; self.threads = threads
  }

  /// Histograms shared with the executor's observer.
  private final class Recorder {
    var histograms: [String: StreamingHistogram] = [:]
    var otherTypes: [String: DataType] = [:]
    var channelAxes: [String: Int] = [:]
    /// Per-channel sums, largest magnitudes and elements per channel; nil once the channels disagree.
    var channels: [String: ChannelStatistics?] = [:]
    func record(_ name: String, _ value: NDArray) {
      guard histograms[name] != nil else { return }
      guard value.dataType == .float else { otherTypes[name] = value.dataType; return }
      value.elements(Float.self).withPointer { p in
        let v = UnsafeBufferPointer(start: p, count: value.count)
        histograms[name]?.add(v)
        if let axis = channelAxes[name] { addChannels(name, axis: axis, v, shape: value.shape) }
      }
    }
    func addChannels(_ name: String, axis: Int, _ v: UnsafeBufferPointer<Float>, shape: [Int]) {
      let a = axis < 0 ? shape.count + axis : axis
      guard a >= 0, a < shape.count, shape[a] > 0 else { channels[name] = .some(nil); return }
      let count = shape[a], inner = shape[(a + 1)...].reduce(1, *), outer = shape[..<a].reduce(1, *)
      var stats: ChannelStatistics
      switch channels[name] {
      case .none: stats = ChannelStatistics(count)
      case .some(.none): return
      case .some(.some(let seen)):
        guard seen.sums.count == count else { channels[name] = .some(nil); return }
        stats = seen
      }
      channels[name] = nil  // the arrays below are then uniquely referenced: no copy
      var i = 0
      for _ in 0..<outer {
        for c in 0..<count {
          var total = 0.0
          var largest = stats.maxima[c]
          for x in v[i..<(i + inner)] where x.isFinite {
            total += Double(x)
            largest = max(largest, abs(x))
          }
          stats.sums[c] += total
          stats.maxima[c] = largest
          i += inner
        }
      }
      stats.elements += outer * inner
      channels[name] = .some(stats)
    }
  }

  struct ChannelStatistics {
    var sums: [Double]
    var maxima: [Float]
    var elements = 0
    init(_ count: Int) { sums = [Double](repeating: 0, count: count); maxima = [Float](repeating: 0, count: count) }
    var means: [Double]? { elements > 0 ? sums.map { $0 / Double(elements) } : nil }
  }

  /// Ranges of `tensors` (main-graph values or graph inputs) over the samples of `data`.
  /// Returns the ranges and the number of samples used.
  /// `methods` overrides the calibrator's method for some tensors (`--overrides`).
  public func run(model: Model, tensors: [String], data: Dataset, methods: [String: CalibrationMethod] = [:])
    throws -> (ranges: [String: ActivationRange], samples: Int) {
    let executor = try Executor(model: model, threads: threads)
    let recorder = Recorder()
    recorder.channelAxes = channelAxes
    let methodOf = { (name: String) -> CalibrationMethod in methods[name] ?? method }
    for t in tensors { recorder.histograms[t] = StreamingHistogram(keepsBins: methodOf(t) != .minmax) }
    // auto: the first chunk's inputs and outputs of every node that reads a calibrated tensor.
    let autoTensors = Set(tensors.filter { methodOf($0) == .auto })
    let readers = autoTensors.isEmpty ? nil : ReaderSamples(tensors: autoTensors)
    executor.observer = { node, inputs, outputs in
      for (name, value) in zip(node.outputs, outputs) { recorder.record(name, value) }
      readers?.keep(node, inputs, outputs)
    }
    var done = 0
    let used = try data.forEachChunk(rows: chunkRows, limit: maxSamples ?? Int.max) { chunk in
      for (name, value) in chunk { recorder.record(name, value) }
      if readers?.firstChunkDone == false { readers?.feeds = chunk }
      _ = try executor.run(chunk)
      readers?.firstChunkDone = true
      done += chunk.values.first.map { $0.rank == 0 ? 1 : $0.shape[0] } ?? 0
      progress?(done)
    }
    if used == 0 {
      throw CompressorError.usage("the calibration data holds no samples")
    }
    var ranges = [String: ActivationRange]()
    for name in tensors {
      guard let h = recorder.histograms[name] else { continue }
      if let readers, autoTensors.contains(name), recorder.otherTypes[name] == nil, !h.isEmpty {
        ranges[name] = try select(h, for: name, readers: readers, executor: executor)
      } else {
        ranges[name] = choose(h, otherType: recorder.otherTypes[name], method: methodOf(name) == .auto ? .minmax : methodOf(name))
      }
      if case let stats?? = recorder.channels[name] {
        ranges[name]?.channelMeans = stats.means
        ranges[name]?.channelMaxima = stats.maxima
      }
    }
    return (ranges, used)
  }

  /// The end among `extreme`·k/100 (k = 1…100) with the lowest score (the extreme if none scores).
  private func best(_ extreme: Float, _ score: (Float) -> Double?) -> Float {
    var best = (score: Double.infinity, end: extreme)
    for k in 1...100 {
      let end = extreme * Float(k) / 100
      if let s = score(end), s < best.score { best = (s, end) }
    }
    return best.end
  }

  func choose(_ h: StreamingHistogram, otherType: DataType?) -> ActivationRange {
    choose(h, otherType: otherType, method: method)
  }

  func choose(_ h: StreamingHistogram, otherType: DataType?, method: CalibrationMethod) -> ActivationRange {
    guard !h.isEmpty else {
      return ActivationRange(lo: 0, hi: 0, observedMin: 0, observedMax: 0, count: h.total, excluded: h.excluded,
                             clippedFraction: 0, otherType: otherType)
    }
    var lo = h.minimum, hi = h.maximum
    switch method {
    case .minmax, .auto:
      break
    case .percentile(let p):
      let tail = (100 - p) / 100
      if h.minimum < 0 { lo = max(h.minimum, h.quantile(tail)) }
      hi = min(h.maximum, h.quantile(1 - tail))
    case .entropy, .mse:
      // Each end in turn moves from the extreme toward 0 in 1% steps, keeping the best score:
      // an outlier on one side must not shrink the other.
      let score = { (a: Float, b: Float) -> Double? in
        method == .mse ? h.quantizationError(a, b, levels: 255) : h.clippingDivergence(a, b, levels: 255)
      }
      lo = min(0, h.minimum)
      hi = max(0, h.maximum)
      if hi > 0 { hi = best(hi) { score(lo, $0) } }
      if lo < 0 { lo = best(lo) { score($0, hi) } }
    }
    lo = min(lo, 0)
    hi = max(hi, 0)
    let clipped = method == .minmax || method == .auto ? 0 : h.fractionOutside(lo, hi)
    return ActivationRange(lo: lo, hi: hi, observedMin: h.minimum, observedMax: h.maximum, count: h.total,
                           excluded: h.excluded, clippedFraction: clipped, otherType: otherType)
  }
}
