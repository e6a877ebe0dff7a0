import IR
import Runtime
import Support

/// Removes whole attention heads. An attention block is recognised in the form exporters write:
/// Q, K and V projections (MatMul by a [D, H·Dh] weight, optional bias Add) reshaped to
/// [.., .., H, Dh] and transposed to heads-first, Q·Kᵀ (scaled, masked) → Softmax → ·V, then
/// transposed back, reshaped to [.., .., H·Dh] and projected by an output MatMul. Removing head h
/// takes columns h·Dh…(h+1)·Dh out of the Q, K and V weights and biases and the same rows out of
/// the output weight, and the reshapes get H' heads. Heads go by importance: the l1 norm of their
/// Q, K, V columns and output rows. At least one head stays.
public struct PruneHeads: Pass {
  public static let name = "prune-heads"
  public var ratio: Double
  public init(ratio: Double) { self.ratio = ratio }

  struct Projection { var weight: String; var bias: String?; var reshape: Int }
  struct Block {
    var q: Projection, k: Projection, v: Projection
    var merge: Int
    var output: String
    var heads: Int
    var headSize: Int
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    var initializers = [String: Tensor]()
    for t in model.graph.initializers { initializers[t.name] = t }
    let blocks = Self.find(model.graph, initializers)
    if blocks.isEmpty {
      return PassResult(pass: Self.name, changes: [.init(target: model.graph.name, action: "skipped", detail: "no attention block found")])
    }
    var replaced = [String: Tensor]()
    var names = NameScope(model)
    for b in blocks {
      let name = label(model.graph.nodes[b.merge])
      // Heads are blocks of channels: the nearest whole number of them (ties remove fewer).
      let exact = Double(b.heads) * ratio
      let count = min(max(0, Int((exact - 0.5).rounded(.up))), b.heads - 1)
      guard count > 0 else {
        changes.append(.init(target: name, action: "skipped", detail: "\(b.heads) heads × \(ratio) rounds to none")); continue
      }
      var importance = [Double](repeating: 0, count: b.heads)
      for (weight, axis) in [(b.q.weight, 1), (b.k.weight, 1), (b.v.weight, 1), (b.output, 0)] {
        guard let t = initializers[weight] else { continue }
        let values = try NDArray(t).floats()
        let cols = Int(t.dims[1])
        for (i, v) in values.enumerated() {
          let channel = axis == 1 ? i % cols : i / cols
          importance[min(channel / b.headSize, b.heads - 1)] += Double(abs(v))
        }
      }
      let order = importance.indices.sorted { importance[$0] != importance[$1] ? importance[$0] < importance[$1] : $0 < $1 }
      let cut = Set(order.prefix(count))
      let keep = (0..<(b.heads * b.headSize)).filter { !cut.contains($0 / b.headSize) }
      func slice(_ name: String, axis: Int) throws {
        guard let t = replaced[name] ?? initializers[name] else { return }
        let a = try NDArray(t)
        replaced[name] = try TensorEdits.keeping(keep, along: axis, of: a, tensor: name).irTensor(name: name)
      }
      for p in [b.q, b.k, b.v] {
        try slice(p.weight, axis: 1)
        if let bias = p.bias { try slice(bias, axis: initializers[bias].map { $0.dims.count - 1 } ?? 0) }
      }
      try slice(b.output, axis: 0)
      // New shape constants for this block alone (a shared one may serve other blocks).
      let heads = b.heads - count
      for node in [b.q.reshape, b.k.reshape, b.v.reshape] {
        let shapeName = model.graph.nodes[node].inputs[1]
        guard var dims = initializers[shapeName].flatMap({ try? NDArray($0).integers() }) else { continue }
        dims[dims.count - 2] = heads
        let newName = names.fresh("\(label(model.graph.nodes[node])).heads\(heads)")
        replaced[newName] = NDArray(dims.map { Int64($0) }, shape: [dims.count]).irTensor(name: newName)
        model.graph.nodes[node].inputs[1] = newName
      }
      let mergeShape = model.graph.nodes[b.merge].inputs[1]
      if var dims = initializers[mergeShape].flatMap({ try? NDArray($0).integers() }), (dims.last ?? -1) > 0 {
        dims[dims.count - 1] = heads * b.headSize
        let newName = names.fresh("\(name).width\(heads * b.headSize)")
        replaced[newName] = NDArray(dims.map { Int64($0) }, shape: [dims.count]).irTensor(name: newName)
        model.graph.nodes[b.merge].inputs[1] = newName
      }
      changes.append(.init(target: name, action: "pruned",
                           detail: "\(count) of \(b.heads) heads removed (l1); heads \(cut.sorted().map(String.init).joined(separator: ","))",
                           values: ["headsBefore": Double(b.heads), "headsAfter": Double(heads)]))
    }
    var seen = Set<String>()
    model.graph.initializers = model.graph.initializers.map { t in seen.insert(t.name); return replaced[t.name] ?? t }
    model.graph.initializers += replaced.keys.sorted().filter { !seen.contains($0) }.compactMap { replaced[$0] }
    model.graph.valueInfo.removeAll()  // head counts changed inside; recorded shapes would be stale
    return PassResult(pass: Self.name, changes: changes)
  }

