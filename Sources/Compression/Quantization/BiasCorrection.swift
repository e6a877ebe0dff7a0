import IR
import Runtime
import Support

/// Empirical bias correction (Nagel et al., "Data-Free Quantization", 2019, §4.2). Rounding a
/// weight W to W + ε moves each output channel's mean by ε·E[x]: a systematic shift that the
/// next layers amplify instead of averaging away, largest where weights are few per channel
/// (depthwise convolutions) or coarse (per-tensor scales). With E[x] measured per input channel
/// on the calibration data, the shift is known and subtracted from the bias: the quantized
/// layer's output keeps the float layer's mean. A Conv patch's mean is taken as its channel's
/// mean (exact away from the padded border).
struct BiasCorrection {
  /// One node's corrected bias: the tensor that replaces it, and the shift removed.
  struct Correction {
    var node: String
    var bias: Tensor
    var largestShift: Double
    var meanShift: Double
  }

  /// Where each node's bias lives: its own input 2 (Conv, Gemm), or the constant of an Add
  /// that alone reads a MatMul's output. nil when it has none it alone owns.
  static func bias(of n: Node, in graph: Graph, initializers: [String: Tensor], uses: [String: Int],
                   readers: [String: [Int]]) -> (tensor: Tensor, factor: Float)? {
    switch n.opType {
    case "Conv":
      guard n.inputs.count > 2, let b = initializers[n.inputs[2]], uses[b.name] == 1 else { return nil }
      return (b, 1)
    case "Gemm":
      // alpha·A·B + beta·C: a shift d of A·B's output is undone by −alpha·d/beta in C.
      let alpha = n.attribute("alpha")?.float ?? 1, beta = n.attribute("beta")?.float ?? 1
      guard n.inputs.count > 2, let b = initializers[n.inputs[2]], uses[b.name] == 1, beta != 0 else { return nil }
      return (b, alpha / beta)
    case "MatMul":
      guard let out = n.outputs.first, uses[out] == 1, let r = readers[out]?.first, graph.nodes[r].opType == "Add",
            graph.nodes[r].isDefaultDomain, graph.nodes[r].inputs.count == 2,
            let other = graph.nodes[r].inputs.first(where: { $0 != out }), let b = initializers[other], uses[other] == 1,
            b.dims.count == 1 else { return nil }
      return (b, 1)
    default:
      return nil
    }
  }

  /// The corrected bias of node `n` whose weight `weight` rounds to `rounded`, given its input's
  /// per-channel means; nil when the shapes do not line up (the node is left as it is).
  static func correct(_ n: Node, weight: Tensor, rounded: [Float], means: [Double], bias: (tensor: Tensor, factor: Float))
    throws -> Correction? {
    guard let layout = WeightLayout(n, weightDims: weight.dims), layout.inputs == means.count,
          bias.tensor.dataType == .float, bias.tensor.elementCount == layout.outputs else { return nil }
    let w = try NDArray(weight).floats()
    guard w.count == rounded.count else { return nil }
    let (outs, ins) = layout.channelsOfElements()
    var shift = [Double](repeating: 0, count: layout.outputs)
    for i in w.indices { shift[Int(outs[i])] += Double(rounded[i] - w[i]) * means[Int(ins[i])] }
    var b = try NDArray(bias.tensor).floats()
    for o in b.indices { b[o] -= Float(shift[o]) * bias.factor }
    guard b.allSatisfy(\.isFinite) else { return nil }
    let magnitudes = shift.map(abs)
    return Correction(node: label(n), bias: NDArray(b, shape: bias.tensor.dims.map { Int($0) }).irTensor(name: bias.tensor.name),
                      largestShift: magnitudes.max() ?? 0, meanShift: magnitudes.reduce(0, +) / Double(max(magnitudes.count, 1)))
  }
}
