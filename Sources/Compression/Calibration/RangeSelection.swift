import IR
import Runtime
import Support

/// `--calibration auto`: a tensor's histogram alone cannot tell which values matter — clipping a
/// LayerNorm output's few outlier channels ruins the next MatMul, while clipping a GELU output's
/// long tail saves it most of its resolution. So each candidate range is judged where the error
/// lands: the tensor is quantized and dequantized with it, every node that reads it runs again on
/// the first calibration chunk, and the candidate whose readers' outputs move least (squared error
/// relative to each output's energy, summed) wins.
extension Calibrator {
  static let autoCandidates: [CalibrationMethod] = [.minmax, .percentile(99.99), .percentile(99.9), .mse, .entropy]

  func select(_ h: StreamingHistogram, for name: String, readers: ReaderSamples, executor: Executor) throws -> ActivationRange {
    let samples = readers.samples(reading: name)
    let candidates = Self.autoCandidates.map { choose(h, otherType: nil, method: $0) }
    guard !samples.isEmpty, let value = readers.value(name) else {
      return choose(h, otherType: nil, method: .minmax)
    }
    var scored = [(method: CalibrationMethod, error: Double)]()
    var best: (index: Int, error: Double)?
    for (i, range) in candidates.enumerated() {
      guard let fake = fakeQuantized(value, lo: range.lo, hi: range.hi) else { continue }
      var error = 0.0
      for s in samples {
        let inputs = zip(s.node.inputs, s.inputs).map { input, v in input == name ? fake : v }
        guard let outputs = try? executor.evaluate(s.node, inputs) else { error = .nan; break }
        for (got, want) in zip(outputs, s.outputs) { error += relativeError(got, want) }
      }
      guard error.isFinite else { continue }
      scored.append((Self.autoCandidates[i], error))
      // Ties keep the earlier candidate: minmax first, then the ones that clip less.
      if best.map({ error < $0.error }) ?? true { best = (i, error) }
    }
    guard let best else { return choose(h, otherType: nil, method: .minmax) }
    var range = candidates[best.index]
    range.clippedFraction = Self.autoCandidates[best.index] == .minmax ? 0 : h.fractionOutside(range.lo, range.hi)
    range.chosen = Self.autoCandidates[best.index]
    range.errors = scored
    return range
  }

  /// `x` quantized over [lo, hi] as the pass will (uint8 with a zero point, or int8 symmetric)
  /// and dequantized; nil for a non-float tensor or an empty range.
  private func fakeQuantized(_ x: NDArray, lo: Float, hi: Float) -> NDArray? {
    guard x.dataType == .float, let (scale, zp) = affineParameters(lo: min(lo, 0), hi: max(hi, 0), symmetric: symmetricActivations) else {
      return nil
    }
    let (qmin, qmax): (Float, Float) = symmetricActivations ? (-128, 127) : (0, 255)
    let z = Float(zp)
    var out = NDArray(uninitialized: .float, x.shape)
    let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
    for i in 0..<x.count {
      let q = min(max((src[i] / scale).rounded(.toNearestOrEven) + z, qmin), qmax)
      dst[i] = (q - z) * scale
    }
    return out
  }

  /// ‖got − want‖² / ‖want‖² over float outputs (0 for others, or for an all-zero output).
  private func relativeError(_ got: NDArray, _ want: NDArray) -> Double {
    guard got.dataType == .float, want.dataType == .float, got.count == want.count else { return 0 }
    let a = got.elements(Float.self), b = want.elements(Float.self)
    var diff = 0.0, energy = 0.0
    for i in 0..<got.count {
      let d = Double(a[i]) - Double(b[i])
      diff += d * d
      energy += Double(b[i]) * Double(b[i])
    }
    return energy > 0 ? diff / energy : 0
  }
}

/// What `auto` replays: from the first calibration chunk, each node that reads a calibrated tensor
/// with its inputs and outputs, while they fit in a fixed budget (a reader past it is not replayed;
/// a tensor with no replayable reader falls back to minmax). Nodes holding subgraphs are skipped:
/// replaying them would need their outer scope.
final class ReaderSamples {
  struct Sample {
    var node: Node
    var inputs: [NDArray?]
    var outputs: [NDArray]
  }

  static let budgetBytes = 256 << 20
  let tensors: Set<String>
  var samples = [Sample]()
  var bytes = 0
  /// The first chunk's feeds (calibrated graph inputs are read from here).
  var feeds: [String: NDArray] = [:]
  var firstChunkDone = false

  init(tensors: Set<String>) { self.tensors = tensors }

  func keep(_ node: Node, _ inputs: [NDArray?], _ outputs: [NDArray]) {
    guard !firstChunkDone, node.inputs.contains(where: tensors.contains),
          node.attributes.allSatisfy({ $0.subgraphs.isEmpty }) else { return }
    let size = (inputs.compactMap { $0?.storage.byteCount } + outputs.map(\.storage.byteCount)).reduce(0, +)
    guard bytes + size <= Self.budgetBytes else { return }
    bytes += size
    samples.append(Sample(node: node, inputs: inputs, outputs: outputs))
  }

  func samples(reading name: String) -> [Sample] { samples.filter { $0.node.inputs.contains(name) } }

  /// The first chunk's value of `name`, as its readers saw it.
  func value(_ name: String) -> NDArray? {
    if let v = feeds[name] { return v }
    for s in samples {
      if let i = s.node.inputs.firstIndex(of: name), i < s.inputs.count, let v = s.inputs[i] { return v }
    }
    return nil
  }
}
