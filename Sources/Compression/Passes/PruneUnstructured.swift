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
    // Only the choice is kept here: each weight is read again when it is pruned, so a model
    // with external data is pruned one tensor at a time (MagnitudeCut needs no sorted copy).
    var chosen = [(layer: PrunableLayer, weight: Tensor, ratio: Double, pooled: Bool)]()
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
      chosen.append((layer, w, ratio, global && override == nil))
    }
    layers = []
    // With `global`, the layers without an override share one cut over all their weights.
    var shared: MagnitudeCut?
    var sharedTies = 0
    if chosen.contains(where: \.pooled) {
      let pooled = chosen.filter(\.pooled).map(\.weight)
      let total = pooled.reduce(0) { $0 + $1.elementCount }
      shared = try MagnitudeCut.find(count: Int((Double(total) * sparsity).rounded())) { body in
        for w in pooled { try finiteWeights(w).withUnsafeBufferPointer { try body($0) }; w.data.releaseResidentPages() }
      }
      sharedTies = shared?.ties ?? 0
    }
    for c in chosen {
      var values = try finiteWeights(c.weight)
      c.weight.data.releaseResidentPages()
      var zeros = 0
      if c.pooled {
        if let shared { zeros = values.withUnsafeMutableBufferPointer { shared.apply(to: $0, ties: &sharedTies) } }
      } else {
        let count = Int((Double(values.count) * c.ratio).rounded())
        let cut = try MagnitudeCut.find(count: count) { body in try values.withUnsafeBufferPointer { try body($0) } }
        if let cut {
          var ties = cut.ties
          zeros = values.withUnsafeMutableBufferPointer { cut.apply(to: $0, ties: &ties) }
        }
      }
      let total = values.reduce(0) { $1 == 0 ? $0 + 1 : $0 }
      model.graph.replaceInitializer(tensor(c.weight, replacingWith: values))
      values = []
      let s = Double(total) / Double(max(c.weight.elementCount, 1))
      changes.append(.init(target: c.layer.label, action: "pruned",
                           detail: String(format: "weight '%@': %d of %d set to zero, sparsity %.4f", c.layer.weight, zeros, c.weight.elementCount, s),
                           values: ["sparsity": s, "zeros": Double(total), "parameters": Double(c.weight.elementCount)]))
    }
    return PassResult(pass: Self.name, changes: changes)
  }
}
