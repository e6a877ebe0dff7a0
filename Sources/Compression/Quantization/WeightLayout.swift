import IR

/// Which output and input channel each element of a Conv, Gemm or MatMul weight serves: what
/// cross-layer equalization scales and bias correction sums over.
struct WeightLayout {
  var dims: [Int]
  /// Conv W[o, c, k…] (activations NCHW), else a 2-D Gemm/MatMul weight (activations channels last).
  var convolution: Bool
  var groups: Int
  /// A 2-D weight stored [out, in] (Gemm with transB) rather than [in, out].
  var outFirst: Bool

  /// nil for other nodes, other ranks, a transposed Gemm input, or groups that do not divide the channels.
  init?(_ n: Node, weightDims: [Int64]) {
    dims = weightDims.map { Int($0) }
    guard n.isDefaultDomain, dims.allSatisfy({ $0 > 0 }) else { return nil }
    switch n.opType {
    case "Conv":
      groups = Int(n.attribute("group")?.int ?? 1)
      guard dims.count >= 3, groups >= 1, dims[0] % groups == 0 else { return nil }
      convolution = true
      outFirst = true
    case "Gemm", "MatMul":
      guard dims.count == 2, (n.attribute("transA")?.int ?? 0) == 0 else { return nil }
      convolution = false
      groups = 1
      outFirst = n.opType == "Gemm" && (n.attribute("transB")?.int ?? 0) != 0
    default:
      return nil
    }
  }

  var outputs: Int { convolution || outFirst ? dims[0] : dims[1] }
  var inputs: Int { convolution ? dims[1] * groups : outFirst ? dims[1] : dims[0] }

  /// Every element's output and input channel. A grouped Conv's element W[o, c, …] reads input
  /// channel (o / outputs per group) · (inputs per group) + c.
  func channelsOfElements() -> (out: [Int32], in: [Int32]) {
    let count = dims.reduce(1, *)
    var out = [Int32](repeating: 0, count: count), input = [Int32](repeating: 0, count: count)
    if convolution {
      let perGroup = dims[1], outPerGroup = dims[0] / groups
      let inner = count / (dims[0] * perGroup)
      for i in 0..<count {
        let o = i / (perGroup * inner)
        out[i] = Int32(o)
        input[i] = Int32((o / outPerGroup) * perGroup + (i / inner) % perGroup)
      }
    } else {
      let cols = dims[1]
      for i in 0..<count {
        out[i] = Int32(outFirst ? i / cols : i % cols)
        input[i] = Int32(outFirst ? i % cols : i / cols)
      }
    }
    return (out, input)
  }

  /// Largest over smallest nonzero value: how unevenly channels are spread (1 when none is nonzero).
  static func spread(_ r: [Float]) -> Double {
    let nonzero = r.filter { $0 > 0 }
    guard let lo = nonzero.min(), let hi = nonzero.max() else { return 1 }
    return Double(hi / lo)
  }
}
