import Foundation
import IR
import Runtime
import Support

/// Magnitude pruning: in each eligible weight the smallest |w| become exactly 0 — `sparsity` of
/// them per layer, or with `global` the smallest across all layers together (layers then end up
/// with different sparsities, the less important ones higher). `overrides` set a layer's own
/// ratio. The first and last layers are left dense unless `pruneFirstLast`: they are the most
/// sensitive and the smallest. The model keeps its shape; zeros are what deflate (an
/// over-the-air update) and sparse kernels gain from.
public struct PruneUnstructured: Pass {
  public static let name = "prune-unstructured"
  public var sparsity: Double
  public var global: Bool
  public var overrides: RatioOverrides
  public var pruneFirstLast: Bool
  public init(sparsity: Double, global: Bool = false, overrides: RatioOverrides = .init(), pruneFirstLast: Bool = false) {
    self.sparsity = sparsity; self.global = global; self.overrides = overrides; self.pruneFirstLast = pruneFirstLast
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var (layers, changes) = prunableLayers(model)
    let weights = model.graph.initializersEverywhere
    var chosen = [(layer: PrunableLayer, ratio: Double, values: [Float])]()
    for (i, layer) in layers.enumerated() {
      let override = overrides.ratio(for: layer.node)
      if override == nil && !pruneFirstLast && (i == 0 || i == layers.count - 1) {
        changes.append(.init(target: layer.label, action: "skipped",
                             detail: "\(i == 0 ? "first" : "last") layer, kept dense (--prune-first-last to include it)"))
        continue
      }
      guard let w = weights[layer.weight] else { continue }
      let ratio = override ?? sparsity
      if ratio == 0 { changes.append(.init(target: layer.label, action: "skipped", detail: "ratio 0")); continue }
      chosen.append((layer, ratio, try finiteWeights(w)))
    }
    layers = []
    // How many of each layer's weights become zero.
    var zeroCount = chosen.map { Int((Double($0.values.count) * $0.ratio).rounded()) }
    if global {
      let pooled = chosen.indices.filter { overrides.ratio(for: chosen[$0].layer.node) == nil }
      var all = [(Float, Int, Int)]()  // |w|, layer, position
      for l in pooled { for (p, v) in chosen[l].values.enumerated() { all.append((abs(v), l, p)) } }
      let k = Int((Double(all.count) * sparsity).rounded())
      all.sort { $0.0 != $1.0 ? $0.0 < $1.0 : ($0.1 != $1.1 ? $0.1 < $1.1 : $0.2 < $1.2) }
      for l in pooled { zeroCount[l] = 0 }
      for entry in all.prefix(k) { zeroCount[entry.1] += 1 }
    }
    for (l, c) in chosen.enumerated() {
      guard let w = weights[c.layer.weight] else { continue }
      var values = c.values
      let order = magnitudeOrder(values)
      let zeros = zeroCount[l]
      for p in order.prefix(zeros) { values[p] = 0 }
      model.graph.replaceInitializer(tensor(w, replacingWith: values))
      let total = values.filter { $0 == 0 }.count
      let s = Double(total) / Double(max(values.count, 1))
      changes.append(.init(target: c.layer.label, action: "pruned",
                           detail: String(format: "weight '%@': %d of %d set to zero, sparsity %.4f", c.layer.weight, zeros, values.count, s),
                           values: ["sparsity": s, "zeros": Double(total), "parameters": Double(values.count)]))
    }
    return PassResult(pass: Self.name, changes: changes)
  }
}
