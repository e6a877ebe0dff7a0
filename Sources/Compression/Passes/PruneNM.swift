import IR
import Runtime
import Support

/// N:M semi-structured sparsity: along each weight's input dimension (K of Gemm/MatMul, C_in of
/// Conv), every run of `m` consecutive weights keeps its `n` largest |w| and the rest become 0 —
/// the layout sparse tensor cores execute at up to twice the speed (2:4). A layer whose input
/// dimension `m` does not divide is left dense, with the reason; so are the first and last
/// layers unless `pruneFirstLast`.
public struct PruneNM: Pass {
  public static let name = "prune-n-m"
  public var n: Int
  public var m: Int
  public var pruneFirstLast: Bool
  public init(n: Int, m: Int, pruneFirstLast: Bool = false) { self.n = n; self.m = m; self.pruneFirstLast = pruneFirstLast }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var (layers, changes) = prunableLayers(model)
    let weights = model.graph.initializersEverywhere
    for (i, layer) in layers.enumerated() {
      if !pruneFirstLast && (i == 0 || i == layers.count - 1) {
        changes.append(.init(target: layer.label, action: "skipped",
                             detail: "\(i == 0 ? "first" : "last") layer, kept dense (--prune-first-last to include it)"))
        continue
      }
      guard let t = weights[layer.weight] else { continue }
      let dims = t.dims.map { Int($0) }
      let k = dims[layer.inputAxis]
      guard k % m == 0 else {
        changes.append(.init(target: layer.label, action: "skipped",
                             detail: "input dimension \(k) of weight '\(t.name)' is not a multiple of \(m)"))
        continue
      }
      var values = try finiteWeights(t)
      let inner = dims[(layer.inputAxis + 1)...].reduce(1, *)
      let outer = dims[..<layer.inputAxis].reduce(1, *)
      var run = [Int](repeating: 0, count: m)
      for o in 0..<outer {
        for i in 0..<inner {
          for start in stride(from: 0, to: k, by: m) {
            for j in 0..<m { run[j] = (o * k + start + j) * inner + i }
            // The m - n smallest of the run, ties to the earlier position.
            let order = run.sorted { a, b in abs(values[a]) != abs(values[b]) ? abs(values[a]) < abs(values[b]) : a < b }
            for p in order.prefix(m - n) { values[p] = 0 }
          }
        }
      }
      model.graph.replaceInitializer(tensor(t, replacingWith: values))
      let zeros = values.filter { $0 == 0 }.count
      let s = Double(zeros) / Double(max(values.count, 1))
      changes.append(.init(target: layer.label, action: "pruned",
                           detail: String(format: "weight '%@': %d:%d along axis %d, sparsity %.4f", t.name, n, m, layer.inputAxis, s),
                           values: ["sparsity": s, "zeros": Double(zeros), "parameters": Double(values.count)]))
    }
    layers = []
    return PassResult(pass: Self.name, changes: changes)
  }
}
