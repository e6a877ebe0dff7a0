import Datasets
import Foundation
import IR
import Runtime
import Support

/// SmoothQuant (Xiao et al., 2023): transformer activations carry a few channels far larger
/// than the rest, and one per-tensor int8 scale for all of them leaves the others a handful of
/// levels. Weights are easy to quantize per channel. So each input channel k of the MatMuls that
/// read an activation is divided by sₖ = max|xₖ|^α / max|Wₖ|^(1−α) and their weight rows
/// multiplied by it: the product is unchanged, and α moves the difficulty from activations
/// (α → 1) to weights (α → 0). max|xₖ| is measured on the calibration data.
///
/// The division is folded into the LayerNormalization (or decomposed LayerNorm's Mul and Add)
/// that produces the activation when the MatMuls are its only readers; otherwise a Mul by 1/s
/// is inserted before them, which stays float.
public struct SmoothActivations: Pass {
  public static let name = "smooth"
  public var alpha: Float
  public var calibrator: Calibrator
  public var data: String

  public init(alpha: Float, calibrator: Calibrator, data: String) {
    self.alpha = alpha; self.calibrator = calibrator; self.data = data
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let graph = model.graph
    // 1. The activations read by MatMul/Gemm nodes with a 2-D float weight of their own.
    let groups = ActivationScaling.groups(in: graph)
    guard !groups.isEmpty else { return PassResult(pass: Self.name, changes: []) }

    // 2. Each activation's channel maxima on the calibration data.
    var calibrator = self.calibrator
    calibrator.method = .minmax
    calibrator.progress = nil
    for g in groups { calibrator.channelAxes[g.value] = -1 }
    let dataset = try Dataset(path: data, inputNames: graph.feedNames)
    let (ranges, _) = try calibrator.run(model: model, tensors: groups.map(\.value), data: dataset)

    // 3. Scales, weights and the producer's (or a new Mul's) 1/s.
    var changes = [PassResult.Change]()
    var names = NameScope(model)
    var scaling = ActivationScaling(graph)
    for g in groups {
      let readerNames = g.readers.map { label(graph.nodes[$0.node]) }.joined(separator: ", ")
      guard let xMax = ranges[g.value]?.channelMaxima, xMax.count == g.inputs else {
        changes.append(.init(target: g.value, action: "skipped", detail: "its channels were not measured (not float, or its shape varies)"))
        continue
      }
      let weights = try ActivationScaling.weights(of: g, in: graph)
      var wMax = [Float](repeating: 0, count: xMax.count)
      for w in weights {
        for (i, x) in w.values.enumerated() where x.isFinite { wMax[Int(w.inputChannels[i])] = max(wMax[Int(w.inputChannels[i])], abs(x)) }
      }
      let s = zip(xMax, wMax).map { x, w -> Float in
        guard x.isNormal, w.isNormal else { return 1 }
        let v = Float(pow(Double(x), Double(alpha)) / pow(Double(w), Double(1 - alpha)))
        return v.isNormal ? min(max(v, 1e-5), 1e5) : 1
      }
      let placement = scaling.scale(g, weights: weights, by: s, names: &names, naming: ("smooth", "smoothed"))
      let before = WeightLayout.spread(xMax), after = WeightLayout.spread(zip(xMax, s).map { $0 / $1 })
      changes.append(.init(target: g.value, action: "smoothed",
                           detail: String(format: "α %.2f for %@ (%@): largest/smallest channel maximum %.3g → %.3g over %d channels",
                                          alpha, readerNames, placement.description, before, after, xMax.count),
                           values: ["alpha": Double(alpha), "spreadBefore": before, "spreadAfter": after, "channels": Double(xMax.count),
                                    "folded": placement == .mul ? 0 : 1]))
    }
    scaling.apply(to: &model)
    changes.append(.init(target: "model", action: "smoothing",
                         detail: String(format: "α %.2f: %d activations smoothed, %d into their LayerNorm", alpha,
                                        changes.filter { $0.action == "smoothed" }.count,
                                        changes.filter { $0.values?["folded"] == 1 }.count)))
    return PassResult(pass: Self.name, changes: changes)
  }
}
