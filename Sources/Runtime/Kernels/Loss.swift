import Foundation
import IR
import Support

/// The training losses a model may carry: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss
/// (the latter also returns the log-probabilities). Inputs are [N, C, d1, …] with targets
/// [N, d1, …]; per-class weights and an ignored target index are optional. Computed in Double.
extension Kernels {
  static let loss: [String: Kernel] = [
    "NegativeLogLikelihoodLoss": { c in
      let x = try c.input(0)
      return [try negativeLogLikelihood(c, logProbabilities: try x.converted(to: .double), type: x.dataType)]
    },
    "SoftmaxCrossEntropyLoss": { c in
      let x = try c.input(0)
      guard x.rank >= 2 else { throw c.fail("scores must be [N, C, ...], not \(x.shape)") }
      var logProb = try x.converted(to: .double)
      let e = logProb.mutableElements(Double.self)
      let n = x.shape[0], classes = x.shape[1], inner = x.shape.dropFirst(2).reduce(1, *)
      for b in 0..<n {
        for i in 0..<inner {
          let base = b * classes * inner + i
          var top = -Double.infinity
          for k in 0..<classes { top = max(top, e[base + k * inner]) }
          var sum = 0.0
          for k in 0..<classes { sum += Foundation.exp(e[base + k * inner] - top) }
          let shift = top + Foundation.log(sum)
          for k in 0..<classes { e[base + k * inner] -= shift }
        }
      }
      let loss = try negativeLogLikelihood(c, logProbabilities: logProb, type: x.dataType)
      return [loss, try logProb.converted(to: x.dataType)]
    },
  ]
}

/// −log p[n, target, d…] per element, weighted by the target's class weight (0 for the ignored
/// index), then reduced: none, sum, or mean (the sum over the sum of the weights used).
private func negativeLogLikelihood(_ c: KernelContext, logProbabilities x: NDArray, type: DataType) throws -> NDArray {
  let target = try c.input(1)
  guard x.rank >= 2 else { throw c.fail("input must be [N, C, ...], not \(x.shape)") }
  let n = x.shape[0], classes = x.shape[1], inner = x.shape.dropFirst(2).reduce(1, *)
  guard target.shape == [n] + Array(x.shape.dropFirst(2)) else {
    throw c.fail("target \(target.shape) must be \([n] + Array(x.shape.dropFirst(2)))")
  }
  let labels = try target.integers(), weights = try c.optionalInput(2)?.converted(to: .double)
  if let weights, weights.shape != [classes] { throw c.fail("weight \(weights.shape) must be [\(classes)]") }
  let classWeight = weights.map { Array($0.elements(Double.self)) }
  let ignored: Int? = c.node.attribute("ignore_index") != nil ? c.int("ignore_index", 0) : nil
  let reduction = c.string("reduction", "mean")
  guard ["none", "sum", "mean"].contains(reduction) else { throw c.fail("reduction must be none, sum or mean, not '\(reduction)'") }
  let p = x.elements(Double.self)
  var losses = [Double](repeating: 0, count: n * inner)
  var weightSum = 0.0
  for b in 0..<n {
    for i in 0..<inner {
      let label = labels[b * inner + i]
      if label == ignored { continue }
      guard label >= 0 && label < classes else { throw c.fail("target \(label) is not a class in 0..<\(classes)") }
      let w = classWeight?[label] ?? 1
      losses[b * inner + i] = -p[(b * classes + label) * inner + i] * w
      weightSum += w
    }
  }
  switch reduction {
  case "none": return try NDArray(doubles: losses, as: type, shape: target.shape)
  case "sum": return try NDArray(doubles: [losses.reduce(0, +)], as: type, shape: [])
  default:
    let total = losses.reduce(0, +)
    // Without weights or an ignored index the mean is over every element, as in the reference.
    let denominator = classWeight == nil && ignored == nil ? Double(losses.count) : weightSum
    return try NDArray(doubles: [total / denominator], as: type, shape: [])
  }
}
