import IR
import Support

/// Removes nodes none of whose outputs is read (by any node, subgraph or graph output), until
/// none is left, then initializers nothing reads (and their graph-input entries from IR < 4).
public struct RemoveDeadCode: Pass {
  public static let name = "remove-dead-code"
  public init() {}

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    // Subgraphs may read the main graph's values, so uses are counted over the whole model.
    while true {
      let uses = model.graph.uses()
      var removedAny = false
      model.graph.transformGraphs { g in
        let before = g.nodes.count
        g.nodes.removeAll { n in
          let dead = !n.outputs.isEmpty && n.outputs.allSatisfy { $0.isEmpty || uses[$0] == nil }
          if dead { changes.append(.init(target: label(n), action: "removed", detail: "no output is read")) }
          return dead
        }
        removedAny = removedAny || g.nodes.count != before
      }
      if !removedAny { break }
    }
    let uses = model.graph.uses()
    model.graph.transformGraphs { g in
      let unused = Set(g.initializers.map(\.name).filter { uses[$0] == nil })
      for t in g.initializers where unused.contains(t.name) {
        changes.append(.init(target: t.name, action: "removed", detail: "initializer nothing reads"))
      }
      g.initializers.removeAll { unused.contains($0.name) }
      g.inputs.removeAll { unused.contains($0.name) }
    }
    return PassResult(pass: Self.name, changes: changes)
  }
}