  /// Attention blocks of the main graph, matched from each Softmax(…)·V product.
  static func find(_ g: Graph, _ initializers: [String: Tensor]) -> [Block] {
    var producer = [String: Int]()
    for (i, n) in g.nodes.enumerated() { for o in n.outputs { producer[o] = i } }
    var uses = g.uses()
    for o in g.outputs { uses[o.name, default: 0] += 1 }
    func node(_ tensor: String) -> Node? { producer[tensor].map { g.nodes[$0] } }
    func perm(_ n: Node) -> [Int64]? { n.opType == "Transpose" && !n.inputs.isEmpty ? n.attribute("perm")?.ints : nil }
    func ints(_ name: String) -> [Int]? { initializers[name].flatMap { try? NDArray($0).integers() } }
    /// Reshape(x · W [+ b], [.., .., H, Dh]) → the projection and (H, Dh).
    func projection(_ heads: String) -> (Projection, Int, Int)? {
      guard let ri = producer[heads], g.nodes[ri].opType == "Reshape", g.nodes[ri].inputs.count == 2, g.nodes[ri].outputs.count == 1,
            let shape = ints(g.nodes[ri].inputs[1]), shape.count == 4, shape[2] > 0, shape[3] > 0 else { return nil }
      var x = g.nodes[ri].inputs[0], bias: String?
      if let add = node(x), add.opType == "Add", add.inputs.count == 2, uses[x] == 1 {
        guard let b = add.inputs.first(where: { initializers[$0] != nil }), let other = add.inputs.first(where: { $0 != b }) else { return nil }
        bias = b
        x = other
      }
      guard uses[x] == 1, let mm = node(x), mm.opType == "MatMul", mm.inputs.count == 2, let w = initializers[mm.inputs[1]], w.dims.count == 2,
            shape[2].multipliedReportingOverflow(by: shape[3]) == (Int(w.dims[1]), false) else { return nil }
      if let bias, initializers[bias]?.elementCount != Int(w.dims[1]) { return nil }
      return (Projection(weight: w.name, bias: bias, reshape: ri), shape[2], shape[3])
    }
    var blocks = [Block]()
    for n in g.nodes where n.opType == "MatMul" && n.isDefaultDomain && n.inputs.count == 2 && n.outputs.count == 1 {
      // probs · V, V = Transpose(perm 0,2,1,3) of the V heads.
      guard let vt = node(n.inputs[1]), perm(vt) == [0, 2, 1, 3], let (v, heads, size) = projection(vt.inputs[0]) else { continue }
      // Softmax ← (Add mask | Mul/Div scale)* ← Q·Kᵀ.
      guard let sm = node(n.inputs[0]), sm.opType == "Softmax", !sm.inputs.isEmpty else { continue }
      var cursor = sm.inputs[0]
      while let p = node(cursor), ["Add", "Mul", "Div", "Where"].contains(p.opType) {
        guard let next = p.inputs.first(where: { node($0)?.opType == "MatMul" || ["Add", "Mul", "Div"].contains(node($0)?.opType ?? "") }) else { break }
        cursor = next
      }
      guard let qk = node(cursor), qk.opType == "MatMul", qk.inputs.count == 2, let qt = node(qk.inputs[0]), perm(qt) == [0, 2, 1, 3],
            let (q, qh, qs) = projection(qt.inputs[0]), let kt = node(qk.inputs[1]) else { continue }
      var kHeads: String?
      if perm(kt) == [0, 2, 3, 1] { kHeads = kt.inputs[0] }
      if perm(kt) == [0, 1, 3, 2], let kt0 = node(kt.inputs[0]), perm(kt0) == [0, 2, 1, 3] { kHeads = kt0.inputs[0] }
      guard let kHeads, let (k, kh, ks) = projection(kHeads), qh == heads, kh == heads, qs == size, ks == size else { continue }
      // ctx: Transpose back, Reshape to [.., .., H·Dh], output projection.
      guard uses[n.outputs[0]] == 1, let back = g.nodes.first(where: { $0.inputs.first == n.outputs[0] }), perm(back) == [0, 2, 1, 3],
            back.outputs.count == 1, uses[back.outputs[0]] == 1, let mi = g.nodes.firstIndex(where: { $0.opType == "Reshape" && $0.inputs.first == back.outputs[0] }),
            g.nodes[mi].inputs.count == 2, g.nodes[mi].outputs.count == 1,
            let mshape = ints(g.nodes[mi].inputs[1]), let last = mshape.last, last == -1 || last == heads * size,
            uses[g.nodes[mi].outputs[0]] == 1,
            let o = g.nodes.first(where: { $0.opType == "MatMul" && $0.inputs.count == 2 && $0.inputs.first == g.nodes[mi].outputs[0] }),
            let wo = initializers[o.inputs[1]], wo.dims.count == 2, Int(wo.dims[0]) == heads * size else { continue }
      // Every weight of the block belongs to it alone.
      let weights = [q.weight, k.weight, v.weight, wo.name] + [q.bias, k.bias, v.bias].compactMap { $0 }
      guard Set(weights).count == weights.count, weights.allSatisfy({ uses[$0] == 1 }) else { continue }
      blocks.append(Block(q: q, k: k, v: v, merge: mi, output: wo.name, heads: heads, headSize: size))
    }
    return blocks
  }
}
