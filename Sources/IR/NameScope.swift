/// Fresh names for what a pass adds to a model. It knows every name the model uses — values
/// (node inputs and outputs, graph inputs, outputs, initializers, value_info), node names, in the
/// main graph, every subgraph and every function — and every name it has handed out, so a name
/// it returns collides with nothing, whatever the exporter already called its values. Value and
/// node names share one namespace here: a generated node name never equals a value name either,
/// which keeps reports and error messages unambiguous.
public struct NameScope: Sendable {
  private var taken: Set<String>
  /// Next suffix to try per base name, so that many requests for one base stay linear.
  private var nextSuffix: [String: Int] = [:]

  public init(_ model: Model) {
    var names = Set<String>()
    model.graph.forEachGraph { Self.collect($0, into: &names) }
    for f in model.functions {
      names.formUnion(f.inputs)
      names.formUnion(f.outputs)
      for n in f.nodes {
        names.insert(n.name)
        names.formUnion(n.inputs)
        names.formUnion(n.outputs)
        for a in n.attributes { for g in a.subgraphs { g.forEachGraph { Self.collect($0, into: &names) } } }
      }
    }
    names.remove("")
    taken = names
  }

  public init(_ graph: Graph) {
    var names = Set<String>()
    graph.forEachGraph { Self.collect($0, into: &names) }
    names.remove("")
    taken = names
  }

  private static func collect(_ g: Graph, into names: inout Set<String>) {
    for n in g.nodes {
      names.insert(n.name)
      names.formUnion(n.inputs)
      names.formUnion(n.outputs)
    }
    for v in g.inputs { names.insert(v.name) }
    for v in g.outputs { names.insert(v.name) }
    for v in g.valueInfo { names.insert(v.name) }
    for t in g.initializers { names.insert(t.name) }
    for t in g.sparseInitializers { names.insert(t.values.name) }
  }

  /// `base` itself when nothing uses it yet, else `base_2`, `base_3`, … — the first that is free.
  /// The name returned is reserved: no later call returns it again.
  public mutating func fresh(_ base: String) -> String {
    if taken.insert(base).inserted { return base }
    var k = nextSuffix[base] ?? 2
    while !taken.insert("\(base)_\(k)").inserted { k += 1 }
    nextSuffix[base] = k + 1
    return "\(base)_\(k)"
  }

  /// Marks `name` as used (a name the pass keeps from the model, or takes over from a node it removes).
  public mutating func reserve(_ name: String) { if !name.isEmpty { taken.insert(name) } }

  public func isTaken(_ name: String) -> Bool { taken.contains(name) }
}
